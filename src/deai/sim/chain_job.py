"""Run a simulated training job's settlement on a real (embedded) chain.

Deploys the contracts on an in-process EVM, stakes the validators, escrows the
requester's budget, gives each validator a :class:`ChainMember` settlement hook, and after
the job claims every provider's payout with Merkle proofs. The report shows each node's
payout, stake, slashes and the gas used.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from eth_account import Account
from eth_utils import keccak

from deai.errors import ConfigError
from deai.incentives.evaluators import EvaluatorConfig, EvaluatorName
from deai.learning.data import Dataset
from deai.learning.params import FlatModel
from deai.ledger.chain import EmbeddedChain
from deai.ledger.client import Ledger
from deai.node.settlement import ChainJob, ChainMember
from deai.ledger.types import Role as ChainRole
from deai.node.job import JobSpec
from deai.node.payouts import RoundPayouts

ETH = 10**18


@dataclass(frozen=True)
class ChainSetup:
    budget_eth: float = 10.0  # the requester's escrow for the whole job
    stake_eth: float = 5.0  # each validator's stake
    committee: int = 3  # committee size per round
    evaluator: EvaluatorName = EvaluatorName.LOO  # contribution evaluator for payouts


class SimChain:
    def __init__(
        self, setup: ChainSetup, spec: JobSpec, validators: list[str], providers: list[str]
    ) -> None:
        chain = EmbeddedChain()
        self.ledger = Ledger.deploy(chain)
        accounts = chain.accounts
        if len(validators) + 1 > len(accounts):
            raise ConfigError(f"the embedded chain funds {len(accounts) - 1} validators at most")
        self.requester = accounts[0]
        self.accounts: dict[str, str] = {v: accounts[i + 1] for i, v in enumerate(validators)}
        for p in providers:  # providers only receive: deterministic unfunded addresses
            self.accounts[p] = Account.from_key(keccak(text=f"{spec.job_id}/{p}")).address
        stake = int(setup.stake_eth * ETH)
        for v in validators:
            self.ledger.register(self.accounts[v], stake, f"sim://{v}", ChainRole.VALIDATOR)
        self.stake_before = {v: self.ledger.node(self.accounts[v]).stake for v in validators}
        self.requester_before = self.ledger.balance(self.requester)
        self.job_id = self.ledger.create_job(
            self.requester,
            budget=int(setup.budget_eth * ETH),
            spec_hash=bytes.fromhex(spec.spec_hash()),
            rounds=spec.rounds,
            committee_size=min(setup.committee, len(validators)),
            commit_period=3600,
            reveal_period=3600,
            claim_period=7 * 24 * 3600,
        )
        self.round_budget = self.ledger.job(self.job_id).round_budget
        self.setup = setup
        self.job = ChainJob(self.ledger, self.job_id, self.requester, self.accounts)
        self.validators = validators
        self.providers = providers

    def member(
        self, node_id: str, model: FlatModel, validation: Dataset, server_lr: float, liar: bool
    ) -> ChainMember:
        payouts = RoundPayouts(
            model,
            validation,
            EvaluatorConfig(name=self.setup.evaluator),
            self.round_budget,
            server_lr,
        )
        return self.job.member(node_id, payouts, liar)

    def finish(self) -> dict[str, Any]:
        """Claim every payout and summarise the chain side of the job."""
        honest = next(
            (m for m in self.job.members.values() if not m.liar and m.tree is not None), None
        )
        claim_gas = self.job.claim_all(honest.tree) if honest and honest.tree else 0
        view = self.ledger.job(self.job_id)
        contributions = dict(honest.contribution_totals) if honest else {}
        providers = [
            {
                "node": p,
                "address": self.accounts[p],
                "contribution": contributions.get(p, 0.0),
                "paid_wei": self.ledger.balance(self.accounts[p]),
            }
            for p in self.providers
        ]
        validators = [
            {
                "node": v,
                "address": self.accounts[v],
                "liar": self.job.members[v].liar if v in self.job.members else False,
                "stake_before_wei": self.stake_before[v],
                "stake_after_wei": self.ledger.node(self.accounts[v]).stake,
            }
            for v in self.validators
        ]
        gas_total = sum(g for _, g in self.ledger.gas_log)
        return {
            "chain": "embedded (eth-tester + py-evm)",
            "job_id": self.job_id,
            "deposit_wei": view.deposit,
            "payable_wei": view.payable_total,
            "claimed_wei": view.claimed_total,
            "refunded_wei": view.refunded,
            "slashed_wei": view.slashed,
            "rounds": [r.__dict__ for r in self.job.rounds],
            "providers": providers,
            "validators": validators,
            "gas_total": gas_total,
            "gas_claims": claim_gas,
            "gas_by_call": _gas_by_label(self.ledger.gas_log),
        }


def _gas_by_label(log: list[tuple[str, int]]) -> dict[str, int]:
    out: dict[str, int] = {}
    for label, gas in log:
        out[label] = out.get(label, 0) + gas
    return out
