"""One training step of many small MLPs as a few batched matrix products.

The trainer's general step is ``torch.func.vmap(torch.func.grad_and_value(loss))`` over a
stack of parameter vectors ``[n, d]``, which works for any module. For the built-in MLP
(``Flatten``, then ``Linear``/``ReLU`` pairs, then a ``Linear``: :class:`deai.learning.
models.MLP`), functorch's per-call tracing costs more than the arithmetic when each of the
``n`` providers holds a handful of examples (5 to 8 ms per step for 100 providers, against
under 1 ms here). :func:`mlp_step` computes the same masked mean cross-entropy (plus the
FedProx term), its gradient with respect to every row, and the loss of every row, with
``torch.bmm``: the forward pass, then the backward pass written out (softmax minus one-hot,
the transposed products, ReLU's mask). It is used for any ``n``, one request included, so
a provider alone and a provider in a batch of a thousand run the same arithmetic; against
the vmapped step it agrees to float rounding (``tests/learning/test_batched.py``).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from deai.learning.params import FlatModel, TaskName


@dataclass(frozen=True)
class MLPLayout:
    """Where each layer's weight ``[out, in]`` and bias ``[out]`` sit in the flat vector."""

    weights: tuple[tuple[int, int, int, int], ...]  # (start, end, out, in)
    biases: tuple[tuple[int, int], ...]  # (start, end)
    in_features: int


def mlp_layout(model: FlatModel) -> MLPLayout | None:
    """The layout of a plain MLP classifier, or None for any other module (which then
    takes the general vmapped step)."""
    from deai.learning.models import MLP

    module = model.module
    if type(module) is not MLP or model.task is not TaskName.CLASSIFICATION or model.buffers:
        return None
    net = module.net
    if not isinstance(net, nn.Sequential):
        return None
    layers: list[nn.Module] = list(net)
    if not layers or type(layers[0]) is not nn.Flatten or layers[0].start_dim != 1:
        return None
    linears = layers[1::2]
    if any(type(m) is not nn.ReLU for m in layers[2::2]) or len(layers) % 2 != 0:
        return None
    if any(type(m) is not nn.Linear or getattr(m, "bias", None) is None for m in linears):
        return None
    # the flat vector is named_parameters order: net.1.weight, net.1.bias, net.3.weight, ...
    expected = [f"net.{2 * i + 1}.{k}" for i in range(len(linears)) for k in ("weight", "bias")]
    if list(model.names) != expected:
        return None
    weights: list[tuple[int, int, int, int]] = []
    biases: list[tuple[int, int]] = []
    at = 0
    for lin in linears:
        assert isinstance(lin, nn.Linear)
        out_f, in_f = lin.out_features, lin.in_features
        weights.append((at, at + out_f * in_f, out_f, in_f))
        at += out_f * in_f
        biases.append((at, at + out_f))
        at += out_f
    if at != model.dim:
        return None
    return MLPLayout(tuple(weights), tuple(biases), weights[0][3])


def mlp_step(
    layout: MLPLayout,
    theta: Tensor,
    xb: Tensor,
    yb: Tensor,
    mb: Tensor,
    anchor: Tensor,
    mu: float,
) -> tuple[Tensor, Tensor]:
    """``(grads [n, d], losses [n])`` of the masked mean cross-entropy of each row's batch
    (``xb [n, B, *shape]``, ``yb [n, B]``, ``mb [n, B]``), plus ``mu/2 |theta - anchor|^2``."""
    n, b = yb.shape
    ws = [theta[:, s:e].view(n, o, i) for s, e, o, i in layout.weights]
    bs = [theta[:, s:e] for s, e in layout.biases]
    h = xb.reshape(n, b, layout.in_features).to(theta.dtype)
    inputs = [h]  # each layer's input (after the previous ReLU)
    last = len(ws) - 1
    for k, (w, bias) in enumerate(zip(ws, bs, strict=True)):
        z = torch.baddbmm(bias.unsqueeze(1), h, w.transpose(1, 2))  # [n, B, out]
        if k < last:
            h = torch.relu(z)
            inputs.append(h)
        else:
            h = z
    logp = torch.log_softmax(h, dim=2)  # [n, B, C]
    target = yb.unsqueeze(2)
    per_example = -logp.gather(2, target).squeeze(2)  # [n, B]
    denom = mb.sum(dim=1).clamp_min(1.0)  # [n]
    losses = (per_example * mb).sum(dim=1) / denom
    # d loss / d logits: (softmax - one-hot) * mask / denom, row by row
    g = logp.exp()
    g.scatter_add_(2, target, torch.full_like(per_example, -1.0).unsqueeze(2))
    g = g * (mb / denom[:, None]).unsqueeze(2)
    # each layer's gradient written where its parameters sit in the flat vector (one
    # [n, d] allocation, no concatenation: the same products, the same values)
    grads = torch.empty_like(theta)  # [n, d]
    for k in range(last, -1, -1):
        (ws_, we, o, i), (bs_, be) = layout.weights[k], layout.biases[k]
        torch.bmm(g.transpose(1, 2), inputs[k], out=grads[:, ws_:we].view(n, o, i))
        torch.sum(g, dim=1, out=grads[:, bs_:be])  # [n, out]
        if k > 0:
            g = torch.bmm(g, ws[k]).mul_(inputs[k] > 0)  # through ReLU: 0 where it was off
    if mu > 0.0:
        diff = theta - anchor
        losses = losses + 0.5 * mu * (diff**2).sum(dim=1)
        grads = grads + mu * diff
    return grads, losses
