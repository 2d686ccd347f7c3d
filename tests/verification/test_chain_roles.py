"""The roles of the hidden-group market on the embedded chain (issue 15, finding 1).

The cheat-when-alone rule works whenever the chain links a task to its check group before
the worker commits (the old contract listed the workers of every task at creation): here
the rule is shown to fire once a group for the same spec is public, and never in the
protocol's own flow, where groups appear only after every member's commit deadline."""

from __future__ import annotations

import random

import pytest
import torch

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
from deai.verification.fingerprint import LaneConfig
from deai.verification.tasks import InferenceTask

from .conftest import SPEC

ETH = 10**18
LANES = LaneConfig(step=2.0**-20, tolerance=2.0**-17)


@pytest.fixture
def world() -> tuple[Ledger, SimulatedSecrets]:
    ledger = Ledger.deploy(EmbeddedChain(), LedgerConfig(min_stake=ETH, task_slash=10**15))
    for a in ledger.chain.accounts[1:6]:
        ledger.register(a, ETH, "sim://w", Role.WORKER)
    return ledger, SimulatedSecrets(b"test.chain.roles.master")


def _tasks(trained: torch.Tensor, n: int) -> list[InferenceTask]:
    g = torch.Generator().manual_seed(3)
    return [InferenceTask(SPEC, trained, torch.rand(16, 64, generator=g), i) for i in range(n)]


def _requester(ledger: Ledger, secrets: SimulatedSecrets, rate: float) -> SlotRequester:
    a = ledger.chain.accounts[0]
    cfg = SlotMarketConfig(rate=rate, bond=10**15)
    rq = SlotRequester(ledger, a, secrets.secret_bytes(a, "key"), cfg,
                       [LANES.tolerance_lanes] * 4, random.Random(1))  # fmt: skip
    rq.open_key(10**7)
    return rq


def _worker(ledger: Ledger, secrets: SimulatedSecrets, i: int, strategy: Strategy) -> SlotWorker:
    a = ledger.chain.accounts[i]
    env = prof.HONEST_ENVS[i % len(prof.HONEST_ENVS)]
    return SlotWorker(a, secrets.secret_bytes(a, "salt"), prof.Profile.FP32, env, strategy)


def test_adaptive_rule_fires_when_the_group_is_public(
    world: tuple[Ledger, SimulatedSecrets], trained: torch.Tensor
) -> None:
    ledger, secrets = world
    rq = _requester(ledger, secrets, rate=0.5)
    (task,) = _tasks(trained, 1)
    honest = [_worker(ledger, secrets, i, Strategy.HONEST) for i in (2, 3)]
    since = ledger.block_number()
    first = rq.post([(0, w.address, i == 0) for i, w in enumerate(honest)], [task], 0)
    first.sort(key=lambda r: not r.primary)  # primary first, as group() wants
    for w in honest:
        w.accept(ledger, [r for r in first if r.worker == w.address], [task], LANES, 10**15, since)
    ledger.chain.advance_time(300)
    rq.group(first, [task])  # the group of this spec is now public
    adaptive = _worker(ledger, secrets, 1, Strategy.CHEAT_WHEN_ALONE)
    (late,) = rq.post([(0, adaptive.address, False)], [task], 0)
    adaptive.accept(ledger, [late], [task], LANES, 10**15, since)
    assert adaptive.cheated_alone_checks == 1 and not late.cheated


@pytest.mark.slow
def test_in_the_protocol_the_adaptive_worker_never_sees_its_group(
    world: tuple[Ledger, SimulatedSecrets], trained: torch.Tensor
) -> None:
    ledger, secrets = world
    rq = _requester(ledger, secrets, rate=0.5)
    tasks = _tasks(trained, 12)
    adaptive = _worker(ledger, secrets, 1, Strategy.CHEAT_WHEN_ALONE)
    honest = [_worker(ledger, secrets, i, Strategy.HONEST) for i in (2, 3, 4, 5)]
    rep = run_rounds(ledger, rq, tasks, lambda i: adaptive, honest, LANES, prof.Profile.FP32,
                     per_round=6, rng=random.Random(2))  # fmt: skip
    primaries = [s for s in rep.slots if s.primary]
    assert adaptive.cheated_alone_checks == 0 and all(s.cheated for s in primaries)
    checked = [s for s in primaries if s.checked]
    assert checked and all(rep.outcome[s.slot_id] == "SLASHED" for s in checked)
    assert all(rep.outcome[s.slot_id] == "PAID" for s in rep.slots if not s.primary)
    rq.reveal_key()
    assert rq.audit_all(ledger.chain.accounts[9]) == 0
