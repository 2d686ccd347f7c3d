"""On-chain settlement of a training job's rounds: one implementation for both transports.

A :class:`CommitteeMember` is one validator's :class:`~deai.node.hooks.Settlement` for one
job. When its validator closes round ``r`` it computes the round's payouts with the job's
payout rule (:class:`deai.node.payouts.RoundPayouts`) and queues the round. A small state
machine then drives the chain, one step at a time, never blocking the event loop (chain
calls go through ``NodeContext.offload``; waits are ``call_later`` polls):

1. wait until the chain has opened round ``r`` (every earlier round is final);
2. draw round ``r``'s committee if nobody has (anyone may, from the block after the
   round opened); if this member is on it: accept the duty by committing
   ``keccak(job, round, member, model_hash, payouts_root, round_total, salt)``;
3. reveal once every member has committed or the commit window closed;
4. finalize once every member has revealed or the reveal window closed (anyone may; a
   revert because another member finalized first is fine);
5. read whether round ``r`` settled or aborted: only settled rounds enter the cumulative
   payout table, so the table always equals what the chain will pay. A split round is
   not final yet: the chain escalated it (``RoundView.level`` 1) to a fresh committee of
   16 seats with new windows; the member follows it from step 2, like a new round (with
   a new salt), and a member that closed the round incomplete abstains from it.

Every wait is keyed to the round it waits for (a round that moved on ends the wait), and
every wait has the chain's own deadline as its way out. The same code runs in the
simulator (embedded chain, virtual clock, ``offload`` inline) and in a deployed node (any
JSON-RPC chain, a worker thread per call). A fault (a validator that lies) is injected
through the ``tamper`` hook, never by copying this code.

Abstaining. Only a member that committed can be slashed, so a member that cannot vouch
for its result commits nothing: it takes the non-member path (it follows the round to its
end and reads whether it settled) and says why in ``RoundDuty.abstained``. It abstains

* from a round its validator marked ``abstain`` (restarted after missing the round's
  inputs, :mod:`deai.node.validator`);
* from a round it closed *incomplete* (at the deadline, some provider's update missing)
  when its dissent would be slashable (the others' seats can reach the contract's 3/4)
  and the members that committed promptly hold a strict majority of the seats: they
  closed before the deadline, so they saw an update it did not, and its model would only
  dissent. Members that closed complete commit at once; an incomplete one holds its
  commit for ``hold_s``, looks for a prompt majority in the first half and commits at
  the end (other incomplete members, a provider that crashed is missed by all alike,
  commit at the end of theirs: they are no prompt majority, and the round must not wait
  out its windows or abort for nothing). Where its dissent cannot be slashed (it holds
  more than a quarter of the seats its dissent is decided over: its committee's plus
  the 16 an escalation adds, since a dissent splits the round) it commits at once:
  abstaining would only hold the round for the whole commit window;
* from every later round of the job once a round it closed incomplete settled with a
  model other than its own (``diverged``): its later models are built on that one. The
  ``on_diverged`` hook tells the validator (stop driving, deliver nothing). A member that
  closed a round *complete* never defers to a different settled model: that can only be
  a lying majority, and honest members keep their own.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Protocol

from deai.errors import ChainError
from deai.ledger.merkle import PayoutTree
from deai.ledger.types import RoundResult, RoundView, result_commitment
from deai.node.base import NodeContext
from deai.node.hooks import RoundOutcome

PayoutFn = Callable[[RoundOutcome], dict[str, int]]
Tamper = Callable[[RoundResult], RoundResult]
log = logging.getLogger("deai.node")
# Jobs.vy: a revealed dissenter is slashed only if the winner holds >= 3/4 of the seats
# (a split round first escalates to at most ESCALATED_SEATS more: decided over both)
DISSENT_NUM, DISSENT_DEN = 3, 4
ESCALATED_SEATS = 16


MAX_WAIT_POLL_S = 300.0  # the longest gap between polls of a long wait (a window is >= 300 s)


class JobsChain(Protocol):
    """The part of :class:`deai.ledger.client.Ledger` settlement uses."""

    def round(self, job_id: int) -> RoundView: ...

    def committee(self, job_id: int) -> list[str]: ...

    def committee_seats(self, job_id: int) -> list[int]: ...

    def commit(self, account: str, job_id: int, round_index: int, commitment: bytes) -> None: ...

    def reveal(
        self, account: str, job_id: int, round_index: int, result: RoundResult, salt: bytes
    ) -> None: ...

    def finalize_round(self, account: str, job_id: int, round_index: int) -> None: ...

    def draw_round(self, sender: str, job_id: int) -> bool: ...

    def now(self) -> int: ...

    def job(self, job_id: int) -> Any: ...

    def block_number(self) -> int: ...

    def events(
        self, name: str, from_block: int | None = None, filters: dict[str, Any] | None = None
    ) -> list[Any]: ...


class Phase(StrEnum):
    WAITING = "waiting"  # the chain has not opened this round yet
    COMMITTED = "committed"
    REVEALED = "revealed"
    FINAL = "final"  # the chain finalized the round (settled or aborted)


@dataclass
class RoundDuty:
    """One round of one job, as this member sees it."""

    index: int  # 0-based chain round index
    model_hash: str
    paid: dict[str, int]  # provider -> wei this round, by the payout rule
    contributions: dict[str, float]
    phase: Phase = Phase.WAITING
    member: bool | None = None  # on this round's committee (None: not known yet)
    result: RoundResult | None = None
    salt: bytes = b""
    settled: bool | None = None  # after FINAL: did the chain settle it
    from_block: int | None = None  # a block before anything of this round happened
    error: str | None = None
    slashed: list[str] = field(default_factory=list)  # addresses the contract slashed
    committee: list[str] = field(default_factory=list)  # addresses drawn for the round
    final_at: float | None = None  # wall-clock time this member saw the round final
    incomplete: bool = False  # closed at the deadline with some provider's update missing
    abstained: str | None = None  # why this member commits nothing for the round
    hold_until: float | None = None  # an incomplete member's commit waits until then
    committee_model: str | None = None  # the model hash the round settled with
    committed: bool = False  # the chain took this member's commitment for the round
    level: int = 0  # the round's level this duty follows (1: the round escalated)

    @property
    def diverged(self) -> bool:
        """This member missed an input and the committee settled another model."""
        return (
            self.incomplete
            and bool(self.settled)
            and self.committee_model is not None
            and self.committee_model != self.model_hash
        )


class CommitteeMember:
    """The ``Settlement`` hook of one validator for one job (see the module docstring)."""

    def __init__(
        self,
        ctx: NodeContext,
        chain: JobsChain,
        chain_job: int,
        me: str,
        payouts: PayoutFn,
        account_of: Callable[[str], str],
        providers: tuple[str, ...],
        *,
        poll_s: float = 1.0,
        tamper: Tamper | None = None,
        on_error: Callable[[str], None] | None = None,
        journal: Callable[[list[dict[str, Any]]], None] | None = None,
        start_block: int | None = None,
        hold_s: float = 20.0,
        on_diverged: Callable[[], None] | None = None,
    ) -> None:
        self.ctx = ctx
        # a block at or before the job's creation: the floor of every event scan (None:
        # the deployment's block, always correct, slow on a long chain)
        self.start_block = start_block
        self.chain = chain
        self.chain_job = chain_job
        self.me = me  # this validator's chain address
        self.payouts = payouts
        self.account_of = account_of  # node id -> chain address
        self.providers = providers
        self.poll_s = poll_s
        self.tamper = tamper
        self.on_error = on_error
        self.journal = journal  # called with every duty's state after each step
        # how long a member that closed a round incomplete, where its dissent could be
        # slashed, lets the others commit first (the first half: those that closed complete
        # commit within seconds; fellow incomplete members at the end of theirs)
        self.hold_s = hold_s
        self.on_diverged = on_diverged  # called on the loop once this member diverged
        self.duties: list[RoundDuty] = []
        self.settled_table: dict[str, int] = {self.account_of(p): 0 for p in providers}
        self.contribution_totals: dict[str, float] = {}
        self._busy = False
        self._round_count: int | None = None
        self._waiting: tuple[int, float] | None = None  # (deadline, when we began)
        self._failures = 0  # steps failed in a row

    # ---------------------------------------------------------------- on the loop
    def settle(self, outcome: RoundOutcome) -> None:
        paid = self.payouts(outcome)
        contributions = dict(getattr(self.payouts, "last_contributions", {}))
        for node, value in contributions.items():
            self.contribution_totals[node] = self.contribution_totals.get(node, 0.0) + value
        duty = RoundDuty(outcome.round - 1, outcome.model_hash, paid, contributions)
        duty.incomplete = bool(outcome.missing)
        self.duties.append(duty)
        if outcome.abstain:
            self._abstain(duty, "this validator missed the round's inputs (restart)")
        elif self.diverged:
            self._abstain(duty, "an earlier round settled with a model this member lacks")
        if self.journal is not None:  # before any step: a crash now still resumes the duty
            self.journal(self.snapshot())
        self._kick(0.0)

    @property
    def diverged(self) -> bool:
        """A round this member closed incomplete settled with another model: every later
        model of this member is built on one the committee does not hold."""
        return any(d.diverged for d in self.duties)

    def _abstain(self, duty: RoundDuty, why: str) -> None:
        duty.abstained = why
        duty.member = False  # an abstaining member takes the non-member path
        log.warning("chain job %d round %d: abstains: %s", self.chain_job, duty.index + 1, why)

    @property
    def finished(self) -> bool:
        return all(d.phase is Phase.FINAL for d in self.duties)

    def tree(self) -> PayoutTree:
        """The payout tree of every settled round: what each provider can claim."""
        return PayoutTree(self.chain_job, dict(self.settled_table))

    def _kick(self, delay: float) -> None:
        if self._busy:
            return
        self._busy = True
        self.ctx.call_later(delay, lambda: self.ctx.offload(self._step, self._after))

    # ---------------------------------------------------------------- journal
    def snapshot(self) -> list[dict[str, Any]]:
        """Every duty as JSON (the salt included: a member that committed must be able
        to reveal after a restart, or it is slashed for not revealing)."""
        return [duty_record(d) for d in self.duties]

    def restore(self, saved: list[dict[str, Any]]) -> None:
        """Resume the duties of a previous run of this member (from its journal)."""
        self.duties = [duty_from_json(d) for d in saved]
        for d in self.duties:
            if d.phase is Phase.FINAL and d.settled:
                for node, wei in d.paid.items():
                    acct = self.account_of(node)
                    self.settled_table[acct] = self.settled_table.get(acct, 0) + wei
        if self._head() is not None:
            self._kick(0.0)

    def _after(self, wait: float | None, error: Exception | None) -> None:
        self._busy = False
        if self.journal is not None:
            self.journal(self.snapshot())
        if error is not None:
            head = self._head()
            text = f"settlement of chain job {self.chain_job}: {error}"
            if head is not None:
                head.error = text
            if self.on_error is not None:
                self.on_error(text)
            # a step that keeps failing (e.g. a commit the chain refuses) backs off: one
            # retry a poll for a whole window was thousands of failing transactions
            self._failures += 1
            wait = min(self.poll_s * 2 ** min(self._failures - 1, 6), 60.0)
        else:
            self._failures = 0
        if wait is not None and self._head() is not None:
            self._kick(wait)

    def _head(self) -> RoundDuty | None:
        return next((d for d in self.duties if d.phase is not Phase.FINAL), None)

    # -------------------------------------------------------- off the loop (offload)
    def _step(self) -> float | None:
        """Take the next action for the oldest unfinished round; return how long to wait
        before the next step (None: nothing left to do)."""
        duty = self._head()
        if duty is None:
            return None
        duty.error = None  # the last step's failure, if any: this step retries it
        rv = self.chain.round(self.chain_job)
        if duty.from_block is None:
            duty.from_block = self._scan_floor(duty, rv)
        if rv.index < duty.index:
            return self.poll_s
        if rv.index > duty.index or (duty.index + 1 >= self._rounds() and self._job_done()):
            self._resolve(duty)
            return 0.0
        if rv.level > duty.level:
            self._escalated(duty, int(rv.level))
        if not rv.drawn and self.chain.now() < rv.commit_deadline:
            return self._draw()  # anyone draws a round from the block after it opened
        if not duty.committee and rv.drawn:
            duty.committee = [str(a) for a in self.chain.committee(self.chain_job)]
        if duty.member is None and rv.drawn:
            duty.member = self.me.lower() in [a.lower() for a in duty.committee]
        now = self.chain.now()
        if not duty.member:
            if now > rv.reveal_deadline:  # anyone may finalize a round past its windows
                self._finalize(duty)
                return 0.0
            return self._until(rv.reveal_deadline + 1, now)
        if duty.phase is Phase.WAITING:
            if now > rv.commit_deadline:  # too late to commit: wait the round out, then
                if now <= rv.reveal_deadline:  # finalize it (returning 0.0 here spun)
                    return self._until(rv.reveal_deadline + 1, now)
                self._finalize(duty)
                return 0.0
            if duty.incomplete:
                wait = self._hold(duty, rv)
                if wait is not None:
                    return wait
            self._commit(duty)
            return 0.0
        if duty.phase is Phase.COMMITTED:
            if len(rv.committed) < rv.size and now <= rv.commit_deadline:
                return self._until(rv.commit_deadline + 1, now)
            if now <= rv.reveal_deadline:
                assert duty.result is not None
                self.chain.reveal(self.me, self.chain_job, duty.index, duty.result, duty.salt)
            duty.phase = Phase.REVEALED
            return 0.0
        if len(rv.revealed) < rv.size and now <= rv.reveal_deadline:
            return self._until(rv.reveal_deadline + 1, now)
        self._finalize(duty)
        return 0.0

    def _escalated(self, duty: RoundDuty, level: int) -> None:
        """The round split and the chain redrew it with a larger committee: this member
        takes the new draw like a fresh round (a first-committee member that revealed
        stays locked by the chain, and its reveal counts in the final decision)."""
        log.info("job %s round %d escalated to level %d", self.chain_job, duty.index + 1, level)
        duty.level = level
        duty.phase = Phase.WAITING
        duty.committee = []
        duty.hold_until = None
        if duty.abstained is None:
            duty.member = None
        if duty.incomplete and duty.abstained is None:  # it cannot vouch for its model
            self._abstain(duty, "closed incomplete, and the round split: it escalated")

    def _scan_floor(self, duty: RoundDuty, rv: Any) -> int | None:
        """A block before anything of the duty's round happened, where its events are
        scanned from: the block the round opened at when the chain is still on it, else
        the floor of the round before (rounds open in order), else the job's start."""
        if rv.index == duty.index and rv.seed_block:
            return int(rv.seed_block)
        earlier = [d.from_block for d in self.duties if d.index < duty.index and d.from_block]
        return max(earlier) if earlier else self.start_block

    def _hold(self, duty: RoundDuty, rv: Any) -> float | None:
        """A round this member closed incomplete (see the module docstring): abstain if
        its dissent would be slashable and the members that committed promptly hold a
        strict majority of the seats; else commit (None), after ``hold_s`` if slashable."""
        me = self.me.lower()
        mine = {i for i, a in enumerate(duty.committee) if a.lower() == me}
        seats = self.chain.committee_seats(self.chain_job)
        total = int(rv.seats)
        own = sum(seats[i] for i in mine if i < len(seats))
        # its dissent splits the round, which escalates and is decided over both draws
        # (it abstains from the second): the most seats a winner can hold without it
        final = total + ESCALATED_SEATS
        if (final - own) * DISSENT_DEN < final * DISSENT_NUM:
            return None  # no winner can hold 3/4 of the seats without this member's
        now = self.ctx.now()
        if duty.hold_until is None:
            duty.hold_until = now + self.hold_s
        prompt_until = duty.hold_until - self.hold_s / 2  # who commits by then closed before
        if now <= prompt_until:  # the deadline: it saw an update this member missed
            others = sum(seats[i] for i in rv.committed if i not in mine and i < len(seats))
            if 2 * others > total:
                self._abstain(
                    duty,
                    f"closed incomplete (an update missing) while members holding {others} "
                    f"of {total} seats committed: its model would only dissent, slashably",
                )
                return 0.0
            return float(min(self.poll_s, prompt_until - now + 0.01))
        if now < duty.hold_until:  # other incomplete members commit at their hold's end
            return float(min(self.poll_s, duty.hold_until - now))
        return None

    def _draw(self) -> float:
        try:
            drawn = self.chain.draw_round(self.me, self.chain_job)
        except ChainError as e:  # seed block not mined over yet, or drawn by another
            if "seed not ready" in str(e) or "already drawn" in str(e):
                return self.poll_s
            if self.chain.round(self.chain_job).drawn:
                return 0.0  # another member's draw was mined first: a lost race, no error
            raise
        return 0.0 if drawn else self.poll_s

    def _until(self, deadline: int, now: int) -> float:
        """How long to wait for others to act before ``deadline`` (chain seconds): every
        ``poll_s`` at first, then a quarter of the time already waited for that same
        deadline (a long wait, e.g. a member that abstained holding a window open, costs
        O(log window) chain reads instead of one per ``poll_s``; seeing an action late adds
        at most a quarter to the wait)."""
        # time waited on this node's clock, not the chain's: a chain clock that jumps (a
        # test skipping to a deadline, a stalled chain catching up) must not stretch polls
        t = self.ctx.now()
        if self._waiting is None or self._waiting[0] != deadline:
            self._waiting = (deadline, t)
        waited = max(t - self._waiting[1], 0.0)
        back_off = min(waited / 4, MAX_WAIT_POLL_S)
        return float(min(max(self.poll_s, back_off), max(deadline - now, 0) + 0.5))

    def _rounds(self) -> int:
        """The job's round count (fixed at creation: read once). A job is DONE only after
        its last round is finalized, so only that round needs the state read."""
        if self._round_count is None:
            self._round_count = int(self.chain.job(self.chain_job).rounds)
        return self._round_count

    def _job_done(self) -> bool:
        from deai.ledger.types import JobState

        return bool(JobState(self.chain.job(self.chain_job).state) & JobState.DONE)

    def _commit(self, duty: RoundDuty) -> None:
        table = dict(self.settled_table)
        for node, wei in duty.paid.items():
            acct = self.account_of(node)
            table[acct] = table.get(acct, 0) + wei
        tree = PayoutTree(self.chain_job, table)
        result = RoundResult(bytes.fromhex(duty.model_hash), tree.root, sum(duty.paid.values()))
        if self.tamper is not None:
            result = self.tamper(result)
        duty.result = result
        name = f"settlement-salt/{self.chain_job}/{duty.index}"
        duty.salt = self.ctx.secret_bytes(name if duty.level == 0 else f"{name}/{duty.level}")
        commitment = result_commitment(self.chain_job, duty.index, self.me, result, duty.salt)
        self.chain.commit(self.me, self.chain_job, duty.index, commitment)
        duty.committed = True
        duty.phase = Phase.COMMITTED

    def _finalize(self, duty: RoundDuty) -> None:
        error: ChainError | None = None
        try:
            self.chain.finalize_round(self.me, self.chain_job, duty.index)
        except ChainError as e:  # another member finalized first: the round moved on
            error = e
        rv = self.chain.round(self.chain_job)
        if rv.index == duty.index and not self._job_done():
            if rv.level > duty.level:  # the round split and escalated: not final yet
                self._escalated(duty, int(rv.level))
                return
            if error is not None:
                raise error
        self._resolve(duty)

    def _resolve(self, duty: RoundDuty) -> None:
        """The chain finalized the round: did it settle, and who was slashed."""
        f = {"job_id": self.chain_job}
        # from the block the round opened at (or an earlier floor), never from this
        # member's first look at the round: a member that reaches a round after it
        # settled (not seated, or busy) must still see it, or its payout table, and every
        # later root it commits, would differ from the rest
        start = duty.from_block
        settled = [
            e
            for e in self.chain.events("RoundSettled", from_block=start, filters=f)
            if _round(e) == duty.index
        ]
        duty.settled = bool(settled)
        if not duty.committee:  # the round moved on before this member saw it drawn
            drawn = [
                e
                for e in self.chain.events("RoundDrawn", from_block=start, filters=f)
                if _round(e) == duty.index
            ]
            if drawn:
                duty.committee = [str(a) for a in drawn[-1].args["committee"]]
        if duty.member is None and duty.committee:
            duty.member = self.me.lower() in [a.lower() for a in duty.committee]
        if settled and "model_hash" in settled[0].args:
            duty.committee_model = bytes(settled[0].args["model_hash"]).hex()
        duty.slashed = [
            str(e.args["member"])
            for e in self.chain.events("MemberSlashed", from_block=start, filters=f)
            if _round(e) == duty.index
        ]
        if duty.settled:
            for node, wei in duty.paid.items():
                acct = self.account_of(node)
                self.settled_table[acct] = self.settled_table.get(acct, 0) + wei
        duty.final_at = time.time()  # a report, never an input to the protocol
        duty.phase = Phase.FINAL
        if duty.diverged:
            for later in self.duties:
                if later.index > duty.index and later.abstained is None:
                    self._abstain(later, "an earlier round settled with a model it lacks")
            if self.on_diverged is not None:
                self.ctx.call_later(0.0, self.on_diverged)  # on the loop


def duty_json(d: RoundDuty) -> dict[str, Any]:
    """A duty as JSON, in one shape for the reports (``/v1/status``, ``/v1/jobs/{id}``)
    and the journal (:func:`duty_record`); rounds 1-based, as everywhere outside the
    contract. Never the committed result or its salt (a public report would let another
    member copy a result before the reveal)."""
    return {
        "round": d.index + 1,
        "phase": str(d.phase),
        "member": d.member,
        "committed": d.committed,
        "level": d.level,
        "abstained": d.abstained,
        "incomplete": d.incomplete,
        "settled": d.settled,
        "round_payout": dict(d.paid),  # provider -> wei by the payout rule
        "total": sum(d.paid.values()) if d.settled else 0,  # what the chain pays for it
        "contributions": dict(d.contributions),
        "model_hash": d.model_hash,
        "committee_model": d.committee_model,
        "committee": list(d.committee),
        "slashed": list(d.slashed),
        "error": d.error,
        "from_block": d.from_block,
        "hold_until": d.hold_until,
        "final_at": d.final_at,
    }


def duty_record(d: RoundDuty) -> dict[str, Any]:
    """What the journal keeps of a duty: :func:`duty_json` plus the committed result and
    its salt (a member that committed must reveal after a restart, or it is slashed)."""
    r = d.result
    return {
        **duty_json(d),
        "result": None if r is None else [r.model_hash.hex(), r.root.hex(), r.total],
        "salt": d.salt.hex(),
    }


def duty_from_json(j: dict[str, Any]) -> RoundDuty:
    """A journaled duty (:func:`duty_record`; journals from before the one shape, with a
    0-based ``index`` and ``paid``, are read too)."""
    r = j.get("result")
    index = int(j["round"]) - 1 if "round" in j else int(j["index"])
    paid = j["round_payout"] if "round_payout" in j else j["paid"]
    return RoundDuty(
        index=index,
        model_hash=str(j["model_hash"]),
        paid={str(k): int(v) for k, v in paid.items()},
        contributions={str(k): float(v) for k, v in j.get("contributions", {}).items()},
        phase=Phase(j["phase"]),
        member=j.get("member"),
        result=None
        if r is None
        else RoundResult(bytes.fromhex(r[0]), bytes.fromhex(r[1]), int(r[2])),
        salt=bytes.fromhex(j.get("salt", "")),
        settled=j.get("settled"),
        from_block=j.get("from_block"),
        error=j.get("error"),
        slashed=list(j.get("slashed", [])),
        committee=list(j.get("committee", [])),
        final_at=j.get("final_at"),
        incomplete=bool(j.get("incomplete", False)),
        abstained=j.get("abstained"),
        hold_until=j.get("hold_until"),
        committee_model=j.get("committee_model"),
        # journals from before the flag: a result is kept only once it was committed
        committed=bool(j.get("committed", r is not None and j["phase"] != "waiting")),
        level=int(j.get("level", 0)),
    )


def _round(event: Any) -> int:
    return int(event.args["round"])


def default_salt(node_id: str, job_id: str, round_: int) -> bytes:
    """Only for tests that need a reproducible salt; members use secret randomness."""
    return hashlib.sha256(f"{node_id}/{job_id}/{round_}".encode()).digest()
