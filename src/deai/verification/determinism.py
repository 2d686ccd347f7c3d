"""Deterministic CPU execution and canonical result bytes.

Honest workers must agree bit for bit wherever the hardware allows, so that a result can be
named by one hash and compared on chain. Two things make that possible:

* :func:`deterministic` fixes what varies between runs of the *same* program on the *same*
  machine: the intra-op thread count, ``torch.use_deterministic_algorithms`` and every RNG
  seed. It restores the previous settings on exit so callers can nest it freely.
* :func:`canonical_bytes` fixes what varies in how a result is *written*: a fixed header
  (format tag, dtype, shape) and little-endian data, with ``-0.0`` folded to ``+0.0`` and
  every NaN folded to one quiet NaN. Two tensors equal under IEEE comparison (except NaN,
  which is folded) have the same canonical bytes, hence the same hash.

What this cannot fix: a different batch split or BLAS path (the reduction order inside a
matmul changes with the batch shape, see ``tests/verification/test_determinism.py``) and
different hardware or library versions. Those differences are handled by the tolerant
fingerprint in :mod:`deai.verification.fingerprint`, never by slashing.

Threat model: the bytes parsed by :func:`from_canonical_bytes` come from untrusted peers;
the parser checks every length against the header and never unpickles.
"""

from __future__ import annotations

import hashlib
import random
import struct
from collections.abc import Iterator
from contextlib import contextmanager
from enum import Enum

import numpy as np
import torch
from eth_hash.auto import keccak
from torch import Tensor

from deai.errors import VerificationError

MAGIC = b"DEAI-T1\x00"  # format tag and version of the canonical tensor layout

# dtype name -> (torch dtype, numpy little-endian dtype string)
_DTYPES: dict[str, tuple[torch.dtype, str]] = {
    "float32": (torch.float32, "<f4"),
    "float64": (torch.float64, "<f8"),
    "int64": (torch.int64, "<i8"),
    "int32": (torch.int32, "<i4"),
    "int16": (torch.int16, "<i2"),
    "int8": (torch.int8, "<i1"),
    "uint8": (torch.uint8, "<u1"),
    "bool": (torch.bool, "|b1"),
}
_NAMES = {dt: name for name, (dt, _) in _DTYPES.items()}
_MAX_NDIM = 16


class HashAlgo(Enum):
    """Digest used to name a result. keccak-256 is what the EVM ledger recomputes."""

    SHA256 = "sha256"
    KECCAK256 = "keccak256"


def digest(data: bytes, algo: HashAlgo = HashAlgo.KECCAK256) -> bytes:
    """32-byte digest of ``data``."""
    if algo is HashAlgo.SHA256:
        return hashlib.sha256(data).digest()
    return bytes(keccak(data))


@contextmanager
def deterministic(seed: int, threads: int = 1) -> Iterator[None]:
    """Run the block with ``threads`` intra-op threads, deterministic kernels and all RNGs
    (torch, numpy, random) seeded with ``seed``; restore every setting on exit.

    The interop thread pool cannot be resized after first use in torch, so it is left alone;
    the CPU kernels used here do not parallelize across it.
    """
    if threads < 1:
        raise VerificationError(f"determinism: threads must be >= 1, got {threads}")
    old_threads = torch.get_num_threads()
    old_det = torch.are_deterministic_algorithms_enabled()
    old_warn = torch.is_deterministic_algorithms_warn_only_enabled()
    old_torch_rng = torch.random.get_rng_state()
    old_np_rng = np.random.get_state()
    old_py_rng = random.getstate()
    torch.set_num_threads(threads)
    torch.use_deterministic_algorithms(True)
    torch.manual_seed(seed)
    np.random.seed(seed % 2**32)
    random.seed(seed)
    try:
        yield
    finally:
        torch.set_num_threads(old_threads)
        torch.use_deterministic_algorithms(old_det, warn_only=old_warn)
        torch.random.set_rng_state(old_torch_rng)
        np.random.set_state(old_np_rng)
        random.setstate(old_py_rng)


def _canonical_values(t: Tensor) -> Tensor:
    t = t.detach().cpu().contiguous()
    if t.dtype.is_floating_point:
        t = t + 0.0  # -0.0 + 0.0 == +0.0 under round-to-nearest: fold the sign of zero
        t = torch.where(torch.isnan(t), torch.full_like(t, float("nan")), t)
    return t


def canonical_bytes(t: Tensor) -> bytes:
    """Canonical serialization: ``MAGIC | u8 len(dtype) | dtype | u8 ndim | u64[ndim] shape |
    data`` with every integer and element little-endian, row-major."""
    name = _NAMES.get(t.dtype)
    if name is None:
        raise VerificationError(f"determinism: unsupported dtype {t.dtype}")
    values = _canonical_values(t)
    header = MAGIC + struct.pack("<B", len(name)) + name.encode() + struct.pack("<B", t.dim())
    header += struct.pack(f"<{t.dim()}Q", *t.shape)
    data = values.numpy().astype(_DTYPES[name][1], copy=False).tobytes()
    return header + data


def from_canonical_bytes(data: bytes) -> Tensor:
    """Parse :func:`canonical_bytes` output from an untrusted peer; raise
    :class:`VerificationError` on any malformed field."""
    try:
        if not data.startswith(MAGIC):
            raise VerificationError("determinism: bad magic")
        pos = len(MAGIC)
        (nlen,) = struct.unpack_from("<B", data, pos)
        name = data[pos + 1 : pos + 1 + nlen].decode("ascii")
        pos += 1 + nlen
        if name not in _DTYPES:
            raise VerificationError(f"determinism: unknown dtype {name!r}")
        (ndim,) = struct.unpack_from("<B", data, pos)
        if ndim > _MAX_NDIM:
            raise VerificationError(f"determinism: ndim {ndim} > {_MAX_NDIM}")
        shape = struct.unpack_from(f"<{ndim}Q", data, pos + 1)
        pos += 1 + 8 * ndim
    except (struct.error, UnicodeDecodeError) as exc:
        raise VerificationError(f"determinism: truncated header ({exc})") from exc
    dtype, np_dtype = _DTYPES[name]
    count = int(np.prod(shape, dtype=np.uint64)) if shape else 1
    itemsize = np.dtype(np_dtype).itemsize
    if len(data) - pos != count * itemsize:
        raise VerificationError(
            f"determinism: body has {len(data) - pos} bytes, header says {count * itemsize}"
        )
    arr = np.frombuffer(data, dtype=np_dtype, offset=pos).reshape(shape).copy()
    out = torch.from_numpy(arr)
    assert out.dtype == dtype
    return out


def tensor_hash(t: Tensor, algo: HashAlgo = HashAlgo.KECCAK256) -> bytes:
    """The 32-byte name of a tensor: the digest of its canonical bytes."""
    return digest(canonical_bytes(t), algo)
