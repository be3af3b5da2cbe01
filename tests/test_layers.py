"""The layers import one way: gpt <- tasks <- flows <- cli, the two halves of tasks/ stay apart, the settings of the
corpus stages import no stage, flows/ only composes (every function there is a Prefect flow), and loading
pipelines.yaml imports none of Prefect, torch, MLflow, numba and DuckDB."""

import ast
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import REPO

STAGES = tuple(f"tasks.corpus.{path.stem}" for path in sorted((REPO / "tasks" / "corpus").glob("stage*.py")))
FORBIDDEN = {
    "gpt": ("tasks", "flows", "cli"),
    "tasks": ("flows", "cli"),
    "tasks/corpus": ("tasks.training",),
    "tasks/training": ("tasks.corpus",),
    "tasks/config.py": STAGES,
    "tasks/corpus/settings.py": ("tasks.corpus", "tasks.training"),
    "flows": ("cli",),
}


def imported_modules(path: Path, root: Path = REPO) -> list[str]:
    """Every module an import statement of the file names, at any depth (function-level imports included):
    relative imports resolved against the file's package, and for `from A import B` both A and A.B (B may be a
    module: `from tasks import training`)."""
    package = path.relative_to(root).with_suffix("").parts[:-1]
    names = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            parent = package[: len(package) - node.level + 1] if node.level else ()
            base = ".".join([*parent, *([node.module] if node.module else [])])
            names += [base, *(f"{base}.{alias.name}" for alias in node.names)]
    return names


def offenders(root: Path, folder: str) -> list[str]:
    """The imports of the files of `folder` (or of that one file) that its rule forbids."""
    files = [root / folder] if folder.endswith(".py") else sorted((root / folder).rglob("*.py"))
    assert all(path.is_file() for path in files), f"no file {folder}: the rule would hold for nothing"
    assert files, f"no Python files in {folder}/: the rule would hold for nothing"
    return [
        f"{path.relative_to(root)}: {name}"
        for path in files
        for name in imported_modules(path, root)
        if any(name == layer or name.startswith(f"{layer}.") for layer in FORBIDDEN[folder])
    ]


@pytest.mark.parametrize("folder", sorted(FORBIDDEN))
def test_a_layer_imports_nothing_above_it(folder):
    assert len(STAGES) == 7, f"the corpus stages are tasks/corpus/stage<N>_<name>.py; found {STAGES}"
    assert offenders(REPO, folder) == []


def test_every_form_of_import_is_seen(tmp_path):
    """An absolute import, a name imported from a package, a relative import and one inside a function."""
    corpus = tmp_path / "tasks" / "corpus"
    corpus.mkdir(parents=True)
    forms = [
        "import tasks.training.run", "from tasks import training", "from ..training import run",
        "from ..training.run import train", "def f():\n    from tasks.training import run",
    ]  # fmt: skip
    for i, form in enumerate(forms):
        (corpus / f"m{i}.py").write_text(form + "\n", encoding="utf-8")
    (corpus / "clean.py").write_text("from . import bpe\nfrom .text import rules\n", encoding="utf-8")
    found = {line.partition(":")[0] for line in offenders(tmp_path, "tasks/corpus")}
    assert found == {f"tasks/corpus/m{i}.py" for i in range(len(forms))}
    with pytest.raises(AssertionError, match="no Python files in tasks/training/"):
        offenders(tmp_path, "tasks/training")


def test_flows_only_compose():
    for path in sorted((REPO / "flows").glob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in tree.body:
            assert not isinstance(node, ast.ClassDef), f"{path.name}: class {node.name} belongs in tasks/"
            if isinstance(node, ast.FunctionDef):
                decorators = [d.func.id for d in node.decorator_list if isinstance(d, ast.Call)]
                assert decorators == ["flow"], f"{path.name}: {node.name} is not a flow; it belongs in tasks/"


HEAVY = ("prefect", "torch", "mlflow", "numba", "duckdb")
"""What loading pipelines.yaml must not import: each takes from a tenth of a second to several seconds."""
LOAD = """
import sys, time
started = time.perf_counter()
import tasks.config
tasks.config.load_pipelines("pipelines.yaml")
print(time.perf_counter() - started)
print(" ".join(sorted({name.split(".")[0] for name in sys.modules})))
"""


def test_loading_pipelines_yaml_is_light():
    """The shipped file (its `where` filters included) loads in under half a second, importing none of HEAVY."""
    seconds = []
    for _ in range(3):  # the quickest of three: a loaded machine slows one start, not the import graph
        out = subprocess.run([sys.executable, "-c", LOAD], cwd=REPO, capture_output=True, text=True, check=True)
        took, modules = out.stdout.splitlines()
        assert not set(HEAVY) & set(modules.split()), (
            f"loading pipelines.yaml imports {set(HEAVY) & set(modules.split())}"
        )
        seconds.append(float(took))
    assert min(seconds) < 0.5, f"loading pipelines.yaml took {min(seconds):.2f} s at best"
