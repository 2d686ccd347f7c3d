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

The runtime roles read an :class:`AlgorithmSpec`; there is no other copy of the logic.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

from deai.learning.topology import TopologyName
from deai.learning.train import LocalTrainConfig


class AlgorithmName(StrEnum):
    PARALLEL_SGD = "parallel_sgd"
    FEDAVG = "fedavg"
    DPSGD = "dpsgd"


class Weighting(StrEnum):
    EXAMPLES = "examples"  # by the (capped) example count each provider claims
    UNIFORM = "uniform"  # 1/m, as in Algorithm 1


@dataclass(frozen=True)
class AlgorithmSpec:
    name: AlgorithmName = AlgorithmName.FEDAVG
    local: LocalTrainConfig = field(default_factory=LocalTrainConfig)
    server_lr: float = 1.0  # step size applied to the aggregated update
    weighting: Weighting = Weighting.EXAMPLES
    topology: TopologyName = TopologyName.RING  # D-PSGD only
    participation: float = 1.0  # fraction of providers drawn each round (server algorithms)

    @property
    def gossip(self) -> bool:
        return self.name is AlgorithmName.DPSGD


def parallel_sgd(lr: float, batch_size: int) -> AlgorithmSpec:
    """Algorithm 1: one gradient per provider per step, averaged with equal weights."""
    return AlgorithmSpec(
        name=AlgorithmName.PARALLEL_SGD,
        local=LocalTrainConfig(steps=1, batch_size=batch_size, lr=1.0),
        server_lr=lr,
        weighting=Weighting.UNIFORM,
    )
