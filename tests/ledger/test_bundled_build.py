"""The package ships compiled artifacts of its contracts (``contracts/build/``) so a fresh
install's first chain does not wait for vyper. They must be exactly what vyper makes of the
bundled sources now: an artifact is used only when its key matches, and this test
recompiles every contract and compares (regenerate with ``python -m deai.ledger.compiler``)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from deai.ledger import compiler


@pytest.mark.slow
def test_bundled_artifacts_equal_a_fresh_compile() -> None:
    compiler.compile_contract.cache_clear()
    for name in compiler.CONTRACT_NAMES:
        bundled = json.loads((compiler.BUNDLED_DIR / f"{name}.json").read_text())
        fresh = compiler.fresh_compile(name)
        assert bundled["key"] == fresh.source_hash, f"{name}: stale build, regenerate it"
        assert bundled["bytecode"] == fresh.bytecode, name
        assert bundled["runtime"] == fresh.runtime, name
        assert bundled["blueprint"] == fresh.blueprint, name
        assert bundled["abi"] == fresh.abi, name


def test_a_stale_bundled_artifact_is_not_used(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A bundled artifact whose key does not match the sources is skipped; the next
    candidate (here the on-disk cache, filled with the real artifact so that no compile is
    needed) is used instead."""
    real = json.loads((compiler.BUNDLED_DIR / "Tasks.json").read_text())
    build, cache = tmp_path / "build", tmp_path / "cache"
    build.mkdir()
    (cache / "vyper").mkdir(parents=True)
    stale = dict(real, key="0" * 64, bytecode="0xdead")  # as if built from other sources
    (build / "Tasks.json").write_text(json.dumps(stale))
    (cache / "vyper" / f"Tasks-{real['key']}.json").write_text(json.dumps(real))
    monkeypatch.setattr(compiler, "BUNDLED_DIR", build)
    monkeypatch.setenv("DEAI_CACHE_DIR", str(cache))
    compiler.compile_contract.cache_clear()
    try:
        assert compiler.cache_dir() == cache / "vyper"
        assert compiler.compile_contract("Tasks").bytecode == real["bytecode"] != "0xdead"
    finally:
        compiler.compile_contract.cache_clear()
