"""Shared fixtures of the swarm tests: one small random Llama per test process.

Most tests use a 6-block random Llama (hidden 64): the same architecture and code path
as SmolLM2-135M, a thousand times cheaper. The acceptance tests that need the real model
use the project's session fixture ``smollm2`` (tests/conftest.py).
"""

from __future__ import annotations

import pytest
import torch
from swarm_kit import PROMPT
from transformers import LlamaForCausalLM

from deai.swarm.manifest import Manifest, ModelSource


@pytest.fixture(scope="session")
def tiny() -> LlamaForCausalLM:
    """Do not change it in place; every test shares it."""
    return ModelSource().load()


@pytest.fixture(scope="session")
def tiny_manifest(tiny: LlamaForCausalLM) -> Manifest:
    return Manifest.of(tiny)


@pytest.fixture(scope="session")
def tiny_reference(tiny: LlamaForCausalLM) -> torch.Tensor:
    """32 greedy tokens of the prompt, generated locally by transformers."""
    with torch.no_grad():
        return tiny.generate(
            PROMPT, max_new_tokens=32, do_sample=False, pad_token_id=0, eos_token_id=None
        )
