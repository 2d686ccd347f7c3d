from __future__ import annotations

import pytest
from eth_hash.auto import keccak
from hypothesis import given, settings
from hypothesis import strategies as st

from deai.errors import ConfigError, VerificationError
from deai.verification.economics import wilson
from deai.verification.sampling import (
    SecretSampler,
    audit,
    derived_nonce,
    ground_nonces,
    rate_threshold,
)

IDS = [i.to_bytes(32, "big") for i in range(20_000)]


def test_realized_rate_and_audit() -> None:
    s = SecretSampler(0.05, secret=b"k" * 32)
    checked = [t for t in IDS if s.is_checked(t)]
    report = audit(s.commitment, s.secret, s.threshold, IDS, checked)
    assert report.claims_match and abs(report.z_score) < 4
    assert abs(report.realized_rate - 0.05) < 0.006


def test_audit_catches_a_lying_requester() -> None:
    s = SecretSampler(0.05, secret=b"k" * 32)
    checked = [t for t in IDS[:2000] if s.is_checked(t)]
    with pytest.raises(VerificationError):  # claims a higher rate than committed
        audit(s.commitment, s.secret, rate_threshold(0.5), IDS[:2000], checked)
    with pytest.raises(VerificationError):  # reveals another key
        audit(s.commitment, b"x" * 32, s.threshold, IDS[:2000], checked)
    targeted = [*checked, IDS[0]] if IDS[0] not in checked else checked[1:]
    assert not audit(s.commitment, s.secret, s.threshold, IDS[:2000], targeted).claims_match


def test_without_the_secret_decisions_look_independent() -> None:
    """Two keys agree on a task exactly as often as independent coins would."""
    a, b = SecretSampler(0.5, b"a" * 32), SecretSampler(0.5, b"b" * 32)
    agree = sum(a.is_checked(t) == b.is_checked(t) for t in IDS)
    assert abs(agree / len(IDS) - 0.5) < 0.015


@settings(max_examples=50, deadline=None)
@given(st.floats(0, 1), st.floats(0, 1))
def test_threshold_monotone_and_exact_at_ends(r1: float, r2: float) -> None:
    lo, hi = sorted((r1, r2))
    assert rate_threshold(lo) <= rate_threshold(hi)
    assert rate_threshold(0.0) == 0 and rate_threshold(1.0) == 2**256
    with pytest.raises(ConfigError):
        rate_threshold(1.5)


def test_rate_one_checks_everything_rate_zero_nothing() -> None:
    assert all(SecretSampler(1.0, b"z" * 32).is_checked(t) for t in IDS[:100])
    assert not any(SecretSampler(0.0, b"z" * 32).is_checked(t) for t in IDS[:100])


# ----------------------------------------------------- grinding requester (issue 15, #2)
def _grind(sampler: SecretSampler, want: bool, start: int) -> tuple[int, int]:
    nonce, tries = start, 0
    while sampler.is_checked(nonce.to_bytes(32, "big")) != want:
        nonce, tries = nonce + 1, tries + 1
    return nonce, tries


def test_chosen_nonces_aim_the_checks_and_pass_the_rate_audit() -> None:
    sampler = SecretSampler(0.048, b"k" * 32)
    ids, claimed, hashes = [], [], 0
    for t in range(1000):
        victim = t < 48
        nonce, tries = _grind(sampler, victim, t * 10**6)
        hashes += tries
        tid = nonce.to_bytes(32, "big")
        ids.append(tid)
        if victim:
            claimed.append(tid)
    report = audit(sampler.commitment, sampler.secret, sampler.threshold, ids, claimed)
    assert report.claims_match and abs(report.z_score) < 1  # the old audit is satisfied
    assert report.checked == 48  # ... although every check fell on the victim
    assert hashes < 5000  # and it cost a couple of thousand hashes


def test_derived_nonces_expose_a_ground_sequence() -> None:
    sampler = SecretSampler(0.048, b"k" * 32)
    c = sampler.commitment
    honest = [derived_nonce(c, i) for i in range(100)]
    assert ground_nonces(c, honest) == []
    ground = list(honest)
    ground[7] += 1
    assert ground_nonces(c, ground) == [7]


def test_commitment_keyed_decision_cannot_be_aimed() -> None:
    """On chain the decision hashes the worker's commitment, which includes its secret
    salt: the requester grinding over what it controls (slot ids) gains nothing."""
    from deai.ledger.tasks_types import sampled, slot_commitment

    secret, threshold = b"s" * 32, int(0.1 * 2**256)
    worker = "0x" + "11" * 20
    checked, n = 0, 800
    for t in range(n):
        best = next(  # the requester's best proxy without the salt
            (
                sid
                for j in range(40)
                if sampled(secret, (sid := bytes(keccak(b"id%d/%d" % (t, j)))), threshold)
            ),
            b"\x00" * 32,
        )
        salt = bytes(keccak(b"worker-secret" + t.to_bytes(4, "big")))
        checked += sampled(secret, slot_commitment(best, worker, t, salt), threshold)
    lo, hi = wilson(checked, n)
    assert lo <= 0.1 <= hi  # the victim is checked at the promised rate
