"""Layers point one way, and the examples run through the Python API and through TOML."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src" / "deai"
LOWER = ("learning", "aggregation", "attacks", "compression", "privacy", "incentives",
         "verification", "ledger", "job")  # fmt: skip


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module:
            out.add(node.module)
        elif isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
    return out


@pytest.mark.parametrize("package", LOWER)
def test_lower_planes_never_import_node_or_sim(package: str) -> None:
    for path in (SRC / package).rglob("*.py"):
        bad = {m for m in _imports(path) if m.startswith(("deai.node", "deai.sim", "deai.api"))}
        assert not bad, f"{path.relative_to(ROOT)} imports {sorted(bad)}"


def test_node_never_imports_sim() -> None:
    for path in (SRC / "node").rglob("*.py"):
        bad = {m for m in _imports(path) if m.startswith(("deai.sim", "deai.api"))}
        assert not bad, f"{path.relative_to(ROOT)} imports {sorted(bad)}"
    code = (
        "import deai.node.daemon, sys; print([m for m in sys.modules if m.startswith('deai.sim')])"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


@pytest.mark.slow
def test_python_api_example_runs() -> None:
    out = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "python_api.py"), "--quick"],
        capture_output=True, text=True, cwd=ROOT, timeout=600,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr[-3000:]
    for name in ("wine:", "breast_cancer:", "iris.csv:", "own data/model/attack:"):
        assert name in out.stdout


@pytest.mark.slow
@pytest.mark.parametrize("name", ["wine", "breast_cancer", "csv_file"])
def test_toml_examples_run_and_learn(name: str, tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from deai.cli import app

    res = CliRunner().invoke(
        app, ["sim", str(ROOT / "examples" / f"{name}.toml"), "--out", str(tmp_path), "--quiet"]
    )
    assert res.exit_code == 0, res.output
    import json

    m = json.loads((tmp_path / "metrics.json").read_text())
    assert m["final_accuracy"] >= 0.85, m["final_accuracy"]
