"""The in-memory transport: exact byte counting, the network model's timing, drop-outs."""

import pytest
import torch

from deai.node.messages import Message, TrainTask, encode
from deai.node.roles import Role
from deai.sim.engine import Simulation
from deai.sim.network import FaultModel, LinkProfile, NetworkModel


class Recorder(Role):
    def __init__(self, node_id: str) -> None:
        super().__init__(node_id)
        self.got: list[tuple[float, str, Message]] = []

    def handle(self, sender: str, msg: Message) -> None:
        self.got.append((self.ctx.now(), sender, msg))


def _net(up_mbps: float = 8.0, lat: float = 0.01) -> NetworkModel:
    p = LinkProfile(up_mbps * 1e6, up_mbps * 1e6, lat, 1000.0)
    return NetworkModel({"a": p, "b": p, "c": p})


def test_every_byte_is_counted_and_timed() -> None:
    sim = Simulation(_net())
    a, b, c = Recorder("a"), Recorder("b"), Recorder("c")
    for r in (a, b, c):
        sim.add_node(r.node_id, r)
    msg = TrainTask("job", 1, b"\x01" * 1_000_000, "h")
    size = len(encode(msg))
    sim.schedule(0.0, lambda: a.ctx.send("b", msg))
    sim.schedule(0.0, lambda: c.ctx.send("b", msg))
    sim.run()
    assert sim.bytes.sent["a"] == sim.bytes.sent["c"] == size
    assert sim.bytes.received["b"] == 2 * size
    assert sim.bytes.by_kind["train_task"] == 2 * size
    times = sorted(t for t, _, _ in b.got)
    one = 8 * size / 8e6
    assert times[0] == pytest.approx(0.02 + one, rel=1e-6)  # latency + transfer
    assert times[1] == pytest.approx(0.02 + 2 * one, rel=1e-6)  # queued on b's downlink


def test_dropped_node_loses_its_round_messages() -> None:
    faults = FaultModel(dropout=0.5, seed=0, nodes={"a"})
    down = [r for r in range(40) if faults.is_down("a", r)]
    assert 5 < len(down) < 35
    sim = Simulation(_net(), faults)
    a, b = Recorder("a"), Recorder("b")
    sim.add_node("a", a)
    sim.add_node("b", b)
    sim.add_node("c", Recorder("c"))
    for r in range(40):
        sim.schedule(float(r), lambda r=r: a.ctx.send("b", TrainTask("j", r, b"", "h")))
    sim.run()
    assert sorted(m.round for _, _, m in b.got) == [r for r in range(40) if r not in down]
    assert sim.bytes.dropped == len(down)


def test_training_requests_at_different_times_share_one_batch() -> None:
    from deai.learning.models import ModelConfig, build_model
    from deai.learning.params import FlatModel
    from deai.learning.train import LocalTrainConfig, TrainRequest

    sim = Simulation(_net())
    nodes = [Recorder(n) for n in "abc"]
    for r in nodes:
        sim.add_node(r.node_id, r)
    model = FlatModel(build_model(ModelConfig(), (4,), 2, 0))
    done: list[float] = []
    req = TrainRequest(
        model.initial_vector(),
        torch.randn(10, 4),
        torch.randint(0, 2, (10,)),
        LocalTrainConfig(),
        0,
    )
    for i, r in enumerate(nodes):  # submitted at t = 0, 0.001, 0.002; each takes 0.01 s
        sim.schedule(i * 0.001, lambda r=r: r.ctx.train(model, req, lambda _: done.append(sim.now)))
    sim.run()
    assert sim.train_batches == 1
    assert done == pytest.approx([0.01, 0.011, 0.012])
