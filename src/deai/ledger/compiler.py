"""Compile the bundled Vyper contracts at run time, cached by source hash.

The cache key is sha256(vyper version, contract name, source). Compiled artifacts live in
memory for the process and on disk under ``$DEAI_CACHE_DIR/vyper`` (default
``~/.cache/deai/vyper``); a corrupt or unreadable cache file is ignored and rebuilt.

The package also ships the artifacts of its own sources (``contracts/build/``, written by
``python -m deai.ledger.compiler``): one is used only when its key equals the key computed
from the source and the installed vyper, so an edited contract or another vyper version
compiles afresh (a test recompiles every contract and compares). A fresh install runs its
first chain without the ~20 s compile.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from deai.ledger.errors import ContractCompileError

CONTRACTS_DIR = Path(__file__).parent / "contracts"
BUNDLED_DIR = CONTRACTS_DIR / "build"  # artifacts of the bundled sources, keyed as the cache
CONTRACT_NAMES = ("Registry", "Jobs", "Tasks")


@dataclass(frozen=True)
class CompiledContract:
    """One compiled contract."""

    name: str  # file stem, e.g. "Jobs"
    abi: list[dict[str, Any]]  # JSON ABI
    bytecode: str  # 0x-prefixed deploy (init) code
    blueprint: str  # 0x-prefixed ERC-5202 blueprint deploy code
    source_hash: str  # the cache key (hex sha256)
    runtime: str = ""  # 0x-prefixed runtime code (immutables are appended on deploy)


def cache_dir() -> Path:
    """Where compiled artifacts are cached on disk."""
    root = os.environ.get("DEAI_CACHE_DIR")
    base = Path(root) if root else Path.home() / ".cache" / "deai"
    return base / "vyper"


_HASH_LINE = re.compile(
    r"^(\w+)_BLUEPRINT_CODEHASH: constant\(bytes32\) = 0x[0-9a-fA-F]{64}$", re.M
)


def source_of(name: str) -> str:
    """The Vyper source of a bundled contract. The Registry's ``*_BLUEPRINT_CODEHASH``
    constants are filled in with the code hashes of the Jobs and Tasks blueprints compiled
    from the bundled sources, so a Registry only ever creates those contracts."""
    if name not in CONTRACT_NAMES:
        raise ContractCompileError(f"unknown contract {name!r}; have {CONTRACT_NAMES}")
    source = (CONTRACTS_DIR / f"{name}.vy").read_text()
    if name != "Registry":
        return source

    def fill(match: re.Match[str]) -> str:
        child = match.group(1).capitalize()
        digest = blueprint_codehash(compile_contract(child))
        return f"{match.group(1)}_BLUEPRINT_CODEHASH: constant(bytes32) = 0x{digest.hex()}"

    return _HASH_LINE.sub(fill, source)


def blueprint_code(compiled: CompiledContract) -> bytes:
    """The runtime code an ERC-5202 blueprint of ``compiled`` holds: 0xFE7100 + initcode."""
    body = b"\xfe\x71\x00" + bytes.fromhex(compiled.bytecode[2:])
    if not compiled.blueprint.endswith(body.hex()):
        raise ContractCompileError(f"{compiled.name}: unexpected blueprint layout")
    return body


def blueprint_codehash(compiled: CompiledContract) -> bytes:
    """keccak256 of the blueprint's deployed code (what EXTCODEHASH returns)."""
    from eth_utils import keccak

    return bytes(keccak(blueprint_code(compiled)))


@cache
def compile_contract(name: str) -> CompiledContract:
    """Compile ``contracts/<name>.vy`` (or load it from the bundled build or the cache)."""
    import vyper

    source = source_of(name)
    key = hashlib.sha256(f"{vyper.__version__}\0{name}\0{source}".encode()).hexdigest()
    path = cache_dir() / f"{name}-{key}.json"
    for candidate in (BUNDLED_DIR / f"{name}.json", path):
        try:
            data = json.loads(candidate.read_text())
            if candidate.parent == BUNDLED_DIR and data["key"] != key:
                continue  # a bundled artifact of other sources or another vyper
            return CompiledContract(
                name, data["abi"], data["bytecode"], data["blueprint"], key, data["runtime"]
            )
        except (OSError, ValueError, KeyError, AttributeError):
            pass
    compiled = fresh_compile(name, source, key)
    _write(path, compiled)
    return compiled


def fresh_compile(name: str, source: str | None = None, key: str | None = None) -> CompiledContract:
    """Compile ``name`` with vyper, bypassing every cache."""
    import vyper
    from vyper.compiler import compile_code

    source = source_of(name) if source is None else source
    if key is None:
        key = hashlib.sha256(f"{vyper.__version__}\0{name}\0{source}".encode()).hexdigest()
    try:
        out = compile_code(
            source,
            contract_path=f"{name}.vy",
            output_formats=["abi", "bytecode", "blueprint_bytecode", "bytecode_runtime"],
        )
    except Exception as exc:  # vyper raises many exception types
        raise ContractCompileError(f"{name}.vy: {exc}") from exc
    return CompiledContract(
        name, out["abi"], out["bytecode"], out["blueprint_bytecode"], key, out["bytecode_runtime"]
    )


def _artifact(compiled: CompiledContract) -> str:
    return json.dumps(
        {
            "key": compiled.source_hash,
            "abi": compiled.abi,
            "bytecode": compiled.bytecode,
            "blueprint": compiled.blueprint,
            "runtime": compiled.runtime,
        }
    )


def _write(path: Path, compiled: CompiledContract) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(_artifact(compiled))
        tmp.replace(path)
    except OSError:
        pass  # a read-only home is fine: we just compile again next time


def write_bundled() -> list[Path]:
    """Compile every bundled contract afresh into ``contracts/build/`` (run after editing a
    contract: ``python -m deai.ledger.compiler``)."""
    compile_contract.cache_clear()
    out = []
    for name in CONTRACT_NAMES:
        compiled = fresh_compile(name)
        path = BUNDLED_DIR / f"{name}.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(_artifact(compiled) + "\n")
        out.append(path)
    compile_contract.cache_clear()
    return out


if __name__ == "__main__":
    for written in write_bundled():
        print(written)
