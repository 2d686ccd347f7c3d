"""Ledger errors: every failure of a chain call is a :class:`deai.errors.ChainError`."""

from __future__ import annotations

from deai.errors import ChainError, ConfigError


class Reverted(ChainError):
    """A contract call reverted. ``reason`` is the contract's revert string, prefixed with
    the contract's name (``"jobs: not a member"``); ``contract`` is that prefix."""

    def __init__(self, reason: str, method: str = "") -> None:
        self.reason = reason
        self.method = method
        self.contract = reason.split(":", 1)[0] if ":" in reason else ""
        super().__init__(f"{method}: {reason}" if method else reason)


class ChainUnavailable(ChainError):
    """The chain endpoint cannot be reached or the node process failed to start."""


class AnvilNotFound(ChainError, ConfigError):
    """No anvil binary was found ($DEAI_ANVIL, PATH, ./.tools/node_modules)."""


class ContractCompileError(ChainError):
    """A bundled Vyper contract failed to compile."""


class UnknownContract(ChainError):
    """An address does not run the bundled contract code (or the Registry did not create
    the Jobs/Tasks named): the client refuses to talk to it."""
