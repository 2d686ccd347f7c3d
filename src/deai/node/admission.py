"""Admission control: who may make a node buffer, verify and store bytes, and how much.

Checked in this order, each step cheap before the next costs more:

1. **Headers only** (:meth:`Admission.gate`, before a body byte is read): the envelope
   parses, is addressed to this node, its sender is not banned, the source address and
   the claimed sender are within their request rates (token buckets), and the node has
   room to buffer more unauthenticated bytes. A sender that is a party of a job this node
   knows (with stake, when the node has a chain) may send up to ``max_body_bytes``; any
   other key only ``open_max_bytes`` (enough for a signed ``OpenJob``, the one message a
   stranger legitimately sends), and a larger declared body is answered 503 ``not_yet``
   without being read (an honest sender retries once its job is known here).
2. **Signature** (secp256k1 with the compiled ``coincurve`` backend, ~0.1 ms) over a body
   whose size is already bounded.
3. **Byte quotas** on authenticated, admitted bytes: per key and per job, over a sliding
   window, so a party of a job cannot fill the disk either (429 ``quota``).

The rate limit and the quotas never strike a key: they refuse work, they do not judge.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from deai.node.signing import RejectCode, Rejected


@dataclass(frozen=True)
class AdmissionConfig:
    rate_per_s: float = 200.0  # requests per second per source address and per claimed key
    burst: float = 400.0  # token bucket depth
    open_max_bytes: int = 256 * 1024  # body limit for a key that is no party of a known job
    unauthenticated_bytes: int = 64 * 1024 * 1024  # buffered before the signature check
    key_quota_bytes: int = 512 * 1024 * 1024  # admitted bytes per key per window
    job_quota_bytes: int = 2 * 1024 * 1024 * 1024  # admitted bytes per job per window
    window_s: float = 3600.0


class TokenBucket:
    """``rate`` tokens per second, at most ``burst`` held; one request costs one token."""

    def __init__(self, rate: float, burst: float) -> None:
        self.rate, self.burst = rate, burst
        self.tokens, self.at = burst, time.monotonic()

    def take(self) -> bool:
        now = time.monotonic()
        self.tokens = min(self.burst, self.tokens + (now - self.at) * self.rate)
        self.at = now
        if self.tokens < 1.0:
            return False
        self.tokens -= 1.0
        return True


class WindowCounter:
    """Bytes counted over a sliding window."""

    def __init__(self, window_s: float) -> None:
        self.window_s = window_s
        self.events: deque[tuple[float, int]] = deque()
        self.total = 0

    def used(self) -> int:
        cutoff = time.monotonic() - self.window_s
        while self.events and self.events[0][0] < cutoff:
            self.total -= self.events.popleft()[1]
        return self.total

    def add(self, n: int) -> None:
        self.events.append((time.monotonic(), n))
        self.total += n


class Admission:
    """One node's admission state (see the module docstring)."""

    MAX_TRACKED = 10_000  # buckets kept per kind; the oldest are forgotten first

    def __init__(
        self,
        config: AdmissionConfig,
        max_body_bytes: int,
        is_party: Callable[[str], bool],
    ) -> None:
        self.config = config
        self.max_body_bytes = max_body_bytes
        self.is_party = is_party
        self.buckets: dict[str, TokenBucket] = {}
        self.key_bytes: dict[str, WindowCounter] = {}
        self.job_bytes: dict[str, WindowCounter] = {}
        self.buffered = 0  # bytes reserved by requests not yet authenticated
        self.refused: dict[str, int] = {}

    def _rate(self, who: str) -> bool:
        bucket = self.buckets.get(who)
        if bucket is None:
            if len(self.buckets) >= self.MAX_TRACKED:
                self.buckets.pop(next(iter(self.buckets)))
            bucket = self.buckets[who] = TokenBucket(self.config.rate_per_s, self.config.burst)
        return bucket.take()

    def limit_for(self, sender: str) -> int:
        """How many body bytes a request from ``sender`` may carry."""
        if self.is_party(sender):
            return self.max_body_bytes
        return min(self.config.open_max_bytes, self.max_body_bytes)

    def gate(self, source: str, sender: str, declared: int | None) -> int:
        """Headers-only checks; returns the bytes this request may buffer (reserved until
        :meth:`release`). Raises :class:`Rejected` with a retriable or final code."""
        if not self._rate("ip:" + source) or not self._rate("key:" + sender.lower()):
            raise self._refuse(RejectCode.RATE_LIMITED, f"too many requests from {source}")
        limit = self.limit_for(sender)
        if declared is not None and declared > limit:
            if limit < self.max_body_bytes and declared <= self.max_body_bytes:
                raise self._refuse(
                    RejectCode.NOT_YET,
                    f"{sender} is no party of a job this node knows: at most {limit} bytes",
                )
            raise self._refuse(RejectCode.TOO_LARGE, f"request body above {limit} bytes")
        reserve = limit if declared is None else declared
        if self.buffered + reserve > self.config.unauthenticated_bytes:
            raise self._refuse(RejectCode.BUSY, "too many unauthenticated bytes in flight")
        self.buffered += reserve
        return reserve

    def release(self, reserved: int) -> None:
        self.buffered = max(0, self.buffered - reserved)

    def charge(self, sender: str, job_id: str, n: int) -> None:
        """Count ``n`` admitted bytes against the sender's and the job's quotas."""
        key = self.key_bytes.setdefault(sender.lower(), WindowCounter(self.config.window_s))
        job = self.job_bytes.setdefault(job_id, WindowCounter(self.config.window_s))
        if key.used() + n > self.config.key_quota_bytes:
            raise self._refuse(RejectCode.QUOTA, f"{sender} is over its byte quota")
        if job.used() + n > self.config.job_quota_bytes:
            raise self._refuse(RejectCode.QUOTA, f"job {job_id} is over its byte quota")
        key.add(n)
        job.add(n)

    def _refuse(self, code: RejectCode, detail: str) -> Rejected:
        self.refused[str(code)] = self.refused.get(str(code), 0) + 1
        return Rejected(code, detail)
