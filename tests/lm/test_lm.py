"""The small LM: tokenizer, corpus, model, LoRA, DiLoCo's outer step."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from deai.errors import ConfigError
from deai.learning.lm import (
    GPT,
    Domain,
    GPTConfig,
    LoRAConfig,
    OuterNesterov,
    apply_lora,
    batches,
    evaluate,
    generate,
    load_lora_vector,
    lora_parameters,
    lora_vector,
    merge_lora,
    nesterov_step,
    pseudo_gradient,
)
from deai.learning.lm.tokenizer import VOCAB_SIZE, decode, encode

SMALL = GPTConfig(block_size=32, n_layer=2, n_head=2, n_embd=32)


@given(st.text(max_size=200))
@settings(max_examples=50, deadline=None)
def test_tokenizer_roundtrips_any_text(text: str) -> None:
    tokens = encode(text)
    assert tokens.dtype == torch.long
    assert all(0 <= t < VOCAB_SIZE for t in tokens.tolist())
    assert decode(tokens) == text


def test_tokenizer_rejects_out_of_range_ids() -> None:
    with pytest.raises(ConfigError):
        decode(torch.tensor([65, 256]))
    assert decode(torch.tensor([0xFF])) == "\ufffd"  # invalid UTF-8 is replaced


def test_corpus_is_deterministic_and_domains_differ() -> None:
    a, b = generate(20_000, seed=3), generate(20_000, seed=3)
    assert a == b and len(a) >= 20_000
    assert generate(20_000, seed=4) != a
    farm = generate(20_000, seed=3, domain=Domain.FARM)
    assert "goat" in farm and "goat" not in a and "baker" in a and "baker" not in farm
    assert a.isascii() and a.endswith("\n")


def test_model_is_small_causal_and_shaped() -> None:
    torch.manual_seed(0)
    model = GPT(GPTConfig())
    assert sum(p.numel() for p in model.parameters()) < 2_000_000
    small = GPT(SMALL)
    x = torch.randint(0, 256, (2, 16))
    logits = small(x)
    assert logits.shape == (2, 16, VOCAB_SIZE)
    x2 = x.clone()
    x2[:, 10:] = (x2[:, 10:] + 1) % 256
    torch.testing.assert_close(small(x2)[:, :10], logits[:, :10])  # the past ignores the future
    with pytest.raises(ConfigError):
        small(torch.zeros(1, 33, dtype=torch.long))
    with pytest.raises(ConfigError):
        GPT(GPTConfig(n_embd=30, n_head=4))


def test_model_learns_the_corpus() -> None:
    torch.manual_seed(0)
    tokens = encode(generate(30_000, seed=0))
    model = GPT(SMALL)
    before = evaluate(model, tokens)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    gen = torch.Generator().manual_seed(0)
    for _ in range(60):
        x, y = batches(tokens, SMALL.block_size, 16, gen)
        opt.zero_grad()
        model.loss(x, y).backward()
        opt.step()
    after = evaluate(model, tokens)
    assert before > 5.0  # ~ln 256 at initialisation
    assert after < 3.0


def test_lora_starts_equal_trains_only_adapters_and_merges_exactly() -> None:
    torch.manual_seed(1)
    model = GPT(SMALL)
    x = torch.randint(0, 256, (2, 16))
    base_out = model(x).detach()
    n = apply_lora(model, LoRAConfig(rank=2))
    assert n == 6 * SMALL.n_layer
    torch.testing.assert_close(model(x), base_out)  # B = 0 at start
    trainable = [p for p in model.parameters() if p.requires_grad]
    adapters = lora_parameters(model)
    assert {id(p) for p in trainable} == {id(p) for p in adapters}
    c, h = SMALL.n_embd, 4 * SMALL.n_embd
    per_layer = 4 * 2 * (c + c) + 2 * (c + h) + 2 * (h + c)
    assert lora_vector(model).numel() == SMALL.n_layer * per_layer
    frozen = {k: v.clone() for k, v in model.state_dict().items() if "lora" not in k}
    opt = torch.optim.AdamW(adapters, lr=1e-2)
    for _ in range(5):
        opt.zero_grad()
        model(x).pow(2).mean().backward()
        opt.step()
    for k, v in model.state_dict().items():
        if k in frozen:
            torch.testing.assert_close(v, frozen[k])
    adapted = model(x).detach()
    assert not torch.allclose(adapted, base_out)
    vec = lora_vector(model)
    load_lora_vector(model, torch.zeros_like(vec))
    torch.testing.assert_close(model(x), base_out, rtol=1e-5, atol=1e-5)
    load_lora_vector(model, vec)
    assert merge_lora(model) == n
    assert not lora_parameters(model)
    torch.testing.assert_close(model(x), adapted, rtol=1e-4, atol=1e-4)
    with pytest.raises(ConfigError):
        apply_lora(GPT(SMALL), LoRAConfig(targets=("nothing",)))


def test_outer_nesterov_matches_torch_sgd_nesterov() -> None:
    gen = torch.Generator().manual_seed(2)
    theta = torch.randn(10, generator=gen)
    outer = OuterNesterov(theta, lr=0.7, momentum=0.9)
    ref = torch.nn.Parameter(theta.clone())
    sgd = torch.optim.SGD([ref], lr=0.7, momentum=0.9, nesterov=True)
    for _ in range(5):
        delta = torch.randn(10, generator=gen)
        new = outer.step(delta)
        ref.grad = delta.clone()
        sgd.step()
        torch.testing.assert_close(new, ref.detach())
    p, m = nesterov_step(torch.zeros(3), torch.zeros(3), torch.ones(3), lr=1.0, mu=0.5)
    torch.testing.assert_close(p, torch.full((3,), -1.5))
    torch.testing.assert_close(m, torch.ones(3))
    torch.testing.assert_close(pseudo_gradient(torch.ones(2), torch.zeros(2)), torch.ones(2))
    with pytest.raises(ConfigError):
        outer.step(torch.zeros(3))
    with pytest.raises(ConfigError):
        OuterNesterov(theta, momentum=1.0)


def test_diloco_converges_on_a_quadratic() -> None:
    """Four workers with different optima; DiLoCo reaches the mean optimum (inner SGD, whose
    fixed point is exactly the mean; AdamW's would be a sign-weighted compromise)."""
    gen = torch.Generator().manual_seed(3)
    optima = torch.randn(4, 5, generator=gen)
    outer = OuterNesterov(torch.zeros(5), lr=0.7, momentum=0.9)
    for _ in range(60):
        deltas = []
        for w in range(4):
            local = torch.nn.Parameter(outer.params.clone())
            opt = torch.optim.SGD([local], lr=0.05)
            for _ in range(10):
                opt.zero_grad()
                (local - optima[w]).pow(2).sum().backward()
                opt.step()
            deltas.append(pseudo_gradient(outer.params, local.detach()))
        outer.step(torch.stack(deltas).mean(0))
    assert float((outer.params - optima.mean(0)).norm()) < 0.1
