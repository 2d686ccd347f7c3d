# pragma version ~=0.4.3
"""
@title deai Registry
@notice Node identities, stakes and roles. A node joins with a stake of native value, an
        endpoint and a role bitmask. Unstaking is delayed by a withdrawal period fixed at
        deploy; during it the stake can still be slashed. Only the Jobs and Tasks contracts,
        created by this constructor from blueprints and therefore fixed at deploy, can
        slash. There is no owner and no admin function: nothing here can move a stake
        except its node (withdraw) and on-chain evidence (slash).
        Slashed funds accumulate in `slashed_unswept` and anyone may sweep them to
        `SLASH_RECIPIENT`, an address fixed at deploy (the deploy helper defaults it to the
        burn address 0x...dEaD). Nobody who can trigger a slash profits from it.
"""

ROLE_REQUESTER: constant(uint256) = 1
ROLE_PROVIDER: constant(uint256) = 2
ROLE_WORKER: constant(uint256) = 4
ROLE_VALIDATOR: constant(uint256) = 8
ALL_ROLES: constant(uint256) = 15
MAX_VALIDATORS: constant(uint256) = 128
MAX_COMMITTEE: constant(uint256) = 16
MAX_ENDPOINT: constant(uint256) = 128

struct Node:
    stake: uint256
    pending: uint256
    unlock_at: uint256
    roles: uint256
    list_pos: uint256
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
SLASH_RECIPIENT: public(immutable(address))
JOBS: public(immutable(address))
TASKS: public(immutable(address))

nodes: public(HashMap[address, Node])
validators: public(DynArray[address, MAX_VALIDATORS])
total_staked: public(uint256)
total_pending: public(uint256)
total_deposited: public(uint256)
total_withdrawn: public(uint256)
total_slashed: public(uint256)
slashed_unswept: public(uint256)


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
    @param withdrawal_delay Seconds between an unstake request and its withdrawal.
    @param slash_recipient Where swept slashed funds go (fixed forever).
    @param jobs_blueprint ERC-5202 blueprint of Jobs.vy.
    @param tasks_blueprint ERC-5202 blueprint of Tasks.vy.
    @param job_slash Wei slashed from a faulty committee member.
    @param task_slash Wei slashed from a faulty task worker.
    """
    assert min_stake > 0, "registry: zero minimum stake"
    assert withdrawal_delay > 0, "registry: zero withdrawal delay"
    assert slash_recipient != empty(address), "registry: zero slash recipient"
    MIN_STAKE = min_stake
    WITHDRAWAL_DELAY = withdrawal_delay
    SLASH_RECIPIENT = slash_recipient
    JOBS = create_from_blueprint(jobs_blueprint, self, job_slash, withdrawal_delay)
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
    assert self.nodes[msg.sender].roles == 0, "registry: already joined"
    assert roles != 0 and roles & ALL_ROLES == roles, "registry: bad roles"
    assert msg.value >= MIN_STAKE, "registry: stake below minimum"
    self.nodes[msg.sender].stake = msg.value
    self.nodes[msg.sender].roles = roles
    self.nodes[msg.sender].endpoint = endpoint
    self.total_staked += msg.value
    self.total_deposited += msg.value
    self._sync_list(msg.sender)
    log Joined(node=msg.sender, stake=msg.value, roles=roles, endpoint=endpoint)


@external
@payable
def add_stake():
    """
    @notice Add `msg.value` to the caller's stake.
    """
    assert self.nodes[msg.sender].roles != 0, "registry: not joined"
    assert msg.value > 0, "registry: zero amount"
    self.nodes[msg.sender].stake += msg.value
    self.total_staked += msg.value
    self.total_deposited += msg.value
    log Staked(node=msg.sender, amount=msg.value)


@external
def update(endpoint: String[MAX_ENDPOINT], roles: uint256):
    """
    @notice Change the caller's endpoint and roles.
    @param endpoint New endpoint.
    @param roles New role bitmask (non-zero).
    """
    assert self.nodes[msg.sender].roles != 0, "registry: not joined"
    assert roles != 0 and roles & ALL_ROLES == roles, "registry: bad roles"
    self.nodes[msg.sender].roles = roles
    self.nodes[msg.sender].endpoint = endpoint
    self._sync_list(msg.sender)
    log Updated(node=msg.sender, roles=roles, endpoint=endpoint)


@external
def request_unstake(amount: uint256):
    """
    @notice Move `amount` of stake to the withdrawal queue. It can be withdrawn after
            WITHDRAWAL_DELAY and stays slashable until then. Each request restarts the
            delay for everything pending. Unstaking everything leaves the registry.
    @param amount Wei to unstake; the rest must stay zero or at least MIN_STAKE.
    """
    stake: uint256 = self.nodes[msg.sender].stake
    assert amount > 0, "registry: zero amount"
    assert amount <= stake, "registry: amount above stake"
    rest: uint256 = stake - amount
    assert rest == 0 or rest >= MIN_STAKE, "registry: rest below minimum"
    unlock_at: uint256 = block.timestamp + WITHDRAWAL_DELAY
    self.nodes[msg.sender].stake = rest
    self.nodes[msg.sender].pending += amount
    self.nodes[msg.sender].unlock_at = unlock_at
    self.total_staked -= amount
    self.total_pending += amount
    if rest == 0:
        self.nodes[msg.sender].roles = 0
        self._sync_list(msg.sender)
    log UnstakeRequested(node=msg.sender, amount=amount, unlock_at=unlock_at)


@external
@nonreentrant
def withdraw():
    """
    @notice Withdraw the caller's pending stake once its delay has passed.
    @dev Checks-effects-interactions and a reentrancy lock.
    """
    amount: uint256 = self.nodes[msg.sender].pending
    assert amount > 0, "registry: nothing pending"
    assert block.timestamp >= self.nodes[msg.sender].unlock_at, "registry: still locked"
    self.nodes[msg.sender].pending = 0
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
    stake: uint256 = self.nodes[node].stake
    from_stake: uint256 = min(amount, stake)
    from_pending: uint256 = min(amount - from_stake, self.nodes[node].pending)
    if from_stake > 0:
        self.nodes[node].stake = stake - from_stake
        self.total_staked -= from_stake
    if from_pending > 0:
        self.nodes[node].pending -= from_pending
        self.total_pending -= from_pending
    taken: uint256 = from_stake + from_pending
    self.total_slashed += taken
    self.slashed_unswept += taken
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
def eligible(node: address, role: uint256) -> bool:
    """
    @notice Whether `node` holds `role` and at least MIN_STAKE.
    @param node The node.
    @param role One role bit.
    @return True if eligible.
    """
    return self.nodes[node].roles & role != 0 and self.nodes[node].stake >= MIN_STAKE


@view
@external
def validator_list() -> DynArray[address, MAX_VALIDATORS]:
    """
    @notice The validator candidate list in draw order.
    @return The list.
    """
    return self.validators


@view
@external
def draw(seed: bytes32, size: uint256) -> DynArray[address, MAX_COMMITTEE]:
    """
    @notice Draw min(size, eligible) validators without replacement, weighted by stake.
    @dev For i in 0..n-1: r = uint256(keccak256(abi_encode(seed, i))) mod the remaining
         weight; walk the candidates (list order, drawn ones skipped) and take the first
         whose cumulative weight exceeds r. deai.ledger.committee.draw_committee mirrors it.
    @param seed Round seed.
    @param size Wanted committee size.
    @return The committee in draw order.
    """
    assert size <= MAX_COMMITTEE, "registry: committee too large"
    cands: DynArray[address, MAX_VALIDATORS] = []
    weights: DynArray[uint256, MAX_VALIDATORS] = []
    total: uint256 = 0
    for v: address in self.validators:
        st: uint256 = self.nodes[v].stake
        if st >= MIN_STAKE and self.nodes[v].roles & ROLE_VALIDATOR != 0:
            cands.append(v)
            weights.append(st)
            total += st
    out: DynArray[address, MAX_COMMITTEE] = []
    n: uint256 = min(size, len(cands))
    for i: uint256 in range(n, bound=MAX_COMMITTEE):
        r: uint256 = convert(keccak256(abi_encode(seed, i)), uint256) % total
        acc: uint256 = 0
        for j: uint256 in range(len(cands), bound=MAX_VALIDATORS):
            w: uint256 = weights[j]
            if w == 0:
                continue
            acc += w
            if r < acc:
                out.append(cands[j])
                total -= w
                weights[j] = 0
                break
    return out


@internal
def _sync_list(node: address):
    # keep `validators` equal to the set of nodes holding the validator role
    pos: uint256 = self.nodes[node].list_pos
    wants: bool = self.nodes[node].roles & ROLE_VALIDATOR != 0
    if wants and pos == 0:
        assert len(self.validators) < MAX_VALIDATORS, "registry: validator list full"
        self.validators.append(node)
        self.nodes[node].list_pos = len(self.validators)
    elif not wants and pos != 0:
        last: address = self.validators[len(self.validators) - 1]
        self.validators[pos - 1] = last
        self.nodes[last].list_pos = pos
        self.validators.pop()
        self.nodes[node].list_pos = 0
