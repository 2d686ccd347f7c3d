"""Spectral (Divide and Conquer) exclusion stages of the default rule: the backdoor minority
that nearest-neighbour mixing spreads before the trim (issue 16, finding 4's backdoor)."""

from __future__ import annotations

import pytest
import torch

from deai.aggregation import DefaultAggregator, DefaultConfig
from deai.aggregation.base import RoundContext
from deai.aggregation.default import spectral_outliers
from deai.errors import ConfigError
from deai.registry import aggregators

STAGES = ((0.1, None), (0.1, 0.1))  # the variant measured in robustness_spectral.json
N, D, TRIGGER = 50, 200, 8


def backdoor_stack(k: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Honest non-IID rows that leave the first ``TRIGGER`` coordinates (a trigger's
    pixels) almost unused, and ``k`` attackers (the last rows) adding a shared push there
    of 1.5 times the honest signal's norm: the shape of the benchmark's backdoor rows."""
    g = torch.Generator().manual_seed(seed)
    base = torch.randn(D, generator=g)
    base[:TRIGGER] = 0.0
    x = base + torch.randn(N, D, generator=g)
    x[:, :TRIGGER] = 0.02 * torch.randn(N, TRIGGER, generator=g)
    u = torch.zeros(D)
    u[:TRIGGER] = 1.0 / TRIGGER**0.5
    x[N - k :] += 1.5 * float(base.norm()) * u
    return x, u


def _run(x: torch.Tensor, cfg: DefaultConfig) -> tuple[float, set[int]]:
    ctx = RoundContext(senders=tuple(f"p{i}" for i in range(N)))
    a = DefaultAggregator(cfg)(x, torch.ones(N), ctx)
    u = torch.zeros(D, dtype=torch.float64)
    u[:TRIGGER] = 1.0 / TRIGGER**0.5
    return float(a.vector.double() @ u), set(a.excluded)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_default_passes_a_fifth_of_backdoor_rows_and_spectral_stages_exclude_them(
    seed: int,
) -> None:
    x, u = backdoor_stack(10, seed)
    plain = float(x.mean(0) @ u)  # what the plain mean would apply along the trigger
    leak, _ = _run(x, DefaultConfig())
    # the finding: the default applies 1-5 % of the mean's push along the trigger each
    # round (the mixing spreads it past the trim; server momentum then accumulates it)
    assert leak > 0.01 * plain
    leak_s, excluded = _run(x, DefaultConfig(spectral=STAGES))
    assert set(range(N - 10, N)) <= excluded  # every attacker row is out
    assert abs(leak_s) < 0.003 * plain


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_spectral_stages_exclude_a_tenth_of_backdoor_rows(seed: int) -> None:
    x, _ = backdoor_stack(5, seed)
    _, excluded = _run(x, DefaultConfig(spectral=STAGES))
    assert set(range(N - 5, N)) <= excluded
    assert len(excluded) == 2 * int(0.1 * N)  # each stage excludes its share, no more


def test_spectral_outliers_takes_the_top_projections_of_live_rows_only() -> None:
    x, _ = backdoor_stack(5, 0)
    w = torch.ones(N, dtype=torch.float64)
    w[-1] = 0.0  # an attacker already out: never counted again
    out = spectral_outliers(x.double(), w, 4)
    assert set(torch.nonzero(out).flatten().tolist()) == set(range(N - 5, N - 1))
    assert not spectral_outliers(x.double(), w, 0).any()
    assert not spectral_outliers(x[:3].double(), w[:3], 2).any()  # too few rows: no stage


def test_spectral_is_off_by_default_and_deterministic() -> None:
    assert DefaultConfig().spectral == ()
    x, _ = backdoor_stack(10, 0)
    a = DefaultAggregator(DefaultConfig(spectral=STAGES))
    b = DefaultAggregator(DefaultConfig(spectral=STAGES))
    ctx = RoundContext(senders=tuple(f"p{i}" for i in range(N)))
    assert torch.equal(a(x, torch.ones(N), ctx).vector, b(x, torch.ones(N), ctx).vector)


@pytest.mark.parametrize(
    "bad",
    [((0.5, None),), ((-0.1, None),), ((0.1, 0.0),), ((0.1, -1.0),), ((0.1,),), ((0.1, 1, 2),)],
)
def test_default_config_refuses_bad_spectral_stages(bad: object) -> None:
    with pytest.raises(ConfigError, match="spectral"):
        DefaultConfig(spectral=bad)  # type: ignore[arg-type]


def test_registry_builds_a_rule_in_a_fresh_interpreter() -> None:
    # before: `aggregators.build` as the first import of deai.job failed (circular import)
    import subprocess
    import sys

    code = "from deai.registry import aggregators; print(type(aggregators.build('default', {})))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "DefaultAggregator" in out.stdout


def test_spectral_stages_from_a_json_spec() -> None:
    agg = aggregators.build("default", {"spectral": [[0.1, None], [0.1, 0.1]]})
    assert agg.config.spectral == STAGES
    with pytest.raises(ConfigError, match=r"aggregator 'default'.*fraction must be in \[0, 0.5\)"):
        aggregators.validate_params("default", {"spectral": [[0.6, None]]})


def test_default_ranges_are_checked_when_the_spec_is_read() -> None:
    # before: trim_fraction 0.7 passed the spec and the validator refused the job later
    with pytest.raises(ConfigError, match=r"trim_fraction must be in \[0, 0.5\), got 0.7"):
        aggregators.validate_params("default", {"trim_fraction": 0.7})
