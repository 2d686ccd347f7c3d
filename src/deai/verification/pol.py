"""Proof-of-Learning for outsourced training (Jia et al. 2021, "Proof-of-Learning:
Definitions and Practice", IEEE S&P).

The worker commits, before anyone audits, to

* the keccak hash of every checkpoint ``θ_0, θ_k, θ_2k, ..., θ_T`` (every ``k`` steps),
* the hash of the data order (which examples each step used) and the seed it came from.

A validator then replays sampled *segments*: it asks the worker to open ``θ_ik`` and
``θ_(i+1)k``, checks both against the committed hashes, re-runs the ``k`` SGD steps from
``θ_ik`` with the committed data order and compares its result with ``θ_(i+1)k``.

Acceptance (:class:`PoLConfig`): exact equality when both sides run the deterministic CPU
path, otherwise the normalized distance
``||replayed - claimed|| / ||claimed - start||`` must be at most ``rel_tolerance``. Jia et al.
use the same update-normalized distance; honest re-execution with another thread count or
micro-batch split differs by about 1e-6 of the update, skipping one SGD step in a segment of
``k`` changes it by about ``1/k`` (tests and the benchmark measure both).

Which segments: the validator draws ``replays`` segments with its own secret seed and always
adds the last one. A cheater who fabricated a fraction ``φ`` of the segments escapes ``m``
random replays with probability ``(1 - φ)^m``; partial training (stopping early) fabricates
the tail, which the last-segment replay always catches; skipping steps everywhere is caught
by any replay. A replay costs ``(replays + 1) / segments`` of one training run, the overhead
of a PoL audit compared with ``k - 1`` full re-executions for cross-checking.

Threat model: the worker may lie about any checkpoint it has not yet opened, but cannot
change the commitment; data and hyper-parameters come from the task spec (hash-addressed).
Not covered: spoofing attacks that construct a valid-looking trajectory cheaper than
training (Zhang et al. 2022 "Adversarial examples for PoL"); the replay of every segment
remains sound against them, sampling is what trades soundness for overhead.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from eth_hash.auto import keccak
from torch import Tensor

from deai.errors import ConfigError
from deai.verification.determinism import tensor_hash
from deai.verification.tasks import ExecutionEnv, TrainingTask, train_steps


@dataclass(frozen=True)
class PoLCommitment:
    task_id: bytes
    checkpoint_hashes: tuple[bytes, ...]  # keccak of θ_0, θ_k, ..., θ_T
    data_order_hash: bytes  # keccak of the int64 [steps, batch] order
    seed: int  # seed the order was drawn from

    @property
    def final_hash(self) -> bytes:
        return self.checkpoint_hashes[-1]

    @property
    def root(self) -> bytes:
        """One 32-byte hash of the whole commitment: what goes on chain."""
        body = self.task_id + b"".join(self.checkpoint_hashes) + self.data_order_hash
        return bytes(keccak(body + self.seed.to_bytes(32, "big", signed=True)))


def commit(task: TrainingTask, checkpoints: Sequence[Tensor]) -> PoLCommitment:
    """The worker's commitment to its checkpoints and data order."""
    return PoLCommitment(
        task.task_id,
        tuple(tensor_hash(c) for c in checkpoints),
        tensor_hash(task.data_order),
        task.seed,
    )


@dataclass(frozen=True)
class PoLConfig:
    replays: int = 2  # segments drawn at random by the validator (plus the last one)
    rel_tolerance: float = 1e-4  # accepted ||replayed - claimed|| / ||claimed - start||
    exact: bool = False  # require bit equality (deterministic CPU on both sides)


@dataclass(frozen=True)
class SegmentCheck:
    segment: int
    distance: float  # normalized distance; inf when a hash did not open
    ok: bool


@dataclass(frozen=True)
class PoLReport:
    accepted: bool
    checks: tuple[SegmentCheck, ...]
    reason: str  # empty when accepted

    @property
    def max_distance(self) -> float:
        return max((c.distance for c in self.checks), default=0.0)


def choose_segments(task: TrainingTask, replays: int, validator_seed: int) -> list[int]:
    """``replays`` distinct random segments (validator's secret seed) plus the last one."""
    rng = random.Random(validator_seed.to_bytes(8, "big", signed=True) + task.task_id)
    last = task.segments - 1
    picks = rng.sample(range(last), min(replays, last)) if last > 0 else []
    return sorted({*picks, last})


def choose_segments_secret(secret: bytes, root: bytes, segments: int, replays: int) -> list[int]:
    """``replays`` distinct segments drawn uniformly from all ``segments`` with a seed
    ``keccak(secret | root)``: the requester's committed sampling secret (unknown to the
    worker) and the worker's PoL root (unknown to the requester until committed), so the
    worker cannot predict the audited segments when it commits and the requester cannot
    aim them. No segment is always audited: a fixed "last segment" is what the
    stop-early-honest-tail strategy exploits."""
    if not 0 < replays <= segments:
        raise ConfigError(f"pol: need 0 < replays <= segments, got {replays}, {segments}")
    rng = random.Random(bytes(keccak(b"deai.pol.segments" + secret + root)))
    return sorted(rng.sample(range(segments), replays))


def replays_for(
    segments: int, rate: float, fee: float, stake: float, cost: float, margin: float = 0.25
) -> int:
    """Fewest secret replays such that fabricating one segment (caught with probability
    ``replays / segments`` when audited) has negative expected profit at ``stake``:
    ``rate * m / n > (1 + margin) * (fee - c') / (fee + stake)`` with
    ``c' = cost * (1 - 1 / n)`` (economics.expected_profit < 0)."""
    c_cheat = cost * (1 - 1 / segments)
    need = (1 + margin) * max(fee - c_cheat, 0.0) / (fee + stake)
    for m in range(1, segments + 1):
        if rate * m / segments > need:
            return m
    raise ConfigError("pol: no number of replays makes fabricating one segment unprofitable")


def segment_distance(replayed: Tensor, claimed: Tensor, start: Tensor) -> float:
    """``||replayed - claimed|| / ||claimed - start||`` (with a tiny floor)."""
    scale = float(torch.linalg.vector_norm(claimed - start).clamp(min=1e-12))
    return float(torch.linalg.vector_norm(replayed - claimed)) / scale


def verify(
    task: TrainingTask,
    proof: PoLCommitment,
    open_checkpoint: Callable[[int], Tensor],
    segments: Sequence[int],
    config: PoLConfig = PoLConfig(),
    env: ExecutionEnv = ExecutionEnv(),
) -> PoLReport:
    """Replay ``segments`` of ``proof``. ``open_checkpoint(i)`` asks the worker for ``θ_ik``
    (peer data: its hash is checked before use)."""
    if proof.task_id != task.task_id or len(proof.checkpoint_hashes) != task.segments + 1:
        return PoLReport(False, (), "commitment does not belong to this task")
    if proof.checkpoint_hashes[0] != tensor_hash(task.params):
        return PoLReport(False, (), "first checkpoint is not the task's starting point")
    if proof.data_order_hash != tensor_hash(task.data_order) or proof.seed != task.seed:
        return PoLReport(False, (), "data order or seed differs from the task's")
    if any(not 0 <= s < task.segments for s in segments):
        raise ConfigError(f"pol: segments must lie in [0, {task.segments})")
    checks: list[SegmentCheck] = []
    k = task.checkpoint_every
    for s in segments:
        start, end = open_checkpoint(s), open_checkpoint(s + 1)
        hashes_ok = (
            tensor_hash(start) == proof.checkpoint_hashes[s]
            and tensor_hash(end) == proof.checkpoint_hashes[s + 1]
        )
        if not hashes_ok:
            checks.append(SegmentCheck(s, float("inf"), False))
            continue
        replayed = train_steps(task, start, s * k, k, env)
        if config.exact:
            dist = 0.0 if torch.equal(replayed, end) else float("inf")
        else:
            dist = segment_distance(replayed, end, start)
        checks.append(SegmentCheck(s, dist, dist <= config.rel_tolerance))
    bad = [c.segment for c in checks if not c.ok]
    return PoLReport(not bad, tuple(checks), f"segments {bad} do not replay" if bad else "")
