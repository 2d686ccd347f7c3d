"""A verification task market on the ledger (the demo): a requester buys inference from
staked workers through hidden check groups (:mod:`.chain`), and a lazy worker that cheats
whenever it believes it is alone is caught and loses its bonds.

Flow of :func:`run_task_market`:

1. Deploy the contracts on an :class:`~deai.ledger.EmbeddedChain` (or use a given ledger)
   and register the workers (Registry worker role: the only Registry call Tasks makes is
   ``eligible``). The bond per slot is the slash ``S = ceil((1 + margin) * S_min)``, with
   ``S_min = f (1 - p_d) / p_d`` at the lone cheater's ``p_d = rate``.
2. The requester trains a small MLP (64-64-10) on sklearn digits and commits its sampling
   key on chain (secret from :class:`deai.privacy.secrets.SimulatedSecrets`).
3. Tasks (16 held-out digits rows each) go to primaries in round robin; the key samples a
   primary *after* it committed, and its checkers are posted among the next round's slots.
   Everyone computes under the fp32 profile (different kernels) and commits a lane
   fingerprint of the whole output; the contract compares lanes within the key's tolerance.
4. Everyone withdraws; the requester reveals its key and every primary is audited.

Defaults (seeded, about half a minute of CPU): 6 workers, one of them lazy (int8 weights,
cheating when alone), 24 tasks, rate 0.5 (a demo rate; docs/verification.md gives the
production trade-off).
"""

from __future__ import annotations

import math
import random
import time
from dataclasses import dataclass
from typing import Any

import torch
from sklearn.datasets import load_digits

from deai.errors import ConfigError
from deai.ledger import EmbeddedChain, Ledger, LedgerConfig, Role
from deai.privacy.secrets import SimulatedSecrets
from deai.verification import profiles as prof
from deai.verification.chain import (
    SlotMarketConfig,
    SlotRequester,
    SlotWorker,
    Strategy,
    run_rounds,
)
from deai.verification.economics import min_stake
from deai.verification.fingerprint import LaneConfig
from deai.verification.tasks import (
    ExecutionEnv,
    InferenceTask,
    ModelSpec,
    TrainingTask,
    train_steps,
)

ETH = 10**18
FP32_LANES = LaneConfig(step=2.0**-20, tolerance=2.0**-17)  # calibrated: benchmarks/verification.py


@dataclass(frozen=True)
class MarketConfig:
    seed: int = 0  # master seed of the simulation's secrets and of the task inputs
    workers: int = 6  # registered workers (the embedded chain funds 9 besides the requester)
    lazy_index: int = 1  # which worker is lazy; -1 for none
    lazy_cheat: prof.Cheat = prof.Cheat.INT8
    tasks: int = 24
    rows: int = 16
    rate: float = 0.5
    k: int = 3
    fee: int = 10**15  # wei per slot
    stake_margin: float = 0.05


@dataclass(frozen=True)
class WorkerRow:
    address: str
    strategy: str
    slots: int  # slots accepted (as primary or checker)
    checked: int  # of those, in a check group
    cheated: int
    slashed: int  # slots whose bond was slashed
    owed: int  # wei withdrawn from the Tasks contract


@dataclass(frozen=True)
class MarketReport:
    rows: tuple[WorkerRow, ...]
    tasks: int
    checked: int
    rate: float
    bond: int  # wei per slot
    s_min: float
    audit_failures: int  # primaries whose grouping disagreed with the key (0: honest key)
    adaptive_saw_company: int  # times the lazy worker found its task's group before committing
    gas: int
    seconds: float


def slash_for(config: MarketConfig) -> tuple[int, float]:
    """``(bond per slot, S_min)`` for a lone cheater at ``config.rate``."""
    s_min = min_stake(float(config.fee), config.rate)
    return max(1, math.ceil((1 + config.stake_margin) * s_min)), s_min


def _model_and_inputs(seed: int) -> tuple[ModelSpec, torch.Tensor, torch.Tensor]:
    d = load_digits()
    x = torch.tensor(d.data / 16, dtype=torch.float32)
    y = torch.tensor(d.target)
    spec = ModelSpec()
    train = TrainingTask(
        spec, spec.init_params(seed), x[:512], y[:512], steps=100, batch_size=32,
        lr=0.5, seed=seed, checkpoint_every=10,
    )  # fmt: skip
    return spec, train_steps(train, train.params, 0, train.steps, ExecutionEnv()), x[512:]


def run_task_market(
    config: MarketConfig = MarketConfig(), ledger: Ledger | None = None
) -> MarketReport:
    """Run the demo market (module docstring) on ``ledger`` or a fresh embedded chain."""
    if config.workers < config.k + 1 or not 0 < config.rate < 1:
        raise ConfigError("market: need more workers than k and a rate in (0, 1)")
    start = time.perf_counter()
    bond, s_min = slash_for(config)
    ledger = ledger or Ledger.deploy(
        EmbeddedChain(), LedgerConfig(min_stake=ETH, task_slash=bond, job_slash=bond)
    )
    gas0 = len(ledger.gas_log)
    acc = ledger.chain.accounts
    requester, addrs = acc[0], acc[1 : config.workers + 1]
    for a in addrs:
        if ledger.node(a).roles == 0:
            ledger.register(a, ETH, f"sim://{a}", Role.WORKER)
    secrets = SimulatedSecrets(b"deai.market.master" + config.seed.to_bytes(8, "big"))
    workers = [
        SlotWorker(
            a,
            secrets.secret_bytes(a, "salt"),
            prof.Profile.FP32,
            prof.HONEST_ENVS[i % len(prof.HONEST_ENVS)],
            Strategy.CHEAT_WHEN_ALONE if i == config.lazy_index else Strategy.HONEST,
            config.lazy_cheat,
        )
        for i, a in enumerate(addrs)
    ]
    spec, params, pool = _model_and_inputs(config.seed)
    gen = torch.Generator().manual_seed(config.seed)
    tasks = [
        InferenceTask(
            spec, params, pool[torch.randint(0, pool.shape[0], (config.rows,), generator=gen)], t
        )
        for t in range(config.tasks)
    ]
    cfg = SlotMarketConfig(config.rate, config.k, config.fee, bond, key_bond=ETH)
    rq = SlotRequester(
        ledger, requester, secrets.secret_bytes(requester, "sampling-key"), cfg,
        [FP32_LANES.tolerance_lanes] * 4, random.Random(secrets.secret_bytes(requester, "ids")),
    )  # fmt: skip
    rq.open_key(horizon=10**7)
    honest = [w for w in workers if w.strategy is Strategy.HONEST]
    rep = run_rounds(
        ledger, rq, tasks, lambda i: workers[i % len(workers)], honest, FP32_LANES,
        prof.Profile.FP32, per_round=8, rng=random.Random(config.seed),
    )  # fmt: skip
    rq.reveal_key()
    failures = rq.audit_all(acc[-1])
    owed = {a: ledger.task_owed(a) for a in [requester, *addrs]}
    for a, amount in owed.items():
        if amount:
            ledger.task_withdraw(a)
    rows = tuple(
        WorkerRow(
            w.address,
            w.strategy.value,
            sum(s.worker == w.address for s in rep.slots if s.commitment),
            sum(s.worker == w.address and s.group > 0 for s in rep.slots),
            sum(s.worker == w.address and s.cheated for s in rep.slots),
            sum(
                s.worker == w.address and rep.outcome.get(s.slot_id) == "SLASHED" for s in rep.slots
            ),
            owed[w.address],
        )
        for w in workers
    )
    return MarketReport(
        rows=rows,
        tasks=len(tasks),
        checked=sum(s.checked for s in rep.slots if s.primary),
        rate=config.rate,
        bond=bond,
        s_min=s_min,
        audit_failures=failures,
        adaptive_saw_company=sum(w.cheated_alone_checks for w in workers),
        gas=sum(g for _, g in ledger.gas_log[gas0:]),
        seconds=time.perf_counter() - start,
    )


def _eth(wei: int) -> str:
    return f"{wei / ETH:.5f}"


def market_section(report: MarketReport) -> dict[str, Any]:
    """A table for ``deai.sim.report.write_outputs(..., sections=[...])``."""
    lazy = [r for r in report.rows if r.strategy != "honest"]
    honest_slashed = sum(r.slashed for r in report.rows if r.strategy == "honest")
    note = " ".join(
        [
            f"{report.tasks} inference tasks in hidden check groups on the embedded chain,",
            f"{report.checked} sampled by the committed key (rate {report.rate:.2f}).",
            f"Bond {_eth(report.bond)} ETH per slot (S_min {_eth(round(report.s_min))} ETH).",
            f"Lazy worker slots slashed: {sum(r.slashed for r in lazy)} of",
            f"{sum(r.cheated for r in lazy)} cheated; it saw its check group before",
            f"committing {report.adaptive_saw_company} times. Honest slots slashed:",
            f"{honest_slashed}. Key audit failures: {report.audit_failures}.",
            f"Gas {report.gas:,} ({report.gas // max(report.tasks, 1):,} per task).",
        ]
    )
    return {
        "title": "Verification market on chain: a cheat-when-alone worker caught",
        "note": note,
        "columns": [
            "worker",
            "strategy",
            "slots",
            "checked",
            "cheated",
            "slashed",
            "withdrawn (ETH)",
        ],
        "rows": [
            [
                f"{r.address[:6]}…{r.address[-4:]}",
                r.strategy,
                r.slots,
                r.checked,
                r.cheated,
                r.slashed,
                _eth(r.owed),
            ]
            for r in report.rows
        ],
    }
