"""Issue 16's attack findings, each reproduced: these failed before the fixes."""

from __future__ import annotations

import pytest
import torch

from deai.aggregation import AggregatorConfig, DefaultAggregator, DefaultConfig
from deai.attacks import AttackName, AttackSpec, apply_update_attack
from deai.attacks.byzantine import Perturbation, SumBound, adaptive, min_sum
from deai.attacks.data import Corner
from deai.errors import ConfigError


def _heterogeneous(seed: int = 0, n: int = 20, d: int = 30) -> torch.Tensor:
    """Honest rows from 4 clusters (non-IID clients) around a common drift."""
    g = torch.Generator().manual_seed(seed)
    drift = torch.randn(d, generator=g)
    modes = 2.0 * torch.randn(4, d, generator=g)
    return drift + modes[torch.arange(n) % 4] + 0.3 * torch.randn(n, d, generator=g)


def test_min_sum_largest_bound_is_at_least_the_authors_smallest() -> None:
    h = _heterogeneous(1)
    mu = h.mean(dim=0)
    far = {
        b: float((min_sum(h, 1, Perturbation.UNIT_VECTOR, bound=b)[0] - mu).norm())
        for b in SumBound
    }
    assert far[SumBound.LARGEST] > far[SumBound.SMALLEST] > 0.0


def test_min_sum_bound_is_a_spec_choice() -> None:
    spec = AttackSpec(AttackName.MIN_SUM, {"bound": "smallest", "perturbation": "sign"})
    assert spec.text("bound") == "smallest"
    with pytest.raises(ConfigError):
        AttackSpec(AttackName.MIN_SUM, {"bound": "median"})


def test_backdoor_boost_divides_by_the_server_rate() -> None:
    """Finding 4: the model-replacement boost ignored ``server_lr``."""
    own = torch.ones(3)
    g = torch.Generator().manual_seed(0)
    spec = AttackSpec(AttackName.BACKDOOR)
    at1 = apply_update_attack(spec, own, torch.zeros(0, 3), 10, 2, g)
    at_half = apply_update_attack(spec, own, torch.zeros(0, 3), 10, 2, g, server_lr=0.5)
    assert torch.allclose(at1[0], torch.full((3,), 5.0))
    assert torch.allclose(at_half[0], torch.full((3,), 10.0))


def test_adaptive_attack_beats_the_mean_direction_against_its_target() -> None:
    """The tailored attack searches its scale against the rule it attacks: it moves that rule
    at least as far as any fixed grid scale the search tried, and further than sending mu."""
    h = _heterogeneous(2)
    mu = h.mean(dim=0)

    def rule(rows: torch.Tensor) -> torch.Tensor:
        return DefaultAggregator(DefaultConfig(sybil_threshold=None))(
            rows, torch.ones(rows.shape[0])
        ).vector

    row = adaptive(h, 4, rule)[0]
    dev = float((rule(torch.cat([h, row.repeat(4, 1)])) - mu).norm())
    base = float((rule(torch.cat([h, mu.repeat(4, 1)])) - mu).norm())
    assert dev > base
    for gamma in (0.1, 1.0, 10.0):
        p = -mu / mu.norm()
        other = float((rule(torch.cat([h, (mu + gamma * mu.norm() * p).repeat(4, 1)])) - mu).norm())
        assert dev >= other - 1e-9


def test_adaptive_attack_needs_its_target() -> None:
    with pytest.raises(ValueError, match="defence"):
        apply_update_attack(
            AttackSpec(AttackName.ADAPTIVE),
            torch.ones(3),
            torch.ones(4, 3),
            6,
            2,
            torch.Generator().manual_seed(0),
        )


def test_measured_trigger_is_the_attackers_corner() -> None:
    """Finding 4: the runner measured backdoor success with the bottom-right trigger
    whatever corner the attackers stamped."""
    from deai.sim.runner import _trigger, plan
    from deai.sim.scenario import parse_scenario

    s = parse_scenario(
        {
            "name": "corner",
            "rounds": 1,
            "aggregation": {"rule": "mean"},
            "simulation": {
                "data": {"dataset": "digits", "partition": "iid"},
                "nodes": [
                    {"role": "provider", "count": 3},
                    {
                        "role": "provider",
                        "count": 1,
                        "attack": "backdoor",
                        "attack_params": {"corner": "top_left"},
                    },
                    {"role": "validator", "count": 1},
                ],
            },
        }
    )
    trigger = _trigger(plan(s))
    assert trigger is not None and trigger.corner is Corner.TOP_LEFT


@pytest.mark.parametrize("f", [2.5, True, "2"])
def test_non_integral_f_is_a_config_error(f: object) -> None:
    """Finding 4: ``f=2.5`` raised a TypeError later and ``f=True`` passed as 1."""
    with pytest.raises(ConfigError, match="integer"):
        AggregatorConfig(f=f)  # type: ignore[arg-type]
