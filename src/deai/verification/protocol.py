"""The verification flow for one task, over any :class:`TaskSettlement`.

Inference (:func:`run_inference`):

1. The requester sends the task to its primary worker and, if the secret sampler picked it,
   to ``k - 1`` checkers through identical messages; each computes and fixes its commitment
   before the task is opened, so nobody computes knowing whether it is checked.
2. The task is opened with its workers; commitments go in; then reveals. A copier sees the
   other commitments (and reveals) but cannot open a commitment bound to another address.
3. Results are compared exactly (hash equality) or tolerantly (fingerprints, looked up by
   hash in a :class:`FingerprintStore`). A split verdict is escalated: the same work under a
   fresh nonce (unlinkable id) goes to ``escalation`` fresh workers, and their majority
   result becomes the reference that pays or slashes the original committee.

Training (:func:`run_training`): the worker commits its Proof-of-Learning root; a checked
task is audited by replaying sampled segments (:mod:`.pol`); a failed audit settles against
:data:`FRAUD`, which matches no result, so the worker is slashed.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import Enum

from eth_hash.auto import keccak
from torch import Tensor

from deai.errors import ConfigError
from deai.verification import pol
from deai.verification.commit_reveal import (
    Outcome,
    Settlement,
    SettlementError,
    TaskSettlement,
    decide,
    result_commitment,
)
from deai.verification.determinism import tensor_hash
from deai.verification.fingerprint import Fingerprint, FingerprintConfig, fingerprint, matches
from deai.verification.tasks import Behaviour, InferenceTask, TrainingTask, Worker

FRAUD = bytes(keccak(b"deai.verification.fraud"))  # reference hash that no result matches


class Comparison(Enum):
    EXACT = "exact"  # result hash = keccak of the canonical logits bytes
    TOLERANT = "tolerant"  # result hash = keccak of the TOPLOC-style fingerprint


@dataclass
class FingerprintStore:
    """Content-addressed fingerprints revealed off-chain; ``match`` is the tolerant path."""

    config: FingerprintConfig
    by_hash: dict[bytes, Fingerprint] = field(default_factory=dict)

    def put(self, fp: Fingerprint) -> bytes:
        h = fp.hash()
        self.by_hash[h] = fp
        return h

    def match(self, a: bytes, b: bytes) -> bool:
        fa, fb = self.by_hash.get(a), self.by_hash.get(b)
        return fa is not None and fb is not None and matches(fa, fb, self.config)


@dataclass(frozen=True)
class CrossCheckConfig:
    fee: int = 100  # paid per worker whose result is accepted
    slash: int = 2000  # stake taken from a worker in the minority
    comparison: Comparison = Comparison.TOLERANT  # how results are compared
    escalation: int = 5  # fresh workers that resolve a split verdict; 0 disables


@dataclass(frozen=True)
class TaskReport:
    task_id: bytes
    settlement: Settlement
    executions: int  # model executions spent on this task (the primary's included)
    escalated: bool


def result_hash(out: Tensor, config: CrossCheckConfig, store: FingerprintStore) -> bytes:
    if config.comparison is Comparison.EXACT:
        return tensor_hash(out)
    return store.put(fingerprint(out, store.config))


def compute(task: InferenceTask, workers: Sequence[Worker]) -> dict[str, Tensor]:
    """Phase 1 for everyone but copiers (who wait to copy a commitment)."""
    return {w.address: w.infer(task) for w in workers if w.behaviour is not Behaviour.COPY}


def _commit_reveal(
    task: InferenceTask,
    workers: Sequence[Worker],
    outputs: Mapping[str, Tensor],
    settlement: TaskSettlement,
    config: CrossCheckConfig,
    store: FingerprintStore,
) -> dict[str, bytes | None]:
    """Phase 2; returns each worker's accepted reveal (None: rejected or missing)."""
    task_id = task.task_id
    opened: dict[str, tuple[bytes, bytes]] = {}  # worker -> (result_hash, salt)
    commitments: dict[str, bytes] = {}
    for w in workers:
        out = outputs.get(w.address)
        if out is None:  # a copier: copy a commitment it has seen, or fake its own
            if commitments:
                victim = next(iter(commitments))
                commitments[w.address] = commitments[victim]
                opened[w.address] = opened[victim]  # and replay the victim's reveal later
                continue
            out = w.infer(task)  # nothing to copy: a random fake
        h = result_hash(out, config, store)
        opened[w.address] = (h, w.salt(task_id))
        commitments[w.address] = result_commitment(h, w.salt(task_id), w.address)
    settlement.open(task_id, config.fee, config.slash, [w.address for w in workers])
    for w in workers:
        settlement.commit(task_id, w.address, commitments[w.address])
    revealed: dict[str, bytes | None] = {}
    for w in workers:
        h, salt = opened[w.address]
        try:
            settlement.reveal(task_id, w.address, h, salt)
            revealed[w.address] = h
        except SettlementError:
            revealed[w.address] = None
    return revealed


def run_inference(
    task: InferenceTask,
    workers: Sequence[Worker],
    settlement: TaskSettlement,
    store: FingerprintStore,
    config: CrossCheckConfig = CrossCheckConfig(),
    draw_escalation: Callable[[int], Sequence[Worker]] | None = None,
) -> TaskReport:
    """Run one inference task on ``workers`` (primary first; one worker = unchecked).
    ``draw_escalation(n)`` returns ``n`` fresh workers outside this committee."""
    return cross_check(
        task, workers, compute(task, workers), settlement, store, config, draw_escalation
    )


def cross_check(
    task: InferenceTask,
    workers: Sequence[Worker],
    outputs: Mapping[str, Tensor],
    settlement: TaskSettlement,
    store: FingerprintStore,
    config: CrossCheckConfig = CrossCheckConfig(),
    draw_escalation: Callable[[int], Sequence[Worker]] | None = None,
) -> TaskReport:
    """Phases 2 and 3 given each worker's output (copiers absent from ``outputs``)."""
    if not workers:
        raise ConfigError("protocol: a task needs at least one worker")
    revealed = _commit_reveal(task, workers, outputs, settlement, config, store)
    executions = len(outputs)
    match = store.match if config.comparison is Comparison.TOLERANT else None
    verdict = decide(revealed, match)
    if verdict.unanimous or len(workers) == 1 or config.escalation == 0 or not draw_escalation:
        return TaskReport(task.task_id, settlement.settle(task.task_id), executions, False)
    blinded = task.with_nonce(int.from_bytes(keccak(task.task_id + b"escalate"), "big"))
    esc_workers = draw_escalation(config.escalation)
    esc_cfg = CrossCheckConfig(config.fee, config.slash, config.comparison, escalation=0)
    esc = run_inference(blinded, esc_workers, settlement, store, esc_cfg)
    reference = esc.settlement.verdict.result_hash
    if esc.settlement.verdict.outcome is not Outcome.ACCEPTED:
        reference = None  # the escalation was inconclusive: fall back to the majority rule
    final = settlement.settle(task.task_id, reference)
    return TaskReport(task.task_id, final, executions + esc.executions, True)


@dataclass(frozen=True)
class TrainingReport:
    task_id: bytes
    settlement: Settlement
    audit: pol.PoLReport | None  # None when the task was not checked
    replayed_steps: int  # SGD steps the validator re-ran


def run_training(
    task: TrainingTask,
    worker: Worker,
    settlement: TaskSettlement,
    checked: bool,
    config: CrossCheckConfig = CrossCheckConfig(),
    pol_config: pol.PoLConfig = pol.PoLConfig(),
    validator_seed: int = 0,
) -> TrainingReport:
    """One training task: commit the PoL root, reveal, audit if ``checked``, settle."""
    ckpts = worker.train(task)
    proof = pol.commit(task, ckpts)
    tid = task.task_id
    settlement.open(tid, config.fee, config.slash, [worker.address])
    salt = worker.salt(tid)
    settlement.commit(tid, worker.address, result_commitment(proof.root, salt, worker.address))
    settlement.reveal(tid, worker.address, proof.root, salt)
    if not checked:
        return TrainingReport(tid, settlement.settle(tid), None, 0)
    segments = pol.choose_segments(task, pol_config.replays, validator_seed)
    report = pol.verify(task, proof, lambda i: ckpts[i], segments, pol_config)
    reference = proof.root if report.accepted else FRAUD
    steps = len(report.checks) * task.checkpoint_every
    return TrainingReport(tid, settlement.settle(tid, reference), report, steps)
