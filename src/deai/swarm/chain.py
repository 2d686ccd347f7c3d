"""The swarm's own contract, ``contracts/SwarmLedger.vy``, and its typed client.

Why a contract of its own rather than the project's Registry: the swarm needs three
things the Registry/Jobs/Tasks trio does not have and should not grow: stake registered
*per model root and execution profile* (who may serve, who may witness), payment
channels (client deposits redeemed by cumulative signed vouchers in batches), and
disputes over *signed receipts* with a tolerant fixed-point comparison on chain
(Tasks compares result hashes exactly, which a float pipeline cannot use). Keeping it
separate also keeps the swarm independent of the ledger plane's contract changes; it
shares the ledger's chain backends (:mod:`deai.ledger.chain`), Merkle layout and
revert-reason handling.

Dispute life cycle (:class:`DisputeRun` drives it for a client and its witnesses):

1. ``open_dispute``: the client posts the accused's receipt fields, the worst row's claim
   and its Merkle proof, the accused's signature, and a bond; the contract checks the
   signature and the proof and draws two witnesses by stake among the other servers
   registered for the same model root and profile (``block.prevrandao``; a production
   chain would use a VRF or a later block's randomness so nobody can grind the draw).
2. The client hands each witness the history (off-chain); a witness checks that it
   hashes to the claim's ``in_hash``, recomputes the row from the public weights, and
   ``commit`` s to it; after the commit deadline it ``reveal`` s the row.
3. ``finalize`` (anyone, with the rows): both witnesses agree and both disagree with the
   accused's row -> the accused is slashed, the client made whole; both agree with it ->
   the bond goes to the accused; otherwise inconclusive. A witness that does not reveal
   is slashed a small amount.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import vyper
from eth_abi import encode
from eth_account import Account
from eth_utils import keccak, to_checksum_address
from web3 import Web3
from web3.contract import Contract
from web3.logs import DISCARD
from web3.types import TxReceipt

from deai.ledger.chain import Chain
from deai.ledger.client import revert_reason
from deai.ledger.compiler import CompiledContract, cache_dir
from deai.ledger.errors import ChainError, ChainUnavailable, ContractCompileError, Reverted
from deai.ledger.types import BURN_ADDRESS
from deai.swarm.checks import Evidence
from deai.swarm.receipts import Voucher, profile_hash, split_signature
from deai.swarm.wire import ZERO_HASH, chain_hashes, fixed_rows

SOURCE = os.path.join(os.path.dirname(__file__), "contracts", "SwarmLedger.vy")


def compile_swarm_ledger() -> CompiledContract:
    """Compile SwarmLedger.vy, cached on disk by (vyper version, source) like the ledger's."""
    from vyper.compiler import compile_code

    with open(SOURCE) as f:
        source = f.read()
    key = hashlib.sha256(f"{vyper.__version__}\0SwarmLedger\0{source}".encode()).hexdigest()
    path = cache_dir() / f"SwarmLedger-{key}.json"
    try:
        data = json.loads(path.read_text())
        return CompiledContract("SwarmLedger", data["abi"], data["bytecode"], "", key)
    except (OSError, ValueError, KeyError):
        pass
    try:
        out = compile_code(
            source, contract_path="SwarmLedger.vy", output_formats=["abi", "bytecode"]
        )
    except Exception as exc:  # vyper raises many exception types
        raise ContractCompileError(f"SwarmLedger.vy: {exc}") from exc
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps({"abi": out["abi"], "bytecode": out["bytecode"]}))
        tmp.replace(path)
    except OSError:
        pass
    return CompiledContract("SwarmLedger", out["abi"], out["bytecode"], "", key)


_COMPILED: list[CompiledContract] = []


def _compiled() -> CompiledContract:
    if not _COMPILED:
        _COMPILED.append(compile_swarm_ledger())
    return _COMPILED[0]


@dataclass(frozen=True)
class SwarmLedgerConfig:
    min_stake: int = 10**18  # wei a server keeps staked
    unbond_delay: int = 7 * 86400  # seconds from unbonding to withdrawal
    channel_delay: int = 86400  # seconds a leaving client's deposit stays redeemable
    tol_ppb: int = 500_000  # relative tolerance of row comparisons (deai.swarm.verify)
    slash: int = 5 * 10**17  # wei taken from a guilty server
    witness_slash: int = 10**17  # wei taken from a witness that does not reveal
    witness_fee: int = 10**15  # wei per revealing witness; the bond is 3x this
    commit_period: int = 600  # seconds
    reveal_period: int = 600  # seconds
    burn: str = BURN_ADDRESS


class SwarmLedger:
    """Typed calls to one deployed SwarmLedger."""

    def __init__(self, chain: Chain, address: str) -> None:
        self.chain = chain
        self.w3: Web3 = chain.w3
        self.address = to_checksum_address(address)
        self.contract: Contract = self.w3.eth.contract(address=self.address, abi=_compiled().abi)
        self._keys: dict[str, str] = {}
        self.gas_log: list[tuple[str, int]] = []

    @classmethod
    def deploy(
        cls, chain: Chain, config: SwarmLedgerConfig | None = None, deployer: str | None = None,
        key: str | None = None,
    ) -> SwarmLedger:  # fmt: skip
        c = config or SwarmLedgerConfig()
        art = _compiled()
        probe = cls.__new__(cls)
        probe.chain, probe.w3, probe._keys, probe.gas_log = chain, chain.w3, {}, []
        sender = deployer or chain.accounts[0]
        if key:
            sender = probe.add_key(key)
        ctor = chain.w3.eth.contract(abi=art.abi, bytecode=art.bytecode).constructor(
            c.min_stake, c.unbond_delay, c.channel_delay, c.tol_ppb, c.slash, c.witness_slash,
            c.witness_fee, c.commit_period, c.reveal_period, to_checksum_address(c.burn),
        )  # fmt: skip
        receipt = probe._send(sender, ctor, 0, "deploy SwarmLedger")
        ledger = cls(chain, str(receipt["contractAddress"]))
        ledger._keys = probe._keys
        ledger.gas_log = probe.gas_log
        return ledger

    def add_key(self, private_key: bytes | str) -> str:
        key = private_key if isinstance(private_key, str) else "0x" + private_key.hex()
        address = to_checksum_address(Account.from_key(key).address)
        self._keys[address] = key
        return address

    def _send(self, sender: str, fn: Any, value: int, label: str) -> TxReceipt:
        sender = to_checksum_address(sender)
        params: dict[str, Any] = {"from": sender, "value": value}
        try:
            if self.chain.fixed_gas is not None and hasattr(fn, "call"):
                fn.call(dict(params), block_identifier="pending")  # revert reason, cheaply
                params["gas"] = self.chain.fixed_gas
            if sender in self._keys:
                params["nonce"] = self.w3.eth.get_transaction_count(sender, "pending")
                params["chainId"] = int(self.w3.eth.chain_id)
                tx = fn.build_transaction(params)
                signed = Account.sign_transaction(tx, self._keys[sender])
                tx_hash = self.w3.eth.send_raw_transaction(signed.raw_transaction)
            else:
                tx_hash = fn.transact(params)
            receipt = self.w3.eth.wait_for_transaction_receipt(tx_hash, timeout=120)
        except Exception as exc:
            reason = revert_reason(exc)
            if reason is not None:
                raise Reverted(reason, label) from exc
            if isinstance(exc, ConnectionError | OSError):
                raise ChainUnavailable(f"{label}: {exc}") from exc
            raise ChainError(f"{label}: {exc}") from exc
        if receipt["status"] != 1:
            raise Reverted("reverted without reason", label)
        self.gas_log.append((label, int(receipt["gasUsed"])))
        return receipt

    def _view(self, name: str, *args: Any) -> Any:
        return getattr(self.contract.functions, name)(*args).call()

    # ------------------------------------------------------------ servers
    def register(self, server: str, model_root: str, profile: str, stake: int) -> None:
        fn = self.contract.functions.register(
            bytes.fromhex(model_root.removeprefix("0x")), profile_hash(profile)
        )
        self._send(server, fn, stake, "register")

    def is_server(self, node: str, model_root: str, profile: str) -> bool:
        return bool(
            self._view("is_server", to_checksum_address(node),
                       bytes.fromhex(model_root.removeprefix("0x")), profile_hash(profile))
        )  # fmt: skip

    def stake_of(self, node: str) -> int:
        return int(self._view("servers", to_checksum_address(node))[0])

    def begin_unbond(self, server: str) -> None:
        self._send(server, self.contract.functions.begin_unbond(), 0, "begin_unbond")

    def withdraw_stake(self, server: str) -> None:
        self._send(server, self.contract.functions.withdraw_stake(), 0, "withdraw_stake")

    # ------------------------------------------------------------ money
    def deposit(self, client: str, amount: int) -> None:
        self._send(client, self.contract.functions.deposit(), amount, "deposit")

    def balance_of(self, client: str) -> int:
        return int(self._view("accounts", to_checksum_address(client))[0])

    def paid(self, client: str, server: str) -> int:
        return int(self._view("paid", to_checksum_address(client), to_checksum_address(server)))

    def owed(self, account: str) -> int:
        return int(self._view("owed", to_checksum_address(account)))

    def withdraw(self, account: str) -> None:
        self._send(account, self.contract.functions.withdraw(), 0, "withdraw")

    def redeem_batch(self, server: str, vouchers: list[Voucher]) -> int:
        """Redeem several clients' vouchers in one transaction; returns the wei credited."""
        if not vouchers:
            return 0
        vs, rs, ss = zip(*(split_signature(v.signature) for v in vouchers), strict=True)
        before = self.owed(server)
        fn = self.contract.functions.redeem_batch(
            [v.client for v in vouchers],
            [v.cumulative for v in vouchers],
            list(vs),
            list(rs),
            list(ss),
        )
        self._send(server, fn, 0, f"redeem_batch[{len(vouchers)}]")
        return self.owed(server) - before

    def rows_close(self, claimed: bytes, ref: bytes, codec: int) -> bool:
        return bool(self._view("rows_close", claimed, ref, codec))

    def totals(self) -> dict[str, int]:
        """What the contract holds, by purpose (for the conservation check)."""
        return {
            "balance": int(self.w3.eth.get_balance(self.address)),
            "stake": int(self._view("total_stake")),
            "deposits": int(self._view("total_balances")),
            "bonds": int(self._view("open_bonds")),
            "owed": int(self._view("total_owed")),
        }

    # ------------------------------------------------------------ disputes
    def dispute_bond(self) -> int:
        return int(self._view("DISPUTE_BOND"))

    def open_dispute(self, opener: str, ev: Evidence) -> tuple[int, list[str]]:
        """Open a dispute from :class:`Evidence`; returns (id, the two drawn witnesses)."""
        r = ev.receipt
        rc = (
            r.client, bytes.fromhex(r.session.removeprefix("0x")), r.call,
            bytes.fromhex(r.model_root.removeprefix("0x")), profile_hash(r.profile), r.start, r.end,
            r.codec, r.first_position, r.n_rows, bytes.fromhex(r.rows_root.removeprefix("0x")),
        )  # fmt: skip
        claim = (ev.claim.k, ev.claim.position, ev.claim.in_hash, ev.claim.out_hash)
        v, rr, ss = split_signature(r.signature)
        fn = self.contract.functions.open_dispute(r.server, rc, claim, ev.proof, v, rr, ss)
        receipt = self._send(opener, fn, self.dispute_bond(), "open_dispute")
        logs = self.contract.events.DisputeOpened().process_receipt(receipt, errors=DISCARD)
        args = logs[0]["args"]
        return int(args["dispute_id"]), [str(args["witness0"]), str(args["witness1"])]

    def commit(self, witness: str, dispute_id: int, row: bytes, salt: bytes) -> None:
        c = keccak(
            encode(
                ["uint256", "address", "bytes32", "bytes32"],
                [dispute_id, witness, keccak(row), salt],
            )
        )
        self._send(witness, self.contract.functions.commit(dispute_id, c), 0, "commit")

    def reveal(self, witness: str, dispute_id: int, row: bytes, salt: bytes) -> None:
        self._send(witness, self.contract.functions.reveal(dispute_id, row, salt), 0, "reveal")

    def finalize(
        self, caller: str, dispute_id: int, accused_row: bytes, row0: bytes, row1: bytes
    ) -> str:
        fn = self.contract.functions.finalize(dispute_id, accused_row, row0, row1)
        receipt = self._send(caller, fn, 0, "finalize")
        logs = self.contract.events.DisputeSettled().process_receipt(receipt, errors=DISCARD)
        verdict = int(logs[0]["args"]["verdict"])
        return {1: "open", 2: "guilty", 4: "cleared", 8: "inconclusive"}[verdict]


class ChainIdentity:
    """Record identity check: the owner is staked and bonded for this model and profile.

    A positive answer is cached for ``cache_s`` seconds (stake changes are rare; a
    slashed or unbonding server is dropped within that time); a negative one is not, so
    a server that just registered is accepted at its next announcement."""

    def __init__(
        self, ledger: SwarmLedger, model_root: str, profile: str, cache_s: float = 30.0
    ) -> None:
        import time

        self.ledger = ledger
        self.model_root = model_root
        self.profile = profile
        self.cache_s = cache_s
        self.clock = time.monotonic
        self._ok_until: dict[str, float] = {}

    def __call__(self, owner: str) -> str | None:
        if self._ok_until.get(owner, -1.0) > self.clock():
            return None
        try:
            ok = self.ledger.is_server(owner, self.model_root, self.profile)
        except ChainError as e:
            return f"identity check failed ({e})"  # fail closed
        if not ok:
            return "not staked on the swarm ledger for this model and profile"
        self._ok_until[owner] = self.clock() + self.cache_s
        return None


def row_bytes(row: Any) -> bytes:
    """The fixed-point bytes of one hidden-state row ``[H]`` (what receipts hash)."""
    return fixed_rows(row.reshape(1, -1))[0].tobytes()


def witness_row(span: Any, history: Any, in_hash: bytes) -> bytes:
    """A witness's duty: check the history names ``in_hash``, recompute the last row."""
    import torch

    if chain_hashes(ZERO_HASH, history[0])[-1] != in_hash:
        raise ChainError("witness: the history handed over does not hash to the dispute's in_hash")
    with torch.no_grad():
        out = span(history, 0, None)
    return row_bytes(out[0, -1])


@dataclass
class DisputeRun:
    """One dispute end to end: the opener and the witnesses' duties (their own keys)."""

    ledger: SwarmLedger
    opener: str
    witness_span: Callable[[str, int, int], Any]  # (witness, start, end) -> its Span
    salts: Callable[[str], bytes]  # a witness's private salt source
    log: list[str] = field(default_factory=list)

    def run(self, ev: Evidence) -> tuple[int, str]:
        dispute_id, ws = self.ledger.open_dispute(self.opener, ev)
        self.log.append(f"dispute {dispute_id} opened against {ev.accused}; witnesses {ws}")
        rows: dict[str, bytes] = {}
        for w in ws:
            rows[w] = witness_row(
                self.witness_span(w, ev.receipt.start, ev.receipt.end), ev.history, ev.claim.in_hash
            )
            self.ledger.commit(w, dispute_id, rows[w], self.salts(w))
        self.ledger.chain.advance_time(self._commit_period() + 1)
        for w in ws:
            self.ledger.reveal(w, dispute_id, rows[w], self.salts(w))
        verdict = self.ledger.finalize(
            self.opener, dispute_id, row_bytes(ev.row), rows[ws[0]], rows[ws[1]]
        )
        self.log.append(f"dispute {dispute_id}: {verdict}")
        return dispute_id, verdict

    def _commit_period(self) -> int:
        return int(self.ledger._view("COMMIT_PERIOD"))
