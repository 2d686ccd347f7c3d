"""Game-proof valuation of one round's updates: near-duplicates are one player, and the
utility credits class coverage.

* :func:`duplicate_groups`: updates whose cosine similarity is at least ``threshold`` are
  one player (transitively). A Sybil that submits its update from a second identity, with
  an inflated example claim or not, and a copier whose update repeats another's, then
  share the value one player would earn instead of each earning it: copying gains nothing.
* :func:`grouped_values`: run any evaluator on the game whose players are the groups (a
  group plays as its first member, in draw order, alone: its update and its weight; a
  copy adds no data, and neither does a larger claim on the copy or the mean of two
  training orders) and split each group's value equally among its members. A copier
  therefore takes half of its victim's value and the pair earns what the victim alone
  would (issue 16, finding 6).
* :func:`applied_values`: the game of the aggregate that was applied: the rows the
  aggregator excluded are not players (the model never saw them; their presence let a
  noise free-rider "dilute" an excluded sign flipper into a positive value) and get 0,
  the rest play with the weights the aggregator gave them (claims capped at its
  ``weight_cap`` times the median: :func:`capped_claims`, the median over the players).
  Splitting one dataset across identities then splits its weight too, instead of
  multiplying its vote.
* :func:`balanced_utility`: ``-(1/K) sum_c CE_c``, the mean over the validation classes
  present of each class's mean cross-entropy. Plain accuracy or loss weights a class by its
  share of the validation data, so a provider holding the only examples of a rare class
  moves it by little; here every class counts ``1/K``, so covering a missing class pays.

Threat model: the adversary controls any number of identities and their updates. Splitting
one dataset into parts (each a worse update) is measured by the benchmark
(``sybil_gain_max``); exact and near-exact copies are merged here.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from deai.aggregation.default import capped_claims
from deai.aggregation.norm_bounding import clip_norms, median_norm
from deai.errors import ConfigError
from deai.incentives.game import CoalitionUtility


def duplicate_groups(updates: Tensor, threshold: float = 0.99) -> list[list[int]]:
    """Groups of row indices (ascending, groups ordered by their first index) whose pairwise
    cosine similarity, taken transitively, is at least ``threshold``. Zero rows are their
    own group each (they carry no direction)."""
    if not -1.0 <= threshold <= 1.0:
        raise ConfigError(f"duplicate threshold must be in [-1, 1], got {threshold}")
    x = updates.to(torch.float64)
    n = x.shape[0]
    norms = torch.linalg.vector_norm(x, dim=1)
    unit = x / norms.clamp(min=1e-300).unsqueeze(1)
    cos = unit @ unit.T  # [n, n]
    parent = list(range(n))

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for i in range(n):
        for j in range(i + 1, n):
            if norms[i] > 0 and norms[j] > 0 and float(cos[i, j]) >= threshold:
                parent[max(root(i), root(j))] = min(root(i), root(j))
    groups: dict[int, list[int]] = {}
    for i in range(n):
        groups.setdefault(root(i), []).append(i)
    return [groups[k] for k in sorted(groups)]


def grouped_values(
    game_for: Callable[[Tensor, Tensor], CoalitionUtility],
    updates: Tensor,
    weights: Tensor,
    groups: Sequence[Sequence[int]],
    evaluate: Callable[[CoalitionUtility], Tensor],
    cap: float | None = None,
    clip: float | None = None,
) -> tuple[Tensor, int]:
    """Per-row values (float64 ``[n]``) from the game over the groups (each playing as its
    first member alone), each group's value split equally among its members; and the
    evaluations spent. ``cap``: the players' weights are capped at ``cap`` times their
    median (:func:`capped_claims`), taken over the players, so a copy's claim cannot lift
    the median and with it the cap of its victim. ``clip``: the players' updates are
    clipped to ``clip`` times their median norm (the default rule's norm bound, taken over
    the players for the same reason: a copy's norm would lift its victim's bound)."""
    first = [g[0] for g in groups]
    reps = updates[first]  # [G, d]
    if clip is not None:
        reps = clip_norms(reps, clip * median_norm(reps)).to(updates.dtype)
    w = weights[first] if cap is None else capped_claims(weights[first], cap)  # [G]
    game = game_for(reps, w)
    per_group = evaluate(game)
    out = torch.zeros(updates.shape[0], dtype=torch.float64)
    for value, g in zip(per_group.tolist(), groups, strict=True):
        for i in g:
            out[i] = value / len(g)
    return out, game.evaluations


def balanced_utility(
    forward: Callable[[Tensor, Tensor], Tensor], x: Tensor, y: Tensor
) -> Callable[[Tensor], float]:
    """``params -> -(1/K) sum_c mean CE over class c`` on the validation data ``(x, y)``."""
    classes, inverse, counts = torch.unique(y, return_inverse=True, return_counts=True)
    if classes.numel() == 0:
        raise ConfigError("the class-balanced utility needs validation examples")

    def utility(params: Tensor) -> float:
        with torch.no_grad():
            per = F.cross_entropy(forward(params, x), y, reduction="none")
            sums = torch.zeros(len(classes), dtype=per.dtype).index_add_(0, inverse, per)
            return -float((sums / counts.to(per.dtype)).mean())

    return utility


def applied_values(
    game_for: Callable[[Tensor, Tensor], CoalitionUtility],
    updates: Tensor,
    weights: Tensor,
    excluded: Sequence[int],
    evaluate: Callable[[CoalitionUtility], Tensor],
    threshold: float = 0.99,
    cap: float | None = None,
    clip: float | None = None,
) -> tuple[Tensor, int, int]:
    """Per-row values (float64 ``[n]``) in the game of the rows the aggregate applied:
    rows in ``excluded`` are no players and get 0; near-duplicates among the rest are one
    player (:func:`grouped_values`, its weights capped at ``cap`` times the players'
    median); with ``clip`` every player plays clipped to ``clip`` times the players' median
    norm, as the default rule's norm bound applies it (a boosted update is valued as its
    clipped self). Also the evaluations spent and how many rows were merged as
    near-duplicates."""
    out = torch.zeros(updates.shape[0], dtype=torch.float64)
    gone = set(excluded)
    keep = [i for i in range(updates.shape[0]) if i not in gone]
    if not keep:
        return out, 0, 0
    index = torch.tensor(keep, dtype=torch.long)
    sub = updates[index]
    groups = duplicate_groups(sub, threshold)
    values, evaluations = grouped_values(game_for, sub, weights[index], groups, evaluate, cap, clip)
    out[index] = values
    return out, evaluations, sum(len(g) for g in groups if len(g) > 1)
