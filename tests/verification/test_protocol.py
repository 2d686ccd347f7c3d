"""Every cheating strategy is caught whenever its task is checked; honest committees are
never slashed; copying fails; a colluding pair loses once a split verdict is escalated."""

from __future__ import annotations

import dataclasses
import itertools

import pytest
import torch

from deai.verification.commit_reveal import InMemoryTaskSettlement, Outcome
from deai.verification.fingerprint import FingerprintConfig
from deai.verification.protocol import (
    Comparison,
    CrossCheckConfig,
    FingerprintStore,
    run_inference,
    run_training,
)
from deai.verification.tasks import (
    Behaviour,
    ExecutionEnv,
    InferenceTask,
    TrainingTask,
    Worker,
)

from .conftest import SPEC, worker

INFERENCE_CHEATS = [
    Behaviour.RANDOM_OUTPUT,
    Behaviour.STALE_OUTPUT,
    Behaviour.SMALLER_MODEL,
    Behaviour.QUANTIZED_MODEL,
    Behaviour.COPY,
]


@pytest.fixture(scope="module")
def tasks(trained: torch.Tensor, digits: tuple[torch.Tensor, torch.Tensor]) -> list[InferenceTask]:
    x = digits[0]
    return [InferenceTask(SPEC, trained, x[8 * i : 8 * i + 8]) for i in range(6)]


def _fresh(start: int) -> itertools.count[int]:
    return itertools.count(start)


def _pool(counter: itertools.count[int], exact: bool = False) -> list[Worker]:
    """Fresh honest workers; the exact path needs one batch split for everyone."""
    envs = (
        [ExecutionEnv(1)] * 3
        if exact
        else [ExecutionEnv(1), ExecutionEnv(1, 1), ExecutionEnv(1, 3)]
    )
    return [worker(next(counter), env=envs[i % 3]) for i in range(5)]


@pytest.mark.parametrize("comparison", [Comparison.TOLERANT, Comparison.EXACT])
@pytest.mark.parametrize("behaviour", INFERENCE_CHEATS)
def test_inference_cheater_caught_whenever_checked(
    tasks: list[InferenceTask], behaviour: Behaviour, comparison: Comparison
) -> None:
    cfg = CrossCheckConfig(comparison=comparison)
    settlement = InMemoryTaskSettlement()
    store = FingerprintStore(FingerprintConfig())
    settlement.match = store.match
    cheat = worker(1, behaviour=behaviour)
    ids = _fresh(100)
    for task in tasks:  # the stale cheater returns the previous task's output from task 2 on
        exact = comparison is Comparison.EXACT
        other = ExecutionEnv(2) if exact else ExecutionEnv(1, 1)  # bit-exact vs tolerant
        checkers = [worker(next(ids)), worker(next(ids), env=other)]
        order = (
            [checkers[0], cheat, checkers[1]] if behaviour is Behaviour.COPY else [cheat, *checkers]
        )
        report = run_inference(
            task, order, settlement, store, cfg, lambda n, exact=exact: _pool(ids, exact)
        )
        out = report.settlement
        if behaviour is Behaviour.STALE_OUTPUT and task is tasks[0]:
            assert out.slashed == {}  # its first result is computed honestly
            continue
        assert cheat.address in out.slashed, behaviour
        assert set(out.paid) == {c.address for c in checkers}
    led = settlement.ledger
    assert led.escrowed == led.paid + led.refunded


def test_unchecked_cheater_is_paid_which_is_why_sampling_is_secret(
    tasks: list[InferenceTask],
) -> None:
    settlement = InMemoryTaskSettlement()
    store = FingerprintStore(FingerprintConfig())
    settlement.match = store.match
    report = run_inference(
        tasks[0], [worker(1, behaviour=Behaviour.RANDOM_OUTPUT)], settlement, store
    )
    assert report.settlement.verdict.outcome is Outcome.ACCEPTED


def test_honest_committees_with_different_settings_never_disagree(
    tasks: list[InferenceTask],
) -> None:
    settlement = InMemoryTaskSettlement()
    store = FingerprintStore(FingerprintConfig())
    settlement.match = store.match
    envs = [
        ExecutionEnv(1),
        ExecutionEnv(2),
        ExecutionEnv(1, 1),
        ExecutionEnv(2, 4),
        ExecutionEnv(1, 3),
    ]
    for i, task in enumerate(tasks):
        committee = [worker(10 * i + j, env=envs[(i + j) % len(envs)]) for j in range(3)]
        report = run_inference(task, committee, settlement, store)
        assert report.settlement.verdict.unanimous and not report.escalated


def test_colluding_pair_wins_the_vote_but_loses_the_escalation(
    tasks: list[InferenceTask],
) -> None:
    settlement = InMemoryTaskSettlement()
    store = FingerprintStore(FingerprintConfig())
    settlement.match = store.match
    key = b"cartel"
    a = worker(1, behaviour=Behaviour.COLLUDE, collusion_key=key)
    b = worker(2, behaviour=Behaviour.COLLUDE, collusion_key=key)
    honest = worker(3)
    ids = _fresh(50)
    no_esc = CrossCheckConfig(escalation=0)
    plain = run_inference(tasks[0], [a, b, honest], settlement, store, no_esc)
    assert plain.settlement.slashed == {honest.address: no_esc.slash}  # the known risk
    report = run_inference(
        tasks[1], [a, b, honest], settlement, store, draw_escalation=lambda n: _pool(ids)
    )
    assert report.escalated
    assert set(report.settlement.slashed) == {a.address, b.address}
    assert set(report.settlement.paid) == {honest.address}
    # a full cartel committee is unanimous and escapes: the share^(k-1) term of the stake
    c = worker(4, behaviour=Behaviour.COLLUDE, collusion_key=key)
    cartel = run_inference(
        tasks[2], [a, b, c], settlement, store, draw_escalation=lambda n: _pool(ids)
    )
    assert cartel.settlement.slashed == {} and not cartel.escalated


@pytest.mark.parametrize(
    "behaviour",
    [Behaviour.SKIPPED_STEPS, Behaviour.PARTIAL_TRAINING, Behaviour.RANDOM_OUTPUT],
)
def test_training_cheater_caught_whenever_checked(
    trained: torch.Tensor, digits: tuple[torch.Tensor, torch.Tensor], behaviour: Behaviour
) -> None:
    x, y = digits
    settlement = InMemoryTaskSettlement()
    for seed in range(3):
        task = TrainingTask(
            SPEC,
            trained,
            x[:128],
            y[:128],
            steps=8,
            batch_size=8,
            lr=0.05,
            seed=seed,
            checkpoint_every=2,
        )
        cheat = run_training(
            task, worker(1, behaviour=behaviour), settlement, checked=True, validator_seed=seed
        )
        assert cheat.settlement.slashed, behaviour
        honest = run_training(
            dataclasses.replace(task, nonce=1),
            worker(2),
            settlement,
            checked=True,
            validator_seed=seed,
        )
        assert honest.settlement.paid and not honest.settlement.slashed
