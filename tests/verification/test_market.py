"""The verification task market on the embedded chain: a lazy worker is caught and slashed,
honest workers never are, and every wei is accounted for (issue 7)."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from deai.ledger import EmbeddedChain, Ledger, LedgerConfig, Role, TaskState
from deai.verification.chain import ChainTaskSettlement, cross_check_on_chain
from deai.verification.commit_reveal import Outcome, SettlementError
from deai.verification.economics import expected_profit
from deai.verification.fingerprint import FingerprintConfig, fingerprint
from deai.verification.market import (
    MarketConfig,
    MarketReport,
    market_section,
    run_task_market,
    slash_for,
)
from deai.verification.protocol import Comparison, CrossCheckConfig, FingerprintStore
from deai.verification.tasks import Behaviour, InferenceTask, ModelSpec, Worker

CONFIG = MarketConfig()
SLASH, _, _ = slash_for(CONFIG)


def _ledger(slash: int) -> Ledger:
    cfg = LedgerConfig(min_stake=slash, task_slash=slash, job_slash=slash)
    return Ledger.deploy(EmbeddedChain(), cfg)


@pytest.fixture(scope="module")
def market() -> tuple[Ledger, MarketReport]:
    ledger = _ledger(SLASH)
    return ledger, run_task_market(CONFIG, ledger)


def test_lazy_worker_is_caught_and_slashed(market: tuple[Ledger, MarketReport]) -> None:
    _, report = market
    (lazy,) = [r for r in report.rows if r.behaviour is CONFIG.lazy_behaviour]
    assert lazy.caught >= 1
    assert lazy.slashed == lazy.caught * report.slash
    assert lazy.stake_after == lazy.stake_before - lazy.slashed
    assert lazy.ejected  # bonded two slashes, lost both: no more tasks
    assert report.disputes == 0


def test_honest_workers_are_never_slashed(market: tuple[Ledger, MarketReport]) -> None:
    ledger, report = market
    honest = [r for r in report.rows if r.behaviour is Behaviour.HONEST]
    assert len(honest) == CONFIG.workers - 1
    for r in honest:
        assert r.caught == 0 and r.slashed == 0
        assert r.stake_after == r.stake_before == ledger.node(r.address).stake
        assert r.fees >= r.tasks * CONFIG.fee  # a caught checker's share goes to the majority


def test_money_is_conserved_on_chain(market: tuple[Ledger, MarketReport]) -> None:
    ledger, report = market
    count = int(ledger.tasks.functions.next_task_id().call()) - 1
    views = [ledger.task(i) for i in range(1, count + 1)]
    assert count == report.tasks == CONFIG.tasks
    assert all(v.state in (TaskState.SETTLED, TaskState.REFUNDED) for v in views)
    for v in views:
        assert v.fee == v.paid + v.refunded
    deposits = sum(v.fee for v in views)
    assert deposits == report.deposits == report.paid + report.refunded
    assert sum(v.paid for v in views) == report.paid == sum(r.fees for r in report.rows)
    slashed = sum(v.slashed for v in views)
    registry_slashed = int(ledger.registry.functions.total_slashed().call())
    assert slashed == registry_slashed == report.slashed == sum(r.slashed for r in report.rows)
    assert report.slashed == sum(r.stake_before - r.stake_after for r in report.rows)
    # everyone withdrew: the Tasks contract holds nothing any more
    assert ledger.balance(ledger.deployment.tasks) == 0
    assert int(ledger.tasks.functions.total_owed().call()) == 0


def test_stake_follows_the_economics(market: tuple[Ledger, MarketReport]) -> None:
    _, report = market
    assert report.slash >= report.s_min
    # a free cheat (random or stale output) has negative expected profit at this slash
    assert expected_profit(report.fee, 0.0, report.p_detect, report.slash) < 0
    assert report.sampling_audit_ok
    assert 0 < report.checked < report.tasks
    assert report.gas > 0 and {"create_task", "task_commit", "finalize_task"} <= set(
        report.gas_by_call
    )


def test_market_section_renders_rows(market: tuple[Ledger, MarketReport]) -> None:
    _, report = market
    section = market_section(report)
    assert set(section) == {"title", "note", "columns", "rows"}
    assert len(section["rows"]) == CONFIG.workers
    assert all(len(row) == len(section["columns"]) for row in section["rows"])
    assert "quantized_model" in [row[1] for row in section["rows"]]


@pytest.mark.slow
def test_market_is_deterministic(market: tuple[Ledger, MarketReport]) -> None:
    _, report = market
    again = run_task_market(CONFIG)
    assert dataclasses.replace(again, seconds=0.0) == dataclasses.replace(report, seconds=0.0)


# ------------------------------------------------------------ ChainTaskSettlement alone


@pytest.fixture(scope="module")
def small() -> tuple[ChainTaskSettlement, list[Worker], InferenceTask]:
    ledger = _ledger(100)
    accounts = ledger.chain.accounts
    for a in accounts[1:4]:
        ledger.register(a, 300, "sim://w", Role.WORKER)
    workers = [
        Worker(a, Behaviour.RANDOM_OUTPUT, secret=bytes([i])) for i, a in enumerate(accounts[1:4])
    ]
    spec = ModelSpec()
    task = InferenceTask(
        spec,
        spec.init_params(0),
        torch.rand(4, spec.in_dim, generator=torch.Generator().manual_seed(0)),
    )
    return ChainTaskSettlement(ledger, accounts[0]), workers, task


def _cfg(fee: int = 10, slash: int = 100) -> CrossCheckConfig:
    return CrossCheckConfig(fee, slash, Comparison.TOLERANT, escalation=0)


def test_all_different_results_refund_and_slash_nobody(
    small: tuple[ChainTaskSettlement, list[Worker], InferenceTask],
) -> None:
    settlement, workers, task = small
    done = cross_check_on_chain(
        task.with_nonce(1), workers, settlement, FingerprintStore(FingerprintConfig()), _cfg()
    )
    s = done.report.settlement
    assert s.verdict.outcome is Outcome.REFUNDED
    assert s.refunded == 30 and not s.paid and not s.slashed


def test_settlement_rejects_what_the_contract_cannot_do(
    small: tuple[ChainTaskSettlement, list[Worker], InferenceTask],
) -> None:
    settlement, workers, task = small
    addrs = [w.address for w in workers]
    tid = task.with_nonce(2).task_id
    with pytest.raises(SettlementError, match="slashes 100 wei"):
        settlement.open(tid, 10, 5, addrs)
    settlement.open(tid, 10, 100, addrs)
    with pytest.raises(SettlementError, match="already open"):
        settlement.open(tid, 10, 100, addrs)
    with pytest.raises(SettlementError, match="reference"):
        settlement.settle(tid, reference=b"\x01" * 32)
    with pytest.raises(SettlementError, match="reveal not open"):
        settlement.reveal(tid, addrs[0], b"\x01" * 32, b"\x02" * 32)
    with pytest.raises(SettlementError, match="not a worker"):
        settlement.commit(tid, settlement.requester, b"\x00" * 32)


def test_a_silent_worker_is_slashed_after_the_deadline(
    small: tuple[ChainTaskSettlement, list[Worker], InferenceTask],
) -> None:
    settlement, workers, task = small
    honest = [dataclasses.replace(w, behaviour=Behaviour.HONEST) for w in workers]
    tid = task.with_nonce(3).task_id
    store = FingerprintStore(FingerprintConfig())
    h = store.put(fingerprint(honest[0].infer(task.with_nonce(3)), store.config))
    settlement.open(tid, 10, 100, [w.address for w in honest])
    for w in honest:
        settlement.commit(tid, w.address, settlement.commitment(tid, w.address, h, w.salt(tid)))
    for w in honest[:2]:  # the third never reveals
        settlement.reveal(tid, w.address, h, w.salt(tid))
    with pytest.raises(SettlementError, match="not over"):
        settlement.settle(tid)
    settlement.ledger.chain.advance_time(2 * 3600 + 1)
    s = settlement.settle(tid)
    assert s.verdict.outcome is Outcome.ACCEPTED and s.verdict.result_hash == h
    assert s.paid == {honest[0].address: 15, honest[1].address: 15}
    assert s.slashed == {honest[2].address: 100}
