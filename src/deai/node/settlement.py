"""Settle a training job's rounds on chain: the ``Settlement`` hook of each validator.

Each committee member, when its validator closes a round, computes the round's payouts,
folds them into the job's cumulative payout tree, and commits
``keccak(job, round, member, model_hash, payouts_root, round_total, salt)``. When every
member of the round's on-chain committee has committed, each reveals, and the round is
finalized: the strict majority settles it, dissenters and non-revealers are slashed by
the contract (never by an admin). Providers claim their cumulative payout with one Merkle
proof at the end (``claim_all``).

In simulation the committee shares one :class:`ChainJob` object (it stands for the chain
and for the members' message exchange about who has committed); each member keeps its own
cumulative payouts, salt and result, so a lying member really commits a different result.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field

from deai.ledger.client import Ledger
from deai.ledger.merkle import PayoutTree
from deai.ledger.types import RoundResult, result_commitment
from deai.node.hooks import RoundOutcome

PayoutFn = Callable[[RoundOutcome], dict[str, int]]


@dataclass
class _Pending:
    result: RoundResult
    salt: bytes


@dataclass
class ChainRound:
    """What the report shows of one settled round."""

    round: int
    committee: list[str]
    results: dict[str, str]  # member node -> hex of the result hash it revealed
    total: int
    gas: int
    slashed: list[str] = field(default_factory=list)


class ChainJob:
    """One job on chain and its committee's settlement members."""

    def __init__(
        self, ledger: Ledger, job_id: int, requester: str, accounts: dict[str, str]
    ) -> None:
        self.ledger = ledger
        self.job_id = job_id
        self.requester = requester
        self.accounts = accounts  # node id -> address (validators and providers)
        self.nodes = {a: n for n, a in accounts.items()}
        self._pending: dict[int, dict[str, _Pending]] = {}
        self.rounds: list[ChainRound] = []
        self.members: dict[str, ChainMember] = {}

    def member(self, node_id: str, payouts: PayoutFn, liar: bool = False) -> ChainMember:
        m = ChainMember(self, node_id, payouts, liar)
        self.members[node_id] = m
        return m

    def committed(self, round_index: int, node_id: str, pending: _Pending) -> None:
        got = self._pending.setdefault(round_index, {})
        got[node_id] = pending
        committee = [self.nodes[a] for a in self.ledger.committee(self.job_id)]
        if not set(committee) <= set(got):
            return
        gas_before = sum(g for _, g in self.ledger.gas_log)
        for n in committee:
            p = got[n]
            self.ledger.reveal(self.accounts[n], self.job_id, round_index, p.result, p.salt)
        block = self.ledger.chain.w3.eth.block_number
        self.ledger.finalize_round(self.accounts[committee[0]], self.job_id, round_index)
        slashed = [
            self.nodes.get(e.args["member"], e.args["member"])
            for e in self.ledger.events("MemberSlashed", from_block=block)
        ]
        self.rounds.append(
            ChainRound(
                round=round_index + 1,
                committee=committee,
                results={n: got[n].result.hash.hex() for n in committee},
                total=max((got[n].result.total for n in committee), default=0),
                gas=sum(g for _, g in self.ledger.gas_log) - gas_before,
                slashed=slashed,
            )
        )
        del self._pending[round_index]

    def claim_all(self, tree: PayoutTree) -> int:
        """Claim every positive cumulative payout in batches; return the gas used."""
        gas_before = sum(g for _, g in self.ledger.gas_log)
        payees = [a for a in tree.accounts if tree.amount(a) > 0]
        for i in range(0, len(payees), 64):
            self.ledger.claim_many(self.requester, self.job_id, tree, payees[i : i + 64])
        return sum(g for _, g in self.ledger.gas_log) - gas_before


class ChainMember:
    """The ``Settlement`` hook of one validator."""

    def __init__(self, job: ChainJob, node_id: str, payouts: PayoutFn, liar: bool) -> None:
        self.job = job
        self.node_id = node_id
        self.payouts = payouts
        self.liar = liar  # commits a wrong model hash: the contract must slash it
        self.cumulative: dict[str, int] = {}
        self.tree: PayoutTree | None = None
        self.contribution_totals: dict[str, float] = {}  # node -> sum over rounds

    def settle(self, outcome: RoundOutcome) -> None:
        address = self.job.accounts[self.node_id]
        round_index = outcome.round - 1
        paid = self.payouts(outcome)  # every validator tracks the cumulative payouts
        for node, value in getattr(self.payouts, "last_contributions", {}).items():
            self.contribution_totals[node] = self.contribution_totals.get(node, 0.0) + value
        for node, wei in paid.items():
            acct = self.job.accounts[node]
            self.cumulative[acct] = self.cumulative.get(acct, 0) + wei
        accounts = {self.job.accounts[n]: 0 for n in self.job.accounts if n.startswith("provider")}
        self.tree = PayoutTree(self.job.job_id, {**accounts, **self.cumulative})
        if address not in self.job.ledger.committee(self.job.job_id):
            return  # not drawn for this round's committee: nothing to commit
        model_hash = bytes.fromhex(outcome.model_hash)
        if self.liar:
            model_hash = hashlib.sha256(b"not the aggregate" + model_hash).digest()
        result = RoundResult(model_hash, self.tree.root, sum(paid.values()))
        salt = hashlib.sha256(f"{self.node_id}/{outcome.job_id}/{outcome.round}".encode()).digest()
        commitment = result_commitment(self.job.job_id, round_index, address, result, salt)
        self.job.ledger.commit(address, self.job.job_id, round_index, commitment)
        self.job.committed(round_index, self.node_id, _Pending(result, salt))
