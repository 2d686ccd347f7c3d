"""Execution profiles: what hardware class a worker declares, emulated on the CPU.

Honest workers on different hardware do not agree to the last bit: a TF32 tensor core
rounds its inputs to a 10-bit mantissa, an fp16 kernel also stores its activations in
fp16, bf16 keeps 7 bits. Comparing such results against one tolerance either slashes the
honest low-precision worker or, calibrated to admit it, lets a cheaper cheat pass on fp32.
So every worker declares a profile, results are compared *only within a profile* (the
Tasks contract refuses a group of mixed profiles), and each profile has its own calibrated
tolerance (:func:`deai.verification.fingerprint.calibrate_profile`).

Emulation (issue 15, finding 3): a matrix product ``y = x W^T + b`` under a profile rounds
``x`` and ``W`` to the profile's input mantissa, forms the exact products (float64),
reduces them in chunks of ``env.chunk`` terms (in forward or reverse chunk order, the
split-K variation between kernels and batch shapes) with every partial sum rounded to the
accumulator mantissa, adds the bias and rounds the output to the storage mantissa.
Different chunkings are the honest variation *within* a profile; different profiles are
different hardware. Mantissa rounding is round-half-even; exponent range is not limited
(the logits here never leave fp16's range).

Cheats (:class:`Cheat`), each computed under the profile it pretends to run: ``INT8``
(int8 weights), ``LOWER`` (the next cheaper profile: fp32 -> fp16, tf32 -> bf16,
fp16 -> bf16, and int8 weights for bf16), ``PRUNED`` (the 6 % smallest weights of each layer
zeroed: 6 % of the MACs), ``PARTIAL`` (only 6 of the 10 output
columns computed, the other 4 filled with their bias: exact where computed, garbage
elsewhere), ``RANDOM``.

Threat model: a worker may declare any profile; it is then compared only against workers
of that profile, with that profile's tolerance, so declaring a lower profile buys a looser
tolerance but also requires the lower-precision result (a requester can refuse to buy a
profile it does not want). The requester sets the tolerance in its key; a worker accepts a
slot only if the key's tolerance for its profile is at least the calibrated one.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

import torch
from torch import Tensor

from deai.errors import ConfigError
from deai.verification.tasks import ModelSpec, quantize_int8


class Profile(Enum):
    FP32 = "fp32"
    TF32 = "tf32"
    FP16 = "fp16"
    BF16 = "bf16"

    @property
    def index(self) -> int:
        """The profile's index on chain (``Tasks.vy`` keeps a tolerance per index)."""
        return list(Profile).index(self)


@dataclass(frozen=True)
class ProfileSpec:
    input_bits: int  # mantissa bits of matmul inputs (weights and activations)
    acc_bits: int  # mantissa bits of partial sums
    out_bits: int  # mantissa bits of stored outputs


SPECS: dict[Profile, ProfileSpec] = {
    Profile.FP32: ProfileSpec(23, 23, 23),
    Profile.TF32: ProfileSpec(10, 23, 23),
    Profile.FP16: ProfileSpec(10, 23, 10),
    Profile.BF16: ProfileSpec(7, 23, 7),
}


@dataclass(frozen=True)
class KernelEnv:
    chunk: int = 64  # terms per partial sum (split-K)
    reverse: bool = False  # reduce the chunks last to first


HONEST_ENVS: tuple[KernelEnv, ...] = (
    KernelEnv(64),
    KernelEnv(16),
    KernelEnv(8, reverse=True),
    KernelEnv(4),
    KernelEnv(32, reverse=True),
)


class Cheat(Enum):
    INT8 = "int8_weights"
    LOWER = "lower_profile"
    PRUNED = "pruned_6pct"
    PARTIAL = "partial_output"
    RANDOM = "random_output"


LOWER_OF: dict[Profile, Profile | None] = {
    Profile.FP32: Profile.FP16,
    Profile.TF32: Profile.BF16,
    Profile.FP16: Profile.BF16,
    Profile.BF16: None,  # nothing cheaper in the list: int8 weights instead
}


def round_mantissa(x: Tensor, bits: int) -> Tensor:
    """Round float64 ``x`` to ``bits`` explicit mantissa bits (round half to even)."""
    if bits >= 52:
        return x
    m, e = torch.frexp(x)  # x = m * 2^e with 0.5 <= |m| < 1
    scale = 2.0 ** (bits + 1)
    return torch.ldexp(torch.round(m * scale) / scale, e)


def _linear(x: Tensor, w: Tensor, b: Tensor, spec: ProfileSpec, env: KernelEnv) -> Tensor:
    xr, wr = round_mantissa(x, spec.input_bits), round_mantissa(w, spec.input_bits)
    prod = xr.unsqueeze(1) * wr.unsqueeze(0)  # [n, out, in], exact in float64
    chunks = list(prod.split(env.chunk, dim=2))
    if env.reverse:
        chunks.reverse()
    acc = torch.zeros(prod.shape[:2], dtype=torch.float64)
    for c in chunks:
        acc = round_mantissa(acc + round_mantissa(c.sum(dim=2), spec.acc_bits), spec.acc_bits)
    y = round_mantissa(acc + round_mantissa(b, spec.input_bits), spec.acc_bits)
    return round_mantissa(y, spec.out_bits)


def _unpack(model: ModelSpec, params: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    p = params.detach().to(torch.float64)
    h, d, o = model.hidden, model.in_dim, model.out_dim
    sizes = [h * d, h, o * h, o]
    w1, b1, w2, b2 = torch.split(p, sizes)
    return w1.reshape(h, d), b1, w2.reshape(o, h), b2


def forward(
    model: ModelSpec,
    params: Tensor,
    inputs: Tensor,
    profile: Profile,
    env: KernelEnv = KernelEnv(),
    cheat: Cheat | None = None,
    fake_seed: int = 0,
) -> Tensor:
    """Logits (float64 ``[rows, out]``) of the MLP under ``profile``, honestly (``cheat``
    None) or with a cheat (module docstring)."""
    if model.in_dim % env.chunk and env.chunk > model.in_dim:
        raise ConfigError(f"profiles: chunk {env.chunk} larger than the inner dimension")
    x = inputs.detach().to(torch.float64).reshape(-1, model.in_dim)
    if cheat is Cheat.RANDOM:
        gen = torch.Generator().manual_seed(fake_seed)
        return torch.randn((x.shape[0], model.out_dim), generator=gen, dtype=torch.float64) * 5
    spec = SPECS[profile]
    if cheat is Cheat.LOWER:
        lower = LOWER_OF[profile]
        if lower is None:
            cheat = Cheat.INT8
        else:
            spec = SPECS[lower]
    if cheat is Cheat.INT8:
        params = quantize_int8(params.to(torch.float32))
    w1, b1, w2, b2 = _unpack(model, params)
    if cheat is Cheat.PRUNED:  # unstructured: the 6 % smallest weights of each layer
        w1, w2 = _prune(w1), _prune(w2)
    cols = torch.arange(model.out_dim)
    if cheat is Cheat.PARTIAL:
        cols = cols[: max(1, model.out_dim * 6 // 10)]
    hidden = torch.relu(_linear(x, w1, b1, spec, env))
    part = _linear(hidden, w2[cols], b2[cols], spec, env)
    out = b2.expand(x.shape[0], -1).clone()
    out[:, cols] = part
    return out


def _prune(w: Tensor, share: float = 0.06) -> Tensor:
    drop = max(1, round(share * w.numel()))
    cut = w.abs().reshape(-1).kthvalue(drop).values
    return torch.where(w.abs() <= cut, torch.zeros_like(w), w)


def forward_many(
    model: ModelSpec,
    params: Tensor,
    inputs: Tensor,
    profile: Profile,
    env: KernelEnv = KernelEnv(),
    cheat: Cheat | None = None,
    block: int = 2048,
) -> Tensor:
    """:func:`forward` over many rows in blocks (memory stays ~100 MB)."""
    x = inputs.reshape(-1, model.in_dim)
    parts = [
        forward(model, params, x[i : i + block], profile, env, cheat, fake_seed=i)
        for i in range(0, x.shape[0], block)
    ]
    return torch.cat(parts)


def cheat_cost(model: ModelSpec, cheat: Cheat | None) -> float:
    """Cost of a strategy relative to honest execution (MACs; 0 for free strategies)."""
    if cheat is None:
        return 1.0
    if cheat is Cheat.RANDOM:
        return 0.0
    h, d, o = model.hidden, model.in_dim, model.out_dim
    full = h * d + o * h
    if cheat is Cheat.PRUNED:
        return 0.94
    if cheat is Cheat.PARTIAL:
        return (h * d + max(1, o * 6 // 10) * h) / full
    return 0.5  # int8 or a lower profile: about half the cost of the declared kernel
