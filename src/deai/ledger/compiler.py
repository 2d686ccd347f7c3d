"""Compile the bundled Vyper contracts at run time, cached by source hash.

The cache key is sha256(vyper version, contract name, source). Compiled artifacts live in
memory for the process and on disk under ``$DEAI_CACHE_DIR/vyper`` (default
``~/.cache/deai/vyper``); a corrupt or unreadable cache file is ignored and rebuilt.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from deai.ledger.errors import ContractCompileError

CONTRACTS_DIR = Path(__file__).parent / "contracts"
CONTRACT_NAMES = ("Registry", "Jobs", "Tasks")


@dataclass(frozen=True)
class CompiledContract:
    """One compiled contract."""

    name: str  # file stem, e.g. "Jobs"
    abi: list[dict[str, Any]]  # JSON ABI
    bytecode: str  # 0x-prefixed deploy (init) code
    blueprint: str  # 0x-prefixed ERC-5202 blueprint deploy code
    source_hash: str  # the cache key (hex sha256)


def cache_dir() -> Path:
    """Where compiled artifacts are cached on disk."""
    root = os.environ.get("DEAI_CACHE_DIR")
    base = Path(root) if root else Path.home() / ".cache" / "deai"
    return base / "vyper"


def source_of(name: str) -> str:
    """The Vyper source of a bundled contract."""
    if name not in CONTRACT_NAMES:
        raise ContractCompileError(f"unknown contract {name!r}; have {CONTRACT_NAMES}")
    return (CONTRACTS_DIR / f"{name}.vy").read_text()


@cache
def compile_contract(name: str) -> CompiledContract:
    """Compile ``contracts/<name>.vy`` (or load it from the cache)."""
    import vyper
    from vyper.compiler import compile_code

    source = source_of(name)
    key = hashlib.sha256(f"{vyper.__version__}\0{name}\0{source}".encode()).hexdigest()
    path = cache_dir() / f"{name}-{key}.json"
    try:
        data = json.loads(path.read_text())
        return CompiledContract(name, data["abi"], data["bytecode"], data["blueprint"], key)
    except (OSError, ValueError, KeyError):
        pass
    try:
        out = compile_code(
            source,
            contract_path=f"{name}.vy",
            output_formats=["abi", "bytecode", "blueprint_bytecode"],
        )
    except Exception as exc:  # vyper raises many exception types
        raise ContractCompileError(f"{name}.vy: {exc}") from exc
    compiled = CompiledContract(name, out["abi"], out["bytecode"], out["blueprint_bytecode"], key)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(
            json.dumps(
                {
                    "abi": compiled.abi,
                    "bytecode": compiled.bytecode,
                    "blueprint": compiled.blueprint,
                }
            )
        )
        tmp.replace(path)
    except OSError:
        pass  # a read-only home is fine: we just compile again next time
    return compiled
