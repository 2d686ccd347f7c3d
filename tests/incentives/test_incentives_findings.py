"""Issue 16's incentive findings, each reproduced, and the fixes."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from deai.incentives import CoalitionUtility, exact_shapley, gtg_shapley, leave_one_out
from deai.incentives.valuation import balanced_utility, duplicate_groups, grouped_values


def _target_game(updates: torch.Tensor, weights: torch.Tensor) -> CoalitionUtility:
    target = torch.ones(updates.shape[1])

    def utility(params: torch.Tensor) -> float:
        return -float(((params - target) ** 2).sum())

    return CoalitionUtility(torch.zeros(updates.shape[1]), updates, weights, utility)


def _honest(n: int = 4, d: int = 6, seed: int = 0, noise: float = 0.6) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.ones(d) + noise * torch.randn(n, d, generator=g)


def _share(values: torch.Tensor, idx: list[int]) -> float:
    pos = values.clamp(min=0.0)
    return float(pos[idx].sum() / pos.sum())


def test_sybil_copy_gains_under_plain_shapley_but_not_when_grouped() -> None:
    """Finding 5: the same update from two identities raised the Sybil's Shapley share."""
    for seed in range(3):
        h = _honest(seed=seed)
        solo = _share(exact_shapley(_target_game(h, torch.ones(4))), [0])
        twice = torch.cat([h, h[:1]])
        plain = _share(exact_shapley(_target_game(twice, torch.ones(5))), [0, 4])
        assert plain > solo * 1.05  # the finding
        groups = duplicate_groups(twice)
        assert [0, 4] in groups
        vals, _ = grouped_values(_target_game, twice, torch.ones(5), groups, exact_shapley)
        assert _share(vals, [0, 4]) <= solo + 1e-9  # the fix: no gain


def test_inflated_claims_buy_nothing_with_equal_game_weights() -> None:
    h = _honest(seed=4)
    solo = _share(exact_shapley(_target_game(h, torch.ones(4))), [0])
    twice = torch.cat([h, h[:1]])
    inflated = torch.tensor([1.0, 1.0, 1.0, 1.0, 5.0])
    plain = _share(exact_shapley(_target_game(twice, inflated)), [0, 4])
    assert plain > solo * 1.05
    ones = torch.ones(5)  # the payout game ignores claims under the default rule
    vals, _ = grouped_values(_target_game, twice, ones, duplicate_groups(twice), exact_shapley)
    assert _share(vals, [0, 4]) <= solo + 1e-9


def test_copier_pair_earns_no_more_than_the_victim_alone() -> None:
    """Finding 6: a near-copy of provider 0's update was paid like its victim."""
    h = _honest(seed=5)
    solo = _share(exact_shapley(_target_game(h, torch.ones(4))), [0])
    copier = h[0] + 0.01 * torch.randn(6, generator=torch.Generator().manual_seed(9))
    both = torch.cat([h, copier.unsqueeze(0)])
    groups = duplicate_groups(both)
    assert [0, 4] in groups
    vals, _ = grouped_values(_target_game, both, torch.ones(5), groups, exact_shapley)
    assert _share(vals, [0, 4]) <= solo * 1.01


def test_distinct_honest_updates_stay_separate_players() -> None:
    assert duplicate_groups(_honest(8, 20, seed=1)) == [[i] for i in range(8)]


def test_loo_is_winner_takes_all_where_shapley_shares() -> None:
    """Finding 7: in an all-honest round LOO paid most of the budget to one provider. Eight
    providers with the same data quality and different sizes: the marginal of any one given
    all others is tiny, so LOO's positive part is noise that lands on a few."""
    sizes = torch.tensor([100.0, 40, 30, 20, 15, 10, 10, 10])
    for seed in range(3):
        g = torch.Generator().manual_seed(seed)
        updates = torch.ones(8, 6) + torch.randn(8, 6, generator=g) / sizes.sqrt().unsqueeze(1)
        game = _target_game(updates, sizes)
        top = {
            "loo": max(_share(leave_one_out(game), [i]) for i in range(8)),
            "exact": max(_share(exact_shapley(game), [i]) for i in range(8)),
            "gtg": max(_share(gtg_shapley(game, seed=0), [i]) for i in range(8)),
        }
        assert top["loo"] >= 0.35  # the finding
        assert top["exact"] <= 0.2 and top["gtg"] <= 0.2


def _linear(params: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    return x @ params.reshape(x.shape[1], -1)


def test_rare_class_provider_is_paid_under_the_balanced_utility() -> None:
    """Finding 7: the only holder of a class was paid 0, as plain accuracy hardly moves when
    that class is 5% of the validation data. The class-balanced loss credits it."""
    g = torch.Generator().manual_seed(0)
    means = torch.tensor([[2.0, 0.0], [0.0, 2.0], [-2.0, -2.0]])
    y_val = torch.tensor([0] * 19 + [1] * 19 + [2] * 2)
    x_val = means[y_val] + 0.5 * torch.randn(40, 2, generator=g)
    start = torch.zeros(6)

    def step(y: torch.Tensor) -> torch.Tensor:  # one gradient step on a provider's data
        x = means[y] + 0.5 * torch.randn(len(y), 2, generator=g)
        p = start.clone().requires_grad_(True)
        F.cross_entropy(_linear(p, x), y).backward()
        assert p.grad is not None
        return -1.0 * p.grad

    updates = torch.stack(
        [step(torch.tensor([0, 1] * 10)) for _ in range(3)] + [step(torch.tensor([2] * 20))]
    )

    def accuracy(params: torch.Tensor) -> float:
        return float((_linear(params, x_val).argmax(1) == y_val).float().mean())

    ones = torch.ones(4)
    plain = exact_shapley(CoalitionUtility(start, updates, ones, accuracy))
    balanced = exact_shapley(
        CoalitionUtility(start, updates, ones, balanced_utility(_linear, x_val, y_val))
    )
    assert _share(balanced, [3]) > 0.1
    assert _share(balanced, [3]) > _share(plain, [3])
