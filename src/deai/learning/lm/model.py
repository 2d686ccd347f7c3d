"""A small decoder-only transformer (after nanoGPT, Karpathy 2022), sized for a CPU.

Pre-norm blocks of causal self-attention and a GELU MLP, learned position embeddings, the
token embedding tied to the output head. The attention projections are four separate
``nn.Linear`` (``q``, ``k``, ``v``, ``o``) and the MLP two (``fc``, ``proj``) so that LoRA
can target each by name (see :mod:`deai.learning.lm.lora`). The defaults give ~120 k
parameters; a forward and backward of a 16 x 64 batch take milliseconds on one core.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from deai.errors import ConfigError
from deai.learning.lm.tokenizer import VOCAB_SIZE


@dataclass(frozen=True)
class GPTConfig:
    vocab_size: int = VOCAB_SIZE  # byte-level tokens
    block_size: int = 64  # longest context, in tokens
    n_layer: int = 2  # transformer blocks
    n_head: int = 4  # attention heads per block
    n_embd: int = 64  # width of the residual stream
    mlp_ratio: int = 4  # MLP hidden width = mlp_ratio * n_embd
    dropout: float = 0.0  # off: runs stay deterministic and the model is tiny


class CausalSelfAttention(nn.Module):
    def __init__(self, cfg: GPTConfig) -> None:
        super().__init__()
        self.n_head = cfg.n_head
        self.q = nn.Linear(cfg.n_embd, cfg.n_embd)
        self.k = nn.Linear(cfg.n_embd, cfg.n_embd)
        self.v = nn.Linear(cfg.n_embd, cfg.n_embd)
        self.o = nn.Linear(cfg.n_embd, cfg.n_embd)
        self.dropout = cfg.dropout

    def forward(self, x: Tensor) -> Tensor:
        b, t, c = x.shape  # [B, T, C]
        h = self.n_head

        def heads(z: Tensor) -> Tensor:
            return z.view(b, t, h, c // h).transpose(1, 2)  # [B, H, T, C/H]

        q, k, v = heads(self.q(x)), heads(self.k(x)), heads(self.v(x))
        drop = self.dropout if self.training else 0.0
        y = F.scaled_dot_product_attention(q, k, v, dropout_p=drop, is_causal=True)
        y = y.transpose(1, 2).contiguous().view(b, t, c)  # [B, T, C]
        return self.o(y)


class MLP(nn.Module):
    def __init__(self, cfg: GPTConfig) -> None:
        super().__init__()
        self.fc = nn.Linear(cfg.n_embd, cfg.mlp_ratio * cfg.n_embd)
        self.proj = nn.Linear(cfg.mlp_ratio * cfg.n_embd, cfg.n_embd)

    def forward(self, x: Tensor) -> Tensor:
        return self.proj(F.gelu(self.fc(x)))  # [B, T, C]


class Block(nn.Module):
    def __init__(self, cfg: GPTConfig) -> None:
        super().__init__()
        self.ln1 = nn.LayerNorm(cfg.n_embd)
        self.attn = CausalSelfAttention(cfg)
        self.ln2 = nn.LayerNorm(cfg.n_embd)
        self.mlp = MLP(cfg)

    def forward(self, x: Tensor) -> Tensor:
        x = x + self.attn(self.ln1(x))  # [B, T, C]
        return x + self.mlp(self.ln2(x))  # [B, T, C]


class GPT(nn.Module):
    """Token ids ``[B, T]`` in, next-token logits ``[B, T, vocab]`` out."""

    def __init__(self, cfg: GPTConfig) -> None:
        super().__init__()
        if cfg.n_embd % cfg.n_head:
            raise ConfigError(f"gpt: n_embd {cfg.n_embd} not divisible by n_head {cfg.n_head}")
        self.cfg = cfg
        self.wte = nn.Embedding(cfg.vocab_size, cfg.n_embd)
        self.wpe = nn.Embedding(cfg.block_size, cfg.n_embd)
        self.blocks = nn.ModuleList(Block(cfg) for _ in range(cfg.n_layer))
        self.ln_f = nn.LayerNorm(cfg.n_embd)
        self.apply(self._init)
        for name, p in self.named_parameters():  # GPT-2 scaled init of residual outputs
            if name.endswith(("o.weight", "proj.weight")):
                nn.init.normal_(p, std=0.02 / math.sqrt(2 * cfg.n_layer))

    @staticmethod
    def _init(module: nn.Module) -> None:
        if isinstance(module, nn.Linear):
            nn.init.normal_(module.weight, std=0.02)
            nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            nn.init.normal_(module.weight, std=0.02)

    def forward(self, idx: Tensor) -> Tensor:
        t = idx.shape[1]  # idx: [B, T]
        if t > self.cfg.block_size:
            raise ConfigError(f"gpt: sequence of {t} exceeds block_size {self.cfg.block_size}")
        pos = torch.arange(t, device=idx.device)  # [T]
        x = self.wte(idx) + self.wpe(pos)  # [B, T, C]
        for block in self.blocks:
            x = block(x)
        return self.ln_f(x) @ self.wte.weight.T  # [B, T, vocab], tied head

    def loss(self, idx: Tensor, targets: Tensor) -> Tensor:
        """Mean next-token cross-entropy (nats) of ``targets [B, T]`` given ``idx [B, T]``."""
        logits = self(idx)  # [B, T, V]
        return F.cross_entropy(logits.reshape(-1, logits.size(-1)), targets.reshape(-1))


def batches(tokens: Tensor, block: int, batch: int, gen: torch.Generator) -> tuple[Tensor, Tensor]:
    """A random batch of ``(inputs, targets)`` windows, each ``[batch, block]``."""
    if tokens.numel() <= block + 1:
        raise ConfigError(f"gpt: need more than {block + 1} tokens, got {tokens.numel()}")
    starts = torch.randint(0, tokens.numel() - block - 1, (batch,), generator=gen)
    offsets = torch.arange(block)  # [T]
    x = tokens[starts[:, None] + offsets]  # [B, T]
    y = tokens[starts[:, None] + offsets + 1]  # [B, T]
    return x, y


@torch.no_grad()
def evaluate(model: GPT, tokens: Tensor, n_windows: int = 64) -> float:
    """Mean loss over ``n_windows`` evenly spaced, non-random windows of ``tokens``."""
    block = model.cfg.block_size
    last = tokens.numel() - block - 1
    if last < 1:
        raise ConfigError("gpt: evaluation text shorter than one window")
    starts = torch.linspace(0, last, n_windows).long()
    offsets = torch.arange(block)
    x = tokens[starts[:, None] + offsets]  # [N, T]
    y = tokens[starts[:, None] + offsets + 1]  # [N, T]
    was_training = model.training
    model.eval()
    loss = float(model.loss(x, y))
    model.train(was_training)
    return loss


@torch.no_grad()
def generate_text(model: GPT, prompt: Tensor, n_new: int, gen: torch.Generator) -> Tensor:
    """Sample ``n_new`` tokens after ``prompt [T0]`` (multinomial, temperature 1)."""
    idx = prompt.reshape(1, -1)  # [1, T]
    for _ in range(n_new):
        logits = model(idx[:, -model.cfg.block_size :])[:, -1]  # [1, V]
        nxt = torch.multinomial(F.softmax(logits, dim=-1), 1, generator=gen)  # [1, 1]
        idx = torch.cat([idx, nxt], dim=1)
    return idx[0]
