"""Shared fixtures of the verification tests: the digits data and a briefly trained MLP."""

from __future__ import annotations

import pytest
import torch
from sklearn.datasets import load_digits

from deai.verification.tasks import ExecutionEnv, ModelSpec, TrainingTask, Worker, train_steps

SPEC = ModelSpec()


@pytest.fixture(scope="session")
def digits() -> tuple[torch.Tensor, torch.Tensor]:
    d = load_digits()
    return torch.tensor(d.data / 16, dtype=torch.float32), torch.tensor(d.target)


@pytest.fixture(scope="session")
def trained(digits: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
    """Flat parameters of an MLP trained for 150 SGD steps (about 90 % test accuracy)."""
    x, y = digits
    task = TrainingTask(
        SPEC,
        SPEC.init_params(0),
        x[:512],
        y[:512],
        steps=150,
        batch_size=32,
        lr=0.5,
        checkpoint_every=10,
    )
    return train_steps(task, task.params, 0, task.steps, ExecutionEnv())


def address(i: int) -> str:
    return "0x" + f"{i:040x}"


def worker(i: int, **kwargs: object) -> Worker:
    return Worker(address(i), secret=f"w{i}".encode(), **kwargs)  # type: ignore[arg-type]
