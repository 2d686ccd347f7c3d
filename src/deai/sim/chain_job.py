"""A simulated job's settlement on a real (embedded) chain.

Deploys the contracts on an in-process EVM, stakes the validators, escrows the
requester's budget, and gives each validator the same
:class:`~deai.node.settlement.CommitteeMember` a deployed node uses. The chain's clock
follows the simulation's virtual clock, so commit and reveal windows mean the same thing
as on a real network. After the job every provider's payout is claimed with Merkle
proofs; a failure anywhere is recorded in the report, never lost.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from eth_account import Account
from eth_utils import keccak

from deai.errors import ConfigError, DeaiError
from deai.job.spec import JobSpec
from deai.learning.data import Dataset
from deai.learning.params import FlatModel
from deai.ledger.chain import EmbeddedChain
from deai.ledger.client import Ledger
from deai.ledger.types import Role as ChainRole
from deai.ledger.types import RoundResult
from deai.node.base import NodeContext
from deai.node.payouts import RoundPayouts
from deai.node.settlement import CommitteeMember

ETH = 10**18


@dataclass(frozen=True)
class ChainSetup:
    stake_eth: float = 5.0  # each validator's stake
    stakes_eth: Mapping[str, float] = field(default_factory=dict)  # per validator, overrides


def _lie(result: RoundResult) -> RoundResult:
    """A lying validator's tamper hook: commit a model hash that is not the aggregate."""
    wrong = hashlib.sha256(b"not the aggregate" + result.model_hash).digest()
    return RoundResult(wrong, result.root, result.total)


class SimChain:
    def __init__(self, setup: ChainSetup, spec: JobSpec, liars: set[str]) -> None:
        settle = spec.settlement
        if settle is None:
            raise ConfigError("SimChain needs a job with [settlement]")
        # reproducible blocks: the round seeds, and so the committees, are the same on
        # every run of the same job (a seed derived from the job: the chain is public)
        self.chain = EmbeddedChain(seed=int(spec.spec_hash()[:16], 16))
        self.ledger = Ledger.deploy(self.chain)
        accounts = self.chain.accounts
        validators, providers = list(spec.validators), list(spec.providers)
        if len(validators) + 1 > len(accounts):
            raise ConfigError(
                f"settlement: the embedded chain funds {len(accounts) - 1} validators at most, "
                f"the job has {len(validators)}"
            )
        self.requester = accounts[0]
        self.accounts: dict[str, str] = {v: accounts[i + 1] for i, v in enumerate(validators)}
        for p in providers:  # providers only receive: deterministic unfunded addresses
            self.accounts[p] = Account.from_key(keccak(text=f"{spec.job_id}/{p}")).address
        for v in validators:
            stake = int(setup.stakes_eth.get(v, setup.stake_eth) * ETH)
            self.ledger.register(self.accounts[v], stake, f"sim://{v}", ChainRole.VALIDATOR)
        self.stake_before = {v: self.ledger.node(self.accounts[v]).stake for v in validators}
        self.start_block = self.ledger.block_number()  # the floor of every event scan
        self.chain_job = self.ledger.create_job(
            self.requester,
            budget=settle.budget_wei,
            spec_hash=bytes.fromhex(spec.spec_hash()),
            rounds=spec.rounds,
            committee_size=settle.committee,  # seats: the contract caps them by stake
            commit_period=settle.commit_period_s,
            reveal_period=settle.reveal_period_s,
            claim_period=settle.claim_period_s,
        )
        self.round_budget = self.ledger.job(self.chain_job).round_budget
        self.spec = spec
        self.liars = liars
        self.members: dict[str, CommitteeMember] = {}
        self.errors: list[str] = []
        self.base_time = self.ledger.now()

    def sync_clock(self, virtual_now: float) -> None:
        """Keep the chain's clock at (start + virtual time): windows are virtual seconds."""
        behind = int(self.base_time + virtual_now) - self.ledger.now()
        if behind > 0:
            self.chain.advance_time(behind)

    def member(
        self,
        node_id: str,
        ctx: NodeContext,
        model: FlatModel,
        validation: Dataset,
        on_diverged: Callable[[], None] | None = None,
    ) -> CommitteeMember:
        payouts = RoundPayouts(self.spec, model, validation, self.round_budget)
        m = CommitteeMember(
            ctx,
            self.ledger,
            self.chain_job,
            self.accounts[node_id],
            payouts,
            self.accounts.__getitem__,
            self.spec.providers,
            poll_s=1.0,
            tamper=_lie if node_id in self.liars else None,
            on_error=self.errors.append,
            start_block=self.start_block,
            on_diverged=on_diverged,
        )
        self.members[node_id] = m
        return m

    @property
    def finished(self) -> bool:
        return bool(self.members) and all(m.finished for m in self.members.values())

    def finish(self) -> dict[str, Any]:
        """Claim every payout and summarise the chain side of the job. A failing step is
        recorded in ``errors``; the summary is still complete."""
        honest = next(
            (m for v, m in self.members.items() if v not in self.liars and m.duties), None
        )
        claim_gas = 0
        if honest is not None:
            claim_gas = self._claim(honest)
        view = self.ledger.job(self.chain_job)
        contributions = dict(honest.contribution_totals) if honest else {}
        applied = dict(getattr(honest.payouts, "applied", {})) if honest else {}
        providers = [
            {
                "node": p,
                "address": self.accounts[p],
                "contribution": contributions.get(p, 0.0),
                "owed_wei": honest.settled_table.get(self.accounts[p], 0) if honest else 0,
                "paid_wei": self.ledger.balance(self.accounts[p]),
            }
            for p in self.spec.providers
        ]
        validators = [
            {
                "node": v,
                "address": self.accounts[v],
                "liar": v in self.liars,
                "stake_before_wei": self.stake_before[v],
                "stake_after_wei": self.ledger.node(self.accounts[v]).stake,
            }
            for v in self.spec.validators
        ]
        rounds = []
        # committee and seats from the deployment's RoundDrawn events: the reporting
        # member's own duty knows the committee only if it looked at the round while it
        # was current (a member that reached it after it settled never did)
        # (a split round escalates to a second draw: both are reported)
        draws: dict[int, list[dict[str, int]]] = {}  # round -> [member -> seats drawn]
        for e in self.ledger.events(
            "RoundDrawn", from_block=self.start_block, filters={"job_id": self.chain_job}
        ):
            draws.setdefault(int(e.args["round"]), []).append(
                {
                    self._node(a): int(n)
                    for a, n in zip(e.args["committee"], e.args["seats"], strict=True)
                }
            )
        if honest is not None:
            for d in honest.duties:
                drawn = draws.get(d.index, [])
                rounds.append(
                    {
                        "round": d.index + 1,
                        "settled": d.settled,
                        "slashed": [self._node(a) for a in d.slashed],
                        "committee": list(drawn[0]) if drawn else [],
                        "seats": drawn[0] if drawn else {},
                        "escalated_seats": drawn[1] if len(drawn) > 1 else None,
                        "total": sum(d.paid.values()) if d.settled else 0,
                        "error": d.error,
                        "results": {v: _result_hash(m, d.index) for v, m in self.members.items()},
                    }
                )
        gas_total = sum(g for _, g in self.ledger.gas_log)
        return {
            "chain": "embedded (eth-tester + py-evm)",
            "job_id": self.chain_job,
            "deposit_wei": view.deposit,
            "payable_wei": view.payable_total,
            "claimed_wei": view.claimed_total,
            "refunded_wei": view.refunded,
            "slashed_wei": view.slashed,
            "rounds": rounds,
            "providers": providers,
            "payout_rules_applied": applied,  # payouts each payout rule zeroed (or merged)
            "validators": validators,
            "gas_total": gas_total,
            "gas_claims": claim_gas,
            "gas_by_call": _gas_by_label(self.ledger.gas_log),
            "errors": list(self.errors),
        }

    def _node(self, address: str) -> str:
        for node, acct in self.accounts.items():
            if acct.lower() == address.lower():
                return node
        return address

    def _claim(self, member: CommitteeMember) -> int:
        gas_before = sum(g for _, g in self.ledger.gas_log)
        tree = member.tree()
        payees = [a for a in tree.accounts if tree.amount(a) > 0]
        try:
            for i in range(0, len(payees), 64):
                self.ledger.claim_many(self.requester, self.chain_job, tree, payees[i : i + 64])
        except DeaiError as e:
            self.errors.append(f"claims: {e}")
        return sum(g for _, g in self.ledger.gas_log) - gas_before


def _result_hash(member: CommitteeMember, index: int) -> str | None:
    if index >= len(member.duties):
        return None
    result = member.duties[index].result
    return None if result is None else result.hash.hex()


def _gas_by_label(log: list[tuple[str, int]]) -> dict[str, int]:
    out: dict[str, int] = {}
    for label, gas in log:
        out[label] = out.get(label, 0) + gas
    return out
