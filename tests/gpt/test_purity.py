"""The engine stays pure PyTorch: nothing in gpt/ imports prefect, mlflow or duckdb, even indirectly."""

import ast
import subprocess
import sys
from pathlib import Path

GPT = Path(__file__).resolve().parents[2] / "gpt"
FORBIDDEN = {"prefect", "mlflow", "duckdb"}


def test_no_forbidden_import_statements():
    offenders = []
    for path in GPT.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            offenders += [f"{path.name}: {n}" for n in names if n.split(".")[0] in FORBIDDEN]
    assert offenders == []


def test_importing_every_module_loads_none_of_them():
    modules = [f"gpt.{p.stem}" for p in GPT.glob("*.py") if p.stem != "__init__"]
    code = (
        "import importlib, sys\n"
        f"for m in {modules!r}: importlib.import_module(m)\n"
        f"print(sorted(m for m in sys.modules if m.split('.')[0] in {sorted(FORBIDDEN)!r}))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120)
    assert out.stdout.strip() == "[]"
