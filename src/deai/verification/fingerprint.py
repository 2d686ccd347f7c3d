"""A tolerant fingerprint of model outputs, after TOPLOC (Ong et al. 2025, "TOPLOC: A
Locality Sensitive Hashing Scheme for Trustless Verifiable Inference").

Bit-exact hashes break whenever honest workers sum in a different order (another batch
split, BLAS path, CPU or library version): Crynux slashed honest users for exactly that
(crynux-node#78). Instead of hashing the raw logits, a worker commits to a *fingerprint*:
for each output row, the indices of its ``top_k`` largest logits and those logits rounded
to a grid of ``step``. Two fingerprints match when their tolerant distance (below) is at most
``tolerance`` plus one grid step.

Distance of two rows ``a`` and ``b`` (values dequantized):

* for an index in both top-k sets: ``|a_i - b_i|``;
* for an index only in ``a``: ``max(0, a_i - b_kth)`` where ``b_kth`` is ``b``'s smallest
  kept value (and symmetrically). If the true logits differ by at most ``eps`` entrywise,
  an index that fell out of ``b``'s top-k satisfies ``b_i <= b_kth``, so
  ``a_i - b_kth <= a_i - b_i <= eps``: near-ties at the top-k boundary never trip the check.

So honest outputs that differ by ``eps`` entrywise have distance at most ``eps + step``
(each side rounds by at most ``step / 2``), and the comparison accepts them whenever
``eps <= tolerance``.

Calibration (:func:`calibrate`): run the same inputs under every honest variation that the
deployment admits (thread counts, batch splits; other hardware if the network has it),
measure the largest entrywise difference ``eps_max`` and set
``tolerance = safety * eps_max`` (with a floor for the case ``eps_max = 0``), and
``step = tolerance / 4``. The benchmark checks the margin on 10,000 honest tasks and that
every cheap substitute (a quantized or smaller model, random or stale output) lands far
above the tolerance.

Threat model: a cheater must reproduce the top-k logits of the requested model within
``tolerance`` (about 1e-4 on logits of order 10); this is, short of a model that agrees
to four decimal places, as costly as running the model. Fingerprints cover the top-k
only: the full output is delivered to the requester, who checks it against the committed
fingerprint.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from deai.errors import ConfigError, VerificationError
from deai.verification.determinism import HashAlgo, digest

_FP_MAGIC = b"DEAI-FP1"


@dataclass(frozen=True)
class FingerprintConfig:
    top_k: int = 5  # kept logits per output row
    step: float = 2.0**-14  # quantization grid of the kept values (logit units)
    tolerance: float = 2.0**-12  # largest honest entrywise difference accepted

    def __post_init__(self) -> None:
        if self.top_k < 1:
            raise ConfigError(f"fingerprint: top_k must be >= 1, got {self.top_k}")
        if not (self.step > 0 and self.tolerance >= 0):
            raise ConfigError(
                f"fingerprint: need step > 0 and tolerance >= 0, got {self.step}, {self.tolerance}"
            )


@dataclass(frozen=True, eq=False)
class Fingerprint:
    indices: Tensor  # int64 [rows, top_k], descending by value
    levels: Tensor  # int64 [rows, top_k], round(value / step)
    step: float  # grid the levels are on

    def to_bytes(self) -> bytes:
        """``magic | f64 step | u32 rows | u32 k | i32 indices | i64 levels`` little-endian."""
        rows, k = self.indices.shape
        head = _FP_MAGIC + struct.pack("<dII", self.step, rows, k)
        idx = self.indices.numpy().astype("<i4").tobytes()
        return head + idx + self.levels.numpy().astype("<i8").tobytes()

    @classmethod
    def from_bytes(cls, data: bytes) -> Fingerprint:
        """Parse peer bytes; every length is checked against the header."""
        n = len(_FP_MAGIC)
        if not data.startswith(_FP_MAGIC) or len(data) < n + 16:
            raise VerificationError("fingerprint: bad header")
        step, rows, k = struct.unpack_from("<dII", data, n)
        body = data[n + 16 :]
        if len(body) != rows * k * 12 or not step > 0:
            raise VerificationError("fingerprint: body length or step does not match header")
        idx = np.frombuffer(body, dtype="<i4", count=rows * k).reshape(rows, k)
        lev = np.frombuffer(body, dtype="<i8", offset=rows * k * 4).reshape(rows, k)
        return cls(torch.from_numpy(idx.astype(np.int64)), torch.from_numpy(lev.copy()), step)

    def hash(self, algo: HashAlgo = HashAlgo.KECCAK256) -> bytes:
        return digest(self.to_bytes(), algo)


def fingerprint(logits: Tensor, config: FingerprintConfig) -> Fingerprint:
    """Fingerprint ``logits[rows, classes]`` (a 1-D tensor is one row)."""
    x = logits.detach().to(torch.float64).reshape(-1, logits.shape[-1])
    if not torch.isfinite(x).all():
        raise VerificationError("fingerprint: non-finite logits")
    k = min(config.top_k, x.shape[1])
    values, indices = torch.topk(x, k, dim=1, sorted=True)  # [rows, k] each
    levels = torch.round(values / config.step).to(torch.int64)
    return Fingerprint(indices.to(torch.int64), levels, config.step)


def distance(a: Fingerprint, b: Fingerprint) -> float:
    """Tolerant distance (module docstring) in logit units; ``inf`` if shapes or grids differ."""
    if a.indices.shape != b.indices.shape or a.step != b.step:
        return float("inf")
    va = a.levels.to(torch.float64) * a.step  # [rows, k]
    vb = b.levels.to(torch.float64) * b.step
    # in_b[r, i, j]: a's i-th kept index equals b's j-th kept index
    same = a.indices.unsqueeze(2) == b.indices.unsqueeze(1)  # [rows, k, k]
    a_in_b = same.any(dim=2)  # [rows, k]
    b_in_a = same.any(dim=1)
    b_at_a = (same.to(torch.float64) * vb.unsqueeze(1)).sum(dim=2)  # b's value at a's index
    shared = torch.where(a_in_b, (va - b_at_a).abs(), torch.zeros_like(va))
    a_only = torch.where(a_in_b, torch.zeros_like(va), (va - vb[:, -1:]).clamp(min=0))
    b_only = torch.where(b_in_a, torch.zeros_like(vb), (vb - va[:, -1:]).clamp(min=0))
    if va.numel() == 0:
        return 0.0
    return float(torch.stack([shared.max(), a_only.max(), b_only.max()]).max())


def matches(a: Fingerprint, b: Fingerprint, config: FingerprintConfig) -> bool:
    """True when ``a`` and ``b`` could both come from honest runs (module docstring)."""
    return distance(a, b) <= config.tolerance + config.step


def max_entrywise_difference(runs: Sequence[Tensor]) -> float:
    """Largest ``|x - y|`` between any two of ``runs`` (same-shaped honest outputs)."""
    if len(runs) < 2:
        raise ConfigError("fingerprint: calibration needs at least two honest runs")
    stack = torch.stack([r.detach().to(torch.float64) for r in runs])  # [runs, ...]
    return float((stack.amax(dim=0) - stack.amin(dim=0)).max())


def calibrate(
    runs: Sequence[Tensor], top_k: int = 5, safety: float = 64.0, floor: float = 2.0**-16
) -> FingerprintConfig:
    """Threshold from honest variation: ``tolerance = max(safety * eps_max, floor)`` rounded
    up to a power of two, ``step = tolerance / 4``. ``runs`` are outputs of the same inputs
    under different honest settings (threads, batch splits, machines)."""
    if safety < 1:
        raise ConfigError(f"fingerprint: safety must be >= 1, got {safety}")
    eps = max_entrywise_difference(runs)
    tol = 2.0 ** float(np.ceil(np.log2(max(safety * eps, floor))))
    return FingerprintConfig(top_k=top_k, step=tol / 4, tolerance=tol)


# ---------------------------------------------------------------------------------------
# Whole-output fingerprint: eight projections, compared lane-wise on chain (issue 15, #3).
#
# The top-k fingerprint above ignores every logit outside the top k: exact values in six
# columns and garbage in four pass it. The lane fingerprint covers the whole output ``y``
# (``n = rows * classes`` values): lane ``j`` is ``round(<R_j, y> / step)`` with ``R_j`` a
# vector of random signs scaled by ``1 / sqrt(n)``, drawn from the task id. For a difference
# ``d`` between two outputs, ``<R_j, d>`` is about ``N(0, rms(d)^2)``: a dense deviation
# (another model, int8 weights, pruning, garbage columns) moves every lane by about its rms,
# while the honest variation within a profile (a few last-place roundings) is shrunk by
# ``sqrt(n)``. Knowing ``R`` does not help a cheater: to hit ``<R_j, y>`` it needs ``y``.
# The contract accepts two fingerprints when every lane differs by at most the key's
# tolerance for the profile, ``tolerance_lanes = tolerance / step + 1`` grid steps.


@dataclass(frozen=True)
class LaneConfig:
    step: float  # grid of the lanes, logit units
    tolerance: float  # largest honest lane difference accepted, logit units
    lanes: int = 8

    @property
    def tolerance_lanes(self) -> int:
        """What the key stores for the profile (grid steps; +1 for the two roundings)."""
        return int(np.ceil(self.tolerance / self.step)) + 1


def projection(task_id: bytes, n: int, lanes: int = 8) -> Tensor:
    """``[lanes, n]`` random signs over ``sqrt(n)``, fixed by ``task_id``."""
    gen = torch.Generator().manual_seed(
        int.from_bytes(digest(b"deai.lanes" + task_id)[:8], "big") >> 1
    )
    signs = torch.randint(0, 2, (lanes, n), generator=gen).to(torch.float64) * 2 - 1
    return signs / float(np.sqrt(n))


def project(logits: Tensor, task_id: bytes, lanes: int = 8) -> Tensor:
    """The ``lanes`` projections of the whole output, float64."""
    y = logits.detach().to(torch.float64).reshape(-1)
    if not torch.isfinite(y).all():
        raise VerificationError("fingerprint: non-finite logits")
    return projection(task_id, y.numel(), lanes) @ y


def lanes_of(logits: Tensor, task_id: bytes, config: LaneConfig) -> list[int]:
    """Integer lanes (what a worker commits and reveals)."""
    return [int(v) for v in torch.round(project(logits, task_id, config.lanes) / config.step)]


def lane_distance(a: Sequence[int], b: Sequence[int]) -> int:
    """Largest lane difference in grid steps."""
    return max(abs(int(x) - int(y)) for x, y in zip(a, b, strict=True))


def lanes_match(a: Sequence[int], b: Sequence[int], config: LaneConfig) -> bool:
    """What the contract decides for the profile's tolerance."""
    return lane_distance(a, b) <= config.tolerance_lanes


def calibrate_lanes(diffs: Tensor, safety: float = 2.5, floor: float = 2.0**-40) -> LaneConfig:
    """Per-profile tolerance from honest projection differences ``diffs`` (any shape,
    logit units, measured between different honest kernels of *one* profile):
    ``tolerance = safety * max|diff|`` (at least ``floor``), ``step = tolerance / 8``.
    The benchmark calibrates on 2,000 tasks and tests on 10,000 others."""
    if safety < 1:
        raise ConfigError(f"fingerprint: safety must be >= 1, got {safety}")
    eps = float(diffs.abs().max()) if diffs.numel() else 0.0
    tol = max(safety * eps, floor)
    return LaneConfig(step=tol / 8, tolerance=tol)


def project_tasks(outputs: Tensor, task_ids: Sequence[bytes], lanes: int = 8) -> Tensor:
    """Projections ``[tasks, lanes]`` of ``outputs[tasks, rows, classes]`` (one task id per
    task), float64."""
    flat = outputs.detach().to(torch.float64).reshape(outputs.shape[0], -1)
    n = flat.shape[1]
    rs = torch.stack([projection(t, n, lanes) for t in task_ids])  # [tasks, lanes, n]
    return torch.einsum("tln,tn->tl", rs, flat)
