# pragma version ~=0.4.3
"""
@title deai Tasks
@notice Cross-checked compute tasks (Crynux style). A requester escrows a fee and names
        k registered workers (requester-side sampling, so a worker cannot tell a checked
        task from an unchecked one). Workers commit keccak256(abi_encode(task_id, worker,
        result_hash, salt)), then reveal. A strict majority of the k workers splits the fee;
        revealed dissenters and workers who never revealed are slashed. Without a majority
        the fee is refunded (non-revealers are still slashed). Past the reveal deadline
        anyone may finalize. No owner, no admin function.
"""

interface Registry:
    def eligible(node: address, role: uint256) -> bool: view
    def slash(node: address, amount: uint256) -> uint256: nonpayable

ROLE_WORKER: constant(uint256) = 4
MAX_WORKERS: constant(uint256) = 8
SENTINEL: constant(uint256) = 1 << 255

flag TaskState:
    OPEN
    SETTLED
    REFUNDED

struct Task:
    requester: address
    spec_hash: bytes32
    fee: uint256
    k: uint256
    commit_deadline: uint256
    reveal_deadline: uint256
    masks: uint256
    state: TaskState
    result_hash: bytes32
    paid: uint256
    refunded: uint256
    slashed: uint256

event TaskCreated:
    task_id: indexed(uint256)
    requester: indexed(address)
    spec_hash: bytes32
    fee: uint256
    workers: DynArray[address, MAX_WORKERS]
    commit_deadline: uint256
    reveal_deadline: uint256

event TaskCommitted:
    task_id: indexed(uint256)
    worker: indexed(address)
    commitment: bytes32

event TaskRevealed:
    task_id: indexed(uint256)
    worker: indexed(address)
    result_hash: bytes32

event TaskSettled:
    task_id: indexed(uint256)
    result_hash: bytes32
    votes: uint256
    share: uint256

event TaskRefunded:
    task_id: indexed(uint256)
    amount: uint256

event WorkerSlashed:
    task_id: indexed(uint256)
    worker: indexed(address)
    amount: uint256
    revealed: bool

event Credited:
    account: indexed(address)
    amount: uint256

event Withdrawn:
    account: indexed(address)
    amount: uint256

REGISTRY: public(immutable(address))
SLASH_AMOUNT: public(immutable(uint256))
MAX_TASK_TIME: public(immutable(uint256))

next_task_id: public(uint256)
tasks: public(HashMap[uint256, Task])
workers: public(HashMap[uint256, HashMap[uint256, address]])
commitments: HashMap[uint256, HashMap[uint256, bytes32]]
reveals: public(HashMap[uint256, HashMap[uint256, bytes32]])
owed: public(HashMap[address, uint256])
total_owed: public(uint256)


@deploy
def __init__(registry: address, slash_amount: uint256, max_task_time: uint256):
    """
    @notice Created by the Registry constructor; all values fixed forever.
    @param registry The Registry.
    @param slash_amount Wei slashed from a faulty worker.
    @param max_task_time Upper bound on commit + reveal periods (the withdrawal delay).
    """
    REGISTRY = registry
    SLASH_AMOUNT = slash_amount
    MAX_TASK_TIME = max_task_time
    self.next_task_id = 1


@external
@payable
def create_task(
    spec_hash: bytes32,
    workers: DynArray[address, MAX_WORKERS],
    commit_period: uint256,
    reveal_period: uint256,
) -> uint256:
    """
    @notice Create a task escrowing `msg.value` as its fee.
    @param spec_hash Hash of the task input and program.
    @param workers The k distinct assigned workers (registered, worker role, staked).
    @param commit_period Seconds until the commit deadline.
    @param reveal_period Seconds from the commit deadline to the reveal deadline.
    @return The task id.
    """
    k: uint256 = len(workers)
    assert k > 0, "tasks: no workers"
    assert msg.value >= k, "tasks: fee too small"
    assert commit_period > 0 and reveal_period > 0, "tasks: zero period"
    assert commit_period + reveal_period <= MAX_TASK_TIME, "tasks: task too long"
    task_id: uint256 = self.next_task_id
    self.next_task_id = task_id + 1
    for i: uint256 in range(k, bound=MAX_WORKERS):
        w: address = workers[i]
        assert staticcall Registry(REGISTRY).eligible(w, ROLE_WORKER), "tasks: worker not eligible"
        for j: uint256 in range(i, bound=MAX_WORKERS):
            assert workers[j] != w, "tasks: duplicate worker"
        self.workers[task_id][i] = w
    commit_deadline: uint256 = block.timestamp + commit_period
    reveal_deadline: uint256 = commit_deadline + reveal_period
    self.tasks[task_id] = Task(
        requester=msg.sender,
        spec_hash=spec_hash,
        fee=msg.value,
        k=k,
        commit_deadline=commit_deadline,
        reveal_deadline=reveal_deadline,
        masks=SENTINEL,
        state=TaskState.OPEN,
        result_hash=empty(bytes32),
        paid=0,
        refunded=0,
        slashed=0,
    )
    log TaskCreated(
        task_id=task_id,
        requester=msg.sender,
        spec_hash=spec_hash,
        fee=msg.value,
        workers=workers,
        commit_deadline=commit_deadline,
        reveal_deadline=reveal_deadline,
    )
    return task_id


@external
def commit(task_id: uint256, index: uint256, commitment: bytes32):
    """
    @notice Commit to a result as assigned worker number `index`.
    @param task_id The task.
    @param index The caller's position among the workers.
    @param commitment keccak256(abi_encode(task_id, worker, result_hash, salt)).
    """
    self._check_worker(task_id, index)
    assert block.timestamp < self.tasks[task_id].commit_deadline, "tasks: commit closed"
    masks: uint256 = self.tasks[task_id].masks
    bit: uint256 = 1 << index
    assert masks & bit == 0, "tasks: already committed"
    self.commitments[task_id][index] = commitment
    self.tasks[task_id].masks = masks | bit
    log TaskCommitted(task_id=task_id, worker=msg.sender, commitment=commitment)


@external
def reveal(task_id: uint256, index: uint256, result_hash: bytes32, salt: bytes32):
    """
    @notice Reveal the committed result hash. Opens at the commit deadline or once every
            worker committed; closes at the reveal deadline.
    @param task_id The task.
    @param index The caller's position among the workers.
    @param result_hash Hash of the computed result (non-zero).
    @param salt The commitment's salt.
    """
    self._check_worker(task_id, index)
    masks: uint256 = self.tasks[task_id].masks
    all_in: uint256 = (1 << self.tasks[task_id].k) - 1
    assert (
        block.timestamp >= self.tasks[task_id].commit_deadline or masks & all_in == all_in
    ), "tasks: reveal not open"
    assert block.timestamp < self.tasks[task_id].reveal_deadline, "tasks: reveal closed"
    bit: uint256 = 1 << index
    assert masks & bit != 0, "tasks: not committed"
    assert masks & (bit << 8) == 0, "tasks: already revealed"
    assert result_hash != empty(bytes32), "tasks: empty result"
    expected: bytes32 = keccak256(abi_encode(task_id, msg.sender, result_hash, salt))
    assert expected == self.commitments[task_id][index], "tasks: reveal does not match"
    self.reveals[task_id][index] = result_hash
    self.tasks[task_id].masks = masks | (bit << 8)
    log TaskRevealed(task_id=task_id, worker=msg.sender, result_hash=result_hash)


@external
@nonreentrant
def finalize_task(task_id: uint256):
    """
    @notice Settle once every worker revealed or the reveal deadline passed; anyone may
            call. A strict majority splits the fee (the division remainder goes back to
            the requester); otherwise the fee is refunded.
    @param task_id The task.
    """
    assert self.tasks[task_id].state == TaskState.OPEN, "tasks: task not open"
    k: uint256 = self.tasks[task_id].k
    masks: uint256 = self.tasks[task_id].masks
    all_in: uint256 = (1 << k) - 1
    assert (
        block.timestamp >= self.tasks[task_id].reveal_deadline or (masks >> 8) & all_in == all_in
    ), "tasks: task not over"
    hashes: DynArray[bytes32, MAX_WORKERS] = []
    for i: uint256 in range(k, bound=MAX_WORKERS):
        if masks & (1 << (i + 8)) != 0:
            hashes.append(self.reveals[task_id][i])
        else:
            hashes.append(empty(bytes32))
    winner: bytes32 = empty(bytes32)
    votes: uint256 = 0
    for i: uint256 in range(k, bound=MAX_WORKERS):
        if hashes[i] == empty(bytes32):
            continue
        count: uint256 = 0
        for j: uint256 in range(k, bound=MAX_WORKERS):
            if hashes[j] == hashes[i]:
                count += 1
        if count * 2 > k:
            winner = hashes[i]
            votes = count
            break
    fee: uint256 = self.tasks[task_id].fee
    requester: address = self.tasks[task_id].requester
    if winner != empty(bytes32):
        share: uint256 = fee // votes
        self.tasks[task_id].state = TaskState.SETTLED
        self.tasks[task_id].result_hash = winner
        self.tasks[task_id].paid = share * votes
        self.tasks[task_id].refunded = fee - share * votes
        for i: uint256 in range(k, bound=MAX_WORKERS):
            if hashes[i] == winner:
                self._credit(self.workers[task_id][i], share)
        if fee > share * votes:
            self._credit(requester, fee - share * votes)
        log TaskSettled(task_id=task_id, result_hash=winner, votes=votes, share=share)
    else:
        self.tasks[task_id].state = TaskState.REFUNDED
        self.tasks[task_id].refunded = fee
        self._credit(requester, fee)
        log TaskRefunded(task_id=task_id, amount=fee)
    for i: uint256 in range(k, bound=MAX_WORKERS):
        revealed: bool = hashes[i] != empty(bytes32)
        if not revealed or (winner != empty(bytes32) and hashes[i] != winner):
            worker: address = self.workers[task_id][i]
            taken: uint256 = extcall Registry(REGISTRY).slash(worker, SLASH_AMOUNT)
            self.tasks[task_id].slashed += taken
            log WorkerSlashed(task_id=task_id, worker=worker, amount=taken, revealed=revealed)


@external
@nonreentrant
def withdraw():
    """
    @notice Withdraw the caller's balance (worker shares and requester refunds).
    """
    amount: uint256 = self.owed[msg.sender]
    assert amount > 0, "tasks: nothing owed"
    self.owed[msg.sender] = 0
    self.total_owed -= amount
    raw_call(msg.sender, b"", value=amount)
    log Withdrawn(account=msg.sender, amount=amount)


@view
@external
def task_workers(task_id: uint256) -> DynArray[address, MAX_WORKERS]:
    """
    @notice The assigned workers in index order.
    @param task_id The task.
    @return Workers.
    """
    out: DynArray[address, MAX_WORKERS] = []
    for i: uint256 in range(self.tasks[task_id].k, bound=MAX_WORKERS):
        out.append(self.workers[task_id][i])
    return out


@internal
def _check_worker(task_id: uint256, index: uint256):
    assert self.tasks[task_id].state == TaskState.OPEN, "tasks: task not open"
    assert index < self.tasks[task_id].k, "tasks: bad index"
    assert self.workers[task_id][index] == msg.sender, "tasks: not a worker"


@internal
def _credit(account: address, amount: uint256):
    self.owed[account] += amount
    self.total_owed += amount
    log Credited(account=account, amount=amount)
