"""Shapley values of the within-round game: exact, truncated Monte-Carlo, GTG-Shapley.

The Shapley value (Shapley 1953) of player i in a game v over players N is

    φ_i = Σ_{S ⊆ N∖{i}} |S|! (n − |S| − 1)! / n! · (v(S ∪ {i}) − v(S)),

the only division of v(N) − v(∅) that is efficient, symmetric, gives nothing to null players
and is additive over games. Data Shapley (Ghorbani & Zou 2019, ICML) uses it to value data;
in a federated round the players are the submitted updates and v is
:class:`~deai.incentives.game.CoalitionUtility` (models reconstructed from updates, no
retraining, Liu et al. 2022).

* :func:`exact_shapley` enumerates all 2^n coalitions: the reference, affordable for n ≲ 16.
* :func:`tmc_shapley` is truncated Monte-Carlo Shapley (Ghorbani & Zou 2019, Alg. 1): sample
  permutations, walk each one adding players, and stop evaluating once the coalition's utility
  is within ``truncation_tol`` of v(N) (later marginals are taken as 0).
* :func:`gtg_shapley` is GTG-Shapley (Liu, Chen, Yu, Liu & Cui 2022, ACM TIST): the same
  within-round truncation, plus between-round truncation (a round whose total gain
  |v(N) − v(∅)| is below ``between_round_tol`` pays nobody and costs two evaluations) and guided
  sampling (every player is put first in turn, since the first marginals are the largest and
  noisiest; the rest of each permutation is random). A player's first-position marginal is
  always v({i}) − v(∅), so we evaluate the n singletons once and combine
  φ_i = (v({i}) − v(∅)) / n + (n − 1)/n · mean(sampled marginals of i at later positions).
  After whole cycles of n permutations this equals GTG's plain mean exactly; under an
  evaluation budget that stops mid-cycle it stays unbiased, where the plain mean would
  over-weight the players that happened to lead.

Determinism. All randomness comes from ``numpy.random.default_rng(seed)`` and marginals are
accumulated in a fixed order in float64, so the same game and seed give bit-identical values on
every validator (given a deterministic ``evaluate``). Truncation tolerances are relative to the
round's total gain |v(N) − v(∅)|, so they do not depend on the scale of the utility.

Cost. Measured in distinct utility evaluations (``game.evaluations``). A permutation costs at
most n − 1 new evaluations (v(∅) and v(N) are shared; n − 2 for GTG, whose singletons are
known), fewer with truncation and memo hits.
With ``max_evaluations`` an estimator starts a new permutation only if it cannot overrun the
budget, so the reported cost never exceeds it; permutations are never cut short, which would
bias the estimate towards early (large) marginals.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import Tensor

from deai.errors import ConfigError
from deai.incentives.game import CoalitionUtility


def exact_shapley(game: CoalitionUtility, *, max_players: int = 16) -> Tensor:
    """Exact Shapley values by enumerating all 2^n coalitions. Returns float64 ``Tensor[n]``."""
    n = game.n
    if n > max_players:
        raise ConfigError(
            f"exact Shapley over {n} players needs 2^{n} evaluations (max {max_players})"
        )
    values = np.array([game.value(mask) for mask in range(1 << n)], dtype=np.float64)  # [2^n]
    masks = np.arange(1 << n, dtype=np.int64)
    sizes = np.array([bin(m).count("1") for m in range(1 << n)], dtype=np.int64)  # |S|
    coef = np.array(
        [math.factorial(s) * math.factorial(n - s - 1) / math.factorial(n) for s in range(n)],
        dtype=np.float64,
    )  # [n] weight of a coalition of size s not containing i
    phi = np.zeros(n, dtype=np.float64)
    for i in range(n):
        without = masks[(masks >> i) & 1 == 0]  # [2^(n-1)] coalitions S with i ∉ S
        marginal = values[without | (1 << i)] - values[without]
        phi[i] = float(np.sum(coef[sizes[without]] * marginal))
    return torch.from_numpy(phi)


def _check_budget(game: CoalitionUtility, max_evaluations: int | None, guided: bool) -> None:
    need = 2 + game.n + max(game.n - 2, 0) if guided else 2 + (game.n - 1)
    if max_evaluations is not None and max_evaluations < need:
        raise ConfigError(
            f"max_evaluations={max_evaluations} cannot pay for one permutation of {game.n} "
            f"players (needs {need})"
        )


def _walk(
    game: CoalitionUtility,
    perm: np.ndarray,
    v_empty: float,
    v_full: float,
    tol_abs: float,
    out: np.ndarray,
) -> None:
    """Marginals of one permutation into ``out`` (Ghorbani & Zou 2019, Alg. 1, inner loop)."""
    mask = 0
    prev = v_empty
    for i in perm:
        if abs(v_full - prev) < tol_abs:  # truncation: the rest adds (almost) nothing
            out[i] = 0.0
            continue
        mask |= 1 << int(i)
        v = game.value(mask)
        out[i] = v - prev
        prev = v


def _relative_change(current: np.ndarray, past: np.ndarray) -> float:
    scale = float(np.mean(np.abs(current)))
    if scale == 0.0:
        return 0.0
    return float(np.mean(np.abs(current - past))) / scale


def _monte_carlo(
    game: CoalitionUtility,
    *,
    seed: int,
    max_permutations: int,
    truncation_tol: float,
    convergence_tol: float,
    max_evaluations: int | None,
    guided: bool,
) -> Tensor:
    if max_permutations < 1:
        raise ConfigError(f"max_permutations must be >= 1, got {max_permutations}")
    if truncation_tol < 0.0 or convergence_tol < 0.0:
        raise ConfigError("truncation_tol and convergence_tol must be >= 0")
    n = game.n
    _check_budget(game, max_evaluations, guided)
    rng = np.random.default_rng(seed)
    v_empty, v_full = game.empty(), game.grand()
    tol_abs = truncation_tol * abs(v_full - v_empty)
    first_order = rng.permutation(n)  # guided sampling: who goes first, in turn
    # Guided: the first-position marginal of i is always v({i}) − v(∅), so it is computed once
    # for everyone and weighted 1/n; sampled marginals then only estimate positions 2..n.
    lead = np.array([game.value(1 << i) - v_empty for i in range(n)]) if guided else None
    per_perm = n - 2 if guided else n - 1  # worst-case new evaluations of one permutation
    total = np.zeros(n, dtype=np.float64)  # sum of sampled marginals
    count = np.zeros(n, dtype=np.float64)  # number of sampled marginals
    marg = np.zeros(n, dtype=np.float64)
    snapshot = np.zeros(n, dtype=np.float64)
    for t in range(max_permutations):
        if max_evaluations is not None and game.evaluations + per_perm > max_evaluations:
            break
        if guided:
            head = int(first_order[t % n])
            rest = rng.permutation(np.delete(np.arange(n), head))
            perm = np.concatenate(([head], rest))
        else:
            head = -1
            perm = rng.permutation(n)
        _walk(game, perm, v_empty, v_full, tol_abs, marg)
        sampled = np.arange(n) != head
        total += np.where(sampled, marg, 0.0)
        count += sampled
        if (t + 1) % n == 0:  # convergence is checked once per cycle of n permutations
            estimate = _combine(total, count, lead)
            if t + 1 > n and _relative_change(estimate, snapshot) < convergence_tol:
                break
            snapshot = estimate
    return torch.from_numpy(_combine(total, count, lead))


def _combine(total: np.ndarray, count: np.ndarray, lead: np.ndarray | None) -> np.ndarray:
    """Mean sampled marginal; with guided sampling, stratified over first / later positions."""
    sampled = np.divide(total, count, out=np.zeros_like(total), where=count > 0)
    if lead is None:
        return sampled
    n = len(total)
    later = np.where(count > 0, sampled, lead)  # no later sample yet: fall back to the lead
    return (lead + (n - 1) * later) / n


def tmc_shapley(
    game: CoalitionUtility,
    *,
    seed: int,
    max_permutations: int = 200,
    truncation_tol: float = 0.01,
    convergence_tol: float = 0.01,
    max_evaluations: int | None = None,
) -> Tensor:
    """Truncated Monte-Carlo Shapley (Ghorbani & Zou 2019). Returns float64 ``Tensor[n]``.

    Permutations are uniform. Stops at ``max_permutations``, when the budget cannot pay for
    another permutation, or when the mean relative change of the estimate over the last n
    permutations falls below ``convergence_tol``.
    """
    return _monte_carlo(
        game,
        seed=seed,
        max_permutations=max_permutations,
        truncation_tol=truncation_tol,
        convergence_tol=convergence_tol,
        max_evaluations=max_evaluations,
        guided=False,
    )


def gtg_shapley(
    game: CoalitionUtility,
    *,
    seed: int,
    max_permutations: int = 200,
    truncation_tol: float = 0.01,
    between_round_tol: float = 0.0,
    convergence_tol: float = 0.01,
    max_evaluations: int | None = None,
) -> Tensor:
    """GTG-Shapley (Liu et al. 2022). Returns float64 ``Tensor[n]``.

    Between-round truncation: if |v(N) − v(∅)| <= ``between_round_tol`` the round changed
    nothing worth paying for and every value is 0 (cost: 2 evaluations). Otherwise truncated
    Monte-Carlo with guided sampling: permutation t puts player ``order[t mod n]`` first, for a
    seeded random ``order``, and the first-position stratum is computed exactly (n singleton
    evaluations up front; see the module docstring).
    """
    if between_round_tol < 0.0:
        raise ConfigError(f"between_round_tol must be >= 0, got {between_round_tol}")
    if abs(game.grand() - game.empty()) <= between_round_tol:
        return torch.zeros(game.n, dtype=torch.float64)
    return _monte_carlo(
        game,
        seed=seed,
        max_permutations=max_permutations,
        truncation_tol=truncation_tol,
        convergence_tol=convergence_tol,
        max_evaluations=max_evaluations,
        guided=True,
    )
