"""Server-side (outer) optimizers over flat vectors, as pure maths plus a small state.

**DiLoCo** (Douillard et al. 2023, "DiLoCo: Distributed low-communication training of
language models"): each of ``k`` workers starts from the global parameters ``theta``, runs
``H`` inner steps of AdamW on its own data and sends its *pseudo-gradient*
``delta_i = theta - theta_i`` (here: the update ``theta_i - theta``, its negation, which is
what deai's providers send). The outer optimizer applies the average with Nesterov momentum
(the paper's lr 0.7, momentum 0.9)::

    m     = mu * m + delta
    theta = theta - lr * (delta + mu * m)

Workers communicate once every ``H`` steps instead of every step, which is where the bytes
go down by about ``H`` times before any codec.

**Synchronous data parallel with AdamW** (the paper's baseline): every step each worker
sends one gradient, the server averages them and takes one AdamW step; :class:`OuterAdamW`
is that step, so the baseline trains with the same optimizer as DiLoCo's inner loop.
"""

from __future__ import annotations

from torch import Tensor

from deai.errors import ConfigError


def pseudo_gradient(global_params: Tensor, local_params: Tensor) -> Tensor:
    """``theta - theta_i``: the direction a worker would move the global model, negated."""
    if global_params.shape != local_params.shape:
        raise ConfigError("diloco: global and local parameter vectors differ in shape")
    return global_params - local_params


def nesterov_step(
    params: Tensor, momentum: Tensor, delta: Tensor, lr: float, mu: float
) -> tuple[Tensor, Tensor]:
    """Pure Nesterov update on a pseudo-gradient; returns ``(new_params, new_momentum)``."""
    new_m = mu * momentum + delta
    return params - lr * (delta + mu * new_m), new_m


def _check_flat(params: Tensor, delta: Tensor) -> None:
    if params.dim() != 1 or delta.shape != params.shape:
        raise ConfigError(
            f"outer: update shape {tuple(delta.shape)} != parameters {tuple(params.shape)}"
        )


class OuterNesterov:
    """DiLoCo's outer optimizer; :meth:`step` takes the averaged *update* ``theta_i - theta``."""

    def __init__(self, lr: float = 0.7, momentum: float = 0.9) -> None:
        if lr <= 0 or not 0 <= momentum < 1:
            raise ConfigError(f"diloco: need lr > 0 and 0 <= momentum < 1, got {lr}, {momentum}")
        self.lr, self.mu = lr, momentum
        self.momentum: Tensor | None = None

    def step(self, params: Tensor, update: Tensor) -> Tensor:
        _check_flat(params, update)
        m = self.momentum if self.momentum is not None else params.new_zeros(params.shape)
        new, self.momentum = nesterov_step(params, m, -update.detach(), self.lr, self.mu)
        return new


class OuterAdamW:
    """AdamW on the averaged update, read as a negative gradient (``update = -g``)."""

    def __init__(
        self,
        lr: float = 1e-3,
        beta1: float = 0.9,
        beta2: float = 0.999,
        eps: float = 1e-8,
        weight_decay: float = 0.0,
    ) -> None:
        if lr <= 0 or not (0 <= beta1 < 1 and 0 <= beta2 < 1) or eps <= 0 or weight_decay < 0:
            raise ConfigError("adamw: need lr > 0, betas in [0, 1), eps > 0, weight_decay >= 0")
        self.lr, self.b1, self.b2, self.eps, self.wd = lr, beta1, beta2, eps, weight_decay
        self.m: Tensor | None = None
        self.v: Tensor | None = None
        self.t = 0

    def step(self, params: Tensor, update: Tensor) -> Tensor:
        _check_flat(params, update)
        g = -update.detach()
        if self.m is None or self.v is None:
            self.m, self.v = params.new_zeros(params.shape), params.new_zeros(params.shape)
        self.t += 1
        self.m = self.b1 * self.m + (1 - self.b1) * g
        self.v = self.b2 * self.v + (1 - self.b2) * g * g
        m_hat = self.m / (1 - self.b1**self.t)
        v_hat = self.v / (1 - self.b2**self.t)
        return params * (1 - self.lr * self.wd) - self.lr * m_hat / (v_hat.sqrt() + self.eps)
