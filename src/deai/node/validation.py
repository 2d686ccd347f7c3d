"""Peer input validation at the validator.

Every update is checked before it can touch the model: round, sender, codec, dtype,
shape, finite values, norm and the claimed example count. Unlike Flower, a self-reported
example count is never trusted blindly: counts <= 0 or above ``UpdatePolicy.max_examples``
are rejected, and aggregation weights use the count only up to that cap. A failing update
raises :class:`InvalidUpdate` with a :class:`RejectReason`; the caller records it against
the sender and the round goes on without it.
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import StrEnum

import torch
from torch import Tensor

from deai.compression.base import Codec, Encoded
from deai.errors import CodecError, InvalidUpdate
from deai.job.spec import UpdatePolicy
from deai.node.messages import Update


class RejectReason(StrEnum):
    WRONG_ROUND = "wrong_round"
    UNEXPECTED_SENDER = "unexpected_sender"
    DUPLICATE = "duplicate"
    UNKNOWN_CODEC = "unknown_codec"
    WRONG_DTYPE = "wrong_dtype"
    WRONG_SHAPE = "wrong_shape"
    MALFORMED = "malformed"
    NON_FINITE = "non_finite"
    NORM_TOO_LARGE = "norm_too_large"
    BAD_EXAMPLE_COUNT = "bad_example_count"
    BAD_HASH = "bad_hash"
    PLAINTEXT_IN_SECURE_JOB = "plaintext_in_secure_job"


def reject(reason: RejectReason, detail: str = "") -> InvalidUpdate:
    return InvalidUpdate(str(reason), detail)


def decode_update(
    msg: Update, *, round_: int, dim: int, policy: UpdatePolicy, codecs: Mapping[str, Codec]
) -> Tensor:
    """Return the decoded ``Tensor[dim]`` or raise ``InvalidUpdate``."""
    vector = decode_unchecked(msg, round_=round_, dim=dim, policy=policy, codecs=codecs)
    return check_vector(vector, policy)


def decode_unchecked(
    msg: Update, *, round_: int, dim: int, policy: UpdatePolicy, codecs: Mapping[str, Codec]
) -> Tensor:
    """Every check of :func:`decode_update` but the values' (:func:`check_vectors`, which
    a validator runs on a round's stacked updates at once)."""
    if msg.round != round_:
        raise reject(RejectReason.WRONG_ROUND, f"update for round {msg.round}, current is {round_}")
    if not 0 < msg.num_examples <= policy.max_examples:
        raise reject(
            RejectReason.BAD_EXAMPLE_COUNT,
            f"claimed {msg.num_examples} examples; allowed 1..{policy.max_examples}",
        )
    if msg.dtype != "float32":
        raise reject(RejectReason.WRONG_DTYPE, f"dtype {msg.dtype!r}, expected 'float32'")
    if msg.dim != dim:
        raise reject(RejectReason.WRONG_SHAPE, f"dim {msg.dim}, expected {dim}")
    codec = codecs.get(msg.codec)
    if codec is None:
        raise reject(RejectReason.UNKNOWN_CODEC, f"codec {msg.codec!r} not in {sorted(codecs)}")
    try:
        vector = codec.decode(Encoded(codec.name, msg.dim, msg.payload))
    except CodecError as e:
        raise reject(RejectReason.MALFORMED, str(e)) from e
    if vector.shape != (dim,):
        raise reject(RejectReason.WRONG_SHAPE, f"decoded shape {tuple(vector.shape)}")
    return vector


def check_vector(vector: Tensor, policy: UpdatePolicy) -> Tensor:
    """Finite values and a sane norm; shared by updates and gossiped models."""
    bad = check_vectors(vector[None], policy)[0]
    if bad is not None:
        raise bad
    return vector


def check_vectors(stack: Tensor, policy: UpdatePolicy) -> list[InvalidUpdate | None]:
    """:func:`check_vector` on every row of ``stack`` ``[n, d]`` as two tensor operations:
    per row, the rejection it would raise, or None. One vector is checked as a one-row
    stack, so the two cannot disagree."""
    norm_t = torch.linalg.vector_norm(stack, dim=1)
    norms = norm_t.tolist()
    # a NaN or infinity makes the norm NaN or infinite: only those rows need a full scan
    # (a finite row's norm can still overflow to infinity: too large, not non-finite)
    suspect = (~torch.isfinite(norm_t)).nonzero().flatten()
    finite = [True] * len(norms)
    for i, ok in zip(
        suspect.tolist(), torch.isfinite(stack[suspect]).all(dim=1).tolist(), strict=True
    ):
        finite[i] = ok
    out: list[InvalidUpdate | None] = []
    for ok, norm in zip(finite, norms, strict=True):
        if not ok:
            out.append(reject(RejectReason.NON_FINITE, "update contains NaN or infinity"))
        elif norm > policy.max_norm:
            out.append(
                reject(RejectReason.NORM_TOO_LARGE, f"norm {norm:.3g} > {policy.max_norm:.3g}")
            )
        else:
            out.append(None)
    return out
