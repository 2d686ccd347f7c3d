"""The typed ledger client: one class over the three contracts, the same code on the
embedded chain and on any JSON-RPC chain.

Senders are addresses the chain manages (``w3.eth.accounts``: eth-tester and anvil dev
accounts, unlocked) or addresses whose private key was given with :meth:`Ledger.add_key`,
whose transactions are signed locally with eth-account (what a deployed node does).
Every revert becomes :class:`~deai.ledger.errors.Reverted` carrying the contract's revert
string; the gas of every mined transaction is appended to :attr:`Ledger.gas_log`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

from eth_account import Account
from web3 import Web3
from web3.contract import Contract
from web3.contract.contract import ContractFunction
from web3.logs import DISCARD
from web3.types import TxReceipt

from deai.ledger.chain import Chain
from deai.ledger.compiler import compile_contract
from deai.ledger.errors import ChainError, ChainUnavailable, Reverted, UnknownContract
from deai.ledger.merkle import PayoutTree
from deai.ledger.tasks_types import KeyView, SlotState, SlotView
from deai.ledger.types import (
    Deployment,
    Event,
    JobView,
    LedgerConfig,
    NodeView,
    Role,
    RoundResult,
    RoundView,
    TaskState,
    TaskView,
    mask_bits,
)

DRAW_GAS = 2_500_000  # limit for a draw sent without a dry run (16 seats use ~1.2 M)
_REASON = re.compile(r"execution reverted:?\s*(.*)", re.S)


def revert_reason(exc: BaseException) -> str | None:
    """The revert string inside a web3 / eth-tester exception, or None if it is not a
    revert."""
    name = type(exc).__name__
    if name not in {
        "TransactionFailed",
        "ContractLogicError",
        "ContractCustomError",
        "ContractPanicError",
        "Web3RPCError",
    }:
        return None
    text = getattr(exc, "message", None) or (str(exc.args[0]) if exc.args else str(exc))
    match = _REASON.search(text)
    if match:
        return match.group(1).strip().strip("'\"") or "reverted without reason"
    return text if name != "Web3RPCError" else None


class Ledger:
    """Deploy or attach to the deai contracts and call them with typed arguments."""

    def __init__(
        self,
        chain: Chain,
        deployment: Deployment,
        *,
        verify: bool = True,
        slash_recipient: str | None = None,
    ) -> None:
        """Attach to a deployment. ``verify``: refuse (:class:`UnknownContract`) unless the
        three addresses run exactly the bundled contracts and the Registry created the
        Jobs and Tasks named; ``slash_recipient``: also require that recipient."""
        self.chain = chain
        self.w3: Web3 = chain.w3
        self.deployment = deployment
        self.registry = self._contract("Registry", deployment.registry)
        self.jobs = self._contract("Jobs", deployment.jobs)
        self.tasks = self._contract("Tasks", deployment.tasks)
        self._keys: dict[str, str] = {}
        self.gas_log: list[tuple[str, int]] = []
        self.last_receipt: TxReceipt | None = None
        if verify:
            self.verify_code(slash_recipient)

    def verify_code(self, slash_recipient: str | None = None) -> None:
        """Check the code at every address against the bundled, compiled contracts."""
        for name, address in (
            ("Registry", self.deployment.registry),
            ("Jobs", self.deployment.jobs),
            ("Tasks", self.deployment.tasks),
        ):
            code = bytes(self.w3.eth.get_code(Web3.to_checksum_address(address)))
            runtime = bytes.fromhex(compile_contract(name).runtime[2:])
            if not runtime or not code.startswith(runtime) or len(code) - len(runtime) > 32 * 8:
                raise UnknownContract(f"{address} does not run the bundled {name}.vy")
        reg = self.registry.functions
        if (reg.JOBS().call(), reg.TASKS().call()) != (
            Web3.to_checksum_address(self.deployment.jobs),
            Web3.to_checksum_address(self.deployment.tasks),
        ):
            raise UnknownContract("the Registry did not create the Jobs and Tasks named")
        if slash_recipient is not None and reg.SLASH_RECIPIENT().call() != (
            Web3.to_checksum_address(slash_recipient)
        ):
            raise UnknownContract(f"slash recipient is not {slash_recipient}")

    # ------------------------------------------------------------------ setup
    @classmethod
    def deploy(
        cls,
        chain: Chain,
        config: LedgerConfig | None = None,
        deployer: str | None = None,
        key: str | None = None,
    ) -> Ledger:
        """Deploy the blueprints of Jobs and Tasks, then the Registry, which creates both.
        ``key``: a private key to deploy from instead of a chain-managed account."""
        config = config or LedgerConfig()
        w3 = chain.w3
        sender = Account.from_key(key).address if key else (deployer or chain.accounts[0])
        probe = cls.__new__(cls)
        probe.w3, probe.chain, probe.gas_log, probe.last_receipt = w3, chain, [], None
        probe._keys = {sender: key} if key else {}
        blueprints = []
        for name in ("Jobs", "Tasks"):
            art = compile_contract(name)
            ctor = w3.eth.contract(abi=[], bytecode=art.blueprint).constructor()
            blueprints.append(
                probe._send(sender, ctor, 0, f"deploy {name} blueprint")["contractAddress"]
            )
        reg = compile_contract("Registry")
        ctor = w3.eth.contract(abi=reg.abi, bytecode=reg.bytecode).constructor(
            config.min_stake,
            config.withdrawal_delay,
            Web3.to_checksum_address(config.slash_recipient),
            blueprints[0],
            blueprints[1],
            config.job_slash,
            config.task_slash,
        )
        receipt = probe._send(sender, ctor, 0, "deploy Registry")
        registry = w3.eth.contract(address=receipt["contractAddress"], abi=reg.abi)
        deployment = Deployment(
            registry=str(receipt["contractAddress"]),
            jobs=registry.functions.JOBS().call(),
            tasks=registry.functions.TASKS().call(),
            chain_id=int(w3.eth.chain_id),
            block=int(receipt["blockNumber"]),
        )
        ledger = cls(chain, deployment, verify=False)
        ledger._keys = dict(probe._keys)
        ledger.gas_log = probe.gas_log
        return ledger

    def add_key(self, private_key: str) -> str:
        """Sign this account's transactions locally; returns its address."""
        address = str(Account.from_key(private_key).address)
        self._keys[address] = private_key
        return address

    def _contract(self, name: str, address: str) -> Contract:
        return self.w3.eth.contract(
            address=Web3.to_checksum_address(address), abi=compile_contract(name).abi
        )

    # ------------------------------------------------------------ transactions
    def _send(
        self, sender: str, fn: Any, value: int, label: str, gas: int | None = None
    ) -> TxReceipt:
        """Send a transaction; ``gas``: send with this limit without a dry run (for a call
        that only becomes valid in the block it will be mined in)."""
        sender = Web3.to_checksum_address(sender)
        params: dict[str, Any] = {"from": sender, "value": value}
        if gas is not None:
            params["gas"] = gas
        try:
            if gas is None and self.chain.fixed_gas is not None and hasattr(fn, "call"):
                # one dry run for the revert reason instead of a binary-search estimate
                fn.call(dict(params), block_identifier="pending")
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
        self.last_receipt = receipt
        return receipt

    def _call(self, fn: ContractFunction) -> Any:
        try:
            return fn.call(self.chain.call_params())  # type: ignore[arg-type]
        except Exception as exc:
            reason = revert_reason(exc)
            if reason is not None:
                raise Reverted(reason, fn.fn_name) from exc
            raise ChainError(f"{fn.fn_name}: {exc}") from exc

    @property
    def last_gas(self) -> int:
        return self.gas_log[-1][1] if self.gas_log else 0

    # ---------------------------------------------------------------- registry
    def register(self, account: str, stake: int, endpoint: str, roles: Role) -> None:
        """Join the registry with ``stake`` wei."""
        self._send(account, self.registry.functions.join(endpoint, int(roles)), stake, "join")

    def add_stake(self, account: str, amount: int) -> None:
        self._send(account, self.registry.functions.add_stake(), amount, "add_stake")

    def update_node(self, account: str, endpoint: str, roles: Role) -> None:
        self._send(account, self.registry.functions.update(endpoint, int(roles)), 0, "update")

    def unstake(self, account: str, amount: int) -> None:
        """Request an unstake; withdraw with :meth:`withdraw_stake` after the delay."""
        self._send(account, self.registry.functions.request_unstake(amount), 0, "request_unstake")

    def withdraw_stake(self, account: str) -> None:
        self._send(account, self.registry.functions.withdraw(), 0, "withdraw_stake")

    def sweep_slashed(self, account: str) -> None:
        self._send(account, self.registry.functions.sweep_slashed(), 0, "sweep_slashed")

    def node(self, address: str) -> NodeView:
        t = self._call(self.registry.functions.nodes(Web3.to_checksum_address(address)))
        return NodeView(
            Web3.to_checksum_address(address), t[0], t[1], t[2], Role(t[3]), t[6], t[4], t[5]
        )

    def validator_slots(self) -> list[tuple[str, int]]:
        """``(owner, weight)`` of every validator tree slot in order (O(slots) calls)."""
        reg = self.registry.functions
        out = []
        for i in range(1, int(self._call(reg.slot_count())) + 1):
            owner = str(self._call(reg.slot_owner(i)))
            weight = int(self._call(reg.weight(owner))) if int(owner, 16) else 0
            out.append((owner, weight))
        return out

    def validators(self) -> list[str]:
        """Addresses holding a validator tree slot, in slot order."""
        return [a for a, w in self.validator_slots() if w > 0]

    def draw(self, seed: bytes, size: int) -> list[str]:
        """The seats the Registry would draw now for ``seed`` (with replacement)."""
        return list(self._call(self.registry.functions.draw(seed, size)))

    def min_stake(self) -> int:
        return int(self._call(self.registry.functions.MIN_STAKE()))

    def withdrawal_delay(self) -> int:
        return int(self._call(self.registry.functions.WITHDRAWAL_DELAY()))

    # -------------------------------------------------------------------- jobs
    def create_job(
        self,
        requester: str,
        *,
        budget: int,
        spec_hash: bytes,
        rounds: int,
        committee_size: int,
        commit_period: int,
        reveal_period: int,
        claim_period: int,
    ) -> int:
        """Escrow ``budget`` wei for a job; round 0 opens at once. Returns the job id."""
        fn = self.jobs.functions.create_job(
            spec_hash, rounds, committee_size, commit_period, reveal_period, claim_period
        )
        receipt = self._send(requester, fn, budget, "create_job")
        return int(
            self.jobs.events.JobCreated().process_receipt(receipt, errors=DISCARD)[0]["args"][
                "job_id"
            ]
        )

    def job(self, job_id: int) -> JobView:
        return JobView.from_tuple(job_id, self._call(self.jobs.functions.jobs(job_id)))

    def round(self, job_id: int) -> RoundView:
        t = self._call(self.jobs.functions.rounds(job_id))
        size = int(t[2])
        return RoundView(
            job_id,
            t[0],
            bytes(t[1]),
            size,
            t[3],
            t[4],
            mask_bits(t[5], 0, size),
            mask_bits(t[5], 16, size),
            int(t[6]),
            int(t[7]),
            bool(t[8]),
            int(t[9]),
        )

    def committee(self, job_id: int) -> list[str]:
        """The current round's distinct members, in index order (empty until drawn)."""
        return list(self._call(self.jobs.functions.committee(job_id)))

    def committee_seats(self, job_id: int) -> list[int]:
        """Seats held by each member of the current round, in index order."""
        return [int(x) for x in self._call(self.jobs.functions.committee_seats(job_id))]

    def draw_round(self, sender: str, job_id: int) -> bool:
        """Draw the current round's committee (anyone may); returns whether it is drawn
        now (False: the seed was re-armed, retry from the next block). A dry run in the
        seed block itself says "seed not ready" (some nodes run calls in the latest
        block); the transaction is then sent anyway, to be mined in a later block."""
        fn = self.jobs.functions.draw_round(job_id)
        try:
            self._send(sender, fn, 0, "draw_round")
        except Reverted as e:
            if "seed not ready" not in e.reason:
                raise
            try:
                self._send(sender, fn, 0, "draw_round", gas=DRAW_GAS)
            except Reverted as again:
                raise Reverted("jobs: seed not ready", "draw_round") from again
        return self.round(job_id).drawn

    def ensure_drawn(self, sender: str, job_id: int, attempts: int = 3) -> bool:
        """Draw the current round if nobody has; ``Reverted`` if it cannot be drawn."""
        for _ in range(attempts):
            if self.round(job_id).drawn:
                return True
            try:
                self.draw_round(sender, job_id)
            except Reverted as e:
                if "already drawn" not in e.reason:
                    raise
        return self.round(job_id).drawn

    def member_index(self, job_id: int, account: str) -> int:
        members = self.committee(job_id)
        account = Web3.to_checksum_address(account)
        if account not in members:
            raise Reverted("jobs: not a member", "member_index")
        return members.index(account)

    def commit(
        self,
        account: str,
        job_id: int,
        round_index: int,
        commitment: bytes,
        index: int | None = None,
    ) -> None:
        """Commit as a committee member (``index`` defaults to the account's position)."""
        idx = self.member_index(job_id, account) if index is None else index
        fn = self.jobs.functions.commit(job_id, round_index, idx, commitment)
        self._send(account, fn, 0, "commit")

    def reveal(
        self,
        account: str,
        job_id: int,
        round_index: int,
        result: RoundResult,
        salt: bytes,
        index: int | None = None,
    ) -> None:
        idx = self.member_index(job_id, account) if index is None else index
        fn = self.jobs.functions.reveal(
            job_id, round_index, idx, result.model_hash, result.root, result.total, salt
        )
        self._send(account, fn, 0, "reveal")

    def finalize_round(self, account: str, job_id: int, round_index: int) -> None:
        fn = self.jobs.functions.finalize_round(job_id, round_index)
        self._send(account, fn, 0, "finalize_round")

    def claim(
        self, sender: str, job_id: int, payee: str, cumulative: int, proof: Sequence[bytes]
    ) -> None:
        """Claim ``payee``'s cumulative payout (any sender; the money goes to ``payee``)."""
        fn = self.jobs.functions.claim(
            job_id, Web3.to_checksum_address(payee), cumulative, list(proof)
        )
        self._send(sender, fn, 0, "claim")

    def claim_many(
        self, sender: str, job_id: int, tree: PayoutTree, accounts: Sequence[str]
    ) -> None:
        """Claim for several payees of one job in one transaction (at most 64)."""
        payees = [Web3.to_checksum_address(a) for a in accounts]
        fn = self.jobs.functions.claim_many(
            job_id, payees, [tree.amount(a) for a in payees], [tree.proof(a) for a in payees]
        )
        self._send(sender, fn, 0, "claim_many")

    def claim_jobs(
        self, sender: str, account: str, trees: Sequence[tuple[int, PayoutTree]]
    ) -> None:
        """Claim ``account``'s leaves in several done jobs (``(job_id, tree)`` pairs, at
        most 16, ``Jobs.MAX_CLAIM_JOBS``) in one transaction, paid as one transfer."""
        payee = Web3.to_checksum_address(account)
        fn = self.jobs.functions.claim_jobs(
            payee,
            [job_id for job_id, _ in trees],
            [tree.amount(payee) for _, tree in trees],
            [tree.proof(payee) for _, tree in trees],
        )
        self._send(sender, fn, 0, "claim_jobs")

    def claimed(self, job_id: int, account: str) -> int:
        """Wei claimed for ``account`` in ``job_id`` (from the Claimed events)."""
        f = {"job_id": job_id, "account": Web3.to_checksum_address(account)}
        return sum(int(e.args["amount"]) for e in self.events("Claimed", filters=f))

    def sweep_job(self, sender: str, job_id: int) -> None:
        self._send(sender, self.jobs.functions.sweep(job_id), 0, "sweep")

    def escrow(self, job_id: int) -> int:
        return int(self._call(self.jobs.functions.escrow(job_id)))

    def owed(self, account: str) -> int:
        """Pull balance in Jobs (refunds, deferred payments)."""
        return int(self._call(self.jobs.functions.owed(Web3.to_checksum_address(account))))

    def withdraw(self, account: str) -> None:
        """Withdraw the account's pull balance from Jobs."""
        self._send(account, self.jobs.functions.withdraw(), 0, "withdraw")

    # ------------------------------------------------------------------- tasks
    # Hidden check groups (Tasks.vy): keys, slots, groups, escalation. See
    # deai.verification.market for the roles that drive these calls.
    def commit_key(
        self,
        requester: str,
        *,
        commitment: bytes,
        threshold: int,
        slot_bond: int,
        tolerances: Sequence[int],
        reveal_by: int,
        bond: int,
    ) -> int:
        """Commit a sampling key with ``bond`` wei; returns the key id."""
        fn = self.tasks.functions.commit_key(
            commitment, threshold, slot_bond, list(tolerances), reveal_by
        )
        receipt = self._send(requester, fn, bond, "commit_key")
        logs = self.tasks.events.KeyCommitted().process_receipt(receipt, errors=DISCARD)
        return int(logs[0]["args"]["key_id"])

    def reveal_key(self, requester: str, key_id: int, secret: bytes) -> None:
        self._send(requester, self.tasks.functions.reveal_key(key_id, secret), 0, "reveal_key")

    def key(self, key_id: int) -> KeyView:
        k = self._call(self.tasks.functions.keys(key_id))
        return KeyView(
            key_id, k[0], bytes(k[1]), k[2], k[3], k[4], k[5], bytes(k[6]), k[7], k[8], k[9]
        )

    def key_tolerance(self, key_id: int, profile: int) -> int:
        return int(self._call(self.tasks.functions.key_tolerance(key_id, profile)))

    def post_slots(
        self,
        requester: str,
        key_id: int,
        *,
        slot_ids: Sequence[bytes],
        workers: Sequence[str],
        specs: Sequence[bytes],
        profiles: Sequence[int],
        commit_period: int,
        fee_each: int,
    ) -> None:
        """Post a batch of slots escrowing ``fee_each`` wei per slot."""
        fn = self.tasks.functions.post(
            key_id,
            list(slot_ids),
            [Web3.to_checksum_address(w) for w in workers],
            list(specs),
            list(profiles),
            commit_period,
        )
        self._send(requester, fn, fee_each * len(slot_ids), "post_slots")

    def slot(self, slot_id: bytes) -> SlotView:
        t = self._call(self.tasks.functions.slots(slot_id))
        return SlotView(
            slot_id, t[0], t[1], bytes(t[2]), t[3], t[4], t[5], bytes(t[6]), t[7], t[8], t[9],
            SlotState(t[10]),
        )  # fmt: skip

    def commit_slots(
        self, worker: str, slot_ids: Sequence[bytes], commitments: Sequence[bytes], bond_each: int
    ) -> None:
        """Accept slots offered to ``worker``: post ``bond_each`` per slot and commit."""
        fn = self.tasks.functions.commit(list(slot_ids), list(commitments))
        self._send(worker, fn, bond_each * len(slot_ids), "commit_slots")

    def group_slots(
        self, requester: str, slot_ids: Sequence[bytes], spec_hash: bytes, blinds: Sequence[bytes]
    ) -> int:
        """Reveal one task's check group (primary first); returns the group id."""
        fn = self.tasks.functions.group(list(slot_ids), spec_hash, list(blinds))
        receipt = self._send(requester, fn, 0, "group_slots")
        logs = self.tasks.events.GroupFormed().process_receipt(receipt, errors=DISCARD)
        return int(logs[0]["args"]["group_id"])

    def reveal_slots(
        self,
        worker: str,
        slot_ids: Sequence[bytes],
        fingerprints: Sequence[int],
        salts: Sequence[bytes],
    ) -> None:
        fn = self.tasks.functions.reveal(list(slot_ids), list(fingerprints), list(salts))
        self._send(worker, fn, 0, "reveal_slots")

    def settle_single(self, sender: str, slot_ids: Sequence[bytes]) -> None:
        fn = self.tasks.functions.settle_single(list(slot_ids))
        self._send(sender, fn, 0, "settle_single")

    def finalize_task(self, sender: str, task_id: int) -> None:
        """Advance one check group (``finalize_groups``)."""
        self.finalize_tasks(sender, [task_id])

    def finalize_tasks(self, sender: str, task_ids: Sequence[int]) -> None:
        """``finalize_groups``: pay unanimous groups, open the contest window of a majority
        verdict (settle it once the window passed), escalate split groups."""
        self._send(sender, self.tasks.functions.finalize_groups(list(task_ids)), 0, "finalize_task")

    def contest(self, worker: str, task_id: int, index: int, bond: int) -> None:
        """An outvoted member escalates its group, posting a second bond."""
        self._send(worker, self.tasks.functions.contest(task_id, index), bond, "contest")

    def task(self, task_id: int) -> TaskView:
        g = self._call(self.tasks.functions.groups(task_id))
        slots = tuple(
            bytes(self._call(self.tasks.functions.group_slots(task_id, i))) for i in range(g[1])
        )
        return TaskView(
            task_id, g[0], g[1], g[2], bytes(g[3]), g[4], TaskState(g[5]), g[6], g[7], g[8],
            g[9], g[10], g[11], g[12], slots,
        )  # fmt: skip

    def enroll(self, juror: str, task_id: int, commitment: bytes, profile: int, bond: int) -> None:
        fn = self.tasks.functions.enroll(task_id, commitment, profile)
        self._send(juror, fn, bond, "enroll")

    def draw_jury(self, sender: str, task_id: int) -> None:
        self._send(sender, self.tasks.functions.draw_jury(task_id), 0, "draw_jury")

    def jurors(self, task_id: int) -> list[str]:
        n = self.task(task_id).enrolled
        return [self._call(self.tasks.functions.jurors(task_id, i)) for i in range(n)]

    def juror_reveal(
        self, juror: str, task_id: int, index: int, fingerprint: int, salt: bytes
    ) -> None:
        fn = self.tasks.functions.juror_reveal(task_id, index, fingerprint, salt)
        self._send(juror, fn, 0, "juror_reveal")

    def finalize_escalation(self, sender: str, task_id: int) -> None:
        fn = self.tasks.functions.finalize_escalation(task_id)
        self._send(sender, fn, 0, "finalize_escalation")

    def audit_slot(self, sender: str, slot_id: bytes) -> None:
        self._send(sender, self.tasks.functions.audit(slot_id), 0, "audit_slot")

    def release_key(self, sender: str, key_id: int) -> None:
        self._send(sender, self.tasks.functions.release_key(key_id), 0, "release_key")

    def task_owed(self, account: str) -> int:
        return int(self._call(self.tasks.functions.owed(Web3.to_checksum_address(account))))

    def task_withdraw(self, account: str) -> None:
        self._send(account, self.tasks.functions.withdraw(), 0, "task_withdraw")

    # ------------------------------------------------------------------ reads
    def balance(self, address: str) -> int:
        return int(self.w3.eth.get_balance(Web3.to_checksum_address(address)))

    def now(self) -> int:
        """Timestamp of the latest block."""
        return self.chain.latest_timestamp()

    def block_number(self) -> int:
        """Number of the latest block."""
        return self.chain.block_number()

    def events(
        self, name: str, from_block: int | None = None, filters: Mapping[str, Any] | None = None
    ) -> list[Event]:
        """Decoded events called ``name`` from whichever contract defines it (Registry
        first, then Jobs, then Tasks), oldest first."""
        start = self.deployment.block if from_block is None else from_block
        for label, contract in (
            ("Registry", self.registry),
            ("Jobs", self.jobs),
            ("Tasks", self.tasks),
        ):
            if any(e.get("type") == "event" and e.get("name") == name for e in contract.abi):
                logs = contract.events[name]().get_logs(
                    from_block=start, argument_filters=dict(filters or {})
                )
                return [
                    Event(
                        name,
                        label,
                        int(log["blockNumber"]),
                        log["transactionHash"].to_0x_hex(),
                        dict(log["args"]),
                    )
                    for log in logs
                ]
        raise ChainError(f"no contract defines an event named {name!r}")
