"""Execution profiles and the whole-output lane fingerprint (issue 15, finding 3).

Reproduced first: an honest TF32 worker lands far outside a tolerance calibrated on fp32
kernels; calibrating across profiles instead admits int8 weights; the top-5 fingerprint
passes an output with four garbage columns. Then the defence: comparison within a
profile, a tolerance per profile, lanes over the whole output."""

from __future__ import annotations

import pytest
import torch

from deai.verification import profiles as prof
from deai.verification.fingerprint import (
    LaneConfig,
    calibrate,
    calibrate_lanes,
    fingerprint,
    lanes_match,
    lanes_of,
    matches,
    project_tasks,
)
from deai.verification.profiles import Cheat, Profile

from .conftest import SPEC

TASKS, ROWS = 80, 16
ENVS = prof.HONEST_ENVS


@pytest.fixture(scope="module")
def inputs(digits: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
    x, _ = digits
    return x[512 : 512 + TASKS * ROWS]


def _ids(n: int, salt: int = 0) -> list[bytes]:
    return [(salt * 10**6 + i).to_bytes(32, "big") for i in range(n)]


def _lanes(trained: torch.Tensor, inputs: torch.Tensor, p: Profile, env: prof.KernelEnv,
           cheat: Cheat | None = None) -> torch.Tensor:  # fmt: skip
    out = prof.forward_many(SPEC, trained, inputs, p, env, cheat).reshape(TASKS, ROWS, -1)
    return project_tasks(out, _ids(TASKS))


def _config(
    trained: torch.Tensor, inputs: torch.Tensor, p: Profile
) -> tuple[LaneConfig, torch.Tensor]:
    runs = [_lanes(trained, inputs, p, e) for e in ENVS]
    diffs = torch.stack([(r - runs[0]).abs().amax(1) for r in runs[1:]])
    return calibrate_lanes(diffs), runs[0]


def _caught(ref: torch.Tensor, other: torch.Tensor, cfg: LaneConfig) -> float:
    a, b = torch.round(ref / cfg.step), torch.round(other / cfg.step)
    return float(((a - b).abs().amax(1) > cfg.tolerance_lanes).double().mean())


def test_tf32_honest_fails_an_fp32_calibrated_tolerance(
    trained: torch.Tensor, inputs: torch.Tensor
) -> None:
    cfg, ref = _config(trained, inputs, Profile.FP32)
    tf32 = _lanes(trained, inputs, Profile.TF32, ENVS[1])
    assert _caught(ref, tf32, cfg) > 0.9  # the old single-class check slashes honest TF32
    tf_cfg, tf_ref = _config(trained, inputs, Profile.TF32)
    assert _caught(tf_ref, tf32, tf_cfg) == 0.0  # compared within its profile: accepted


def test_cross_profile_tolerance_admits_int8_per_profile_does_not(
    trained: torch.Tensor, inputs: torch.Tensor
) -> None:
    _, ref = _config(trained, inputs, Profile.FP32)
    mixed = torch.stack(
        [(_lanes(trained, inputs, p, ENVS[0]) - ref).abs().amax(1) for p in Profile]
    )
    loose = calibrate_lanes(mixed)  # one tolerance for every kind of hardware
    int8 = _lanes(trained, inputs, Profile.FP32, ENVS[1], Cheat.INT8)
    assert _caught(ref, int8, loose) < 0.5
    cfg, _ = _config(trained, inputs, Profile.FP32)
    assert _caught(ref, int8, cfg) == 1.0


def test_top5_fingerprint_passes_garbage_columns_lanes_do_not(
    trained: torch.Tensor, inputs: torch.Tensor
) -> None:
    x = inputs[:ROWS]
    honest = [prof.forward(SPEC, trained, x, Profile.FP32, e) for e in ENVS]
    old = calibrate(honest, top_k=5)
    # exact values in six columns (the top five among them), garbage in the other four
    low = honest[0].argsort(dim=1)[:, :4]
    forged = honest[1].clone()
    fifth = honest[0].topk(5, dim=1).values[:, -1:]
    forged.scatter_(1, low, fifth - 1.0 - torch.rand(low.shape, dtype=forged.dtype) * 9)
    assert matches(fingerprint(honest[0], old), fingerprint(forged, old), old)
    cfg = LaneConfig(step=2.0**-20, tolerance=2.0**-17)
    assert not lanes_match(lanes_of(honest[0], b"t", cfg), lanes_of(forged, b"t", cfg), cfg)
    assert lanes_match(lanes_of(honest[0], b"t", cfg), lanes_of(honest[1], b"t", cfg), cfg)


@pytest.mark.parametrize("profile", [Profile.FP32, Profile.TF32, Profile.FP16])
def test_each_profile_catches_its_cheats(
    trained: torch.Tensor, inputs: torch.Tensor, profile: Profile
) -> None:
    cfg, ref = _config(trained, inputs, profile)
    honest = _lanes(trained, inputs, profile, prof.KernelEnv(2))  # a kernel not calibrated on
    assert _caught(ref, honest, cfg) == 0.0
    for cheat in Cheat:
        other = _lanes(trained, inputs, profile, ENVS[1], cheat)
        assert _caught(ref, other, cfg) >= 0.95, cheat


def test_bf16_catches_partial_and_random_output(
    trained: torch.Tensor, inputs: torch.Tensor
) -> None:
    """bf16's own rounding is as coarse as int8 weights on this model: the benchmark
    reports how often int8 and pruning pass there; partial and random output never do."""
    cfg, ref = _config(trained, inputs, Profile.BF16)
    for cheat in (Cheat.PARTIAL, Cheat.RANDOM):
        assert _caught(ref, _lanes(trained, inputs, Profile.BF16, ENVS[1], cheat), cfg) == 1.0


def test_round_mantissa_keeps_the_given_bits() -> None:
    x = torch.tensor([1.0 + 2.0**-11, 1.0 + 2.0**-9, -3.0], dtype=torch.float64)
    r = prof.round_mantissa(x, 10)
    assert r.tolist() == [1.0, 1.0 + 2.0**-9, -3.0]
