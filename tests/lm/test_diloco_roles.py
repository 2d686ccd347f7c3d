"""DiLoCo's pieces in the job spec and the validator's strategy: inner AdamW reaches the
providers' trainer, the outer Nesterov / AdamW step is the server's, through the roles."""

from __future__ import annotations

import torch

import deai
from deai.job.spec import AlgorithmSpec, ServerOptimizer
from deai.learning.train import Optimizer
from deai.llm.ngram import ngram_loss
from deai.llm.outer import OuterAdamW, OuterNesterov
from deai.node.strategy import ServerStrategy, Updates
from deai.registry import aggregators


def test_the_algorithm_section_carries_the_inner_optimizer() -> None:
    a = AlgorithmSpec(steps=5, optimizer="adamw", weight_decay=0.1, clip_norm=1.0)
    cfg = a.local()
    assert cfg.optimizer is Optimizer.ADAMW and cfg.weight_decay == 0.1 and cfg.clip_norm == 1.0
    dp = AlgorithmSpec(name="parallel_sgd", optimizer="adamw", clip_norm=2.0).local()
    assert dp.optimizer is Optimizer.SGD and dp.steps == 1 and dp.lr == 1.0  # a raw gradient


def _strategy(server: str, lr: float, mu: float) -> ServerStrategy:
    spec = deai.JobSpec(
        name="outer",
        algorithm=deai.AlgorithmSpec(
            server_optimizer=server, server_lr=lr, server_momentum=mu, weighting="uniform"
        ),
        data=deai.DataSchema(input_shape=(4,), num_classes=2),
    )
    return ServerStrategy(spec, aggregators.build("mean", {}))


def test_the_server_steps_with_outer_nesterov_and_keeps_its_momentum() -> None:
    s = _strategy("nesterov", 0.7, 0.9)
    assert s.spec.algorithm.server_optimizer is ServerOptimizer.NESTEROV
    ref = OuterNesterov(0.7, 0.9)
    params, mirror = torch.zeros(6), torch.zeros(6)
    g = torch.Generator().manual_seed(0)
    for r in range(1, 4):
        ups = torch.randn(3, 6, generator=g)
        params = s.aggregate_train(r, params, Updates(("a", "b", "c"), ups, (1, 1, 1))).params
        mirror = ref.step(mirror, ups.mean(dim=0))
        assert torch.allclose(params, mirror, atol=1e-6)


def test_the_dp_baseline_server_is_adamw_on_the_mean_gradient() -> None:
    s = _strategy("adamw", 0.01, 0.0)
    ref = OuterAdamW(0.01)
    ups = torch.tensor([[1.0, -2.0], [3.0, 0.0]])
    out = s.aggregate_train(1, torch.ones(2), Updates(("a", "b"), ups, (1, 1))).params
    assert torch.allclose(out, ref.step(torch.ones(2), ups.mean(dim=0)))


def test_diloco_through_the_roles_learns_on_digits() -> None:
    spec = deai.JobSpec(
        name="diloco-digits",
        rounds=8,
        model=deai.ModelSpec(name="mlp", hidden=[16]),
        algorithm=deai.AlgorithmSpec(
            steps=10,
            batch_size=16,
            lr=1e-2,
            optimizer="adamw",
            server_optimizer="nesterov",
            server_lr=0.7,
            server_momentum=0.9,
        ),
    )
    world = deai.SimulationSection(
        data=deai.DataSource(dataset="digits", partition="iid"),
        nodes=[deai.NodeGroup(role="provider", count=4), deai.NodeGroup(role="validator")],
    )
    res = deai.simulate(spec, world)
    assert res.final_accuracy > 0.7 and res.rounds[-1].loss < res.rounds[0].loss


def test_the_bigram_baseline_beats_unigrams_on_a_pattern() -> None:
    w = (torch.arange(400).reshape(20, 20) % 7).long()  # a cyclic sequence: bigrams know it
    out = ngram_loss([w[:15]], w[15:], vocab=7)
    assert out["bigram"] < 0.1 < out["unigram"]
