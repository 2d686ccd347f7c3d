"""Ledger fixtures: one deployment per module and backend, a snapshot per test.

Every chain-backed test runs on the embedded EVM and on anvil; the anvil half is skipped,
naming the reason, only where the anvil binary is absent
(``npm install --prefix .tools @foundry-rs/anvil``)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from ledger_helpers import BACKENDS, CONFIG, ETH, World

from deai.ledger.anvil import AnvilProcess, find_anvil
from deai.ledger.chain import Chain, EmbeddedChain, RpcChain
from deai.ledger.client import Ledger
from deai.ledger.types import Role


@pytest.fixture(scope="module", params=BACKENDS)
def chain(request: pytest.FixtureRequest) -> Iterator[Chain]:
    if request.param == "embedded":
        yield EmbeddedChain(seed=0)  # reproducible draws (block hashes, round seeds)
        return
    if find_anvil() is None:
        pytest.skip("anvil binary not found: npm install --prefix .tools @foundry-rs/anvil")
    with AnvilProcess(accounts=10) as proc:
        yield RpcChain(proc.url)


@pytest.fixture(scope="module")
def deployed(chain: Chain) -> World:
    ledger = Ledger.deploy(chain, CONFIG)
    acc = chain.accounts
    validators, workers = acc[1:4], acc[4:7]
    for v, stake in zip(validators, (2, 3, 4), strict=True):
        ledger.register(v, stake * ETH, f"http://validator-{stake}", Role.VALIDATOR)
    for w in workers:
        ledger.register(w, 2 * ETH, "http://worker", Role.WORKER | Role.PROVIDER)
    return World(ledger, chain, acc[0], validators, workers, acc[7:10])


@pytest.fixture
def world(deployed: World) -> Iterator[World]:
    snap = deployed.chain.snapshot()
    deployed.ledger.gas_log.clear()
    yield deployed
    deployed.chain.revert(snap)
