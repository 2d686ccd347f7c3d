from __future__ import annotations

import pytest
import torch

from deai.verification import pol
from deai.verification.tasks import Behaviour, ExecutionEnv, TrainingTask

from .conftest import SPEC, worker


@pytest.fixture(scope="module")
def task(trained: torch.Tensor, digits: tuple[torch.Tensor, torch.Tensor]) -> TrainingTask:
    x, y = digits
    return TrainingTask(
        SPEC,
        trained,
        x[:256],
        y[:256],
        steps=12,
        batch_size=16,
        lr=0.05,
        seed=7,
        checkpoint_every=3,
    )


def _audit(
    task: TrainingTask,
    behaviour: Behaviour,
    env: ExecutionEnv = ExecutionEnv(),
    config: pol.PoLConfig = pol.PoLConfig(),
) -> pol.PoLReport:
    ckpts = worker(1, behaviour=behaviour, env=env).train(task)
    proof = pol.commit(task, ckpts)
    segments = pol.choose_segments(task, config.replays, validator_seed=11)
    return pol.verify(task, proof, lambda i: ckpts[i], segments, config)


@pytest.mark.parametrize(
    "env",
    [
        ExecutionEnv(1),
        ExecutionEnv(1, 4),
        ExecutionEnv(1, 5),
        # two threads: correct but very slow on an oversubscribed CI box (OpenMP spinning)
        pytest.param(ExecutionEnv(2, 4), marks=pytest.mark.slow),
    ],
)
def test_honest_training_replays_within_tolerance(task: TrainingTask, env: ExecutionEnv) -> None:
    report = _audit(task, Behaviour.HONEST, env)
    assert report.accepted, report.reason
    assert report.max_distance < pol.PoLConfig().rel_tolerance / 10  # a wide margin


def test_exact_mode_on_the_deterministic_path(task: TrainingTask) -> None:
    assert _audit(task, Behaviour.HONEST, config=pol.PoLConfig(exact=True)).accepted


@pytest.mark.parametrize(
    "behaviour",
    [Behaviour.SKIPPED_STEPS, Behaviour.PARTIAL_TRAINING, Behaviour.RANDOM_OUTPUT],
)
def test_cheating_trainers_fail_every_audit(task: TrainingTask, behaviour: Behaviour) -> None:
    for seed in range(5):  # whatever segments the validator draws
        ckpts = worker(2, behaviour=behaviour).train(task)
        proof = pol.commit(task, ckpts)
        segs = pol.choose_segments(task, 1, validator_seed=seed)
        assert not pol.verify(task, proof, lambda i, c=ckpts: c[i], segs).accepted


def test_stale_result_fails(task: TrainingTask, digits: tuple[torch.Tensor, torch.Tensor]) -> None:
    w = worker(3, behaviour=Behaviour.STALE_OUTPUT)
    w.train(task)
    x, y = digits
    other = TrainingTask(
        SPEC,
        task.params,
        x[256:512],
        y[256:512],
        steps=12,
        batch_size=16,
        lr=0.05,
        seed=8,
        checkpoint_every=3,
    )
    ckpts = w.train(other)
    segs = pol.choose_segments(other, 2, 0)
    assert not pol.verify(other, pol.commit(other, ckpts), lambda i: ckpts[i], segs).accepted


def test_opening_other_checkpoints_than_committed_is_caught(task: TrainingTask) -> None:
    ckpts = worker(4).train(task)
    proof = pol.commit(task, ckpts)
    report = pol.verify(task, proof, lambda i: ckpts[i] + 1e-3, [0])
    assert not report.accepted and report.checks[0].distance == float("inf")


def test_commitment_must_match_task(task: TrainingTask) -> None:
    ckpts = worker(5).train(task)
    proof = pol.commit(task, ckpts)
    forged = pol.PoLCommitment(proof.task_id, proof.checkpoint_hashes, proof.data_order_hash, 99)
    assert not pol.verify(task, forged, lambda i: ckpts[i], [0]).accepted
    assert pol.choose_segments(task, 2, 0)[-1] == task.segments - 1


# ------------------------------------------------ adaptive strategies (issue 15, finding 4)
@pytest.fixture(scope="module")
def long_task(trained: torch.Tensor, digits: tuple[torch.Tensor, torch.Tensor]) -> TrainingTask:
    x, y = digits
    return TrainingTask(SPEC, trained, x[:256], y[:256], steps=16, batch_size=8, lr=0.05,
                        seed=3, checkpoint_every=2)  # fmt: skip


def _caught(task: TrainingTask, behaviour: Behaviour, picks: list[list[int]]) -> list[bool]:
    ckpts = worker(2, behaviour=behaviour).train(task)
    proof = pol.commit(task, ckpts)
    return [not pol.verify(task, proof, lambda i: ckpts[i], s).accepted for s in picks]


def test_fixed_last_segment_lets_stop_early_honest_tail_escape(long_task: TrainingTask) -> None:
    """The old choice (the last segment always, plus random ones) is passed by a worker
    that trains the last segment honestly from an extrapolated checkpoint."""
    picks = [pol.choose_segments(long_task, 1, validator_seed=s) for s in range(12)]
    caught = _caught(long_task, Behaviour.STOP_EARLY_HONEST_TAIL, picks)
    assert 0 < sum(caught) < len(caught)
    fabricated = pol_fabricated(long_task, Behaviour.STOP_EARLY_HONEST_TAIL)
    assert all(c == bool(set(p) & fabricated) for c, p in zip(caught, picks, strict=True))


def pol_fabricated(task: TrainingTask, behaviour: Behaviour) -> set[int]:
    from deai.verification.tasks import fabricated_segments

    return set(fabricated_segments(behaviour, task.segments))


@pytest.mark.parametrize(
    "behaviour", [Behaviour.FABRICATE_ONE_SEGMENT, Behaviour.STOP_EARLY_HONEST_TAIL]
)
def test_secret_sampling_catches_exactly_when_a_fabricated_segment_is_drawn(
    long_task: TrainingTask, behaviour: Behaviour
) -> None:
    ckpts = worker(2, behaviour=behaviour).train(long_task)
    root = pol.commit(long_task, ckpts).root
    picks = [
        pol.choose_segments_secret(bytes([s]) * 32, root, long_task.segments, 3) for s in range(10)
    ]
    caught = _caught(long_task, behaviour, picks)
    fabricated = pol_fabricated(long_task, behaviour)
    assert caught == [bool(set(p) & fabricated) for p in picks]
    assert any(caught)


def test_replays_are_sized_to_make_one_fabricated_segment_unprofitable() -> None:
    from deai.verification.economics import expected_profit

    n, rate, fee, cost, stake = 8, 0.05, 1.25, 1.0, 30.0
    m = pol.replays_for(n, rate, fee, stake, cost)
    q = m / n  # P(a uniform m-subset of n segments covers the fabricated one)
    assert expected_profit(fee, cost * (1 - 1 / n), rate * q, stake) < 0
    assert m < n  # fewer replays than a full re-execution
    with pytest.raises(Exception, match="no number of replays"):
        pol.replays_for(n, 1e-6, fee, stake, cost)
