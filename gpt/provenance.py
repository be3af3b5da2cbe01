"""What produced an output: package versions recorded in manifests and checkpoints."""

from __future__ import annotations

import platform
from importlib import metadata

PACKAGES = ("gptflow", "torch", "numpy", "tiktoken", "safetensors")


def package_versions() -> dict[str, str]:
    versions = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions
