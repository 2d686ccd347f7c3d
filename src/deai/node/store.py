"""A content-addressed artifact store on disk: models, updates, payout tables.

An artifact is named by the sha256 of its bytes (lowercase hex), the same name
:func:`deai.learning.params.vector_hash` gives a parameter vector. The hash is checked on
every way in (``put`` with an expected digest, :func:`check_fetched` for bytes a peer
served) and every way out (``get`` re-hashes what it read, so a corrupted file is never
served). Writes are atomic (temporary file, then rename), so a node killed mid-write
leaves no half artifact. Digests are validated against ``[0-9a-f]{64}`` before they touch
a path, so a request cannot escape the store directory.
"""

from __future__ import annotations

import hashlib
import os
import re
import uuid
from pathlib import Path

from deai.errors import DeaiError

_DIGEST = re.compile(r"^[0-9a-f]{64}$")


class ArtifactError(DeaiError):
    """An artifact could not be stored or served."""


class BadDigest(ArtifactError, ValueError):
    """The name is not a sha256 hex digest."""


class ArtifactNotFound(ArtifactError, LookupError):
    """No artifact with that digest is stored."""


class HashMismatch(ArtifactError, ValueError):
    """Bytes do not hash to the digest they were offered or stored under."""


class ArtifactTooLarge(ArtifactError, ValueError):
    """An artifact exceeds the store's size limit."""


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def check_digest(digest: str) -> str:
    if not isinstance(digest, str) or not _DIGEST.match(digest):
        raise BadDigest(f"not a sha256 hex digest: {digest!r:.80}")
    return digest


def check_fetched(digest: str, data: bytes) -> bytes:
    """Return ``data`` if it hashes to ``digest``, else raise :class:`HashMismatch`."""
    got = sha256_hex(data)
    if got != check_digest(digest):
        raise HashMismatch(f"asked for {digest}, received bytes hashing to {got}")
    return data


class ArtifactStore:
    """Artifacts under ``root/<2 hex>/<64 hex>``; at most ``max_bytes`` each."""

    def __init__(self, root: Path, max_bytes: int = 64 * 1024 * 1024) -> None:
        self.root = Path(root)
        self.max_bytes = max_bytes
        self.root.mkdir(parents=True, exist_ok=True)

    def _path(self, digest: str) -> Path:
        check_digest(digest)
        return self.root / digest[:2] / digest

    def put(self, data: bytes, expected: str | None = None) -> str:
        """Store ``data``; return its digest. ``expected``: refuse bytes that hash otherwise."""
        if len(data) > self.max_bytes:
            raise ArtifactTooLarge(f"{len(data)} bytes > limit {self.max_bytes}")
        digest = sha256_hex(data)
        if expected is not None and check_digest(expected) != digest:
            raise HashMismatch(f"expected {expected}, bytes hash to {digest}")
        path = self._path(digest)
        if path.exists():
            return digest
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{digest}.{os.getpid()}.{uuid.uuid4().hex}.tmp")  # concurrent puts
        tmp.write_bytes(data)
        tmp.replace(path)
        return digest

    def has(self, digest: str) -> bool:
        return self._path(digest).is_file()

    def get(self, digest: str) -> bytes:
        """The bytes of ``digest``, re-hashed; a corrupted file raises :class:`HashMismatch`."""
        path = self._path(digest)
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            raise ArtifactNotFound(f"no artifact {digest}") from None
        if sha256_hex(data) != digest:
            raise HashMismatch(f"stored artifact {digest} is corrupted")
        return data

    def digests(self) -> list[str]:
        """Every stored digest, sorted."""
        return sorted(
            p.name for p in self.root.glob("??/*") if p.is_file() and _DIGEST.match(p.name)
        )
