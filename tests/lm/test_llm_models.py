"""transformers + peft as deai models: Llama from a config, the trainer's causal-LM path,
LoRA's flat vector, the outer optimizers. A tiny random Llama keeps these fast."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from deai.errors import ConfigError
from deai.learning.data import Dataset
from deai.learning.params import FlatModel, TaskName
from deai.learning.train import LocalTrainConfig, Optimizer, TrainRequest, evaluate, train_local
from deai.llm.lora import LoRASpec, apply_lora, load_lora_vector, lora_shapes, lora_vector
from deai.llm.models import CausalLM, LlamaSize, llama, llama_from_config, parameter_count
from deai.llm.outer import OuterAdamW, OuterNesterov

TINY = LlamaSize(
    vocab_size=61,
    hidden_size=32,
    layers=2,
    heads=4,
    kv_heads=2,
    intermediate_size=64,
    max_positions=64,
)


def _windows(n: int, t: int, seed: int = 0) -> torch.Tensor:
    """Token windows [n, t + 1] of a repeating pattern a model can learn."""
    gen = torch.Generator().manual_seed(seed)
    start = torch.randint(0, 50, (n, 1), generator=gen)
    return (start + torch.arange(t + 1)) % 17 + 3  # [n, t + 1]


def test_llama_from_config_is_seeded_causal_and_shaped() -> None:
    a, b = llama_from_config(TINY, seed=3), llama_from_config(TINY, seed=3)
    for pa, pb in zip(a.parameters(), b.parameters(), strict=True):
        assert torch.equal(pa, pb)
    m = CausalLM(a)
    x = torch.randint(0, 61, (2, 12))
    logits = m(x)
    assert logits.shape == (2, 12, 61)
    x2 = x.clone()
    x2[:, 8:] = (x2[:, 8:] + 1) % 61
    torch.testing.assert_close(m(x2)[:, :8], logits[:, :8])  # the past ignores the future
    with pytest.raises(ConfigError):
        LlamaSize(hidden_size=30, heads=4).config()


def test_registry_factory_reads_the_schema() -> None:
    with torch.random.fork_rng():
        torch.manual_seed(0)
        m = llama((17,), 61, hidden_size=32, layers=1, heads=4, kv_heads=2, intermediate_size=64)
    assert isinstance(m, CausalLM) and m.vocab_size == 61
    flat = FlatModel(m)
    assert flat.task is TaskName.CAUSAL_LM and not flat.vmappable
    assert flat.dim == parameter_count(m)
    with pytest.raises(ConfigError):
        llama((1, 8, 8), 10)


def test_causal_lm_training_lowers_next_token_loss() -> None:
    flat = FlatModel(CausalLM(llama_from_config(TINY, seed=0)))
    x = _windows(64, 16)
    data = Dataset(x.float(), torch.zeros(64, dtype=torch.long), 61, (17,), "pattern")
    theta = flat.initial_vector()
    before, _ = evaluate(flat, theta, data)
    cfg = LocalTrainConfig(
        steps=30, batch_size=8, lr=3e-3, optimizer=Optimizer.ADAMW, clip_norm=1.0
    )
    reqs = [TrainRequest(theta, data.x, data.y, cfg, seed=s) for s in (0, 1)]
    out = train_local(flat, reqs)
    after, acc = evaluate(flat, out[0].params, data)
    assert before > 3.5 and after < 0.6 * before and acc > 0.3
    assert not torch.equal(out[0].params, out[1].params)  # different batch orders
    again = train_local(flat, reqs[:1])[0]
    assert torch.equal(again.params, out[0].params)  # deterministic


def test_stacked_adamw_matches_torch_adamw() -> None:
    torch.manual_seed(0)
    net = nn.Sequential(nn.Flatten(), nn.Linear(8, 5))
    flat = FlatModel(net)
    x, y = torch.randn(40, 8), torch.randint(0, 5, (40,))
    cfg = LocalTrainConfig(
        steps=6, batch_size=40, lr=0.05, optimizer=Optimizer.ADAMW, weight_decay=0.1, clip_norm=0.5
    )
    theta = flat.initial_vector()
    ours = train_local(flat, [TrainRequest(theta, x, y, cfg, seed=0)])[0].params
    ref = nn.Sequential(nn.Flatten(), nn.Linear(8, 5))
    ref.load_state_dict(net.state_dict())
    opt = torch.optim.AdamW(ref.parameters(), lr=0.05, weight_decay=0.1)
    for _ in range(6):  # full batch: the schedule's order does not matter
        opt.zero_grad()
        nn.functional.cross_entropy(ref(x), y).backward()
        torch.nn.utils.clip_grad_norm_(ref.parameters(), 0.5)
        opt.step()
    expected = torch.nn.utils.parameters_to_vector(ref.parameters())
    torch.testing.assert_close(ours, expected, atol=1e-5, rtol=1e-4)


def test_lora_vector_is_what_flatmodel_trains_and_roundtrips() -> None:
    base = llama_from_config(TINY, seed=0)
    x = torch.randint(0, 61, (2, 10))
    with torch.no_grad():
        ref = base(input_ids=x).logits.clone()
    peft_model = apply_lora(base, LoRASpec(rank=2, alpha=4, targets=("q_proj", "v_proj")))
    m = CausalLM(peft_model)
    flat = FlatModel(m)
    v = lora_vector(peft_model)
    # 2 layers x (q: 2*(32+32), v: 2*(32+16)) adapter numbers
    assert v.numel() == flat.dim == 2 * (2 * 64 + 2 * 48)
    assert torch.equal(v, flat.initial_vector())  # the peft order is the trained order
    assert next(k for k, _ in lora_shapes(peft_model)).endswith("q_proj.lora_A.weight")
    with torch.no_grad():
        torch.testing.assert_close(m(x), ref)  # B = 0: the adapted model equals the base
    new = torch.randn(v.numel(), generator=torch.Generator().manual_seed(1))
    load_lora_vector(peft_model, new)
    assert torch.equal(lora_vector(peft_model), new)
    with torch.no_grad():
        assert not torch.allclose(m(x), ref)
        torch.testing.assert_close(flat.forward(new, x), m(x))
    with pytest.raises(ConfigError):
        load_lora_vector(peft_model, new[:-1])
    with pytest.raises(ConfigError):
        apply_lora(llama_from_config(TINY, seed=0), LoRASpec(targets=("no_such_layer",)))


def test_outer_nesterov_is_torch_sgd_nesterov_on_the_pseudo_gradient() -> None:
    p = torch.randn(7)
    ref = nn.Parameter(p.clone())
    sgd = torch.optim.SGD([ref], lr=0.7, momentum=0.9, nesterov=True)
    outer, theta = OuterNesterov(0.7, 0.9), p.clone()
    for i in range(4):
        update = torch.randn(7, generator=torch.Generator().manual_seed(i))
        theta = outer.step(theta, update)
        ref.grad = -update
        sgd.step()
    torch.testing.assert_close(theta, ref.detach())


def test_outer_adamw_is_torch_adamw_on_the_negated_update() -> None:
    p = torch.randn(7)
    ref = nn.Parameter(p.clone())
    adam = torch.optim.AdamW([ref], lr=0.01, weight_decay=0.1)
    outer, theta = OuterAdamW(lr=0.01, weight_decay=0.1), p.clone()
    for i in range(4):
        update = torch.randn(7, generator=torch.Generator().manual_seed(i))
        theta = outer.step(theta, update)
        ref.grad = -update
        adam.step()
    torch.testing.assert_close(theta, ref.detach())
    with pytest.raises(ConfigError):
        outer.step(theta, torch.zeros(3))
