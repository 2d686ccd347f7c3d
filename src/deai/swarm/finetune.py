"""Fine-tuning through the swarm: a client-side soft prompt over frozen remote blocks.

Prompt tuning (Lester et al. 2021, "The power of scale for parameter-efficient prompt
tuning"), as Petals does it: the client prepends ``n_prompt`` trainable embeddings to
each sequence, runs every block remotely (:meth:`SwarmClient.remote`, an autograd
function whose backward asks each server for the gradient with respect to its span's
input), and computes the loss with its own final norm and LM head. Servers never see a
trainable parameter and never change; activations and gradients travel int8-blockwise
(:mod:`deai.swarm.wire`). Only the soft prompt (``n_prompt x H`` numbers) is learned.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from deai.errors import ConfigError
from deai.swarm.client import SwarmClient


@dataclass(frozen=True)
class PromptTuningConfig:
    n_prompt: int = 8  # soft-prompt tokens
    steps: int = 20  # optimizer steps
    batch: int = 4  # sequences per step
    lr: float = 0.05  # Adam learning rate
    seed: int = 0  # prompt initialization and batch order


class SoftPrompt(nn.Module):
    """``n_prompt`` trainable embeddings, initialised from random vocabulary embeddings."""

    def __init__(self, embed: nn.Embedding, n_prompt: int, seed: int) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        ids = torch.randint(0, embed.num_embeddings, (n_prompt,), generator=g)
        self.prompt = nn.Parameter(embed.weight[ids].detach().clone())  # [P, H]

    def forward(self, hidden: Tensor) -> Tensor:
        b = hidden.shape[0]
        return torch.cat([self.prompt.expand(b, -1, -1), hidden], dim=1)  # [B, P + T, H]


def lm_loss(client: SwarmClient, prompt: SoftPrompt | None, ids: Tensor) -> Tensor:
    """Mean next-token cross-entropy of ``ids [B, T]`` through the swarm."""
    hidden = client.parts.embed_ids(ids)  # [B, T, H]
    p = 0
    if prompt is not None:
        hidden = prompt(hidden)
        p = prompt.prompt.shape[0]
    out = client.remote(hidden)[:, p:]  # [B, T, H]
    logits = client.parts.logits(out)  # [B, T, V]
    return F.cross_entropy(logits[:, :-1].reshape(-1, logits.shape[-1]), ids[:, 1:].reshape(-1))


@dataclass
class FinetuneResult:
    loss_before: float  # held-out loss with the initial prompt
    loss_after: float  # held-out loss after training
    train_losses: list[float] = field(default_factory=list)
    prompt: Tensor | None = None


def evaluate(client: SwarmClient, prompt: SoftPrompt | None, ids: Tensor, batch: int) -> float:
    with torch.no_grad():
        losses = [
            float(lm_loss(client, prompt, ids[i : i + batch])) for i in range(0, len(ids), batch)
        ]
    return sum(losses) / len(losses)


def prompt_tune(
    client: SwarmClient,
    train: Tensor,
    held_out: Tensor,
    config: PromptTuningConfig | None = None,
    on_step: Callable[[int, float], None] | None = None,
) -> FinetuneResult:
    """Train a soft prompt on ``train [N, T]``; report loss on ``held_out [M, T]``."""
    cfg = config or PromptTuningConfig()
    if train.dim() != 2 or held_out.dim() != 2 or len(train) < cfg.batch:
        raise ConfigError("finetune: train and held_out must be [N, T] with N >= batch")
    prompt = SoftPrompt(client.parts.embed, cfg.n_prompt, cfg.seed)
    before = evaluate(client, prompt, held_out, cfg.batch)
    opt = torch.optim.Adam(prompt.parameters(), lr=cfg.lr)
    g = torch.Generator().manual_seed(cfg.seed)
    losses: list[float] = []
    for step in range(cfg.steps):
        idx = torch.randperm(len(train), generator=g)[: cfg.batch]
        loss = lm_loss(client, prompt, train[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
        if on_step is not None:
            on_step(step, losses[-1])
    after = evaluate(client, prompt, held_out, cfg.batch)
    return FinetuneResult(before, after, losses, prompt.prompt.detach().clone())
