"""Federated LoRA fine-tuning of SmolLM2-135M through the real roles (deai.simulate):
only the adapters travel, the robust default aggregator takes them, the round settles."""

from __future__ import annotations

import math

import pytest

import deai
from deai.learning.train import evaluate
from deai.llm.plugin import held_out
from deai.node.base import model_for

FULL = 134_515_008  # SmolLM2-135M's parameters


@pytest.mark.slow
@pytest.mark.llm
def test_lora_round_through_the_roles_sends_adapters_only() -> None:
    spec = deai.JobSpec(
        name="lora-test",
        rounds=1,
        model=deai.ModelSpec(name="smollm2_lora", rank=2),
        aggregation=deai.AggregationSpec(rule="default"),
        algorithm=deai.AlgorithmSpec(steps=1, batch_size=2, lr=0.5, weighting="uniform"),
    )
    world = deai.SimulationSection(
        data=deai.DataSource(
            dataset="python_stdlib",
            partition="shards",
            shards_per_provider=1,
            test_fraction=0.1,
            validation_fraction=0.0,
            providers=2,
            window=16,
            windows_per_provider=10,
        ),
        nodes=[deai.NodeGroup(role="provider", count=2), deai.NodeGroup(role="validator")],
    )
    res = deai.simulate(spec, world)
    flat = model_for(res.spec)
    assert flat.dim == 2 * 30 * (576 + 576 + 576 + 192)  # rank 2 on q_proj and v_proj
    (r,) = res.rounds
    assert r.applied and r.accepted == 2
    per_update = r.bytes_up / 2
    assert 4 * flat.dim < per_update < 4 * flat.dim + 1_000  # adapters and one header
    assert per_update < 4 * FULL / 1000
    test = held_out(0, 2, 16).test.subset(range(8))
    before, _ = evaluate(flat, flat.initial_vector(), test)
    after, _ = evaluate(flat, res.params, test)
    assert math.isfinite(after) and after < before + 0.5  # one small step does no harm
    assert math.exp(before) < 200  # the pretrained model reads Python: far below 49,152
