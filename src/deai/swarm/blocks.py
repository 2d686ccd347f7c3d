"""What each party runs: a server's span of decoder layers, and the client's own parts.

A :class:`Span` holds decoder layers ``[start, end)`` of a Llama model and runs them
exactly as ``LlamaModel.forward`` does (the same causal-mask builder, rotary embedding and
layer calls), so a token generated through a chain of spans is bit-for-bit the token the
whole model would generate. The key/value cache of an inference session is a
``transformers.DynamicCache``; the mask and the rotary phases come from explicit positions,
which is what makes a replay after a failure correct (Petals #587 restarted positions at 0).

The client keeps the embeddings, the final norm and the LM head (:class:`ClientParts`)
and anything it trains (a soft prompt, see :mod:`deai.swarm.finetune`).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn
from transformers import DynamicCache, LlamaConfig, LlamaForCausalLM
from transformers.masking_utils import create_causal_mask

from deai.errors import ConfigError
from deai.swarm.manifest import Manifest, weights_digest


class Span(nn.Module):
    """Decoder layers ``[start, end)`` of one model, frozen."""

    def __init__(
        self, config: LlamaConfig, layers: list[nn.Module], rotary_emb: nn.Module, start: int
    ) -> None:
        super().__init__()
        n = config.num_hidden_layers
        end = start + len(layers)
        if not 0 <= start < end <= n:
            raise ConfigError(f"span: need 0 <= start < end <= {n}, got [{start}, {end})")
        self.config = config
        self.start = start
        self.end = end
        self.layers = nn.ModuleList(layers)
        self.rotary_emb = rotary_emb
        for p in self.parameters():
            p.requires_grad_(False)

    @classmethod
    def of(cls, model: LlamaForCausalLM, start: int, end: int) -> Span:
        """Layers ``[start, end)`` of ``model`` (shared, not copied)."""
        n = model.config.num_hidden_layers
        if not 0 <= start < end <= n:
            raise ConfigError(f"span: need 0 <= start < end <= {n}, got [{start}, {end})")
        return cls(model.config, list(model.model.layers[start:end]), model.model.rotary_emb, start)

    def sub(self, start: int, end: int) -> Span:
        """The layers ``[start, end)`` of this span (absolute block indices)."""
        if not self.start <= start < end <= self.end:
            raise ConfigError(f"span: [{start}, {end}) is not inside [{self.start}, {self.end})")
        if (start, end) == (self.start, self.end):
            return self
        layers = list(self.layers)[start - self.start : end - self.start]
        return Span(self.config, layers, self.rotary_emb, start)

    @property
    def hidden_size(self) -> int:
        return int(self.config.hidden_size)

    def new_cache(self) -> DynamicCache:
        return DynamicCache(config=self.config)

    def forward(self, hidden: Tensor, first_position: int, cache: DynamicCache | None) -> Tensor:
        """Run the layers on ``hidden [B, T, H]`` at positions ``first_position + 0..T-1``.

        With ``cache`` the keys and values of these positions are appended to it, so the
        cache must hold exactly ``first_position`` positions (checked by the server)."""
        t = hidden.shape[1]
        positions = torch.arange(first_position, first_position + t).unsqueeze(0)  # [1, T]
        mask = create_causal_mask(
            config=self.config,
            inputs_embeds=hidden,
            attention_mask=None,
            cache=cache,
            position_ids=positions,
            layer_idx=self.start,
        )
        phases = self.rotary_emb(hidden, position_ids=positions)  # (cos, sin), each [1, T, Dh]
        for layer in self.layers:
            hidden = layer(
                hidden,
                attention_mask=mask,
                position_embeddings=phases,
                cache=cache,
                position_ids=positions,
            )
        return hidden  # [B, T, H]

    def backward(self, hidden: Tensor, grad_out: Tensor) -> Tensor:
        """Petals-style backward: recompute the span on ``hidden`` (from position 0, no
        cache) and return the gradient of ``<output, grad_out>`` with respect to ``hidden``."""
        x = hidden.detach().requires_grad_(True)
        with torch.enable_grad():
            y = self.forward(x, 0, None)
            (grad_in,) = torch.autograd.grad(y, x, grad_outputs=grad_out)
        return grad_in.detach()

    def block_hashes(self) -> list[str]:
        return [weights_digest(layer).hex() for layer in self.layers]


def load_span(model: LlamaForCausalLM, manifest: Manifest, start: int, end: int) -> Span:
    """The span ``[start, end)`` of ``model``, refusing any block whose weights do not hash
    to the manifest (a server cannot silently serve other weights under this root)."""
    span = Span.of(model, start, end)
    for i, h in enumerate(span.block_hashes()):
        if h != manifest.block_hashes[start + i]:
            raise ConfigError(f"span: block {start + i} does not match the manifest")
    return span


class ClientParts(nn.Module):
    """Embeddings, final norm and LM head: what the client runs itself."""

    def __init__(self, model: LlamaForCausalLM) -> None:
        super().__init__()
        self.embed = model.model.embed_tokens
        self.norm = model.model.norm
        self.head = model.lm_head
        for p in self.parameters():
            p.requires_grad_(False)

    def embed_ids(self, ids: Tensor) -> Tensor:
        return self.embed(ids)  # [B, T] -> [B, T, H]

    def logits(self, hidden: Tensor) -> Tensor:
        return self.head(self.norm(hidden))  # [B, T, H] -> [B, T, V]

    def digest(self) -> str:
        return weights_digest(
            nn.ModuleDict({"embed": self.embed, "norm": self.norm, "head": self.head})
        ).hex()
