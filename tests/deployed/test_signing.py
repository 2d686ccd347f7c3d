"""Envelope signing: every defect is refused with its own code; any changed byte breaks it."""

from __future__ import annotations

import time

import pytest
from deployed_kit import addr, key_of
from hypothesis import given
from hypothesis import strategies as st

from deai.node.signing import Envelope, RejectCode, Rejected, ReplayGuard, Signer, verify

ALICE, BOB = Signer(key_of(0)), Signer(key_of(1))
BODY = b"\x05\x00\x00\x00hello world"


def _verify(env: Envelope, body: bytes = BODY, guard: ReplayGuard | None = None) -> str:
    return verify(env, body, me=BOB.address, guard=guard if guard is not None else ReplayGuard())


def _code(fn: object) -> RejectCode:
    with pytest.raises(Rejected) as e:
        fn()  # type: ignore[operator]
    return e.value.code


def test_valid_envelope_verifies_and_roundtrips_headers() -> None:
    env = ALICE.sign(BOB.address, BODY, 3)
    assert Envelope.from_headers(env.headers()) == env
    assert _verify(env) == ALICE.address


def test_wrong_signer_recipient_stale_replay() -> None:
    env = ALICE.sign(BOB.address, BODY)
    forged = Envelope(addr(2), *list(env.__dict__.values())[1:])
    assert _code(lambda: _verify(forged)) is RejectCode.WRONG_SIGNER
    assert _code(lambda: _verify(ALICE.sign(addr(2), BODY))) is RejectCode.WRONG_RECIPIENT
    old = ALICE.sign(BOB.address, BODY, timestamp=int(time.time()) - 1000)
    assert _code(lambda: _verify(old)) is RejectCode.STALE
    guard = ReplayGuard()
    _verify(env, guard=guard)
    assert _code(lambda: _verify(env, guard=guard)) is RejectCode.REPLAY


def test_forged_envelope_does_not_burn_the_nonce() -> None:
    env = ALICE.sign(BOB.address, BODY)
    guard = ReplayGuard()
    assert _code(lambda: _verify(env, b"other body", guard)) is RejectCode.WRONG_SIGNER
    assert _verify(env, guard=guard) == ALICE.address


@given(st.integers(0, len(BODY) - 1), st.integers(1, 255))
def test_any_changed_body_byte_is_refused(i: int, flip: int) -> None:
    env = ALICE.sign(BOB.address, BODY, 1)
    body = bytearray(BODY)
    body[i] ^= flip
    assert _code(lambda: _verify(env, bytes(body))) in {
        RejectCode.WRONG_SIGNER,
        RejectCode.BAD_SIGNATURE,
    }


@given(st.sampled_from(["x-deai-round", "x-deai-timestamp", "x-deai-nonce"]))
def test_any_changed_header_is_refused(header: str) -> None:
    env = ALICE.sign(BOB.address, BODY, 1)
    h = env.headers()
    h[header] = {"x-deai-round": "2", "x-deai-timestamp": str(env.timestamp + 1)}.get(
        header, "0" * 32
    )
    assert _code(lambda: _verify(Envelope.from_headers(h))) in {
        RejectCode.WRONG_SIGNER,
        RejectCode.BAD_SIGNATURE,
    }


@given(st.dictionaries(st.sampled_from(list(ALICE.sign(BOB.address, b"").headers())), st.text()))
def test_malformed_headers_never_crash(headers: dict[str, str]) -> None:
    try:
        Envelope.from_headers(headers)
    except Rejected as e:
        assert e.code is RejectCode.MALFORMED


def test_replay_guard_forgets_after_window() -> None:
    guard = ReplayGuard(window_s=10)
    env = ALICE.sign(BOB.address, BODY, timestamp=1000)
    guard.check(env, now=1000)
    assert _code(lambda: guard.check(env, now=1005)) is RejectCode.REPLAY
    assert _code(lambda: guard.check(env, now=1011)) is RejectCode.STALE  # too old anyway
    assert len(guard) == 1
    guard.check(ALICE.sign(BOB.address, BODY, timestamp=1020), now=1020)
    assert len(guard) == 1  # the old nonce was pruned
