# pragma version ~=0.4.3
"""
@title deai Registry
@notice Node identities, stakes and roles. A node joins with a stake of native value, an
        endpoint and a role bitmask. Unstaking is delayed by a withdrawal period fixed at
        deploy; during it the stake can still be slashed. Only the Jobs and Tasks contracts,
        created by this constructor from blueprints whose code hashes are compiled into
        this contract, can slash or lock stake. There is no owner and no admin function.
        Validators sit in a stake-weighted Fenwick (sum) tree: `draw` samples seats with
        probability proportional to stake, with replacement, in O(log n) reads per seat,
        so splitting a stake into identities changes nothing and no fixed-size list exists
        that Sybils could fill. Freed tree slots are reused.
        A committee member's stake is locked by Jobs when the member accepts a duty (its
        commit) and released when the round is final; locked stake cannot be unstaked.
        Slashed funds accumulate in `slashed_unswept` and anyone may sweep them to
        `SLASH_RECIPIENT`, an address fixed at deploy (default: the burn address).
"""

ROLE_REQUESTER: constant(uint256) = 1
ROLE_PROVIDER: constant(uint256) = 2
ROLE_WORKER: constant(uint256) = 4
ROLE_VALIDATOR: constant(uint256) = 8
ALL_ROLES: constant(uint256) = 15
MAX_COMMITTEE: constant(uint256) = 16
MAX_ENDPOINT: constant(uint256) = 128
TREE_LEVELS: constant(uint256) = 24  # at most 2**24 - 1 validator slots
LOW128: constant(uint256) = (1 << 128) - 1

# Protocol-wide timing rules (seconds), the same for every job and task: an honest node on
# a slow link gets a tx included well within MIN_PERIOD; FINALIZE_GRACE is how long after
# a reveal deadline the committee alone may finalize before anyone may, for a tip.
MIN_PERIOD: public(constant(uint256)) = 300
FINALIZE_GRACE: public(constant(uint256)) = 300

# keccak256 of the deployed ERC-5202 blueprint code of Jobs.vy and Tasks.vy; filled in by
# deai.ledger.compiler from the same sources, so an unknown blueprint cannot be deployed
JOBS_BLUEPRINT_CODEHASH: constant(bytes32) = 0x0000000000000000000000000000000000000000000000000000000000000001
TASKS_BLUEPRINT_CODEHASH: constant(bytes32) = 0x0000000000000000000000000000000000000000000000000000000000000002

struct Node:
    # active stake (low 128 bits) | roles << 128: one storage word, so a join writes
    # stake and roles for the price of one fresh word
    stake_roles: uint256
    pending: uint256
    unlock_at: uint256
    slot: uint256
    locked: uint256
    endpoint: String[MAX_ENDPOINT]

struct NodeInfo:
    stake: uint256
    pending: uint256
    unlock_at: uint256
    roles: uint256
    slot: uint256
    locked: uint256
    endpoint: String[MAX_ENDPOINT]

event Joined:
    node: indexed(address)
    stake: uint256
    roles: uint256
    endpoint: String[MAX_ENDPOINT]

event Updated:
    node: indexed(address)
    roles: uint256
    endpoint: String[MAX_ENDPOINT]

event Staked:
    node: indexed(address)
    amount: uint256

event UnstakeRequested:
    node: indexed(address)
    amount: uint256
    unlock_at: uint256

event Withdrawn:
    node: indexed(address)
    amount: uint256

event Slashed:
    node: indexed(address)
    by: indexed(address)
    amount: uint256

event SlashSwept:
    to: indexed(address)
    amount: uint256

MIN_STAKE: public(immutable(uint256))
WITHDRAWAL_DELAY: public(immutable(uint256))
MAX_ROUND_TIME: public(immutable(uint256))
SLASH_RECIPIENT: public(immutable(address))
JOBS: public(immutable(address))
TASKS: public(immutable(address))

node_data: HashMap[address, Node]  # read through `nodes`
total_staked: public(uint256)
total_pending: public(uint256)
total_deposited: public(uint256)
total_withdrawn: public(uint256)
total_slashed: public(uint256)
slashed_unswept: public(uint256)
# stake-weighted Fenwick tree over validator slots 1..slot_count
tree: HashMap[uint256, uint256]
weight: public(HashMap[address, uint256])  # what the node has in the tree
slot_owner: public(HashMap[uint256, address])
slot_count: public(uint256)
top_step: uint256  # highest power of two <= slot_count
free_slots: HashMap[uint256, uint256]  # stack of emptied slots
free_count: uint256
total_weight: public(uint256)
# block of the last change of any tree weight (join, stake, roles, unstake, and slashes,
# which anyone may trigger by finalizing): Jobs refuses to draw from a seed older than
# it, so nobody picks a committee by re-weighting, or by slashing, after reading a seed
last_change_block: public(uint256)


@deploy
def __init__(
    min_stake: uint256,
    withdrawal_delay: uint256,
    slash_recipient: address,
    jobs_blueprint: address,
    tasks_blueprint: address,
    job_slash: uint256,
    task_slash: uint256,
):
    """
    @notice Fix the rules and create the two contracts allowed to slash.
    @param min_stake Minimum stake of an active node, in wei.
    @param withdrawal_delay Seconds between an unstake request and its withdrawal; must
           exceed the shortest round (2 * MIN_PERIOD) plus FINALIZE_GRACE. The longest
           commit + reveal window is WITHDRAWAL_DELAY - FINALIZE_GRACE - 1.
    @param slash_recipient Where swept slashed funds go (fixed forever).
    @param jobs_blueprint ERC-5202 blueprint of Jobs.vy (its code hash is checked).
    @param tasks_blueprint ERC-5202 blueprint of Tasks.vy (its code hash is checked).
    @param job_slash Wei slashed from a faulty committee member per seat.
    @param task_slash Wei slashed from a faulty task worker.
    """
    assert min_stake > 0, "registry: zero minimum stake"
    assert withdrawal_delay > 2 * MIN_PERIOD + FINALIZE_GRACE, "registry: withdrawal delay too short"
    assert slash_recipient != empty(address), "registry: zero slash recipient"
    assert jobs_blueprint.codehash == JOBS_BLUEPRINT_CODEHASH, "registry: unknown jobs blueprint"
    assert tasks_blueprint.codehash == TASKS_BLUEPRINT_CODEHASH, "registry: unknown tasks blueprint"
    MIN_STAKE = min_stake
    WITHDRAWAL_DELAY = withdrawal_delay
    MAX_ROUND_TIME = withdrawal_delay - FINALIZE_GRACE - 1
    SLASH_RECIPIENT = slash_recipient
    JOBS = create_from_blueprint(jobs_blueprint, self, job_slash, withdrawal_delay - FINALIZE_GRACE - 1)
    TASKS = create_from_blueprint(tasks_blueprint, self, task_slash, withdrawal_delay)


@external
@payable
def join(endpoint: String[MAX_ENDPOINT], roles: uint256):
    """
    @notice Join as a node with `msg.value` as stake.
    @dev A node whose stake went to zero (full unstake) may join again.
    @param endpoint Where peers reach the node (URL or multiaddr).
    @param roles Bitmask: 1 requester, 2 provider, 4 worker, 8 validator.
    """
    assert self._roles(msg.sender) == 0, "registry: already joined"
    assert roles != 0 and roles & ALL_ROLES == roles, "registry: bad roles"
    assert msg.value >= MIN_STAKE, "registry: stake below minimum"
    assert msg.value <= LOW128, "registry: stake too large"
    self.node_data[msg.sender].stake_roles = (roles << 128) | msg.value
    self.node_data[msg.sender].endpoint = endpoint
    self.total_staked += msg.value
    self.total_deposited += msg.value
    if roles & ROLE_VALIDATOR != 0:  # others hold no tree weight (a node that left has 0)
        self._sync(msg.sender)
    log Joined(node=msg.sender, stake=msg.value, roles=roles, endpoint=endpoint)


@external
@payable
def add_stake():
    """
    @notice Add `msg.value` to the caller's stake.
    """
    assert self._roles(msg.sender) != 0, "registry: not joined"
    assert msg.value > 0, "registry: zero amount"
    self._set_stake(msg.sender, self._stake(msg.sender) + msg.value)
    self.total_staked += msg.value
    self.total_deposited += msg.value
    self._sync(msg.sender)
    log Staked(node=msg.sender, amount=msg.value)


@external
def update(endpoint: String[MAX_ENDPOINT], roles: uint256):
    """
    @notice Change the caller's endpoint and roles.
    @param endpoint New endpoint.
    @param roles New role bitmask (non-zero).
    """
    assert self._roles(msg.sender) != 0, "registry: not joined"
    assert roles != 0 and roles & ALL_ROLES == roles, "registry: bad roles"
    self._set_roles(msg.sender, roles)
    self.node_data[msg.sender].endpoint = endpoint
    self._sync(msg.sender)
    log Updated(node=msg.sender, roles=roles, endpoint=endpoint)


@external
def request_unstake(amount: uint256):
    """
    @notice Move `amount` of stake to the withdrawal queue. It can be withdrawn after
            WITHDRAWAL_DELAY and stays slashable until then. Each request restarts the
            delay for everything pending. Unstaking everything leaves the registry.
    @param amount Wei to unstake; the rest must stay zero or at least MIN_STAKE.
    """
    stake: uint256 = self._stake(msg.sender)
    assert amount > 0, "registry: zero amount"
    assert amount <= stake, "registry: amount above stake"
    rest: uint256 = stake - amount
    assert rest == 0 or rest >= MIN_STAKE, "registry: rest below minimum"
    assert rest >= self.node_data[msg.sender].locked, "registry: stake locked"
    unlock_at: uint256 = block.timestamp + WITHDRAWAL_DELAY
    self._set_stake(msg.sender, rest)
    self.node_data[msg.sender].pending += amount
    self.node_data[msg.sender].unlock_at = unlock_at
    self.total_staked -= amount
    self.total_pending += amount
    if rest == 0:
        self._set_roles(msg.sender, 0)
    self._sync(msg.sender)
    log UnstakeRequested(node=msg.sender, amount=amount, unlock_at=unlock_at)


@external
@nonreentrant
def withdraw():
    """
    @notice Withdraw the caller's pending stake once its delay has passed.
    @dev Checks-effects-interactions and a reentrancy lock.
    """
    amount: uint256 = self.node_data[msg.sender].pending
    assert amount > 0, "registry: nothing pending"
    assert block.timestamp >= self.node_data[msg.sender].unlock_at, "registry: still locked"
    self.node_data[msg.sender].pending = 0
    self.total_pending -= amount
    self.total_withdrawn += amount
    raw_call(msg.sender, b"", value=amount)
    log Withdrawn(node=msg.sender, amount=amount)


@external
def slash(node: address, amount: uint256) -> uint256:
    """
    @notice Take up to `amount` from `node`, active stake first, then pending stake.
    @dev Callable only by JOBS and TASKS, which slash only on on-chain evidence.
    @param node The faulty node.
    @param amount Wei to take.
    @return The wei actually taken.
    """
    assert msg.sender == JOBS or msg.sender == TASKS, "registry: not a slasher"
    return self._slash(node, amount)


@external
def lock(node: address, amount: uint256):
    """
    @notice Lock `amount` of `node`'s active stake for a duty it accepted; locked stake
            cannot be unstaked until released. Only JOBS.
    @param node The member accepting a duty (its own transaction reached JOBS).
    @param amount Wei to lock.
    """
    assert msg.sender == JOBS, "registry: not jobs"
    locked: uint256 = self.node_data[node].locked + amount
    assert locked <= self._stake(node), "registry: not enough free stake"
    self.node_data[node].locked = locked


@external
def lock_up_to(node: address, amount: uint256) -> uint256:
    """
    @notice Lock up to `amount` of `node`'s free stake (what is not locked already) for
            a duty it accepted. Only JOBS.
    @param node The member accepting a duty.
    @param amount Wei wanted.
    @return The wei locked.
    """
    assert msg.sender == JOBS, "registry: not jobs"
    locked: uint256 = self.node_data[node].locked
    stake: uint256 = self._stake(node)
    free: uint256 = 0
    if stake > locked:
        free = stake - locked
    got: uint256 = min(amount, free)
    self.node_data[node].locked = locked + got
    return got


@external
def release(node: address, amount: uint256, penalty: uint256) -> uint256:
    """
    @notice Unlock `amount` of `node`'s stake after its round is final, and slash up to
            `penalty` of it. Only JOBS.
    @param node The member.
    @param amount Wei locked for the duty.
    @param penalty Wei to slash (0 for an honest member).
    @return The wei actually slashed.
    """
    assert msg.sender == JOBS, "registry: not jobs"
    self.node_data[node].locked -= min(amount, self.node_data[node].locked)
    if penalty == 0:
        return 0
    return self._slash(node, penalty)


@internal
def _slash(node: address, amount: uint256) -> uint256:
    stake: uint256 = self._stake(node)
    from_stake: uint256 = min(amount, stake)
    from_pending: uint256 = min(amount - from_stake, self.node_data[node].pending)
    if from_stake > 0:
        self._set_stake(node, stake - from_stake)
        self.total_staked -= from_stake
    if from_pending > 0:
        self.node_data[node].pending -= from_pending
        self.total_pending -= from_pending
    taken: uint256 = from_stake + from_pending
    self.total_slashed += taken
    self.slashed_unswept += taken
    if from_stake > 0:
        self._sync(node)
    log Slashed(node=node, by=msg.sender, amount=taken)
    return taken


@external
@nonreentrant
def sweep_slashed():
    """
    @notice Send all slashed funds to SLASH_RECIPIENT. Anyone may call.
    """
    amount: uint256 = self.slashed_unswept
    assert amount > 0, "registry: nothing to sweep"
    self.slashed_unswept = 0
    raw_call(SLASH_RECIPIENT, b"", value=amount)
    log SlashSwept(to=SLASH_RECIPIENT, amount=amount)


@view
@external
def nodes(node: address) -> NodeInfo:
    """
    @notice A node's record.
    @param node The node.
    @return Stake, pending stake, unlock time, roles, tree slot, locked stake, endpoint.
    """
    n: Node = self.node_data[node]
    return NodeInfo(
        stake=n.stake_roles & LOW128,
        pending=n.pending,
        unlock_at=n.unlock_at,
        roles=n.stake_roles >> 128,
        slot=n.slot,
        locked=n.locked,
        endpoint=n.endpoint,
    )


@view
@external
def eligible(node: address, role: uint256) -> bool:
    """
    @notice Whether `node` holds `role` and at least MIN_STAKE.
    @param node The node.
    @param role One role bit.
    @return True if eligible.
    """
    word: uint256 = self.node_data[node].stake_roles
    return (word >> 128) & role != 0 and word & LOW128 >= MIN_STAKE


@view
@external
def draw(seed: bytes32, size: uint256) -> DynArray[address, MAX_COMMITTEE]:
    """
    @notice Draw `size` seats with replacement, each seat going to a validator with
            probability stake / total_weight (one identity may hold several seats).
    @dev Seat i: r = uint256(keccak256(abi_encode(seed, i))) mod total_weight, then the
         slot whose Fenwick prefix sum first exceeds r (O(log slots) reads).
         deai.ledger.committee.draw_committee mirrors it.
    @param seed Round seed.
    @param size Seats (at most MAX_COMMITTEE).
    @return The seat holders in draw order (empty if nobody is eligible).
    """
    assert size <= MAX_COMMITTEE, "registry: committee too large"
    out: DynArray[address, MAX_COMMITTEE] = []
    total: uint256 = self.total_weight
    if total == 0:
        return out
    n: uint256 = self.slot_count
    top: uint256 = self.top_step
    for i: uint256 in range(size, bound=MAX_COMMITTEE):
        rem: uint256 = convert(keccak256(abi_encode(seed, i)), uint256) % total
        pos: uint256 = 0
        step: uint256 = top
        for _: uint256 in range(TREE_LEVELS):
            if step == 0:
                break
            nxt: uint256 = pos + step
            if nxt <= n:
                w: uint256 = self.tree[nxt]
                if w <= rem:
                    pos = nxt
                    rem -= w
            step = step >> 1
        out.append(self.slot_owner[pos + 1])
    return out


@pure
@internal
def _lowbit(i: uint256) -> uint256:
    return i & (~i + 1)


@internal
def _tree_add(slot: uint256, delta: uint256, up: bool):
    i: uint256 = slot
    n: uint256 = self.slot_count
    for _: uint256 in range(TREE_LEVELS):
        if i > n:
            break
        if up:
            self.tree[i] += delta
        else:
            self.tree[i] -= delta
        i += self._lowbit(i)


@internal
def _new_slot(node: address) -> uint256:
    # reuse an emptied slot, else append one (its Fenwick node sums its range)
    if self.free_count > 0:
        self.free_count -= 1
        reused: uint256 = self.free_slots[self.free_count]
        self.slot_owner[reused] = node
        return reused
    n: uint256 = self.slot_count + 1
    assert n < 1 << TREE_LEVELS, "registry: tree full"
    self.slot_count = n
    if n >= 2 * self.top_step:
        self.top_step = max(1, 2 * self.top_step)
    acc: uint256 = 0
    j: uint256 = n - 1
    stop: uint256 = n - self._lowbit(n)
    for _: uint256 in range(TREE_LEVELS):
        if j <= stop:
            break
        acc += self.tree[j]
        j -= self._lowbit(j)
    self.tree[n] = acc
    self.slot_owner[n] = node
    return n


@internal
def _sync(node: address):
    # keep the node's tree weight equal to its stake while it is an eligible validator
    word: uint256 = self.node_data[node].stake_roles
    stake: uint256 = word & LOW128
    want: uint256 = 0
    if (word >> 128) & ROLE_VALIDATOR != 0 and stake >= MIN_STAKE:
        want = stake
    have: uint256 = self.weight[node]
    if want == have:
        return
    self.last_change_block = block.number
    slot: uint256 = self.node_data[node].slot
    if slot == 0:
        slot = self._new_slot(node)
        self.node_data[node].slot = slot
    if want > have:
        self._tree_add(slot, want - have, True)
        self.total_weight += want - have
    else:
        self._tree_add(slot, have - want, False)
        self.total_weight -= have - want
    self.weight[node] = want
    if want == 0:
        self.free_slots[self.free_count] = slot
        self.free_count += 1
        self.slot_owner[slot] = empty(address)
        self.node_data[node].slot = 0


@view
@internal
def _stake(node: address) -> uint256:
    return self.node_data[node].stake_roles & LOW128


@view
@internal
def _roles(node: address) -> uint256:
    return self.node_data[node].stake_roles >> 128


@internal
def _set_stake(node: address, stake: uint256):
    assert stake <= LOW128, "registry: stake too large"
    word: uint256 = self.node_data[node].stake_roles
    self.node_data[node].stake_roles = (word >> 128 << 128) | stake


@internal
def _set_roles(node: address, roles: uint256):
    word: uint256 = self.node_data[node].stake_roles
    self.node_data[node].stake_roles = (roles << 128) | (word & LOW128)
