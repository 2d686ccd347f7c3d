"""Shamir t-of-n secret sharing (Shamir 1979) of 32-byte secrets over GF(2^521 - 1).

A secret ``s < 2^256`` is the constant term of a random polynomial of degree ``t - 1``;
holder ``x`` (a non-zero field element, here client id + 1) gets ``f(x)``. Any ``t`` shares
determine ``s`` by Lagrange interpolation at 0; any ``t - 1`` shares are independent of
``s`` (perfect secrecy). The prime is the Mersenne prime 2^521 - 1, which exceeds every
256-bit secret; a share is 66 bytes on the wire.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from deai.errors import PrivacyError

PRIME = (1 << 521) - 1
SHARE_BYTES = 66  # ceil(521 / 8)
SECRET_BYTES = 32


def split(
    secret: bytes, holders: Sequence[int], threshold: int, randbytes: Callable[[int], bytes]
) -> dict[int, bytes]:
    """Shares of ``secret`` for each holder x (x >= 1, distinct); ``threshold`` needed."""
    if len(secret) != SECRET_BYTES:
        raise PrivacyError(f"shamir: secret must be {SECRET_BYTES} bytes")
    if not 1 <= threshold <= len(holders):
        raise PrivacyError(f"shamir: threshold {threshold} not in [1, {len(holders)}]")
    if len(set(holders)) != len(holders) or min(holders) < 1:
        raise PrivacyError("shamir: holders must be distinct and >= 1")
    coeffs = [int.from_bytes(secret, "little")]
    coeffs += [
        int.from_bytes(randbytes(SHARE_BYTES + 8), "little") % PRIME for _ in range(threshold - 1)
    ]
    out: dict[int, bytes] = {}
    for x in holders:
        y = 0
        for c in reversed(coeffs):  # Horner
            y = (y * x + c) % PRIME
        out[x] = y.to_bytes(SHARE_BYTES, "little")
    return out


def combine(shares: dict[int, bytes], threshold: int) -> bytes:
    """Reconstruct the secret from at least ``threshold`` shares (uses the first ``threshold``
    by holder order); raises ``PrivacyError`` when too few or malformed."""
    if len(shares) < threshold:
        raise PrivacyError(f"shamir: {len(shares)} shares, need {threshold}")
    pts = sorted(shares.items())[:threshold]
    ys: list[tuple[int, int]] = []
    for x, raw in pts:
        if len(raw) != SHARE_BYTES:
            raise PrivacyError(f"shamir: share of holder {x} has {len(raw)} bytes")
        y = int.from_bytes(raw, "little")
        if y >= PRIME:
            raise PrivacyError(f"shamir: share of holder {x} is out of the field")
        ys.append((x, y))
    secret = 0
    for i, (xi, yi) in enumerate(ys):
        num, den = 1, 1
        for j, (xj, _) in enumerate(ys):
            if i != j:
                num = num * (-xj) % PRIME
                den = den * (xi - xj) % PRIME
        secret = (secret + yi * num * pow(den, -1, PRIME)) % PRIME
    if secret >= 1 << (8 * SECRET_BYTES):
        raise PrivacyError("shamir: reconstructed value is not a 32-byte secret (bad shares)")
    return secret.to_bytes(SECRET_BYTES, "little")
