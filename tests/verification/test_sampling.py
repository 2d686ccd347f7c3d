from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from deai.errors import ConfigError, VerificationError
from deai.verification.sampling import SecretSampler, audit, rate_threshold

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
