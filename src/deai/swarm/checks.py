"""Sampled re-execution of span calls, canaries, and what happens to a caught server.

The client decides after the fact, from its private RNG, which work to re-check:

* a finished inference session with probability ``session_check_rate``: for each hop,
  the hop's whole input history is re-run as one stateless ``forward`` on a *witness*
  route (other servers of the same execution profile, the accused excluded) and every
  row the hop returned is compared (:func:`deai.swarm.verify.compare`);
* a stateless forward call (fine-tuning) with probability ``call_check_rate``, the same
  way.

On a mismatch the client asks a second witness route (disjoint from the accused and the
first). Two witnesses agreeing against the accused convict it (and the accused agreeing
with the second witness convicts a one-hop first witness the same way): it is banned for
good, its reputation drops to 0, it is never paid another voucher, and the :class:`Evidence`
(its signed receipt, the Merkle proof of the worst row, the row, and the history that
produced it) goes to ``on_caught``, which opens a dispute on chain
(:mod:`deai.swarm.chain`). Any other disagreement, or no second witness, is inconclusive.
A span that no other server holds cannot be re-executed (``unverifiable``); canaries
cover it (:meth:`Checker.canary`).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING

from torch import Tensor

from deai.ledger.merkle import MerkleTree
from deai.swarm.errors import MissingBlocks, ServerFailed
from deai.swarm.receipts import Receipt, RowClaim
from deai.swarm.routing import Hop, latency_route
from deai.swarm.verify import CanarySet, compare
from deai.swarm.wire import ZERO_HASH, ActCodec, chain_hashes, encode_act, pack, roundtrip

if TYPE_CHECKING:
    from deai.swarm.client import CallLog, SwarmClient
    from deai.swarm.session import InferenceSession


class Outcome(StrEnum):
    PASSED = "passed"
    CAUGHT = "caught"  # two witnesses agree against the accused
    WITNESS_CAUGHT = "witness_caught"  # the second witness sided with the accused
    INCONCLUSIVE = "inconclusive"  # a mismatch and no second witness
    UNVERIFIABLE = "unverifiable"  # no witness route


@dataclass
class Evidence:
    accused: str
    receipt: Receipt  # the accused's signed receipt for the call
    claim: RowClaim  # the row claim inside it
    proof: list[bytes]  # Merkle proof of the claim under receipt.rows_root
    row: Tensor  # [H] the accused's row as the client decoded it
    history: Tensor  # [1, position + 1, H] the inputs that determine the row
    reference: Tensor  # [H] the witnesses' row
    distance: int  # fixed-point distance of row to reference
    allowed: int  # relative tolerance x scale + codec slack
    witnesses: list[str]


@dataclass
class CheckStats:
    checks: int = 0
    outcomes: dict[str, int] = field(default_factory=dict)
    caught: list[str] = field(default_factory=list)
    check_units: int = 0  # token-blocks re-executed
    check_time_s: float = 0.0  # transport-clock time spent in checks

    def add(self, outcome: Outcome) -> None:
        self.outcomes[outcome.value] = self.outcomes.get(outcome.value, 0) + 1


class Checker:
    def __init__(self, client: SwarmClient) -> None:
        self.client = client
        self.stats = CheckStats()
        self.evidence: list[Evidence] = []
        self.on_caught: Callable[[Evidence], None] | None = None
        self.canaries: CanarySet | None = None

    # -------------------------------------------------------------- triggers
    def _draw(self, rate: float) -> bool:
        return rate > 0 and float(self.client.np_rng.random()) < rate

    def after_forward(self, log: CallLog) -> None:
        tally = self.client.tally
        if log.hop.owner not in tally.withheld and self._draw(self.client.config.call_check_rate):
            self.check(log.hop, log.inputs, log.outputs, log.codec, [log])
        tally.confirm({log.hop.owner})

    def after_session(self, session: InferenceSession) -> None:
        tally = self.client.tally
        if self._draw(self.client.config.session_check_rate):
            for hs in session.all_hops():
                history, outputs = hs.history(), hs.outputs()
                if history is None or outputs is None or hs.hop.owner in tally.withheld:
                    continue
                self.check(hs.hop, history, outputs, hs.calls[0].codec, hs.calls)
        tally.confirm()

    # -------------------------------------------------------------- re-execution
    def _witness_route(self, hop: Hop, exclude: set[str]) -> list[Hop] | None:
        c = self.client
        accused = c.record_of(hop.owner)
        recs = [r for r in c.book.live() if accused is None or r.profile == accused.profile]
        try:
            return latency_route(
                recs, hop.start, hop.end, rtt=c._rtt, reputation=c.reputation,
                exclude=exclude | c.bans.banned(),
            )  # fmt: skip
        except MissingBlocks:
            return None

    def _reexecute(self, route: list[Hop], history: Tensor) -> tuple[Tensor, list[CallLog]]:
        """Lossless stateless forward of ``history [B, L, H]`` through ``route``."""
        from deai.swarm.client import CallLog

        c = self.client
        x = history
        logs = []
        for hop in route:
            in_hashes = [h for row in x for h in chain_hashes(ZERO_HASH, row)]
            out, receipt, claims = c.call(
                hop, "forward", {"session": c.new_session_id()},
                encode_act("hidden", x, ActCodec.FLOAT32), ActCodec.FLOAT32, in_hashes,
            )  # fmt: skip
            logs.append(CallLog(hop, "forward", receipt, claims, x, out, ActCodec.FLOAT32))
            self.stats.check_units += x.shape[0] * x.shape[1] * hop.n_blocks
            x = out
        return x, logs

    def check(
        self, hop: Hop, history: Tensor, claimed: Tensor, codec: ActCodec, calls: list[CallLog]
    ) -> Outcome:
        """Re-execute ``history [B, L, H]`` on witnesses and compare with ``claimed``."""
        c = self.client
        t0 = c.transport.clock()
        self.stats.checks += 1
        try:
            outcome = self._check(hop, history, claimed, codec, calls)
        finally:
            self.stats.check_time_s += c.transport.clock() - t0
        self.stats.add(outcome)
        return outcome

    def _check(
        self, hop: Hop, history: Tensor, claimed: Tensor, codec: ActCodec, calls: list[CallLog]
    ) -> Outcome:
        c = self.client
        h = claimed.shape[-1]
        flat = claimed.reshape(-1, h)
        tol = c.config.tol_ppb
        excluded = {hop.owner}
        route = self._witness_route(hop, excluded)
        if route is None:
            return Outcome.UNVERIFIABLE
        try:
            ref, logs = self._reexecute(route, history)
        except ServerFailed as e:
            c.failed(e.server, e)
            return Outcome.INCONCLUSIVE
        first = compare(flat, ref.reshape(-1, h), tol, codec)
        if first.ok:
            c.reputation.ok(hop.owner)
            return Outcome.PASSED
        excluded |= {w.owner for w in route}
        route2 = self._witness_route(hop, excluded)
        if route2 is None:
            return Outcome.INCONCLUSIVE
        try:
            ref2, _ = self._reexecute(route2, history)
        except ServerFailed as e:
            c.failed(e.server, e)
            return Outcome.INCONCLUSIVE
        witnesses_agree = compare(ref.reshape(-1, h), ref2.reshape(-1, h), tol, ActCodec.FLOAT32).ok
        second = compare(flat, ref2.reshape(-1, h), tol, codec)
        if witnesses_agree and not second.ok:
            self._convict(hop, history, flat, ref.reshape(-1, h), first.worst_row, first.distance,
                          first.allowed, calls, [w.owner for w in route + route2])  # fmt: skip
            return Outcome.CAUGHT
        if second.ok and len(route) == 1:
            # the accused and the second witness agree: the first witness lied, and its own
            # signed receipt of the re-execution is the evidence
            w = compare(ref.reshape(-1, h), ref2.reshape(-1, h), tol, ActCodec.FLOAT32)
            others = [hop.owner] + [x.owner for x in route2]
            self._convict(route[0], history, ref.reshape(-1, h), ref2.reshape(-1, h), w.worst_row,
                          w.distance, w.allowed, logs, others)  # fmt: skip
            return Outcome.WITNESS_CAUGHT
        return Outcome.INCONCLUSIVE

    def _convict(
        self,
        hop: Hop,
        history: Tensor,
        flat: Tensor,
        ref: Tensor,
        row: int,
        distance: int,
        allowed: int,
        calls: list[CallLog],
        witnesses: list[str],
    ) -> None:
        c = self.client
        owner = hop.owner
        c.bans.ban_forever(owner, "failed a re-execution check")
        c.reputation.caught(owner)
        c.tally.withhold(owner)
        self.stats.caught.append(owner)
        # find the call and claim holding the worst row
        t_total = history.shape[1]
        b, t = divmod(row, t_total)
        offset = 0
        for log in calls:
            n = log.outputs.shape[0] * log.outputs.shape[1]
            if row < offset + n or log is calls[-1]:
                k = row - offset
                tree = MerkleTree([cl.leaf() for cl in log.claims])
                self.evidence.append(
                    Evidence(
                        accused=owner,
                        receipt=log.receipt,
                        claim=log.claims[k],
                        proof=tree.proof(k),
                        row=flat[row].clone(),
                        history=history[b : b + 1, : t + 1].clone(),
                        reference=ref[row].clone(),
                        distance=distance,
                        allowed=allowed,
                        witnesses=witnesses,
                    )
                )
                break
            offset += n
        if self.on_caught is not None:
            self.on_caught(self.evidence[-1])

    # -------------------------------------------------------------- canaries
    def canary(self, hop: Hop) -> Outcome:
        """Send one unused known-answer input to ``hop.owner`` as a one-call session."""
        c = self.client
        if self.canaries is None:
            return Outcome.UNVERIFIABLE
        can = self.canaries.take(hop.owner, hop.start, hop.end)
        if can is None:
            return Outcome.UNVERIFIABLE
        sub = Hop(hop.owner, hop.url, can.start, can.end)
        sid = c.new_session_id()
        codec = c.config.inference_codec
        sent = roundtrip(can.hidden, codec)
        in_hashes = chain_hashes(ZERO_HASH, sent[0])
        meta = {"session": sid, "position": 0, "max_length": can.hidden.shape[1],
                "timeout_s": c.config.session_timeout_s}  # fmt: skip
        self.stats.checks += 1
        try:
            out, receipt, claims = c.call(
                sub, "step", meta, encode_act("hidden", can.hidden, codec), codec, in_hashes
            )
        except ServerFailed as e:
            c.failed(e.server, e)
            self.stats.add(Outcome.INCONCLUSIVE)
            return Outcome.INCONCLUSIVE
        with contextlib.suppress(ServerFailed):
            c.transport.call(
                sub.owner, sub.url, "close", pack({"session": sid}), c.config.call_timeout_s
            )
        h = out.shape[-1]
        cmp = compare(out.reshape(-1, h), can.expected.reshape(-1, h), c.config.tol_ppb, codec)
        if cmp.ok:
            self.stats.add(Outcome.PASSED)
            return Outcome.PASSED
        from deai.swarm.client import CallLog

        log = CallLog(sub, "step", receipt, claims, sent, out, codec)
        self._convict(sub, sent, out.reshape(-1, h), can.expected.reshape(-1, h), cmp.worst_row,
                      cmp.distance, cmp.allowed, [log], ["canary"])  # fmt: skip
        self.stats.add(Outcome.CAUGHT)
        return Outcome.CAUGHT


__all__ = ["Checker", "Evidence", "Outcome"]
