"""The sim_speed workload on Apple's pfl-research simulator (run by ``sim_speed.py``
inside a separate virtualenv that has ``pfl[pytorch]``; deai does not depend on pfl).

FedAvg (``pfl.algorithm.FederatedAveraging``, central SGD at learning rate 1, weighted by
data points), MLP 64-64-10 on scikit-learn's digits, IID split, one local epoch of SGD
(batch 32, lr 0.1) per user per round, every user every round (cohort = population,
minimize-reuse sampling), central evaluation on the test split after every round. pfl is
configured as its own benchmarks are: in-memory ``FederatedDataset.from_slices``, the
``SimulatedBackend`` in one process on CPU, one torch thread.
Prints one JSON line: per-round wall-clock timestamps taken after central evaluation.
"""

from __future__ import annotations

import json
import sys
import time

import numpy as np
import torch
from pfl.aggregate.simulate import SimulatedBackend
from pfl.aggregate.weighting import WeightByDatapoints
from pfl.algorithm import FederatedAveraging, NNAlgorithmParams
from pfl.callback.base import TrainingProcessCallback
from pfl.callback.central_evaluation import CentralEvaluationCallback
from pfl.data.dataset import Dataset
from pfl.data.federated_dataset import FederatedDataset
from pfl.data.sampling import get_user_sampler
from pfl.hyperparam import NNEvalHyperParams, NNTrainHyperParams
from pfl.metrics import Metrics, Weighted
from pfl.model.pytorch import PyTorchModel
from sklearn.datasets import load_digits
from torch import nn

N = int(sys.argv[1])
ROUNDS = int(sys.argv[2])
SEED = 0

torch.set_num_threads(1)
torch.manual_seed(SEED)
np.random.seed(SEED)

digits = load_digits()
X = (digits.data / 16.0).astype(np.float32)
Y = digits.target.astype(np.int64)
perm = np.random.default_rng(SEED).permutation(len(Y))
test_idx, train_idx = perm[:359], perm[359:]
PARTS = np.array_split(train_idx, N)


class MLP(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 10))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    def loss(self, x: torch.Tensor, y: torch.Tensor, eval: bool = False) -> torch.Tensor:
        self.eval() if eval else self.train()
        return nn.functional.cross_entropy(self(x), y)

    def metrics(self, x: torch.Tensor, y: torch.Tensor, eval: bool = False) -> dict:
        self.eval() if eval else self.train()
        with torch.no_grad():
            logits = self(x)
            loss = nn.functional.cross_entropy(logits, y, reduction="sum").item()
            correct = (logits.argmax(1) == y).sum().item()
        return {"loss": Weighted(loss, len(y)), "accuracy": Weighted(correct, len(y))}


STAMPS: list[float] = []
ACC: list[float] = []


class Stamp(TrainingProcessCallback):
    def after_central_iteration(self, aggregate_metrics, model, *, central_iteration):  # type: ignore[no-untyped-def]
        STAMPS.append(time.perf_counter())
        for name, value in aggregate_metrics:
            if "Central val" in str(name) and "accuracy" in str(name):
                ACC.append(float(getattr(value, "overall_value", value)))
        return False, Metrics()


def main() -> None:
    t0 = time.perf_counter()
    users = {i: [torch.tensor(X[idx]), torch.tensor(Y[idx])] for i, idx in enumerate(PARTS)}
    sampler = get_user_sampler("minimize_reuse", list(users))
    train = FederatedDataset.from_slices(users, sampler)
    central = Dataset(raw_data=[torch.tensor(X[test_idx]), torch.tensor(Y[test_idx])])
    net = MLP()
    model = PyTorchModel(
        model=net,
        local_optimizer_create=torch.optim.SGD,
        central_optimizer=torch.optim.SGD(net.parameters(), 1.0),
    )
    backend = SimulatedBackend(
        training_data=train, val_data=None, postprocessors=[WeightByDatapoints()]
    )
    params = NNAlgorithmParams(
        central_num_iterations=ROUNDS,
        evaluation_frequency=1,
        train_cohort_size=N,
        val_cohort_size=None,
    )
    train_params = NNTrainHyperParams(
        local_learning_rate=0.1, local_num_epochs=1, local_batch_size=32
    )
    eval_params = NNEvalHyperParams(local_batch_size=1024)
    callbacks = [
        CentralEvaluationCallback(central, model_eval_params=eval_params, frequency=1),
        Stamp(),
    ]
    STAMPS.append(time.perf_counter())  # s[0]: before round 1
    FederatedAveraging().run(
        algorithm_params=params,
        backend=backend,
        model=model,
        model_train_params=train_params,
        model_eval_params=eval_params,
        callbacks=callbacks,
    )
    out = {"stamps": STAMPS, "final_accuracy": ACC[-1] if ACC else None, "start": t0}
    out["total_s"] = time.perf_counter() - t0
    print("RESULT " + json.dumps(out), flush=True)


if __name__ == "__main__":
    main()
