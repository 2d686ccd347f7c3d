from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from deai.verification.commit_reveal import (
    InMemoryTaskSettlement,
    Outcome,
    SettlementError,
    decide,
    result_commitment,
    unbound_commitment,
)

from .conftest import address

A, B, C = address(1), address(2), address(3)
H1, H2, H3 = b"\x01" * 32, b"\x02" * 32, b"\x03" * 32
SALT = b"\x05" * 32


def test_commitment_binds_result_salt_and_address() -> None:
    base = result_commitment(H1, SALT, A)
    assert base != result_commitment(H2, SALT, A)
    assert base != result_commitment(H1, b"\x06" * 32, A)
    assert base != result_commitment(H1, SALT, B)
    # the abi.encode layout: result_hash | salt | 12 zero bytes | address
    from eth_hash.auto import keccak

    assert base == keccak(H1 + SALT + b"\x00" * 12 + bytes.fromhex(A[2:]))


def _run(reveals: dict[str, bytes | None]) -> InMemoryTaskSettlement:
    s = InMemoryTaskSettlement()
    s.open(b"t" * 32, 10, 500, list(reveals))
    for w, h in reveals.items():
        s.commit(b"t" * 32, w, result_commitment(h or H3, SALT, w))
    for w, h in reveals.items():
        if h is not None:
            s.reveal(b"t" * 32, w, h, SALT)
    return s


def test_copying_a_commitment_cannot_be_opened() -> None:
    """B copies A's commitment and replays A's reveal: rejected, B is slashed."""
    s = InMemoryTaskSettlement()
    tid = b"t" * 32
    s.open(tid, 10, 500, [A, B, C])
    a_commit = result_commitment(H1, SALT, A)
    s.commit(tid, A, a_commit)
    s.commit(tid, B, a_commit)  # the copy
    s.commit(tid, C, result_commitment(H1, b"\x07" * 32, C))
    s.reveal(tid, A, H1, SALT)
    with pytest.raises(SettlementError):
        s.reveal(tid, B, H1, SALT)
    s.reveal(tid, C, H1, b"\x07" * 32)
    out = s.settle(tid)
    assert out.verdict.majority == (A, C) and out.slashed == {B: 500}


def test_without_the_address_copying_would_pass() -> None:
    """Why the address is bound: the naive commitment opens for anyone who saw the reveal."""
    assert unbound_commitment(H1, SALT) == unbound_commitment(H1, SALT)  # same for A and B
    assert result_commitment(H1, SALT, A) != result_commitment(H1, SALT, B)


def test_phases_are_enforced() -> None:
    s = InMemoryTaskSettlement()
    tid = b"p" * 32
    s.open(tid, 10, 500, [A, B])
    with pytest.raises(SettlementError):  # nobody reveals before every commitment is in
        s.reveal(tid, A, H1, SALT)
    s.commit(tid, A, result_commitment(H1, SALT, A))
    with pytest.raises(SettlementError):  # no double commit
        s.commit(tid, A, result_commitment(H2, SALT, A))
    with pytest.raises(SettlementError):  # outsiders cannot commit
        s.commit(tid, C, result_commitment(H1, SALT, C))
    s.close_commits(tid)  # B missed the deadline
    with pytest.raises(SettlementError):
        s.commit(tid, B, result_commitment(H1, SALT, B))
    s.reveal(tid, A, H1, SALT)
    out = s.settle(tid)
    assert out.verdict.outcome is Outcome.REFUNDED and out.slashed == {B: 500}
    with pytest.raises(SettlementError):
        s.settle(tid)


def test_majority_all_different_and_tolerant_match() -> None:
    assert decide({A: H1, B: H1, C: H2}).minority == (C,)
    all_diff = decide({A: H1, B: H2, C: H3})
    assert all_diff.outcome is Outcome.REFUNDED and all_diff.minority == ()
    near = decide({A: H1, B: H2, C: H3}, match=lambda x, y: {x, y} == {H1, H2})
    assert near.majority == (A, B) and near.minority == (C,)


@settings(max_examples=100, deadline=None)
@given(st.lists(st.sampled_from([H1, H2, H3, None]), min_size=1, max_size=7))
def test_money_is_conserved(results: list[bytes | None]) -> None:
    reveals = {address(i + 10): h for i, h in enumerate(results)}
    s = _run(reveals)
    out = s.settle(b"t" * 32)
    led = s.ledger
    assert led.escrowed == led.paid + led.refunded
    assert set(out.paid) | set(out.slashed) <= set(reveals)
    assert not set(out.paid) & set(out.slashed)
    if out.verdict.outcome is Outcome.ACCEPTED:
        assert 2 * len(out.paid) > len(reveals)
