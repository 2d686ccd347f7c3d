"""Issue #20 findings 1, 2 and 4 against the settlement state machine itself, with a chain
double that behaves like the Jobs contract where it matters (rounds move on when another
member finalizes; a round may abort).

1. A wait keyed to the *current* round never ended once another member finalized: the
   member slept to the end of the windows and was slashed. Waits are keyed to their own
   round: a round that moved on resolves the duty.
2. One serial worker for every job: a stuck job made a healthy validator miss another
   job's window. Each job settles in its own lane.
4. The payout table included aborted rounds. Only settled rounds enter it.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

import torch

from deai.node.hooks import RoundOutcome
from deai.node.settlement import CommitteeMember, Phase

ME, OTHER = "0x" + "a" * 40, "0x" + "b" * 40
P1, P2 = "0x" + "1" * 40, "0x" + "2" * 40


@dataclass
class _Event:
    args: dict[str, Any]


@dataclass
class FakeJobs:
    """Round index moves on when anyone finalizes; ``aborted`` rounds settle nothing."""

    index: int = 0
    aborted: set[int] = field(default_factory=set)
    committed: list[str] = field(default_factory=list)
    finalized_by_other: bool = False
    hang: threading.Event | None = None  # reads block while set and not released
    calls: int = 0

    def _maybe_hang(self) -> None:
        self.calls += 1
        if self.hang is not None:
            self.hang.wait(30)

    def round(self, job_id: int) -> Any:
        self._maybe_hang()
        return SimpleNamespace(
            index=self.index,
            commit_deadline=10**12,
            reveal_deadline=10**12,
            size=2,
            drawn=True,  # the committee is drawn (Jobs.draw_round) before anyone commits
            committed=frozenset(range(len(self.committed))),
            revealed=frozenset(),
            level=0,  # never escalated: this fake's rounds never split
            seed_block=0,
        )

    def committee(self, job_id: int) -> list[str]:
        return [ME, OTHER]

    def draw_round(self, account: str, job_id: int) -> bool:
        return False  # already drawn

    def commit(self, account: str, job_id: int, round_index: int, commitment: bytes) -> None:
        self.committed.append(account)

    def reveal(self, *args: Any) -> None:
        return None

    def finalize_round(self, account: str, job_id: int, round_index: int) -> None:
        self.index += 1

    def now(self) -> int:
        return 0

    def job(self, job_id: int) -> Any:
        return type("V", (), {"state": 1, "rounds": 10})()

    def block_number(self) -> int:
        return 0

    def events(self, name: str, from_block: Any = None, filters: Any = None) -> list[Any]:
        if name == "RoundSettled":
            return [_Event({"round": r}) for r in range(self.index) if r not in self.aborted]
        return []


class Loop:
    """call_later and offload run at once, on threads for offload (like the runtime)."""

    node_id = ME

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.pending: list[Callable[[], None]] = []

    def call_later(self, delay_s: float, fn: Callable[[], None]) -> None:
        with self.lock:
            self.pending.append(fn)

    def offload(self, fn: Callable[[], Any], done: Callable[[Any, Exception | None], None]) -> None:
        def run() -> None:
            try:
                result, err = fn(), None
            except Exception as e:
                result, err = None, e
            self.call_later(0, lambda: done(result, err))

        threading.Thread(target=run, daemon=True).start()

    def secret_bytes(self, label: str, n: int = 32) -> bytes:
        return b"\1" * n

    def spin(self, until: Callable[[], bool], timeout_s: float = 5.0) -> bool:
        end = time.monotonic() + timeout_s
        while time.monotonic() < end and not until():
            with self.lock:
                todo, self.pending = self.pending, []
            for fn in todo:
                fn()
            time.sleep(0.005)
        return until()


def _outcome(round_: int) -> RoundOutcome:
    z = torch.zeros(3)
    return RoundOutcome(
        job_id="j", round=round_, validator=ME, params=z, model_hash="ab" * 32,
        participants=(P1, P2), accepted=(P1, P2), excluded=(), rejections=(), missing=(),
        weights=(0.5, 0.5), updates=None, started_s=0.0, closed_s=1.0, start_params=z,
        applied=True, note="", privacy=None, secure=False,
    )  # fmt: skip


def _member(ctx: Loop, chain: FakeJobs) -> CommitteeMember:
    return CommitteeMember(
        ctx,  # type: ignore[arg-type]
        chain,  # type: ignore[arg-type]
        1,
        ME,
        lambda o: {P1: 10, P2: 20},
        lambda n: n,
        (P1, P2),
        poll_s=0.01,
    )


def test_a_round_finalized_by_another_member_resolves_the_wait() -> None:
    ctx, chain = Loop(), FakeJobs()
    m = _member(ctx, chain)
    m.settle(_outcome(1))
    assert ctx.spin(lambda: m.duties[0].phase is Phase.COMMITTED)
    chain.index = 1  # another member finalized round 0 while we wait for reveals
    assert ctx.spin(lambda: m.finished), m.duties[0]
    assert m.duties[0].settled is True


def test_aborted_rounds_stay_out_of_the_payout_table() -> None:
    ctx, chain = Loop(), FakeJobs(aborted={0})
    m = _member(ctx, chain)
    m.settle(_outcome(1))
    assert ctx.spin(lambda: m.duties[0].phase is not Phase.WAITING)
    chain.index = 1  # round 0 aborted
    assert ctx.spin(lambda: m.finished)
    m.settle(_outcome(2))
    assert ctx.spin(lambda: m.duties[1].phase is not Phase.WAITING)
    chain.index = 2
    assert ctx.spin(lambda: m.finished)
    assert [d.settled for d in m.duties] == [False, True]
    assert m.settled_table == {P1: 10, P2: 20}  # round 1 only: what the chain will pay


def test_a_stuck_job_does_not_delay_another() -> None:
    """Each job's steps run in their own lane (``deai.node.chainlink.Lane``)."""
    from deai.node.chainlink import Lane

    class Rt:
        node_id = ME

        def __init__(self) -> None:
            self.loop = Loop()

        def call_later(self, delay_s: float, fn: Callable[[], None]) -> None:
            self.loop.call_later(delay_s, fn)

        def secret_bytes(self, label: str, n: int = 32) -> bytes:
            return b"\2" * n

        def offload(self, fn: Any, done: Any, pool: Any = None) -> None:
            def run() -> None:
                result = pool.submit(fn).result()
                self.loop.call_later(0, lambda: done(result, None))

            threading.Thread(target=run, daemon=True).start()

    rt = Rt()
    stuck, healthy = FakeJobs(hang=threading.Event()), FakeJobs()
    a = _member(Lane(rt, "a"), stuck)  # type: ignore[arg-type]
    b = _member(Lane(rt, "b"), healthy)  # type: ignore[arg-type]
    a.settle(_outcome(1))
    b.settle(_outcome(1))
    assert rt.loop.spin(lambda: b.duties[0].phase is Phase.COMMITTED)
    assert a.duties[0].phase is Phase.WAITING  # still stuck on its chain read
    stuck.hang.set()


def test_an_abstaining_member_never_commits_and_still_follows_the_round() -> None:
    """Issue #20: a validator restarted after missing a round's inputs must not commit
    (committed members are slashable); it takes the non-member path and resolves the
    round when the chain moves on, then commits again for rounds it fully saw."""
    from dataclasses import replace

    ctx, chain = Loop(), FakeJobs()
    m = _member(ctx, chain)
    m.settle(replace(_outcome(1), abstain=True))
    assert m.duties[0].member is False and m.duties[0].abstained
    ctx.spin(lambda: False, 0.2)  # it polls; a member on the committee would commit now
    assert chain.committed == [] and m.duties[0].phase is Phase.WAITING
    chain.index = 1  # the others settled round 0
    assert ctx.spin(lambda: m.finished)
    assert chain.committed == [] and m.duties[0].settled is True
    m.settle(_outcome(2))
    assert ctx.spin(lambda: chain.committed == [ME])


def test_a_deployed_member_scans_events_from_the_jobs_block() -> None:
    """Review leftover (#20): the daemon built its members without ``start_block``, so
    every event scan of a round started at the contracts' deployment (slow on a long
    chain). The chain job is found with the block it was created in, and the member the
    node builds scans from there."""
    import threading
    from types import SimpleNamespace

    from deai.job.spec import DataSchema, JobSpec, Parties, SettlementSpec
    from deai.ledger.chain import EmbeddedChain
    from deai.ledger.client import Ledger
    from deai.node.chainlink import ChainLink, Prepared
    from deai.node.node import Node

    chain = EmbeddedChain()
    ledger = Ledger.deploy(chain)
    requester = chain.accounts[0]
    for _ in range(3):
        chain.advance_time(1)  # mines a block: blocks between the deployment and the job
    spec = JobSpec(
        parties=Parties(requester=requester, providers=(P1,), validators=(ME,)),
        settlement=SettlementSpec(commit_period_s=300, reveal_period_s=300),
        data=DataSchema(input_shape=(4,), num_classes=2),
    )
    link = ChainLink.__new__(ChainLink)  # on the embedded chain instead of JSON-RPC
    link.ledger, link.address, link.tx_lock = ledger, requester, threading.Lock()
    chain_id = link.create_job(spec)
    found = link.find_job_block(spec)
    assert found is not None and found[0] == chain_id == link.find_job(spec)
    created = ledger.events("JobCreated")[-1]
    assert found[1] == created.block > ledger.deployment.block
    # the node's settlement factory hands that block to the member (a layer above
    # CommitteeMember, so the node's own state is stood in for)
    node: Any = SimpleNamespace(
        prepared={spec.job_id: Prepared(chain_id, None, round_budget=1, start_block=found[1])},
        link=link, config=SimpleNamespace(chain=None), _lanes={}, members={},
        runtime=SimpleNamespace(node_id=ME), address=ME,
        _write_journal=lambda *a: None, _read_journal=lambda *a: None,
    )  # fmt: skip
    from deai.learning.data import Dataset
    from deai.node.base import model_for

    data = Dataset(torch.zeros(4, 4), torch.tensor([0, 1, 0, 1]), 2, (4,), "tiny")
    member = Node._settlement_for(node, spec, model_for(spec), data, None)  # type: ignore[arg-type]
    assert member is not None and member.start_block == found[1]


def test_a_draw_race_lost_to_another_member_leaves_no_error() -> None:
    """Review leftover (#20): ``draw_round: reverted without reason`` (another member's
    draw mined first) stayed in the duty's error for good. A lost race is no error, and
    any step that succeeds clears the last step's failure."""
    from deai.errors import ChainError

    class Raced(FakeJobs):
        drawn = False

        def round(self, job_id: int) -> Any:
            return replace_ns(super().round(job_id), drawn=self.drawn)

        def draw_round(self, account: str, job_id: int) -> bool:
            self.drawn = True  # another member's draw was mined first
            raise ChainError("draw_round: reverted without reason")

    def replace_ns(ns: Any, **kw: Any) -> Any:
        return SimpleNamespace(**{**vars(ns), **kw})

    ctx, chain = Loop(), Raced()
    m = _member(ctx, chain)
    m.settle(_outcome(1))
    assert ctx.spin(lambda: m.duties[0].phase is Phase.COMMITTED)
    assert m.duties[0].error is None

    flaky = FakeJobs()
    fails = [ChainError("commit: rpc timed out")]

    def commit(*args: Any) -> None:
        if fails:
            raise fails.pop()
        FakeJobs.commit(flaky, *args)

    flaky.commit = commit  # type: ignore[method-assign]
    m2 = _member(ctx, flaky)
    seen: list[str | None] = []
    m2.on_error = lambda text: seen.append(text)
    m2.settle(_outcome(1))
    assert ctx.spin(lambda: m2.duties[0].phase is Phase.COMMITTED)
    assert seen and "timed out" in str(seen[0]) and m2.duties[0].error is None


def test_one_duty_shape_for_reports_and_the_journal() -> None:
    """Review leftover (#20): the journal wrote ``index`` (0-based), the report ``round``
    (1-based). One shape now: the report never carries the salt or the committed result;
    the journal is the report plus those, and reads back to the same duty (journals in
    the old shape too)."""
    from deai.ledger.types import RoundResult
    from deai.node.settlement import RoundDuty, duty_from_json, duty_json, duty_record

    d = RoundDuty(
        index=2, model_hash="cd" * 32, paid={P1: 5}, contributions={P1: 0.5},
        phase=Phase.COMMITTED, member=True, result=RoundResult(b"\1" * 32, b"\2" * 32, 5),
        salt=b"\3" * 32, settled=None, from_block=7, committee=[ME, OTHER], incomplete=True,
        hold_until=12.5,
    )  # fmt: skip
    public = duty_json(d)
    assert public["round"] == 3 and "salt" not in public and "result" not in public
    record = duty_record(d)
    assert {k: v for k, v in record.items() if k not in ("salt", "result")} == public
    assert duty_from_json(record) == d
    old = {"index": 2, "model_hash": d.model_hash, "paid": {P1: 5}, "phase": "committed",
           "member": True, "result": record["result"], "salt": record["salt"]}  # fmt: skip
    back = duty_from_json(old)
    assert (back.index, back.paid, back.result, back.salt) == (2, {P1: 5}, d.result, d.salt)
