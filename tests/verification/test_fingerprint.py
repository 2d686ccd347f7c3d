from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from deai.errors import ConfigError, VerificationError
from deai.verification.fingerprint import (
    Fingerprint,
    FingerprintConfig,
    calibrate,
    distance,
    fingerprint,
    matches,
)
from deai.verification.tasks import Behaviour, ExecutionEnv, InferenceTask

from .conftest import SPEC, worker

HONEST_ENVS = [
    ExecutionEnv(1),
    ExecutionEnv(2),
    ExecutionEnv(1, 16),  # 4 x 16 instead of 64
    ExecutionEnv(2, 16),
    ExecutionEnv(1, 1),
    ExecutionEnv(2, 3),
]
CONFIG = FingerprintConfig()  # the default the benchmark calibrates against


@pytest.fixture(scope="module")
def honest_runs(
    trained: torch.Tensor, digits: tuple[torch.Tensor, torch.Tensor]
) -> tuple[InferenceTask, list[torch.Tensor]]:
    task = InferenceTask(SPEC, trained, digits[0][:64])
    return task, [worker(i, env=env).infer(task) for i, env in enumerate(HONEST_ENVS)]


def test_honest_variation_never_trips(
    honest_runs: tuple[InferenceTask, list[torch.Tensor]],
) -> None:
    _, runs = honest_runs
    fps = [fingerprint(r, CONFIG) for r in runs]
    for a in fps:
        for b in fps:
            assert matches(a, b, CONFIG)
    calibrated = calibrate(runs)
    assert calibrated.tolerance <= CONFIG.tolerance  # the default keeps a margin


@pytest.mark.parametrize(
    "behaviour",
    [
        Behaviour.QUANTIZED_MODEL,
        Behaviour.SMALLER_MODEL,
        Behaviour.RANDOM_OUTPUT,
        Behaviour.COLLUDE,
    ],
)
def test_cheap_substitutes_trip(
    honest_runs: tuple[InferenceTask, list[torch.Tensor]], behaviour: Behaviour
) -> None:
    task, runs = honest_runs
    fake = worker(99, behaviour=behaviour).infer(task)
    d = distance(fingerprint(fake, CONFIG), fingerprint(runs[0], CONFIG))
    assert d > 50 * CONFIG.tolerance


@settings(max_examples=60, deadline=None)
@given(
    seed=st.integers(0, 2**31),
    rows=st.integers(1, 6),
    classes=st.integers(2, 40),
    scale=st.floats(0.0, 1.0),
    tie=st.booleans(),
)
def test_perturbation_within_tolerance_always_matches(
    seed: int, rows: int, classes: int, scale: float, tie: bool
) -> None:
    """The guarantee: entrywise differences <= tolerance never trip, near-ties included."""
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(rows, classes, generator=gen, dtype=torch.float64) * 10
    if tie:  # put the top-k boundary on a near tie
        order = x.argsort(dim=1, descending=True)
        k = min(CONFIG.top_k, classes - 1)
        x.scatter_(1, order[:, k : k + 1], x.gather(1, order[:, k - 1 : k]))
    noise = torch.rand(rows, classes, generator=gen, dtype=torch.float64) * 2 - 1
    y = x + noise * CONFIG.tolerance * scale
    assert matches(fingerprint(x, CONFIG), fingerprint(y, CONFIG), CONFIG)


def test_a_difference_above_tolerance_trips() -> None:
    x = torch.tensor([[5.0, 4.0, 3.0, 2.0, 1.0, 0.0]])
    y = x.clone()
    y[0, 0] += 4 * CONFIG.tolerance
    assert not matches(fingerprint(x, CONFIG), fingerprint(y, CONFIG), CONFIG)


def test_bytes_roundtrip_and_malformed() -> None:
    fp = fingerprint(torch.randn(3, 10, generator=torch.Generator().manual_seed(1)), CONFIG)
    back = Fingerprint.from_bytes(fp.to_bytes())
    assert back.hash() == fp.hash() and distance(back, fp) == 0.0
    for bad in (fp.to_bytes()[:-1], b"junk", fp.to_bytes() + b"\x00"):
        with pytest.raises(VerificationError):
            Fingerprint.from_bytes(bad)
    with pytest.raises(VerificationError):
        fingerprint(torch.tensor([[float("nan"), 1.0]]), CONFIG)
    with pytest.raises(ConfigError):
        FingerprintConfig(top_k=0)
