"""Commit-reveal settlement of inference tasks on the ledger's Tasks contract.

:class:`ChainTaskSettlement` implements :class:`~deai.verification.commit_reveal.TaskSettlement`
over :class:`deai.ledger.Ledger`; :func:`cross_check_on_chain` runs one task through it
(Crynux H-net style, first survey section 6.4): workers compute, the requester escrows the
fee and names the workers (``create_task``), workers commit
``keccak(abi.encode(chain_task_id, worker, result_hash, salt))``, reveal, and
``finalize_task`` pays the strict majority and slashes everyone else through the Registry.

What differs from :class:`~deai.verification.commit_reveal.InMemoryTaskSettlement`:

* Commitment format. The contract binds the chain's integer task id and the worker
  (``deai.ledger.task_commitment``), so a commitment can only be formed once the task is
  open; use :meth:`ChainTaskSettlement.commitment`. :func:`deai.verification.protocol.cross_check`
  forms its commitments before ``open`` with the off-chain format and therefore cannot run
  over this class; :func:`cross_check_on_chain` is its on-chain counterpart (same
  computation, same result hashes, commitments formed after ``open``).
* Fees. ``open`` escrows ``fee * k``; the contract splits the whole escrow among the
  majority (a caught worker's share goes to the honest majority, the division remainder to
  the requester), where the reference pays ``fee`` each and refunds the rest.
* Slash. Fixed at deploy (``LedgerConfig.task_slash``); ``open`` refuses another amount.
* Comparison. The contract compares result hashes *exactly*. The tolerant path commits
  the keccak of the canonical fingerprint bytes (:class:`~.fingerprint.Fingerprint`), so
  honest workers agree on chain whenever their fingerprints are identical, which holds when
  they run the same deterministic execution settings (same batch split; thread count 1 or 2
  is bit-identical on CPU, see docs/verification.md). Honest workers whose logits differ by
  a few ulps may round a kept logit to a different grid level and would then be slashed by
  the contract although :func:`~.fingerprint.matches` accepts them: a deployment that admits
  heterogeneous hardware must settle tolerant comparisons off-chain (validators compare the
  content-addressed fingerprints) and post the verdict, which this contract cannot take.
  :func:`cross_check_on_chain` therefore re-checks every on-chain slash with the tolerant
  comparison and reports a mismatch as a *dispute* instead of hiding it.
* Escalation. The contract settles by exact majority only; ``settle(task_id, reference)``
  with a reference raises :class:`SettlementError` (an escalation verdict needs a
  ``settle_by_reference`` in Tasks.vy, listed in docs/verification.md, "What is not done").

Threat model: as in :mod:`.commit_reveal`, a minority of any committee may lie or collude.
One on-chain limit: ``create_task`` lists the committee, so a worker that waits for the
on-chain record before computing learns whether its task is checked (k > 1). The flow here
has every worker compute before the task is opened, as the protocol requires; enforcing it
needs commitments signed off-chain before the committee is public (also listed there).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from torch import Tensor
from web3 import Web3
from web3.logs import DISCARD

from deai.errors import ConfigError
from deai.ledger import Ledger, Reverted, task_commitment
from deai.verification.commit_reveal import (
    Outcome,
    Settlement,
    SettlementError,
    Verdict,
)
from deai.verification.protocol import (
    Comparison,
    CrossCheckConfig,
    FingerprintStore,
    TaskReport,
    compute,
    result_hash,
)
from deai.verification.tasks import Behaviour, InferenceTask, Worker


@dataclass(frozen=True)
class ChainTiming:
    commit_period: int = 3600  # s from create_task to the commit deadline
    reveal_period: int = 3600  # s from the commit deadline to the reveal deadline


@dataclass
class _OpenTask:
    chain_id: int  # the Tasks contract's task id
    escrow: int  # wei escrowed
    index: dict[str, str] = field(default_factory=dict)  # any-case address -> checksum
    order: list[str] = field(default_factory=list)  # checksum addresses, contract order


class ChainTaskSettlement:
    """:class:`~.commit_reveal.TaskSettlement` on the Tasks contract (module docstring).

    Transactions are sent from the accounts the chain manages or the ledger holds keys
    for: ``requester`` opens tasks and finalizes them, each worker commits and reveals
    from its own address. Every revert becomes a :class:`SettlementError` naming the
    contract's reason; the ledger's ``gas_log`` records the gas of every transaction.
    """

    def __init__(self, ledger: Ledger, requester: str, timing: ChainTiming = ChainTiming()) -> None:
        self.ledger = ledger
        self.requester = requester
        self.timing = timing
        self.slash_amount = int(ledger.tasks.functions.SLASH_AMOUNT().call())
        self._tasks: dict[bytes, _OpenTask] = {}

    def chain_id(self, task_id: bytes) -> int:
        """The contract's id of an opened task."""
        return self._get(task_id).chain_id

    def commitment(self, task_id: bytes, worker: str, result_hash: bytes, salt: bytes) -> bytes:
        """What ``worker`` commits for ``result_hash`` on the opened task ``task_id``."""
        task = self._get(task_id)
        return task_commitment(task.chain_id, self._worker(task, worker), result_hash, salt)

    def open(self, task_id: bytes, fee: int, slash: int, workers: Sequence[str]) -> None:
        """Escrow ``fee * len(workers)`` wei; ``task_id`` (32 bytes) is the spec hash."""
        if task_id in self._tasks:
            raise SettlementError("chain: task already open")
        if slash != self.slash_amount:
            raise SettlementError(
                f"chain: the Tasks contract slashes {self.slash_amount} wei, not {slash}"
            )
        if fee <= 0 or len(task_id) != 32:
            raise SettlementError("chain: fee must be positive and task_id 32 bytes")
        try:
            cid = self.ledger.create_task(
                self.requester,
                fee=fee * len(workers),
                spec_hash=task_id,
                workers=list(workers),
                commit_period=self.timing.commit_period,
                reveal_period=self.timing.reveal_period,
            )
        except Reverted as exc:
            raise SettlementError(f"chain: create_task reverted: {exc.reason}") from exc
        # the contract keeps the workers in the given order
        order = [str(Web3.to_checksum_address(w)) for w in workers]
        self._tasks[task_id] = _OpenTask(
            cid, fee * len(workers), {w.lower(): w for w in order}, order
        )

    def commit(self, task_id: bytes, worker: str, commitment: bytes) -> None:
        task = self._get(task_id)
        address = self._worker(task, worker)
        try:
            self.ledger.task_commit(
                address, task.chain_id, commitment, index=task.order.index(address)
            )
        except Reverted as exc:
            raise SettlementError(f"chain: commit reverted: {exc.reason}") from exc

    def reveal(self, task_id: bytes, worker: str, result_hash: bytes, salt: bytes) -> None:
        task = self._get(task_id)
        address = self._worker(task, worker)
        try:
            self.ledger.task_reveal(
                address, task.chain_id, result_hash, salt, index=task.order.index(address)
            )
        except Reverted as exc:
            raise SettlementError(f"chain: reveal reverted: {exc.reason}") from exc

    def settle(self, task_id: bytes, reference: bytes | None = None) -> Settlement:
        """``finalize_task`` (every worker revealed, or the reveal deadline passed) and the
        settlement read back from the events of that transaction."""
        if reference is not None:
            raise SettlementError("chain: the Tasks contract cannot settle by a reference")
        task = self._get(task_id)
        try:
            self.ledger.finalize_task(self.requester, task.chain_id)
        except Reverted as exc:
            raise SettlementError(f"chain: finalize reverted: {exc.reason}") from exc
        receipt = self.ledger.last_receipt
        assert receipt is not None
        events = self.ledger.tasks.events
        slashed = {
            str(e["args"]["worker"]): int(e["args"]["amount"])
            for e in events.WorkerSlashed().process_receipt(receipt, errors=DISCARD)
        }
        settled = events.TaskSettled().process_receipt(receipt, errors=DISCARD)
        if settled:
            args = settled[0]["args"]
            share, winner = int(args["share"]), bytes(args["result_hash"])
            majority = tuple(w for w in task.order if w not in slashed)
            paid = {w: share for w in majority}
            verdict = Verdict(Outcome.ACCEPTED, winner, majority, tuple(slashed), not slashed)
            return Settlement(task_id, verdict, paid, slashed, task.escrow - share * len(paid))
        verdict = Verdict(Outcome.REFUNDED, None, (), tuple(slashed), False)
        return Settlement(task_id, verdict, {}, slashed, task.escrow)

    def _get(self, task_id: bytes) -> _OpenTask:
        task = self._tasks.get(task_id)
        if task is None:
            raise SettlementError(f"chain: unknown task {task_id.hex()[:12]}")
        return task

    @staticmethod
    def _worker(task: _OpenTask, worker: str) -> str:
        address = task.index.get(worker.lower())
        if address is None:
            raise SettlementError(f"chain: {worker} is not a worker of this task")
        return address


@dataclass(frozen=True)
class ChainTaskReport:
    report: TaskReport  # the settlement as read back from the chain
    result_hashes: Mapping[str, bytes]  # what each worker revealed (by its given address)
    disputes: tuple[str, ...]  # slashed workers whose fingerprint tolerantly matches the
    # accepted one: an honest worker the exact on-chain comparison got wrong (module docs)


def cross_check_on_chain(
    task: InferenceTask,
    workers: Sequence[Worker],
    settlement: ChainTaskSettlement,
    store: FingerprintStore,
    config: CrossCheckConfig,
    outputs: Mapping[str, Tensor] | None = None,
) -> ChainTaskReport:
    """Run ``task`` on ``workers`` (primary first; one worker = unchecked) and settle it on
    chain: compute, open, commit, reveal, finalize. ``outputs`` overrides the computation
    (each worker's logits); copiers are not supported (the contract binds the address,
    so a copied commitment cannot be opened, :mod:`.commit_reveal`)."""
    if config.slash != settlement.slash_amount:
        raise ConfigError("chain: config.slash differs from the contract's slash amount")
    if any(w.behaviour is Behaviour.COPY for w in workers):
        raise ConfigError("chain: copying workers are driven by protocol.cross_check only")
    outs = compute(task, workers) if outputs is None else outputs
    hashes = {w.address: result_hash(outs[w.address], config, store) for w in workers}
    tid = task.task_id
    settlement.open(tid, config.fee, config.slash, [w.address for w in workers])
    for w in workers:
        commitment = settlement.commitment(tid, w.address, hashes[w.address], w.salt(tid))
        settlement.commit(tid, w.address, commitment)
    for w in workers:
        settlement.reveal(tid, w.address, hashes[w.address], w.salt(tid))
    done = settlement.settle(tid)
    disputes: tuple[str, ...] = ()
    winner = done.verdict.result_hash
    if config.comparison is Comparison.TOLERANT and winner is not None:
        lowered = {a.lower() for a in done.slashed}
        disputes = tuple(
            w.address
            for w in workers
            if w.address.lower() in lowered and store.match(winner, hashes[w.address])
        )
    return ChainTaskReport(TaskReport(tid, done, len(outs), False), hashes, disputes)
