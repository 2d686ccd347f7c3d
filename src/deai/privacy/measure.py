"""Privacy attacks, used as measurements of what DP and secure aggregation buy.

* Loss-threshold membership inference (Yeom, Giacomelli, Fredrikson, Jha, CSF 2018): an
  example is guessed to be a training member when the model's loss on it is low. We report
  the AUC of the score ``-loss`` over members vs non-members (0.5 = no leakage). DP-SGD at
  ``(eps, delta)`` bounds any attack's advantage, so the AUC must approach 0.5 as eps falls.
* Deep Leakage from Gradients (Zhu, Liu, Han, NeurIPS 2019), with the label read from the
  last layer's gradient as in iDLG (Zhao, Mopuri, Bilen 2020): the attacker optimises a
  dummy input with L-BFGS so that its gradient matches the observed one. It works on a
  single example's clean gradient of a small smooth model; it fails when the observed
  gradient is clipped and noised (DP) or is the sum of many clients' gradients (what
  secure aggregation leaves the validator).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from sklearn.metrics import roc_auc_score
from torch import Tensor, nn

from deai.errors import ConfigError


@torch.no_grad()
def per_example_loss(model: nn.Module, x: Tensor, y: Tensor) -> Tensor:
    """Cross-entropy of each example, ``[n]``."""
    model.eval()
    return nn.functional.cross_entropy(model(x), y, reduction="none")


def membership_auc(
    model: nn.Module, members: tuple[Tensor, Tensor], nonmembers: tuple[Tensor, Tensor]
) -> float:
    """AUC of the loss-threshold attack: members scored by ``-loss`` against non-members."""
    lm = per_example_loss(model, *members)
    ln = per_example_loss(model, *nonmembers)
    if lm.numel() == 0 or ln.numel() == 0:
        raise ConfigError("membership inference needs members and non-members")
    labels = [1] * lm.numel() + [0] * ln.numel()
    scores = torch.cat([-lm, -ln]).tolist()
    return float(roc_auc_score(labels, scores))


def gradient_of(model: nn.Module, x: Tensor, y: Tensor) -> list[Tensor]:
    """The (mean) cross-entropy gradient of ``model`` on a batch, one tensor per parameter."""
    model.zero_grad()
    loss = nn.functional.cross_entropy(model(x), y)
    return [g.detach().clone() for g in torch.autograd.grad(loss, list(model.parameters()))]


@dataclass(frozen=True)
class DLGConfig:
    iterations: int = 30  # L-BFGS outer steps
    max_iter: int = 20  # L-BFGS inner iterations per step
    seed: int = 0  # seed of the dummy input
    bounds: tuple[float, float] | None = (0.0, 1.0)  # known input range; output is clamped


@dataclass(frozen=True)
class DLGResult:
    x: Tensor  # the reconstructed input, shape of one example (batch of 1)
    label: int  # the label read from the last layer's gradient
    grad_distance: float  # final squared distance between dummy and observed gradients


def dlg_attack(
    model: nn.Module, observed: Sequence[Tensor], input_shape: tuple[int, ...], config: DLGConfig
) -> DLGResult:
    """Reconstruct a single training example from an observed gradient (DLG / iDLG)."""
    params = list(model.parameters())
    if len(observed) != len(params):
        raise ConfigError(f"observed gradient has {len(observed)} tensors, model has {len(params)}")
    last_w = next(g for g in reversed(observed) if g.ndim == 2)
    label = int(torch.argmin(last_w.sum(dim=1)))  # iDLG: the true class row is negative
    gen = torch.Generator().manual_seed(config.seed)
    dummy = torch.rand((1, *input_shape), generator=gen).requires_grad_(True)
    target = torch.tensor([label])
    opt = torch.optim.LBFGS([dummy], lr=1.0, max_iter=config.max_iter)

    def closure() -> Tensor:
        opt.zero_grad()
        loss = nn.functional.cross_entropy(model(dummy), target)
        grads = torch.autograd.grad(loss, params, create_graph=True)
        dist = sum(((g - o) ** 2).sum() for g, o in zip(grads, observed, strict=True))
        assert isinstance(dist, Tensor)
        dist.backward()
        return dist

    dist = torch.tensor(float("inf"))
    for _ in range(config.iterations):
        dist = opt.step(closure)
        if not torch.isfinite(dist):
            break
    x = dummy.detach()[0]
    if config.bounds is not None:
        x = x.clamp(*config.bounds)
    return DLGResult(x, label, float(dist.detach()))


def reconstruction_mse(x_rec: Tensor, x_true: Tensor) -> float:
    """Mean squared error between a reconstruction and the true example."""
    return float(((x_rec.reshape(-1) - x_true.reshape(-1)) ** 2).mean())
