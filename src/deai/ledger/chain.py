"""Chain backends. Both hand out a ``web3.Web3`` so the :class:`~deai.ledger.client.Ledger`
code is the same on each; only test-chain controls (time travel, snapshots) differ.

- :class:`EmbeddedChain`: an in-process EVM (eth-tester + py-evm). The default; nothing to
  install, deterministic apart from the genesis timestamp.
- :class:`RpcChain`: any JSON-RPC URL (a local anvil, a public chain). Time travel and
  snapshots use the anvil/hardhat ``evm_*`` methods and fail on a public chain.
"""

from __future__ import annotations

import random
from abc import ABC, abstractmethod
from collections.abc import Mapping
from typing import Any

from web3 import EthereumTesterProvider, HTTPProvider, Web3

from deai.ledger.errors import ChainError, ChainUnavailable


class Chain(ABC):
    """A connection to an EVM chain."""

    w3: Web3
    # gas limit sent with every transaction; None = estimate per transaction
    fixed_gas: int | None = None

    @property
    def accounts(self) -> list[str]:
        """Unlocked, funded accounts the node manages (dev chains only)."""
        return [Web3.to_checksum_address(a) for a in self.w3.eth.accounts]

    def latest_timestamp(self) -> int:
        """Timestamp of the latest block."""
        return int(self.w3.eth.get_block("latest")["timestamp"])

    def block_number(self) -> int:
        return int(self.w3.eth.block_number)

    def call_params(self) -> dict[str, Any]:
        """Parameters every view call sends (none: the node picks the caller)."""
        return {}

    @abstractmethod
    def advance_time(self, seconds: int) -> None:
        """Move chain time forward by ``seconds`` and mine a block (test chains only)."""

    @abstractmethod
    def snapshot(self) -> Any:
        """Snapshot the chain state; returns an id for :meth:`revert`."""

    @abstractmethod
    def revert(self, snapshot_id: Any) -> None:
        """Return to a snapshot."""

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release resources (nothing by default)."""


class EmbeddedChain(Chain):
    """In-process EVM: eth-tester over py-evm, reached through web3's tester provider."""

    def __init__(self, funded: Mapping[str, int] | None = None, seed: int | None = None) -> None:
        """``funded``: extra addresses and their genesis balances in wei (the 10 default
        accounts always get 1,000,000 ETH each). ``seed``: a reproducible chain (the
        simulator's): the genesis time is fixed (far ahead of the wall clock, so every
        block's time is its parent's + 1 unless advanced) and each block's prevrandao comes
        from a generator seeded with ``seed`` instead of the OS (block hashes, and the round
        seeds drawn from them, are then the same on every run)."""
        from eth_tester import EthereumTester, PyEVMBackend

        genesis = None
        if funded:
            genesis = PyEVMBackend.generate_genesis_state(num_accounts=10)
            for address, balance in funded.items():
                key = bytes.fromhex(Web3.to_checksum_address(address)[2:])
                genesis[key] = {"balance": int(balance), "storage": {}, "code": b"", "nonce": 0}
        if seed is None:
            backend = PyEVMBackend(genesis_state=genesis)
        else:
            params = PyEVMBackend.generate_genesis_params({"timestamp": SEEDED_GENESIS_TIME})
            backend = _SeededBackend(seed, genesis_parameters=params, genesis_state=genesis)
        self.tester = EthereumTester(backend)
        self.w3 = Web3(EthereumTesterProvider(self.tester))
        # py-evm estimates gas by a binary search of ~13 executions; a fixed limit is 3x
        # faster and the receipt still reports the gas actually used
        self.fixed_gas = 12_000_000
        # an explicit sender on view calls: without one web3's tester middleware asks the
        # chain for its accounts on every call (a third of a view call's time here)
        self._call_from: dict[str, Any] = {"from": self.accounts[0]}

    def call_params(self) -> dict[str, Any]:
        return self._call_from

    def advance_time(self, seconds: int) -> None:
        if seconds < 0:
            raise ChainError("cannot move time backwards")
        pending = int(self.tester.get_block_by_number("pending")["timestamp"])
        self.tester.time_travel(pending + seconds)
        self.tester.mine_blocks(1)

    def snapshot(self) -> int:
        return int(self.tester.take_snapshot())

    def revert(self, snapshot_id: Any) -> None:
        self.tester.revert_to_snapshot(snapshot_id)


SEEDED_GENESIS_TIME = 4_000_000_000  # 2096: a seeded chain's clock never meets the wall's


def _seeded_backend_class() -> type:
    from eth_tester import PyEVMBackend
    from eth_tester.backends.pyevm import main as pyevm

    class SeededBackend(PyEVMBackend):
        """py-evm with each post-merge block's mixHash (prevrandao) from a seeded
        generator rather than ``os.urandom``; otherwise eth-tester's ``mine_blocks``."""

        def __init__(self, seed: int, **kw: Any) -> None:
            self._rng = random.Random(seed)
            super().__init__(**kw)

        def mine_blocks(
            self, num_blocks: int = 1, coinbase: bytes = pyevm.ZERO_ADDRESS
        ) -> tuple[bytes, ...]:
            hashes = []
            for _ in range(num_blocks):
                kwargs: dict[str, Any] = {"coinbase": coinbase}
                vm = self.chain.get_vm()
                if isinstance(vm, pyevm.ParisVM):
                    kwargs["mix_hash"] = self._rng.randbytes(32)
                if isinstance(vm, pyevm.PragueVM):
                    txs = self.chain.get_block().transactions
                    kwargs["blob_gas_used"] = sum(pyevm.get_total_blob_gas(tx) for tx in txs)
                hashes.append(self.chain.mine_block(**kwargs).hash)
            return tuple(hashes)

    return SeededBackend


def _SeededBackend(seed: int, **kw: Any) -> Any:
    return _seeded_backend_class()(seed, **kw)


class RpcChain(Chain):
    """Any JSON-RPC endpoint."""

    def __init__(self, url: str, timeout_s: float = 30.0) -> None:
        self.url = url
        self.w3 = Web3(HTTPProvider(url, request_kwargs={"timeout": timeout_s}))
        try:
            self.chain_id = int(self.w3.eth.chain_id)
        except Exception as exc:  # requests raises several connection errors
            raise ChainUnavailable(f"no JSON-RPC node at {url}: {exc}") from exc

    def _rpc(self, method: str, params: list[Any]) -> Any:
        resp = self.w3.provider.make_request(method, params)  # type: ignore[arg-type]
        if "error" in resp:
            raise ChainError(f"{method} failed on {self.url}: {resp['error']}")
        return resp.get("result")

    def advance_time(self, seconds: int) -> None:
        if seconds < 0:
            raise ChainError("cannot move time backwards")
        self._rpc("evm_increaseTime", [seconds])
        self._rpc("evm_mine", [])

    def snapshot(self) -> str:
        return str(self._rpc("evm_snapshot", []))

    def revert(self, snapshot_id: Any) -> None:
        if not self._rpc("evm_revert", [snapshot_id]):
            raise ChainError(f"evm_revert({snapshot_id}) refused")
