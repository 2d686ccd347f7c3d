"""Membership inference as a measurement: the loss-threshold attack and offline LiRA.

* Loss threshold (Yeom, Giacomelli, Fredrikson, Jha, CSF 2018): score ``-loss``.
* Offline LiRA (Carlini, Chien, Nasr, Song, Terzis, Tramèr, "Membership Inference Attacks
  From First Principles", S&P 2022, Sec. VI-C): the attacker trains reference models with
  the target's recipe on data drawn from the same population but *without* the audited
  examples, and models each example's logit-scaled confidence ``phi = log(p_y / (1 - p_y))``
  on those OUT models as a Gaussian ``N(mu_out(x), sigma_out^2)``. A member's confidence on
  the target is unusually high: the score is ``(phi_target(x) - mu_out(x)) / sigma_out``, a
  one-sided likelihood test. With few reference models the per-example variance is noisy,
  so a global ``sigma_out`` is used (the paper's "fixed variance", recommended below 64
  models).

Metrics: ROC AUC, and the true-positive rate at a low false-positive rate (1 %), which
is what matters for privacy (an attack that is confident about a few examples), as the
LiRA paper argues. Member and non-member sets are class-balanced (:func:`balanced_split`)
so that the attack cannot score by class frequency. :func:`mean_ci95` gives a Student-t
95 % interval over independent seeds.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import torch
from scipy import stats
from sklearn.metrics import roc_auc_score, roc_curve
from torch import Tensor, nn

from deai.errors import ConfigError

Index = npt.NDArray[np.int64]


@torch.no_grad()
def logit_confidence(model: nn.Module, x: Tensor, y: Tensor) -> Tensor:
    """``log(p_y / (1 - p_y))`` per example, computed stably from the logits: ``z_y -
    logsumexp_{j != y} z_j``. ``[n]``."""
    model.eval()
    z = model(x).double()
    zy = z.gather(1, y[:, None]).squeeze(1)
    others = z.scatter(1, y[:, None], float("-inf"))
    return (zy - torch.logsumexp(others, dim=1)).float()


def lira_offline_scores(target_phi: Tensor, reference_phi: Tensor) -> Tensor:
    """Offline LiRA score of each example (higher = more likely a member).

    ``target_phi[n]``: the target's logit confidence; ``reference_phi[m, n]``: the same on
    ``m >= 2`` reference models none of which trained on these examples."""
    if reference_phi.ndim != 2 or reference_phi.shape[1] != target_phi.shape[0]:
        raise ConfigError(
            f"reference confidences must be [m, {target_phi.shape[0]}], "
            f"got {tuple(reference_phi.shape)}"
        )
    if reference_phi.shape[0] < 2:
        raise ConfigError("offline LiRA needs at least 2 reference models")
    mu = reference_phi.mean(0)
    sigma = float((reference_phi - mu).std())  # global (fixed) variance
    return (target_phi - mu) / max(sigma, 1e-12)


@dataclass(frozen=True)
class AttackScore:
    auc: float
    tpr_at_1pct_fpr: float


def score_attack(member_scores: Tensor, nonmember_scores: Tensor) -> AttackScore:
    """AUC and TPR at 1 % FPR of scores where members should score higher."""
    if member_scores.numel() == 0 or nonmember_scores.numel() == 0:
        raise ConfigError("membership inference needs members and non-members")
    labels = np.r_[np.ones(member_scores.numel()), np.zeros(nonmember_scores.numel())]
    scores = torch.cat([member_scores, nonmember_scores]).double().numpy()
    return AttackScore(float(roc_auc_score(labels, scores)), tpr_at_fpr(labels, scores, 0.01))


def tpr_at_fpr(
    labels: npt.NDArray[np.float64], scores: npt.NDArray[np.float64], fpr: float
) -> float:
    """Largest TPR over thresholds whose FPR is at most ``fpr``."""
    f, t, _ = roc_curve(labels, scores)
    ok = f <= fpr + 1e-12
    return float(t[ok].max()) if ok.any() else 0.0


def balanced_split(
    y: npt.NDArray[np.int64], per_class: int, rng: np.random.Generator
) -> tuple[Index, Index, Index]:
    """``per_class`` members and ``per_class`` non-members of every class, and the rest
    (the population the attacker draws reference data from)."""
    members: list[int] = []
    nonmembers: list[int] = []
    for c in np.unique(y):
        idx = rng.permutation(np.flatnonzero(y == c))
        if len(idx) < 2 * per_class:
            raise ConfigError(f"class {c} has {len(idx)} examples, need {2 * per_class}")
        members += idx[:per_class].tolist()
        nonmembers += idx[per_class : 2 * per_class].tolist()
    used = set(members) | set(nonmembers)
    rest = np.array([i for i in range(len(y)) if i not in used], dtype=np.int64)
    return np.array(members, dtype=np.int64), np.array(nonmembers, dtype=np.int64), rest


def balanced_sample(
    y: npt.NDArray[np.int64], pool: Index, per_class: int, rng: np.random.Generator
) -> Index:
    """``per_class`` examples of every class drawn from ``pool`` without replacement."""
    out: list[int] = []
    for c in np.unique(y[pool]):
        idx = pool[y[pool] == c]
        out += rng.choice(idx, size=min(per_class, len(idx)), replace=False).tolist()
    return np.array(out, dtype=np.int64)


def mean_ci95(values: list[float]) -> tuple[float, float, float]:
    """(mean, low, high): Student-t 95 % interval of the mean of independent runs."""
    a = np.asarray(values, dtype=np.float64)
    if a.size < 2:
        raise ConfigError("a confidence interval needs at least 2 runs")
    m = float(a.mean())
    half = float(stats.t.ppf(0.975, a.size - 1) * a.std(ddof=1) / np.sqrt(a.size))
    return m, m - half, m + half
