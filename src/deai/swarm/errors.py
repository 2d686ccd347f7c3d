"""Errors of the swarm plane (all under :class:`deai.errors.DeaiError`)."""

from __future__ import annotations

from deai.errors import DeaiError, InvalidMessage, VerificationError


class SwarmError(DeaiError, RuntimeError):
    """Something in the swarm plane cannot proceed; the message says what and why."""


class MissingBlocks(SwarmError):
    """No live, unbanned server covers some blocks (Petals' ``MissingBlocksError``)."""

    def __init__(self, start: int, end: int, detail: str = "") -> None:
        self.start = start
        self.end = end
        super().__init__(
            f"no server covers blocks [{start}, {end}){': ' + detail if detail else ''}"
        )


class ServerFailed(SwarmError):
    """A call to a server failed: it timed out, refused, answered an error or garbage."""

    def __init__(self, server: str, code: str, detail: str = "") -> None:
        self.server = server
        self.code = code
        self.detail = detail
        super().__init__(f"server {server}: {code}{': ' + detail if detail else ''}")


class BadRequest(InvalidMessage):
    """A server refuses a request (answered to the caller as ``{"error": code}``)."""

    def __init__(self, code: str, detail: str = "") -> None:
        self.code = code
        self.detail = detail
        super().__init__(f"{code}: {detail}" if detail else code)


class InvalidRecord(InvalidMessage):
    """A server record failed validation (signature, identity, expiry, sequence, span)."""


class CheckFailed(VerificationError):
    """A span's output disagrees with a re-execution or a known answer beyond tolerance."""
