"""Manifest, spans and the wire: the pieces a server and a client agree on."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from transformers import LlamaForCausalLM

from deai.errors import ConfigError
from deai.swarm.blocks import ClientParts, Span, load_span
from deai.swarm.errors import BadRequest
from deai.swarm.manifest import Manifest, ModelSource
from deai.swarm.wire import ZERO_HASH, ActCodec, chain_hashes, decode_act, encode_act, pack, unpack


def test_chain_of_spans_equals_the_whole_model(tiny: LlamaForCausalLM) -> None:
    ids = torch.tensor([[3, 1, 4, 1, 5, 9, 2, 6]])
    parts = ClientParts(tiny)
    with torch.no_grad():
        h = parts.embed_ids(ids)
        for a, b in [(0, 2), (2, 5), (5, 6)]:
            h = Span.of(tiny, a, b)(h, 0, None)
        ours = parts.logits(h)
        ref = tiny(ids).logits
    assert torch.equal(ours, ref)  # bit for bit: the same ops in the same order


def test_manifest_root_is_stable_and_binds_every_block(
    tiny: LlamaForCausalLM, tiny_manifest: Manifest
) -> None:
    again = Manifest.of(ModelSource().load())
    assert again.root == tiny_manifest.root
    for i in range(tiny_manifest.n_blocks):
        assert tiny_manifest.check_block(i, tiny_manifest.block_hashes[i], tiny_manifest.proof(i))
    # a proof for block 1 does not prove block 2's hash, nor another hash for block 1
    assert not tiny_manifest.check_block(1, tiny_manifest.block_hashes[2], tiny_manifest.proof(1))
    other = Manifest.of(ModelSource(seed=1).load())
    assert other.root != tiny_manifest.root
    assert Manifest.from_json(tiny_manifest.to_json()) == tiny_manifest


def test_a_server_cannot_load_weights_that_are_not_the_manifests(
    tiny: LlamaForCausalLM, tiny_manifest: Manifest
) -> None:
    tampered = copy.deepcopy(tiny)
    with torch.no_grad():
        tampered.model.layers[3].mlp.down_proj.weight[0, 0] += 1e-3
    load_span(tampered, tiny_manifest, 0, 3)  # untouched blocks load
    with pytest.raises(ConfigError, match="block 3"):
        load_span(tampered, tiny_manifest, 2, 5)


@given(
    st.integers(1, 3),
    st.integers(1, 5),
    st.integers(1, 130),
    st.floats(0.01, 1e4),
    st.integers(0, 2**16),
)
def test_int8_blockwise_error_is_within_half_a_step_of_each_rows_absmax(
    b: int, t: int, h: int, scale: float, seed: int
) -> None:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(b, t, h, generator=g) * scale
    y = decode_act("x", encode_act("x", x, ActCodec.INT8_BLOCKWISE), ActCodec.INT8_BLOCKWISE)
    assert y.shape == x.shape
    bound = x.abs().amax(dim=-1, keepdim=True) / 254 * (1 + 1e-5) + 1e-6
    assert bool(((y - x).abs() <= bound).all())


def test_messages_round_trip_and_garbage_is_refused() -> None:
    x = torch.randn(1, 3, 8)
    meta, tensors = unpack(pack({"a": 1}, encode_act("hidden", x, ActCodec.FLOAT32)))
    assert meta == {"a": 1} and torch.equal(tensors["hidden"], x)
    for junk in (b"", b"\x00" * 7, b"\xff" * 64, pack({}, {})[:-1] + b"x" * 3):
        with pytest.raises(BadRequest):
            unpack(junk)
    with pytest.raises(BadRequest, match=r"not_finite|NaN"):
        unpack(pack({}, {"hidden": torch.tensor([[[float("nan")]]])}))
    with pytest.raises(BadRequest):
        unpack(b"x" * 100, max_bytes=10)
    bad = encode_act("hidden", x, ActCodec.INT8_BLOCKWISE)
    bad["hidden.shape"] = torch.tensor([1, 3, 999])
    with pytest.raises(BadRequest, match="do not fit"):
        decode_act("hidden", bad, ActCodec.INT8_BLOCKWISE)


def test_input_hash_names_the_whole_history() -> None:
    rows = torch.randn(5, 8)
    hs = chain_hashes(ZERO_HASH, rows)
    # computing in two calls gives the same hashes as in one
    assert chain_hashes(hs[1], rows[2:]) == hs[2:]
    changed = rows.clone()
    changed[0, 0] += 1.0
    assert chain_hashes(ZERO_HASH, changed)[4] != hs[4]  # an early row changes every later hash
    assert len(set(hs)) == 5 and isinstance(np.int64(0), np.integer)


def test_the_swarm_uses_only_the_nodes_envelope_and_http_helpers_from_node() -> None:
    """Layering: the swarm plane never imports the simulator, the job API or node roles."""
    import ast
    from pathlib import Path

    import deai.swarm

    allowed = {"deai.node.signing", "deai.node.http"}
    for path in Path(deai.swarm.__file__).parent.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module:
                m = node.module
                assert not m.startswith(("deai.sim", "deai.api", "deai.job")), (path, m)
                assert not m.startswith("deai.node") or m in allowed, (path, m)
