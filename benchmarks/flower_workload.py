"""The sim_speed workload on Flower's simulation engine (run by ``sim_speed.py`` inside a
separate virtualenv that has ``flwr[simulation]``; deai itself does not depend on Flower).

FedAvg, MLP 64-64-10 on scikit-learn's digits, IID split, one local epoch of SGD
(batch 32, lr 0.1) per client per round, all clients every round, centralized evaluation
of the global model on the test split after every round (as deai's report does).
Prints one JSON line: per-round wall-clock timestamps taken in ``evaluate_fn``.
"""

from __future__ import annotations

import json
import sys
import time

import numpy as np
import torch
from flwr.app import ArrayRecord, Context, Message, MetricRecord, RecordDict
from flwr.clientapp import ClientApp
from flwr.serverapp import Grid, ServerApp
from flwr.serverapp.strategy import FedAvg
from flwr.simulation import run_simulation
from sklearn.datasets import load_digits
from torch import nn

N = int(sys.argv[1])
ROUNDS = int(sys.argv[2])
SEED = 0

digits = load_digits()
X = torch.tensor(digits.data / 16.0, dtype=torch.float32)
Y = torch.tensor(digits.target, dtype=torch.long)
perm = np.random.default_rng(SEED).permutation(len(Y))
test_idx, train_idx = perm[:359], perm[359:]
PARTS = np.array_split(train_idx, N)


def model() -> nn.Module:
    torch.manual_seed(SEED)
    return nn.Sequential(nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 10))


client = ClientApp()


@client.train()
def train(msg: Message, context: Context) -> Message:
    torch.set_num_threads(1)
    net = model()
    net.load_state_dict(msg.content["arrays"].to_torch_state_dict())
    idx = PARTS[int(context.node_config["partition-id"])]
    x, y = X[idx], Y[idx]
    opt = torch.optim.SGD(net.parameters(), lr=0.1)
    g = torch.Generator().manual_seed(SEED)
    for b in torch.split(torch.randperm(len(y), generator=g), 32):
        opt.zero_grad()
        nn.functional.cross_entropy(net(x[b]), y[b]).backward()
        opt.step()
    content = RecordDict(
        {"arrays": ArrayRecord(net.state_dict()), "metrics": MetricRecord({"num-examples": len(y)})}
    )
    return Message(content=content, reply_to=msg)


server = ServerApp()
STAMPS: list[float] = []


def evaluate_fn(server_round: int, arrays: ArrayRecord) -> MetricRecord:
    net = model()
    net.load_state_dict(arrays.to_torch_state_dict())
    with torch.no_grad():
        acc = (net(X[test_idx]).argmax(1) == Y[test_idx]).float().mean().item()
    STAMPS.append(time.perf_counter())
    return MetricRecord({"accuracy": acc})


@server.main()
def main(grid: Grid, context: Context) -> None:
    strategy = FedAvg(
        fraction_train=1.0, fraction_evaluate=0.0, min_train_nodes=N, min_available_nodes=N
    )
    result = strategy.start(
        grid=grid,
        initial_arrays=ArrayRecord(model().state_dict()),
        num_rounds=ROUNDS,
        evaluate_fn=evaluate_fn,
    )
    acc = result.evaluate_metrics_serverapp[ROUNDS]["accuracy"]
    print("RESULT " + json.dumps({"stamps": STAMPS, "final_accuracy": acc}), flush=True)


if __name__ == "__main__":
    t0 = time.perf_counter()
    run_simulation(
        server_app=server,
        client_app=client,
        num_supernodes=N,
        backend_config={"client_resources": {"num_cpus": 1, "num_gpus": 0.0}},
    )
    print("TOTAL " + json.dumps({"total_s": time.perf_counter() - t0, "start": t0}), flush=True)
