"""The training algorithms of the seed survey (He et al., "Imagining a Democratic,
Affordable Future of Foundation Models", Algorithms 1–3), each defined once, as data.

* **Parallel SGD with a parameter server** (Algorithm 1; Dean et al. 2012, Li et al.
  2014): every step each worker computes one mini-batch gradient at the global
  parameters; the server averages them with equal weights ``1/m`` and applies
  ``theta <- theta - eta * mean(g)``. Here a provider runs exactly one local step with
  learning rate 1, so its update is ``-g``, and the validator applies ``server_lr = eta``.
* **FedAvg** (Algorithm 2; McMahan et al. 2017): each client runs E local steps (or
  epochs) and the server takes the example-weighted average of the results. FedProx
  (Li et al. 2020) is FedAvg with ``prox_mu > 0``; "local SGD" is FedAvg with uniform
  weights.
* **D-PSGD** (Algorithm 3; Lian et al. 2017): no server. Each provider mixes its
  neighbours' parameters with a doubly-stochastic matrix ``W`` and adds its own local
  update computed at its pre-mixing parameters:
  ``theta_j <- sum_k W_jk theta_k + delta_j``. With one local step this is exactly
  Algorithm 3; with E steps it is decentralized local SGD.

The job spec's ``algorithm`` section names one; the roles read it through the functions
below, and there is no other copy of the logic.
"""

from __future__ import annotations

from enum import StrEnum

from deai.learning.train import LocalTrainConfig, Optimizer


class AlgorithmName(StrEnum):
    PARALLEL_SGD = "parallel_sgd"
    FEDAVG = "fedavg"
    DPSGD = "dpsgd"


class Weighting(StrEnum):
    EXAMPLES = "examples"  # by the (capped) example count each provider claims
    UNIFORM = "uniform"  # 1/m, as in Algorithm 1


def local_config(
    name: AlgorithmName,
    *,
    epochs: int,
    steps: int | None,
    batch_size: int,
    lr: float,
    momentum: float,
    prox_mu: float,
    optimizer: Optimizer = Optimizer.SGD,
    weight_decay: float = 0.0,
    clip_norm: float | None = None,
) -> LocalTrainConfig:
    """What one provider runs per round. Parallel SGD (Algorithm 1) is one gradient at the
    global parameters: one step with learning rate 1 and no local optimizer, so the update
    is ``-g`` (clipped to ``clip_norm``) and the server applies the step size."""
    if name is AlgorithmName.PARALLEL_SGD:
        return LocalTrainConfig(steps=1, batch_size=batch_size, lr=1.0, clip_norm=clip_norm)
    return LocalTrainConfig(
        epochs=epochs,
        steps=steps,
        batch_size=batch_size,
        lr=lr,
        momentum=momentum,
        prox_mu=prox_mu,
        optimizer=optimizer,
        weight_decay=weight_decay,
        clip_norm=clip_norm,
    )


def server_step_size(name: AlgorithmName, lr: float, server_lr: float) -> float:
    """Parallel SGD applies the learning rate at the server; the others ``server_lr``."""
    return lr if name is AlgorithmName.PARALLEL_SGD else server_lr


def weighting_for(name: AlgorithmName, weighting: Weighting) -> Weighting:
    """Parallel SGD averages with equal weights ``1/m`` (Algorithm 1)."""
    return Weighting.UNIFORM if name is AlgorithmName.PARALLEL_SGD else weighting
