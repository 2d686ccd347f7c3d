"""Update-level (model-poisoning) attacks: the attacker chooses the update it sends.

Every function returns ``Tensor[k, d]``, the ``k`` malicious rows. "Omniscient" attacks get
``honest: Tensor[m, d]``, the honest updates the attacker knows: in the papers these are
either all benign updates of the round (the strongest assumption) or the benign updates the
colluding attackers computed on their own clean data (a realistic estimate). The simulation
may pass either; the docstring of each function says which the paper assumed.
"""

from __future__ import annotations

from collections.abc import Callable
from enum import StrEnum
from statistics import NormalDist

import torch
from torch import Tensor

from deai.errors import ConfigError, DeaiError


class AttackError(DeaiError, ValueError):
    """An attack was given inputs it cannot work with (no honest updates, bad shapes)."""


def _honest(honest: Tensor) -> Tensor:
    if honest.ndim != 2 or honest.shape[0] == 0:
        raise AttackError(
            f"need at least one known honest update [m, d], got {tuple(honest.shape)}"
        )
    return honest


def _rows(v: Tensor, k: int) -> Tensor:
    if k < 1:
        raise ConfigError(f"need at least one malicious row, got {k}")
    return v.unsqueeze(0).repeat(k, 1)


def sign_flip(update: Tensor, k: int = 1, scale: float = 1.0) -> Tensor:
    """Sign flipping: send ``-scale`` times one's honestly computed update (Damaskinos et al.
    2018; Li et al., AAAI 2019 "RSA"). Knows only its own update."""
    return _rows(-scale * update, k)


def gaussian(
    dim: int, k: int, sigma: float, gen: torch.Generator, dtype: torch.dtype = torch.float32
) -> Tensor:
    """Gaussian attack: rows drawn from ``N(0, sigma^2 I)`` (Blanchard et al., NeurIPS 2017;
    Fang et al. 2020). Knows nothing."""
    if k < 1 or sigma < 0.0:
        raise ConfigError(f"gaussian attack needs k >= 1 and sigma >= 0; got {k}, {sigma}")
    return sigma * torch.randn(k, dim, generator=gen, dtype=dtype)


def alie_z_max(n_total: int, n_malicious: int) -> float:
    """ALIE's ``z_max``: ``s = floor(n / 2 + 1) - f`` honest rows must be won over, so
    ``z_max = Phi^{-1}((n - s) / n)`` (Baruch, Baruch, Goldberg, NeurIPS 2019, Sec. 3)."""
    s = n_total // 2 + 1 - n_malicious
    if n_total < 2 or n_malicious < 1 or s < 1:
        raise ConfigError(
            f"ALIE needs n >= 2 and 1 <= f <= n // 2; got n={n_total}, f={n_malicious}"
        )
    return NormalDist().inv_cdf((n_total - s) / n_total)


def alie(honest: Tensor, n_total: int, n_malicious: int, z: float | None = None) -> Tensor:
    """ "A little is enough" (Baruch et al., NeurIPS 2019): every attacker sends
    ``mu - z sigma`` per coordinate (honest mean and standard deviation), small enough to stay
    inside the honest spread per coordinate, so median, trimmed mean and Krum keep it, yet
    consistently biased. ``z`` defaults to :func:`alie_z_max`. The paper's attackers estimate
    ``mu, sigma`` from their own benign updates; the strongest variant uses all honest ones."""
    h = _honest(honest)
    zz = alie_z_max(n_total, n_malicious) if z is None else z
    mu = h.mean(dim=0)
    sigma = h.std(dim=0, correction=0)
    return _rows(mu - zz * sigma, n_malicious)


def ipm(honest: Tensor, eps: float, k: int = 1) -> Tensor:
    """Inner-product manipulation (Xie, Koyejo, Gupta, UAI 2019, "Fall of empires"): send
    ``-eps`` times the honest mean so the aggregate's inner product with the true gradient
    turns negative. Small ``eps`` (0.1) targets median / Krum; large ``eps`` the mean. Knows
    the honest updates."""
    if not eps > 0.0:
        raise ConfigError(f"IPM needs eps > 0, got {eps}")
    return _rows(-eps * _honest(honest).mean(dim=0), k)


class Perturbation(StrEnum):
    """Shejwalkar & Houmansadr's perturbation directions ``p``."""

    UNIT_VECTOR = "unit_vector"  # -mu / ||mu||
    STD = "std"  # -sigma (coordinate-wise standard deviation)
    SIGN = "sign"  # -sign(mu)


def perturbation_vector(honest: Tensor, kind: Perturbation) -> Tensor:
    h = _honest(honest).to(torch.float64)
    mu = h.mean(dim=0)
    match Perturbation(kind):
        case Perturbation.UNIT_VECTOR:
            norm = torch.linalg.vector_norm(mu)
            return -mu / norm if float(norm) > 0 else torch.zeros_like(mu)
        case Perturbation.STD:
            return -h.std(dim=0, correction=0)
        case Perturbation.SIGN:
            return -torch.sign(mu)


def gamma_search(
    feasible: Callable[[float], bool], gamma_init: float = 10.0, tol: float = 1e-5
) -> float:
    """The largest ``gamma >= 0`` with ``feasible(gamma)``, by halving steps as in Shejwalkar &
    Houmansadr's Algorithm 1, to relative precision ``tol``.

    The paper moves ``gamma`` by halving steps around ``gamma_init`` and so only explores
    ``[gamma_init / 2, 3 gamma_init / 2]`` (and never stops when nothing there is feasible); we
    bracket first (double ``gamma_init`` while feasible, at most 64 times) and then bisect, which
    finds the same value whenever the paper's would. ``feasible(0)`` holds for min-max and
    min-sum (the mean lies within the honest spread) and the feasible set is an interval, as
    both objectives are convex in ``gamma``; the result is always feasible.
    """
    if not (gamma_init > 0.0 and tol > 0.0):
        raise ConfigError(f"gamma search needs gamma_init > 0 and tol > 0; got {gamma_init}, {tol}")
    lo, hi = 0.0, gamma_init
    for _ in range(64):
        if not feasible(hi):
            break
        lo, hi = hi, 2 * hi
    else:
        return lo  # feasible everywhere: the perturbation is zero
    for _ in range(200):
        if hi - lo <= tol * hi:
            break
        mid = (lo + hi) / 2
        if feasible(mid):
            lo = mid
        else:
            hi = mid
    return lo


def _sq_dists_to(h: Tensor, v: Tensor) -> Tensor:
    return ((h - v) ** 2).sum(dim=1)  # [m]


def min_max(
    honest: Tensor,
    k: int = 1,
    perturbation: Perturbation = Perturbation.STD,
    gamma_init: float = 10.0,
    tol: float = 1e-5,
) -> Tensor:
    """Min-max (Shejwalkar & Houmansadr, NDSS 2021, "Manipulating the Byzantine"): send
    ``mu + gamma p`` with the largest ``gamma`` whose maximum distance to any honest update
    is at most the largest distance between two honest updates. Knows all honest updates
    (the paper's "full knowledge" variant; pass the attackers' own benign updates for the
    partial-knowledge one). Agnostic to the aggregator."""
    h = _honest(honest).to(torch.float64)
    mu, p = h.mean(dim=0), perturbation_vector(h, perturbation)
    bound = max(float(_sq_dists_to(h, h[i]).max()) for i in range(h.shape[0]))

    def feasible(gamma: float) -> bool:
        return float(_sq_dists_to(h, mu + gamma * p).max()) <= bound

    gamma = gamma_search(feasible, gamma_init, tol)
    return _rows((mu + gamma * p).to(honest.dtype), k)


class SumBound(StrEnum):
    """Min-sum's bound on the attacker's sum of squared distances to the honest rows."""

    SMALLEST = "smallest"  # min_i sum_j ||h_i - h_j||^2: the authors' code (weaker attacker)
    LARGEST = "largest"  # max_i sum_j ||h_i - h_j||^2: the paper's text (stronger attacker)


def min_sum(
    honest: Tensor,
    k: int = 1,
    perturbation: Perturbation = Perturbation.STD,
    gamma_init: float = 10.0,
    tol: float = 1e-5,
    bound: SumBound = SumBound.LARGEST,
) -> Tensor:
    """Min-sum (Shejwalkar & Houmansadr, NDSS 2021): like :func:`min_max` but the sum of
    squared distances to the honest updates must not exceed the largest (``LARGEST``, the
    bound as the paper states it) or the smallest (``SMALLEST``, as the authors' released
    code computes it) such sum of an honest update. ``LARGEST`` allows a larger ``gamma``:
    a stronger attacker than the authors'. Knows all honest updates."""
    h = _honest(honest).to(torch.float64)
    mu, p = h.mean(dim=0), perturbation_vector(h, perturbation)
    sums = [float(_sq_dists_to(h, h[i]).sum()) for i in range(h.shape[0])]
    limit = max(sums) if SumBound(bound) is SumBound.LARGEST else min(sums)

    def feasible(gamma: float) -> bool:
        return float(_sq_dists_to(h, mu + gamma * p).sum()) <= limit

    gamma = gamma_search(feasible, gamma_init, tol)
    return _rows((mu + gamma * p).to(honest.dtype), k)


AggregateRows = Callable[[Tensor], Tensor]
"""``aggregate(rows[n, d]) -> [d]``: the defence the adaptive attacker runs itself."""


def adaptive(
    honest: Tensor,
    k: int,
    aggregate: AggregateRows,
    perturbation: Perturbation = Perturbation.UNIT_VECTOR,
    steps: int = 16,
) -> Tensor:
    """An attack tailored to the defence (Shejwalkar & Houmansadr, NDSS 2021, Sec. 4.1,
    "AGR-tailored"): send ``mu + gamma p`` with the ``gamma`` that maximises the distance of
    ``aggregate(honest ∪ k × row)`` from the honest mean ``mu``. The attacker runs the
    defence itself (the code is public), so it knows exactly what every ``gamma`` does.

    ``gamma`` is searched on a geometric grid from ``||mu|| / 64`` to ``256 ||mu||`` (the
    paper's objective is not monotone in ``gamma`` once the defence starts to drop the rows,
    so bisection could miss the peak), then refined by halving steps around the best grid
    point. ``gamma = 0`` (sending the mean) is always a candidate. Knows all honest updates.
    """
    h = _honest(honest).to(torch.float64)
    mu, p = h.mean(dim=0), perturbation_vector(h, perturbation)
    scale = float(torch.linalg.vector_norm(mu)) / max(float(torch.linalg.vector_norm(p)), 1e-12)
    if not scale > 0.0:
        return _rows(mu.to(honest.dtype), k)

    def deviation(gamma: float) -> float:
        rows = torch.cat([h, (mu + gamma * p).unsqueeze(0).repeat(k, 1)])
        return float(torch.linalg.vector_norm(aggregate(rows).to(torch.float64) - mu))

    grid = [0.0] + [scale * 2.0**j for j in range(-6, 9)]
    values = [deviation(g) for g in grid]
    best = max(range(len(grid)), key=lambda i: values[i])
    gamma, width = grid[best], grid[best] / 2
    for _ in range(steps if gamma > 0 else 0):
        for cand in (gamma - width, gamma + width):
            v = deviation(cand)
            if v > values[best]:
                gamma, values[best] = cand, v
        width /= 2
    return _rows((mu + gamma * p).to(honest.dtype), k)
