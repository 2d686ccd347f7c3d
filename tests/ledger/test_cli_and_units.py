"""Pure helpers (Merkle trees, committee draw, error mapping, compile cache) and the
``deai chain`` sub-app."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from eth_utils import keccak
from hypothesis import given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from deai.errors import ConfigError
from deai.ledger.anvil import find_anvil
from deai.ledger.cli import app
from deai.ledger.committee import draw_committee, seat_counts
from deai.ledger.compiler import compile_contract
from deai.ledger.merkle import MerkleTree, PayoutTree, payout_leaf, verify, verify_sum


@settings(max_examples=30, deadline=None)
@given(n=st.integers(1, 40), seed=st.integers(0, 2**32))
def test_every_leaf_has_a_valid_proof_and_no_other(n: int, seed: int) -> None:
    leaves = [keccak(f"{seed}-{i}".encode()) for i in range(n)]
    tree = MerkleTree(leaves)
    for i, leaf in enumerate(leaves):
        assert verify(leaf, tree.proof(i), tree.root)
        assert len(tree.proof(i)) <= max(1, n - 1).bit_length()
    if n > 1:
        assert not verify(keccak(b"forged"), tree.proof(0), tree.root)


def test_payout_tree_is_order_independent_and_checks_input() -> None:
    a, b = "0x" + "11" * 20, "0x" + "22" * 20
    assert PayoutTree(1, {a: 5, b: 7}).root == PayoutTree(1, {b: 7, a: 5}).root
    assert PayoutTree(1, {a: 5}).root != PayoutTree(2, {a: 5}).root  # bound to the job
    assert PayoutTree(1, {a: 5}).root == payout_leaf(1, a, 5, 0)
    with pytest.raises(ConfigError):
        PayoutTree(1, {})
    with pytest.raises(ConfigError):
        PayoutTree(1, {a: -1})
    with pytest.raises(ConfigError):
        PayoutTree(1, {a: 1}).proof(b)


def test_python_draw_is_weighted_with_replacement() -> None:
    slots = [("a", 1), ("b", 0), ("c", 5)]
    seats = [
        s for i in range(200) for s in draw_committee(keccak(bytes([i % 256, i // 256])), slots, 3)
    ]
    assert len(seats) == 600 and "b" not in seats  # an empty slot is never drawn
    assert abs(seats.count("c") / 600 - 5 / 6) < 0.06
    assert seat_counts(["c", "a", "c"]) == (["c", "a"], [2, 1])


def test_payout_proof_sums_to_the_total_and_binds_every_sum() -> None:
    payouts = {"0x" + f"{i:02x}" * 20: i + 1 for i in range(1, 6)}
    tree = PayoutTree(7, payouts)
    assert tree.total == sum(payouts.values())
    for a in tree.accounts:
        proof = tree.proof(a)
        assert verify_sum(7, a, tree.amount(a), proof, tree.root, tree.total)
        assert not verify_sum(7, a, tree.amount(a) + 1, proof, tree.root, tree.total)
        if len(proof) > 1:  # understating a sibling's sum changes the hash
            low = [
                *proof[:2],
                (int.from_bytes(proof[2], "big") - 1).to_bytes(32, "big"),
                *proof[3:],
            ]
            assert not verify_sum(7, a, tree.amount(a), low, tree.root, tree.total - 1)


def test_compile_is_cached_by_source_hash() -> None:
    first = compile_contract("Jobs")
    assert compile_contract("Jobs") is first
    assert len(first.source_hash) == 64 and first.bytecode.startswith("0x")


@pytest.mark.anvil
@pytest.mark.skipif(
    find_anvil() is None,
    reason="anvil binary not found: npm install --prefix .tools @foundry-rs/anvil",
)
def test_chain_up_status_down(tmp_path: Path) -> None:
    state = tmp_path / "chain.json"
    runner = CliRunner()
    up = runner.invoke(app, ["up", "--state", str(state)])
    assert up.exit_code == 0, up.output
    data = json.loads(state.read_text())
    try:
        assert data["url"].startswith("http://127.0.0.1:")
        status = runner.invoke(app, ["status", "--state", str(state)])
        assert status.exit_code == 0 and data["deployment"]["registry"] in status.output
        again = runner.invoke(app, ["up", "--state", str(state)])
        assert again.exit_code == 1 and "already up" in again.output
    finally:
        down = runner.invoke(app, ["down", "--state", str(state)])
    assert down.exit_code == 0 and not state.exists()
