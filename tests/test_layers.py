"""The layers import one way: gpt <- tasks <- flows <- cli, the two halves of tasks/ stay apart, flows/ only
composes (every function there is a Prefect flow), and loading pipelines.yaml does not import Prefect."""

import ast
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import REPO

FORBIDDEN = {
    "gpt": ("tasks", "flows", "cli"),
    "tasks": ("flows", "cli"),
    "tasks/corpus": ("tasks.training",),
    "tasks/training": ("tasks.corpus",),
    "flows": ("cli",),
}


def imported_modules(path: Path) -> list[str]:
    """Every module an import statement of the file names, at any depth (function-level imports included)."""
    names = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names.append(node.module)
    return names


@pytest.mark.parametrize("folder", sorted(FORBIDDEN))
def test_a_layer_imports_nothing_above_it(folder):
    offenders = [
        f"{path.relative_to(REPO)}: {name}"
        for path in sorted((REPO / folder).rglob("*.py"))
        for name in imported_modules(path)
        if any(name == layer or name.startswith(f"{layer}.") for layer in FORBIDDEN[folder])
    ]
    assert offenders == []


def test_flows_only_compose():
    for path in sorted((REPO / "flows").glob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in tree.body:
            assert not isinstance(node, ast.ClassDef), f"{path.name}: class {node.name} belongs in tasks/"
            if isinstance(node, ast.FunctionDef):
                decorators = [d.func.id for d in node.decorator_list if isinstance(d, ast.Call)]
                assert decorators == ["flow"], f"{path.name}: {node.name} is not a flow; it belongs in tasks/"


def test_loading_pipelines_yaml_does_not_import_prefect():
    code = "import sys, tasks.config; tasks.config.load_pipelines('pipelines.yaml'); print(list(sys.modules))"
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True, timeout=120
    )
    assert "prefect" not in out.stdout.split("'")
