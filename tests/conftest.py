"""Shared test setup: one torch thread per test process, deterministic algorithms."""

import os

import torch

os.environ.setdefault("OMP_NUM_THREADS", "1")
torch.set_num_threads(1)

from hypothesis import HealthCheck, Phase, settings  # noqa: E402

# Deterministic property tests (the project's rule: seeded by default) and no wall-clock
# deadlines: CI machines are small and shared.
settings.register_profile(
    "deai",
    derandomize=True,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
    print_blob=True,
    # no "explain" phase: its line tracer slows the py-evm based tests by an order of magnitude
    phases=[p for p in Phase if p is not Phase.explain],
)
settings.load_profile("deai")


import pytest  # noqa: E402


@pytest.fixture(scope="session")
def smollm2():  # type: ignore[no-untyped-def]
    """SmolLM2-135M-Instruct and its tokenizer, loaded once per test process.

    Shared by every test marked ``llm``: do not change it in place (peft's
    ``get_peft_model`` does); take ``copy.deepcopy(model)`` first.
    """
    from deai.llm import load_smollm2

    return load_smollm2()


def pytest_configure(config: pytest.Config) -> None:
    # with xdist, hand tests out one at a time: the slow (multi-process, anvil, model
    # loading) tests run first, and the fast ones fill in around them on the other worker
    if hasattr(config.option, "maxschedchunk") and config.option.maxschedchunk is None:
        config.option.maxschedchunk = 1


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Slow tests first (stable: each group keeps its collection order), so the longest
    ones never start last and leave one worker idle at the end of the suite."""
    items.sort(key=lambda item: item.get_closest_marker("slow") is None)
