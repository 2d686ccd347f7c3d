import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from deai.learning.topology import (
    TopologyName,
    consensus_distance,
    edges,
    mixing_matrix,
    spectral_gap,
)


@settings(max_examples=30, deadline=None)
@given(name=st.sampled_from(list(TopologyName)), n=st.integers(4, 40), r=st.integers(0, 5))
def test_mixing_matrices_are_doubly_stochastic(name: TopologyName, n: int, r: int) -> None:
    if name is TopologyName.TORUS and all(n % k for k in range(2, int(n**0.5) + 1)):
        return  # prime n has no 2-D torus; covered by the error test below
    w = mixing_matrix(name, n, round_=r, seed=7)
    assert torch.allclose(w.sum(0), torch.ones(n, dtype=w.dtype))
    assert torch.allclose(w.sum(1), torch.ones(n, dtype=w.dtype))
    assert torch.allclose(w, w.T)
    assert bool((w >= 0).all())
    assert spectral_gap(w) > 0  # connected


def test_spectral_gap_ordering() -> None:
    gaps = {t: spectral_gap(mixing_matrix(t, 16)) for t in TopologyName}
    assert gaps[TopologyName.RING] < gaps[TopologyName.TORUS] <= gaps[TopologyName.EXPONENTIAL]
    assert gaps[TopologyName.EXPONENTIAL] < gaps[TopologyName.COMPLETE] == pytest.approx(1.0)


def test_random_topology_varies_with_round() -> None:
    assert edges(TopologyName.RANDOM, 16, 0, 1) != edges(TopologyName.RANDOM, 16, 1, 1)
    assert edges(TopologyName.RANDOM, 16, 3, 1) == edges(TopologyName.RANDOM, 16, 3, 1)


def test_torus_needs_a_factor() -> None:
    from deai.errors import ConfigError

    with pytest.raises(ConfigError, match="torus"):
        edges(TopologyName.TORUS, 13)


def test_pure_gossip_reaches_consensus_faster_on_exponential_graph() -> None:
    x0 = torch.randn(16, 50, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    dist = {}
    for t in (TopologyName.RING, TopologyName.EXPONENTIAL):
        w, x = mixing_matrix(t, 16), x0.clone()
        for _ in range(10):
            x = w @ x
        dist[t] = consensus_distance(x)
        assert torch.allclose(x.mean(0), x0.mean(0))  # gossip preserves the average
    assert dist[TopologyName.EXPONENTIAL] < 0.1 * dist[TopologyName.RING]
