"""A verification task market on the ledger: a requester buys inference from staked
workers, secretly cross-checks a share of the tasks, and a lazy worker is caught and slashed.

Flow of :func:`run_task_market` (docs/verification.md, "On chain"):

1. Deploy the contracts on an :class:`~deai.ledger.EmbeddedChain` (or use a given ledger).
   The slash per caught task is ``S = ceil((1 + margin) * S_min)`` with
   ``S_min = f (1 - p_d) / p_d`` from :func:`.economics.min_stake`, ``p_d`` the detection
   probability of a lone cheater at the sampling rate (``k = 3``, no cartel, catch rate 1,
   so ``p_d = rate``). The Registry minimum stake is one slash (tasks run one at a time, so
   one task is in flight per worker); each worker bonds ``bond_tasks`` slashes. A worker
   whose stake falls below the minimum is no longer eligible and gets no more tasks.
2. The requester trains a small MLP (64-64-10) on sklearn digits and publishes the
   commitment of its sampling key (:class:`.sampling.SecretSampler`).
3. Each task (a few held-out digits rows) goes to a primary worker (round robin over the
   eligible workers); if the sampler picks its id, ``k - 1`` checkers drawn at random join.
   Every worker computes before the task exists on chain, then the task is committed,
   revealed and finalized on chain (:func:`.chain.cross_check_on_chain`). Results are
   compared by the hash of their TOPLOC-style fingerprint.
4. Everyone withdraws what the Tasks contract owes them; the requester reveals its sampling
   key and the decisions are audited (:func:`.sampling.audit`).

Defaults (seeded, about 7 s of CPU on this machine): 6 workers, one of them lazy (a quantized
int8 copy of the model: cheap, and about 0.06 logits off), 20 tasks of 8 rows, rate 0.5,
fee 0.001 ETH per worker per task. The rate is far above a production rate so that the
demo catches the lazy worker within a few tasks; docs/verification.md states the
production trade-off (rate 0.047, stake 21.4 fees, overhead 0.094 executions per task).
"""

from __future__ import annotations

import math
import random
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
from eth_hash.auto import keccak
from sklearn.datasets import load_digits

from deai.errors import ChainError, ConfigError
from deai.ledger import EmbeddedChain, Ledger, LedgerConfig, Role
from deai.verification.chain import ChainTaskSettlement, cross_check_on_chain
from deai.verification.economics import detection_probability, min_stake
from deai.verification.fingerprint import FingerprintConfig
from deai.verification.protocol import Comparison, CrossCheckConfig, FingerprintStore
from deai.verification.sampling import SecretSampler, audit
from deai.verification.tasks import (
    Behaviour,
    ExecutionEnv,
    InferenceTask,
    ModelSpec,
    TrainingTask,
    Worker,
    train_steps,
)

ETH = 10**18


@dataclass(frozen=True)
class MarketConfig:
    seed: int = 0  # fixes the model, the task inputs, worker secrets, sampling key, checkers
    workers: int = 6  # registered workers (the embedded chain funds 9 besides the requester)
    lazy_index: int = 1  # which worker is lazy; -1 for none
    lazy_behaviour: Behaviour = Behaviour.QUANTIZED_MODEL  # the lazy worker's shortcut
    tasks: int = 20  # inference tasks the requester buys
    rows: int = 8  # digits rows per task
    rate: float = 0.5  # share of tasks secretly cross-checked, in (0, 1)
    k: int = 3  # workers on a checked task (the primary and k - 1 checkers)
    fee: int = 10**15  # wei paid per worker per task (0.001 ETH)
    stake_margin: float = 0.05  # slash = ceil((1 + margin) * S_min)
    bond_tasks: int = 2  # each worker stakes this many slashes


@dataclass(frozen=True)
class WorkerRow:
    address: str
    behaviour: Behaviour
    tasks: int  # tasks it ran, as primary or checker
    primary: int  # of those, as the primary
    checked: int  # of those, cross-checked
    caught: int  # times slashed
    fees: int  # wei earned (withdrawn from the Tasks contract)
    slashed: int  # wei of stake taken
    stake_before: int  # wei
    stake_after: int  # wei
    ejected: bool  # stake ended below the Registry minimum: no longer eligible


@dataclass(frozen=True)
class MarketReport:
    rows: tuple[WorkerRow, ...]
    tasks: int  # tasks settled
    checked: int  # of those, cross-checked
    rate: float  # promised sampling rate
    realized_rate: float  # checked / tasks (the audited sampling decisions)
    sampling_audit_ok: bool  # the revealed key opens its commitment, decisions recomputed
    k: int
    fee: int  # wei per worker per task
    slash: int  # wei taken per caught task (the contract's SLASH_AMOUNT)
    s_min: float  # economics.min_stake at p_detect, wei
    p_detect: float  # per-task detection probability of a lone cheater
    stake: int  # wei each worker bonded
    min_stake: int  # the Registry's minimum stake, wei
    deposits: int  # wei the requester escrowed
    paid: int  # wei paid to workers
    refunded: int  # wei returned to the requester
    slashed: int  # wei of stake slashed
    accepted_wrong: int  # unchecked tasks whose accepted result came from a lazy worker
    disputes: int  # on-chain slashes the tolerant comparison calls honest (should be 0)
    gas: int  # gas of the market's transactions (registration to withdrawals)
    gas_by_call: dict[str, int] = field(default_factory=dict)  # per transaction label
    seconds: float = 0.0  # wall-clock time of the run


@dataclass
class _Tally:
    tasks: int = 0
    primary: int = 0
    checked: int = 0
    caught: int = 0
    fees: int = 0
    slashed: int = 0


def slash_for(config: MarketConfig) -> tuple[int, float, float]:
    """``(slash, S_min, p_detect)`` for a lone cheater at ``config.rate``."""
    p_detect = detection_probability(config.rate, share=0.0, k=config.k)
    s_min = min_stake(float(config.fee), p_detect)
    return max(1, math.ceil((1 + config.stake_margin) * s_min)), s_min, p_detect


def _validate(config: MarketConfig) -> None:
    if not 0.0 < config.rate < 1.0:
        raise ConfigError(f"market: rate must be in (0, 1), got {config.rate}")
    if config.k < 2 or config.workers < config.k + 1:
        raise ConfigError("market: need k >= 2 and more workers than k (one may be ejected)")
    if config.tasks < 1 or config.rows < 1 or config.fee < 1 or config.bond_tasks < 1:
        raise ConfigError("market: tasks, rows, fee and bond_tasks must be positive")
    if not -1 <= config.lazy_index < config.workers:
        raise ConfigError(f"market: lazy_index {config.lazy_index} out of range")
    if config.lazy_behaviour is Behaviour.COPY:
        raise ConfigError("market: copying cannot open a commitment bound to an address")


def _model_and_inputs(config: MarketConfig) -> tuple[ModelSpec, torch.Tensor, torch.Tensor]:
    """The requester's model (trained 100 SGD steps on 512 digits) and the held-out rows."""
    d = load_digits()
    x = torch.tensor(d.data / 16, dtype=torch.float32)  # [1797, 64]
    y = torch.tensor(d.target)
    spec = ModelSpec()
    train = TrainingTask(
        spec, spec.init_params(config.seed), x[:512], y[:512], steps=100, batch_size=32,
        lr=0.5, seed=config.seed, checkpoint_every=10,
    )  # fmt: skip
    return spec, train_steps(train, train.params, 0, train.steps, ExecutionEnv()), x[512:]


def _deploy(config: MarketConfig) -> Ledger:
    slash, _, _ = slash_for(config)
    cfg = LedgerConfig(min_stake=slash, task_slash=slash, job_slash=slash)
    return Ledger.deploy(EmbeddedChain(), cfg)


def run_task_market(
    config: MarketConfig = MarketConfig(), ledger: Ledger | None = None
) -> MarketReport:
    """Run the market (module docstring) on ``ledger`` or a fresh embedded chain. The
    accounts used are the chain's managed accounts: the first is the requester, the next
    ``config.workers`` are the workers (joined as workers unless they have joined already;
    a fresh chain is the safe choice)."""
    _validate(config)
    start = time.perf_counter()
    ledger = ledger or _deploy(config)
    gas_start = len(ledger.gas_log)
    accounts = ledger.chain.accounts
    if len(accounts) < config.workers + 1:
        raise ConfigError(f"market: the chain manages {len(accounts)} accounts")
    requester, addrs = accounts[0], accounts[1 : config.workers + 1]
    settlement = ChainTaskSettlement(ledger, requester)
    slash = settlement.slash_amount
    _, s_min, p_detect = slash_for(config)
    minimum = ledger.min_stake()
    stake = max(minimum, config.bond_tasks * slash)
    before: dict[str, int] = {}
    for a in addrs:
        node = ledger.node(a)
        if node.roles == 0:
            ledger.register(a, stake, f"sim://{a}", Role.WORKER)
        before[a] = stake if node.roles == 0 else node.stake
    stakes = dict(before)  # tracked from the settlements' slashes; checked against the chain

    seed_bytes = config.seed.to_bytes(8, "big", signed=True)
    workers = [
        Worker(
            a,
            config.lazy_behaviour if i == config.lazy_index else Behaviour.HONEST,
            ExecutionEnv(threads=1 + i % 2),  # 1 or 2 threads: bit-identical on CPU
            secret=bytes(keccak(b"deai.market.worker" + seed_bytes + bytes([i]))),
        )
        for i, a in enumerate(addrs)
    ]
    spec, params, pool = _model_and_inputs(config)
    sampler = SecretSampler(config.rate, bytes(keccak(b"deai.market.sampler" + seed_bytes)))
    published = sampler.commitment  # before the first task
    store = FingerprintStore(FingerprintConfig())
    cross = CrossCheckConfig(config.fee, slash, Comparison.TOLERANT, escalation=0)
    rng = random.Random(config.seed)
    gen = torch.Generator().manual_seed(config.seed)
    tally = {a: _Tally() for a in addrs}
    ids: list[bytes] = []
    claimed: list[bytes] = []
    accepted_wrong = disputes = deposits = paid = refunded = 0
    for t in range(config.tasks):
        eligible = [w for w in workers if stakes[w.address] >= minimum]
        if len(eligible) < config.k:
            raise ConfigError("market: fewer eligible workers than k")
        rows = torch.randint(0, pool.shape[0], (config.rows,), generator=gen)
        task = InferenceTask(spec, params, pool[rows], nonce=t)
        primary = eligible[t % len(eligible)]
        team = [primary]
        if sampler.is_checked(task.task_id):
            claimed.append(task.task_id)
            team += rng.sample([w for w in eligible if w is not primary], config.k - 1)
        ids.append(task.task_id)
        done = cross_check_on_chain(task, team, settlement, store, cross)
        disputes += len(done.disputes)
        s = done.report.settlement
        deposits += config.fee * len(team)
        paid += sum(s.paid.values())
        refunded += s.refunded
        if len(team) == 1 and primary.behaviour is not Behaviour.HONEST:
            accepted_wrong += 1
        tally[primary.address].primary += 1
        for w in team:
            row = tally[w.address]
            row.tasks += 1
            row.checked += len(team) > 1
            row.fees += s.paid.get(w.address, 0)
            row.caught += w.address in s.slashed
            row.slashed += s.slashed.get(w.address, 0)
            stakes[w.address] -= s.slashed.get(w.address, 0)

    for a in [requester, *addrs]:
        if ledger.task_owed(a) > 0:
            ledger.task_withdraw(a)
    check = audit(published, sampler.secret, sampler.threshold, ids, claimed)
    after = {a: ledger.node(a).stake for a in addrs}
    if after != stakes:
        raise ChainError("market: stakes on chain differ from the settlements' slashes")
    gas = Counter[str]()
    for label, used in ledger.gas_log[gas_start:]:
        gas[label] += used
    rows_out = tuple(
        WorkerRow(
            address=w.address,
            behaviour=w.behaviour,
            **asdict(tally[w.address]),
            stake_before=before[w.address],
            stake_after=after[w.address],
            ejected=after[w.address] < minimum,
        )
        for w in workers
    )
    return MarketReport(
        rows=rows_out,
        tasks=len(ids),
        checked=check.checked,
        rate=config.rate,
        realized_rate=check.realized_rate,
        sampling_audit_ok=check.claims_match,
        k=config.k,
        fee=config.fee,
        slash=slash,
        s_min=s_min,
        p_detect=p_detect,
        stake=stake,
        min_stake=minimum,
        deposits=deposits,
        paid=paid,
        refunded=refunded,
        slashed=sum(before[a] - after[a] for a in addrs),
        accepted_wrong=accepted_wrong,
        disputes=disputes,
        gas=sum(gas.values()),
        gas_by_call=dict(sorted(gas.items())),
        seconds=time.perf_counter() - start,
    )


def _eth(wei: int) -> str:
    return f"{wei / ETH:.5f}"


def market_section(report: MarketReport) -> dict[str, Any]:
    """A table for ``deai.sim.report.write_outputs(..., sections=[...])``."""
    caught = [r for r in report.rows if r.behaviour is not Behaviour.HONEST and r.caught]
    honest_slashed = sum(r.caught for r in report.rows if r.behaviour is Behaviour.HONEST)
    audit_word = "passed" if report.sampling_audit_ok else "FAILED"
    note = " ".join(
        [
            f"{report.tasks} inference tasks settled on the embedded chain, {report.checked}",
            f"secretly cross-checked by k = {report.k} workers (rate {report.rate:.2f},",
            f"realized {report.realized_rate:.2f}, sampling audit {audit_word}).",
            f"Fee {_eth(report.fee)} ETH per worker per task; slash {_eth(report.slash)} ETH",
            f"(S_min = f(1 - p_d)/p_d = {_eth(round(report.s_min))} ETH at",
            f"p_d = {report.p_detect:.3f}); stake {_eth(report.stake)} ETH.",
            f"Lazy workers caught: {len(caught)}; wrong results accepted unchecked:",
            f"{report.accepted_wrong}; honest workers slashed: {honest_slashed}.",
            f"Requester escrowed {_eth(report.deposits)} ETH = paid {_eth(report.paid)} +",
            f"refunded {_eth(report.refunded)}; {_eth(report.slashed)} ETH of stake slashed",
            f"(burned). Gas {report.gas:,} ({report.gas // max(report.tasks, 1):,} per task).",
        ]
    )
    return {
        "title": "Verification market on chain: a lazy worker caught and slashed",
        "note": note,
        "columns": [
            "worker",
            "behaviour",
            "tasks",
            "checked",
            "caught",
            "fees (ETH)",
            "slashed (ETH)",
            "stake before (ETH)",
            "stake after (ETH)",
            "eligible",
        ],
        "rows": [
            [
                f"{r.address[:6]}…{r.address[-4:]}",
                r.behaviour.value,
                r.tasks,
                r.checked,
                r.caught,
                _eth(r.fees),
                _eth(r.slashed),
                _eth(r.stake_before),
                _eth(r.stake_after),
                "no" if r.ejected else "yes",
            ]
            for r in report.rows
        ],
    }
