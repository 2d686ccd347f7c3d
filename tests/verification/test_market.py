"""The demo market on the embedded chain (issue 15, finding 1): a worker that cheats only
when it believes it is alone finds nothing on chain tying its task to a check group before
it commits, so it is caught on every checked task; honest workers are never slashed; the
committed sampling key passes its audit; every wei is accounted for."""

from __future__ import annotations

import pytest

from deai.ledger import EmbeddedChain, Ledger, LedgerConfig
from deai.verification.market import (
    ETH,
    MarketConfig,
    MarketReport,
    market_section,
    run_task_market,
    slash_for,
)

pytestmark = pytest.mark.slow
CONFIG = MarketConfig(tasks=18)


@pytest.fixture(scope="module")
def market() -> tuple[Ledger, MarketReport]:
    bond, _ = slash_for(CONFIG)
    ledger = Ledger.deploy(
        EmbeddedChain(), LedgerConfig(min_stake=ETH, task_slash=bond, job_slash=bond)
    )
    return ledger, run_task_market(CONFIG, ledger)


def test_cheat_when_alone_is_caught_on_every_checked_slot(
    market: tuple[Ledger, MarketReport],
) -> None:
    _, report = market
    (lazy,) = [r for r in report.rows if r.strategy == "cheat_when_alone"]
    assert report.adaptive_saw_company == 0
    assert lazy.cheated == lazy.slots  # it never learned it was checked
    assert lazy.checked > 0 and lazy.slashed == lazy.checked


def test_honest_workers_are_never_slashed(market: tuple[Ledger, MarketReport]) -> None:
    _, report = market
    assert all(r.slashed == 0 for r in report.rows if r.strategy == "honest")
    assert report.audit_failures == 0


def test_money_is_conserved_on_chain(market: tuple[Ledger, MarketReport]) -> None:
    ledger, _ = market
    f = ledger.tasks.functions
    assert ledger.balance(ledger.tasks.address) == (
        f.held().call() + f.total_owed().call() + f.burned().call()
    )
    assert f.total_owed().call() == 0  # everyone withdrew


def test_market_section_renders_rows(market: tuple[Ledger, MarketReport]) -> None:
    _, report = market
    section = market_section(report)
    assert len(section["rows"]) == CONFIG.workers and "hidden check groups" in section["note"]
