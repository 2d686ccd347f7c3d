"""Bytes on the wire: messages, activation codecs, fixed-point rows and input hashes.

A message is one safetensors blob: the tensors, plus a JSON object under the metadata key
``meta``. Nothing is ever unpickled; :func:`unpack` checks the size, the header and that
every tensor is finite before a role sees it.

Activation codecs (:class:`ActCodec`):

* ``FLOAT32``: lossless. Generation uses it, so a swarm's greedy tokens equal the local
  model's, and verified calls compare exact hidden states.
* ``INT8_BLOCKWISE``: blocks of ``BLOCK`` consecutive values, each sent as int8 codes and
  one float32 scale ``absmax / 127`` (round to nearest; the blockwise scheme of Dettmers
  et al. 2022, "8-bit optimizers via block-wise quantization", with a linear code in place
  of their dynamic one). Blocks never straddle two hidden-state rows (rows are padded to
  a multiple of ``BLOCK``), so each row's error is at most half its own largest block
  step: ``|decoded - x| <= absmax(row) / 254``. 1.06 bytes per value instead of 4.
  Fine-tuning sends activations and gradients this way (Petals compresses the same way).

Fixed-point rows: a hidden-state row ``x [H]`` is committed to as the big-endian int32
values ``round(x * 2^FRAC_BITS)`` (saturated at +-2^31). Receipts hash these bytes, the contract
reads them back, and the tolerance is counted in these units (:mod:`deai.swarm.verify`).

Input hash of a sequence: ``h_p = keccak(h_{p-1} ++ keccak(fixed_row(x_p)))`` with
``h_{-1} = 0``, over the rows a span received at positions ``0..p``. It names the whole
history that decides the span's output at position ``p``, so a server's signed output
for position ``p`` can be re-executed by anyone who is handed the history.
"""

from __future__ import annotations

import json
import struct
from enum import IntEnum
from typing import Any

import numpy as np
import torch
from eth_utils import keccak
from safetensors.torch import load, save
from torch import Tensor

from deai.swarm.errors import BadRequest

FRAC_BITS = 12  # fixed-point fraction bits of committed rows (range +-2^19: LLM outliers reach 3e4)
BLOCK = 64  # values per int8 block
ZERO_HASH = b"\x00" * 32
_I32_MAX = 2**31 - 1


class ActCodec(IntEnum):
    FLOAT32 = 0
    INT8_BLOCKWISE = 1


def encode_act(name: str, t: Tensor, codec: ActCodec) -> dict[str, Tensor]:
    """Tensors to send for activation ``t`` under ``codec``."""
    t = t.detach().to(torch.float32).contiguous()
    if codec is ActCodec.FLOAT32:
        return {name: t}
    h = t.shape[-1] if t.dim() else 1
    rows = t.reshape(-1, h)  # [N, H]: blocks never straddle two rows
    pad = (-h) % BLOCK
    rows = torch.cat([rows, rows.new_zeros(rows.shape[0], pad)], dim=1)  # [N, H + pad]
    blocks = rows.reshape(-1, BLOCK)  # [nb, BLOCK]
    scale = blocks.abs().amax(dim=1) / 127.0  # [nb]
    safe = torch.where(scale > 0, scale, torch.ones_like(scale))
    q = torch.round(blocks / safe[:, None]).clamp(-127, 127).to(torch.int8)  # [nb, BLOCK]
    shape = torch.tensor(list(t.shape), dtype=torch.int64)
    return {f"{name}.q": q, f"{name}.scale": scale, f"{name}.shape": shape}


def decode_act(name: str, tensors: dict[str, Tensor], codec: ActCodec) -> Tensor:
    """The float32 activation ``name``; :class:`BadRequest` if anything is off."""
    if codec is ActCodec.FLOAT32:
        t = tensors.get(name)
        if t is None or t.dtype != torch.float32:
            raise BadRequest("malformed", f"missing float32 tensor {name!r}")
        return t
    q, scale, shape = (tensors.get(f"{name}.{k}") for k in ("q", "scale", "shape"))
    if q is None or scale is None or shape is None:
        raise BadRequest("malformed", f"missing int8 parts of {name!r}")
    if q.dtype != torch.int8 or scale.dtype != torch.float32 or shape.dtype != torch.int64:
        raise BadRequest("malformed", f"wrong dtypes in int8 parts of {name!r}")
    dims = [int(d) for d in shape.tolist()]
    if not dims or any(d < 1 for d in dims) or len(dims) > 4:
        raise BadRequest("malformed", f"bad shape {dims} for {name!r}")
    h = dims[-1]
    n_rows = int(np.prod(dims[:-1]))
    width = h + (-h) % BLOCK
    nb = n_rows * width // BLOCK
    if q.shape != (nb, BLOCK) or scale.shape != (nb,):
        raise BadRequest("malformed", f"int8 parts of {name!r} do not fit shape {dims}")
    if not torch.isfinite(scale).all() or (scale < 0).any():
        raise BadRequest("malformed", f"bad scales in {name!r}")
    rows = (q.to(torch.float32) * scale[:, None]).reshape(n_rows, width)[:, :h]  # [N, H]
    return rows.reshape(dims)


def roundtrip(t: Tensor, codec: ActCodec) -> Tensor:
    """What the receiver of ``t`` under ``codec`` will see (hash this, not ``t``)."""
    if codec is ActCodec.FLOAT32:
        return t.detach().to(torch.float32)
    return decode_act("x", encode_act("x", t, codec), codec)


def pack(meta: dict[str, Any], tensors: dict[str, Tensor] | None = None) -> bytes:
    return save(tensors or {}, metadata={"meta": json.dumps(meta, sort_keys=True)})


def unpack(data: bytes, max_bytes: int = 256 * 2**20) -> tuple[dict[str, Any], dict[str, Tensor]]:
    """Parse a message; every float tensor must be finite."""
    if len(data) > max_bytes:
        raise BadRequest("too_large", f"{len(data)} bytes > {max_bytes}")
    if len(data) < 8:
        raise BadRequest("malformed", "shorter than a safetensors header")
    (hlen,) = struct.unpack("<Q", data[:8])
    if hlen > len(data) - 8:
        raise BadRequest("malformed", "header length beyond the message")
    try:
        header = json.loads(data[8 : 8 + hlen])
        meta = json.loads(header.get("__metadata__", {}).get("meta", "{}"))
        tensors = load(data)
    except Exception as e:  # safetensors and json raise several types on garbage
        raise BadRequest("malformed", f"not a safetensors message: {e}") from e
    if not isinstance(meta, dict):
        raise BadRequest("malformed", "meta must be a JSON object")
    for k, t in tensors.items():
        if t.is_floating_point() and not torch.isfinite(t).all():
            raise BadRequest("not_finite", f"tensor {k!r} has NaN or infinity")
    return meta, tensors


def fixed_rows(rows: Tensor) -> np.ndarray:
    """``rows [N, H]`` as big-endian int32 fixed point, shape [N, H]."""
    x = rows.detach().to(torch.float64).cpu().numpy() * float(2**FRAC_BITS)
    return np.clip(np.rint(x), -_I32_MAX, _I32_MAX).astype(">i4")


def row_hashes(rows: Tensor) -> list[bytes]:
    """keccak of each fixed-point row of ``rows [N, H]``."""
    fixed = fixed_rows(rows)
    return [keccak(fixed[i].tobytes()) for i in range(fixed.shape[0])]


def chain_hashes(prev: bytes, rows: Tensor) -> list[bytes]:
    """Input hashes ``h_p`` for ``rows [N, H]`` continuing from ``prev = h_{p0 - 1}``."""
    out: list[bytes] = []
    for rh in row_hashes(rows):
        prev = keccak(prev + rh)
        out.append(prev)
    return out
