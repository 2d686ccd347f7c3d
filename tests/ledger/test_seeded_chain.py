"""The simulator's embedded chain is reproducible: the same seed mines the same blocks
(prevrandao from a seeded generator, a fixed genesis time), so round seeds and committees
do not change between runs of the same job; without a seed prevrandao is the OS's."""

from __future__ import annotations

from deai.ledger.chain import EmbeddedChain


def _hashes(chain: EmbeddedChain) -> list[bytes]:
    chain.advance_time(5)
    chain.advance_time(7)
    w3 = chain.w3
    return [bytes(w3.eth.get_block(n)["hash"]) for n in range(1, w3.eth.block_number + 1)]


def test_the_same_seed_mines_the_same_blocks() -> None:
    a, b = EmbeddedChain(seed=7), EmbeddedChain(seed=7)
    assert _hashes(a) == _hashes(b)
    assert _hashes(EmbeddedChain(seed=8)) != _hashes(EmbeddedChain(seed=7))


def test_an_unseeded_chain_draws_prevrandao_from_the_os() -> None:
    assert _hashes(EmbeddedChain()) != _hashes(EmbeddedChain())
