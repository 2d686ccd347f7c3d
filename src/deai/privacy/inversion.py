"""Gradient inversion as a measurement: what an aggregator reads from one update or a sum.

Two attacks, each in its strongest simple form:

* **Batch DLG with known labels** (Zhu, Liu, Han, NeurIPS 2019; labels known as in iDLG,
  Zhao et al. 2020, and as the batch attacks of Yin et al. 2021 assume): optimise ``B``
  dummy inputs with L-BFGS so that the gradient of their batch matches the observed one.
  The observed update may be a clipped gradient (unknown scale) or a sum of many clients'
  gradients (unknown per-client scales), so the match is scale-invariant: one minus the
  cosine similarity of the flat gradients (Geiping et al., NeurIPS 2020).
* **Analytic first-layer attack** (Phong et al. 2017; Fowl et al. 2022 build on it): for a
  first layer ``W x + b``, one example's gradient has ``dL/dW_i = delta_i x^T`` and
  ``dL/db_i = delta_i``, so every row with ``dL/db_i != 0`` gives ``x = dW_i / db_i``
  exactly. Scaling the gradient (clipping) changes nothing; in a sum, a row where only one
  example's ReLU unit is active still gives that example exactly. Candidates are ranked by
  ``|dL/db_i|`` (the rows least disturbed by noise).

Success is counted as in the DLG literature: a true input is recovered if some candidate
reconstruction is within mean squared error ``threshold`` of it (each true input matched
to its best candidate). That is an upper estimate of what the attacker can *tell* it has,
and a fair count of what leaked.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from deai.errors import ConfigError


def flat_gradient(model: nn.Module, x: Tensor, y: Tensor, create_graph: bool = False) -> Tensor:
    """Gradient of the summed cross-entropy of the batch, flattened in parameter order."""
    loss = nn.functional.cross_entropy(model(x), y, reduction="sum")
    grads = torch.autograd.grad(loss, list(model.parameters()), create_graph=create_graph)
    return torch.cat([g.reshape(-1) for g in grads])


def per_example_clipped_sum(model: nn.Module, x: Tensor, y: Tensor, clip: float | None) -> Tensor:
    """Sum over examples of each example's gradient clipped to norm ``clip`` (None: no
    clipping): what a secure sum of single-example updates reveals."""
    total: Tensor | None = None
    for i in range(x.shape[0]):
        g = flat_gradient(model, x[i : i + 1], y[i : i + 1]).detach()
        if clip is not None:
            g = g * min(1.0, clip / max(float(g.norm()), 1e-12))
        total = g if total is None else total + g
    if total is None:
        raise ConfigError("need at least one example")
    return total


@dataclass(frozen=True)
class DLGConfig:
    iterations: int = 40  # L-BFGS outer steps
    max_iter: int = 20  # inner iterations per step
    restarts: int = 2  # independent dummy initialisations; the best gradient match is kept
    seed: int = 0
    bounds: tuple[float, float] = (0.0, 1.0)  # known input range; reconstructions clamped


def batch_dlg(
    model: nn.Module,
    observed: Tensor,
    labels: Tensor,
    input_shape: tuple[int, ...],
    cfg: DLGConfig,
) -> Tensor:
    """Reconstruct ``len(labels)`` inputs whose batch gradient matches ``observed``
    (cosine distance). Returns ``[B, *input_shape]``, clamped to ``cfg.bounds``."""
    best, best_loss = None, float("inf")
    for r in range(cfg.restarts):
        x, loss = _dlg_once(model, observed.detach(), labels, input_shape, cfg, r)
        if loss < best_loss:
            best, best_loss = x, loss
    if best is None:
        best = torch.full((len(labels), *input_shape), (cfg.bounds[0] + cfg.bounds[1]) / 2)
    return best.clamp(*cfg.bounds)


def _dlg_once(
    model: nn.Module,
    target: Tensor,
    labels: Tensor,
    input_shape: tuple[int, ...],
    cfg: DLGConfig,
    restart: int,
) -> tuple[Tensor, float]:
    gen = torch.Generator().manual_seed(cfg.seed * 1000 + restart)
    lo, hi = cfg.bounds
    dummy = lo + (hi - lo) * torch.rand((len(labels), *input_shape), generator=gen)
    dummy.requires_grad_(True)
    opt = torch.optim.LBFGS([dummy], lr=1.0, max_iter=cfg.max_iter, line_search_fn="strong_wolfe")

    def closure() -> Tensor:
        opt.zero_grad()
        g = flat_gradient(model, dummy, labels, create_graph=True)
        loss = 1 - nn.functional.cosine_similarity(g, target, dim=0)
        loss.backward()
        return loss

    loss = float("inf")
    for _ in range(cfg.iterations):
        loss = float(torch.as_tensor(opt.step(closure)).detach())
        if not math.isfinite(loss) or loss < 1e-10:
            break
    return dummy.detach().clone(), loss if math.isfinite(loss) else float("inf")


def analytic_first_layer(
    weight_grad: Tensor,
    bias_grad: Tensor,
    candidates: int,
    bounds: tuple[float, float] = (0.0, 1.0),
) -> Tensor:
    """``dW_i / db_i`` for the ``candidates`` rows with the largest ``|db_i|``:
    ``[candidates, in_features]``, clamped to ``bounds``."""
    if weight_grad.ndim != 2 or bias_grad.shape != (weight_grad.shape[0],):
        raise ConfigError("need a first-layer weight gradient [h, d] and bias gradient [h]")
    k = min(candidates, int((bias_grad != 0).sum()))
    if k == 0:
        return torch.empty(0, weight_grad.shape[1])
    rows = bias_grad.abs().topk(k).indices
    return (weight_grad[rows] / bias_grad[rows, None]).clamp(*bounds)


def recovered(truth: Tensor, candidates: Tensor, threshold: float) -> tuple[int, Tensor]:
    """How many true inputs have a candidate within MSE ``threshold``, and each true
    input's best MSE ``[B]``."""
    if candidates.numel() == 0:
        best = ((truth - truth.mean()) ** 2).reshape(len(truth), -1).mean(1) * float("inf")
        return 0, best.nan_to_num(posinf=float("inf"))
    t = truth.reshape(len(truth), -1)
    c = candidates.reshape(len(candidates), -1)
    mse = ((t[:, None, :] - c[None, :, :]) ** 2).mean(-1)  # [B, K]
    best = mse.min(1).values
    return int((best < threshold).sum()), best
