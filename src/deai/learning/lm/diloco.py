"""DiLoCo's outer step (Douillard et al. 2023, "DiLoCo: Distributed low-communication
training of language models").

Each of ``k`` workers starts from the global parameters ``theta``, runs ``H`` inner steps
of AdamW on its own data, and sends its *pseudo-gradient* ``delta_i = theta - theta_i``
(optionally compressed, e.g. by a 4-bit codec with error feedback). The outer optimizer
applies the average ``delta`` with Nesterov momentum (the paper's lr 0.7, momentum 0.9)::

    m     = mu * m + delta
    theta = theta - lr * (delta + mu * m)

Workers communicate once every ``H`` steps instead of every step, which is where the
bytes go down by about ``H`` times before any codec. The inner loop is an ordinary
``torch.optim.AdamW`` in the worker, so this module is only the outer maths.
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
    """Pure Nesterov update; returns ``(new_params, new_momentum)``."""
    new_m = mu * momentum + delta
    return params - lr * (delta + mu * new_m), new_m


class OuterNesterov:
    """Holds the global parameters and momentum between DiLoCo rounds."""

    def __init__(self, params: Tensor, lr: float = 0.7, momentum: float = 0.9) -> None:
        if params.dim() != 1:
            raise ConfigError("diloco: parameters must be a flat vector")
        if lr <= 0 or not 0 <= momentum < 1:
            raise ConfigError(f"diloco: need lr > 0 and 0 <= momentum < 1, got {lr}, {momentum}")
        self.params = params.detach().clone()
        self.momentum = params.new_zeros(params.shape)
        self.lr = lr
        self.mu = momentum

    def step(self, avg_pseudo_grad: Tensor) -> Tensor:
        """Apply the workers' averaged pseudo-gradient; return the new global parameters."""
        if avg_pseudo_grad.shape != self.params.shape:
            raise ConfigError(
                f"diloco: pseudo-gradient shape {tuple(avg_pseudo_grad.shape)} "
                f"!= parameters {tuple(self.params.shape)}"
            )
        self.params, self.momentum = nesterov_step(
            self.params, self.momentum, avg_pseudo_grad.detach(), self.lr, self.mu
        )
        return self.params.clone()
