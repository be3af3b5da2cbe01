"""What produced an output: package versions recorded in manifests and checkpoints."""

from __future__ import annotations

import platform
from importlib import metadata

PACKAGES = ("gptflow", "torch", "numpy", "tiktoken", "safetensors")


def package_versions(*more: str) -> dict[str, str]:
    """Python's version and those of PACKAGES and `more`, as installed."""
    versions = {"python": platform.python_version()}
    for name in (*PACKAGES, *more):
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions
