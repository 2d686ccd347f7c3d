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
