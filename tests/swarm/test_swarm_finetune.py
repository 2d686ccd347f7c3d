"""Prompt tuning through frozen remote blocks, int8 on the wire, with a server failure."""

from __future__ import annotations

import torch
from transformers import LlamaForCausalLM

from deai.swarm.blocks import Span
from deai.swarm.client import ClientConfig
from deai.swarm.finetune import PromptTuningConfig, lm_loss, prompt_tune
from deai.swarm.manifest import Manifest
from deai.swarm.sim import SimConfig, SimSwarm
from deai.swarm.wire import ActCodec


def pattern(n: int, seed: int) -> torch.Tensor:
    """Rotations of one random 8-token motif, repeated: learnable from a soft prompt."""
    motif = torch.randint(0, 256, (8,), generator=torch.Generator().manual_seed(0))
    g = torch.Generator().manual_seed(seed)
    return torch.stack(
        [motif.roll(int(torch.randint(0, 8, (1,), generator=g))).repeat(2) for _ in range(n)]
    )


def test_remote_backward_matches_local_autograd(
    tiny: LlamaForCausalLM, tiny_manifest: Manifest
) -> None:
    sw = SimSwarm(tiny, SimConfig(spans=((0, 2), (2, 6))), manifest=tiny_manifest)
    c = sw.client(ClientConfig(training_codec=ActCodec.FLOAT32))
    h = c.parts.embed_ids(pattern(2, 1)).detach().requires_grad_(True)
    c.parts.logits(c.remote(h)).sum().backward()
    local = h.detach().clone().requires_grad_(True)
    c.parts.logits(Span.of(tiny, 0, 6)(local, 0, None)).sum().backward()
    assert h.grad is not None and local.grad is not None
    assert torch.allclose(h.grad, local.grad, rtol=1e-4, atol=1e-5)


def test_prompt_tuning_through_the_swarm_lowers_held_out_loss(
    tiny: LlamaForCausalLM, tiny_manifest: Manifest
) -> None:
    sw = SimSwarm(tiny, SimConfig(spans=((0, 3), (3, 6), (3, 6))), manifest=tiny_manifest)
    c = sw.client()
    victim = next(s for s in sw.servers if s.config.start == 3)
    steps: list[float] = []

    def on_step(i: int, loss: float) -> None:
        steps.append(loss)
        if i == 2:
            sw.transport.kill(victim.config.url)  # a server dies mid-training

    before_params = [p.clone() for p in tiny.parameters()]
    r = prompt_tune(
        c, pattern(16, 1), pattern(8, 2), PromptTuningConfig(steps=8, batch=4), on_step=on_step
    )
    assert r.loss_after < r.loss_before - 1.0, (r.loss_before, r.loss_after)
    assert all(
        torch.equal(a, b) for a, b in zip(before_params, tiny.parameters(), strict=True)
    )  # servers frozen
    assert [code for _, _, code in c.failures] == ["unreachable"] and len(steps) == 8
    # int8 on the wire: a training call's hidden state costs ~1.1 bytes per value, not 4
    per_value = sw.transport.stats.bytes_sent / (sw.transport.stats.calls * 4 * 24 * 64)
    assert per_value < 2.5
    with torch.no_grad():
        assert float(lm_loss(c, None, pattern(4, 3))) > r.loss_after  # the prompt is what helps
