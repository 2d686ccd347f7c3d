"""The exception tree. One root, mixed into the built-ins (web3.py style), so callers can
catch either ``DeaiError`` or the familiar built-in (``ValueError``, ``RuntimeError``)."""

from __future__ import annotations


class DeaiError(Exception):
    """Root of every error deai raises on purpose."""


class ConfigError(DeaiError, ValueError):
    """A scenario, flag or constructor argument is invalid. The message names the field,
    the bad value and what is allowed."""


class InvalidUpdate(DeaiError, ValueError):
    """A peer's update failed validation. It is rejected and recorded against the sender;
    the round goes on without it."""

    def __init__(self, reason: str, detail: str = "") -> None:
        self.reason = reason
        self.detail = detail
        super().__init__(f"{reason}: {detail}" if detail else reason)


class InvalidMessage(DeaiError, ValueError):
    """A message could not be decoded or does not belong to this node's protocol state."""


class AggregationError(DeaiError, ValueError):
    """An aggregator was misconfigured (for example f too large for n) or given bad input."""


class CodecError(DeaiError, ValueError):
    """An encoded update is malformed or does not match its codec's metadata."""


class PrivacyError(DeaiError, RuntimeError):
    """A privacy mechanism cannot proceed (budget exhausted, too many drop-outs, ...)."""


class BudgetExhausted(PrivacyError):
    """The next round would exceed the job's (epsilon, delta) budget."""


class ChainError(DeaiError, RuntimeError):
    """A ledger call failed. Reverts carry the contract's revert reason."""


class VerificationError(DeaiError, RuntimeError):
    """A verification step found a result that does not match."""


class ApiError(DeaiError):
    """A node answered a request with an error status (``deai.node.client``)."""

    def __init__(self, status: int, body: str) -> None:
        self.status = status
        self.body = body
        super().__init__(f"HTTP {status}: {body[:500]}")
