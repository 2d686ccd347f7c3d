# pragma version ~=0.4.3
"""
@title deai Tasks
@notice Hidden-group cross-checked compute (Crynux-style validation groups, made
        unaimable). A requester first commits a sampling key with a bond. It then posts
        *slots*: each a blinded id, a named worker, a blinded spec and a fee. A worker
        accepts a slot only by its own transaction, which posts the per-slot bond (held
        here, not Registry stake) with its result commitment; nobody who did not accept
        can lose anything. Which slots form one task's check group is revealed only after
        every member's commit deadline (the group proves one spec for all members), so a
        worker commits before it can learn whether anyone else got its task. Whether a
        primary slot is checked is derived, not chosen: keccak(secret, commitment) <
        threshold, with the worker's commitment unknown to the requester and the secret
        unknown to the worker; after the key is revealed anyone audits every primary and a
        mismatch (a dropped or an aimed check) forfeits the requester's key bond.
        Fingerprints are eight int32 lanes compared lane-wise within the key's per-profile
        tolerance. A unanimous group is paid; a split one is escalated to a jury of fresh
        self-enrolled bonded workers drawn by a future blockhash; its majority pays the
        matching side and slashes every other bond. No owner, no admin function.
"""

interface Registry:
    def eligible(node: address, role: uint256) -> bool: view

ROLE_WORKER: constant(uint256) = 4
MAX_BATCH: constant(uint256) = 64
MAX_GROUP: constant(uint256) = 8
MAX_ENROLL: constant(uint256) = 16
MAX_JURY: constant(uint256) = 9
MIN_JURY: constant(uint256) = 3
PROFILES: constant(uint256) = 4
LANES: constant(uint256) = 8
MIN_COMMIT_PERIOD: constant(uint256) = 300
GROUP_WINDOW: constant(uint256) = 900
REVEAL_WINDOW: constant(uint256) = 300
ENROLL_WINDOW: constant(uint256) = 300
CONTEST_WINDOW: constant(uint256) = 300
AUDIT_WINDOW: constant(uint256) = 3600
JURY_SHARE_BPS: constant(uint256) = 5000

flag SlotState:
    POSTED
    COMMITTED
    REVEALED
    PAID
    SLASHED
    REFUNDED

flag GroupState:
    OPEN
    CONTESTABLE
    ESCALATED
    SETTLED
    VOID

struct Key:
    requester: address
    commitment: bytes32
    threshold: uint256
    bond: uint256
    slot_bond: uint256
    reveal_by: uint256
    secret: bytes32
    revealed_at: uint256
    failed: bool
    released: bool

struct Slot:
    key_id: uint256
    worker: address
    spec: bytes32
    profile: uint256
    fee: uint256
    commit_deadline: uint256
    commitment: bytes32
    fingerprint: uint256
    group: uint256
    checker: bool
    state: SlotState

struct Group:
    key_id: uint256
    size: uint256
    profile: uint256
    spec_hash: bytes32
    reveal_deadline: uint256
    state: GroupState
    enroll_end: uint256
    seal_block: uint256
    jury_mask: uint256
    jury_deadline: uint256
    enrolled: uint256
    verdict: uint256
    contester: address

event KeyCommitted:
    key_id: indexed(uint256)
    requester: indexed(address)
    commitment: bytes32
    threshold: uint256
    bond: uint256
    slot_bond: uint256

event KeyRevealed:
    key_id: indexed(uint256)
    secret: bytes32

event KeyFailed:
    key_id: indexed(uint256)
    slot_id: bytes32
    auditor: address

event SlotPosted:
    slot_id: indexed(bytes32)
    key_id: indexed(uint256)
    worker: indexed(address)
    spec: bytes32
    profile: uint256
    fee: uint256
    commit_deadline: uint256

event SlotCommitted:
    slot_id: indexed(bytes32)
    worker: indexed(address)
    commitment: bytes32

event SlotRevealed:
    slot_id: indexed(bytes32)
    fingerprint: uint256

event SlotSettled:
    slot_id: indexed(bytes32)
    worker: indexed(address)
    state: SlotState
    amount: uint256

event GroupFormed:
    group_id: indexed(uint256)
    key_id: indexed(uint256)
    spec_hash: bytes32
    size: uint256

event GroupContestable:
    group_id: indexed(uint256)
    verdict: uint256
    contest_end: uint256

event GroupEscalated:
    group_id: indexed(uint256)
    enroll_end: uint256

event JurorEnrolled:
    group_id: indexed(uint256)
    juror: indexed(address)
    index: uint256

event JuryDrawn:
    group_id: indexed(uint256)
    mask: uint256

event GroupSettled:
    group_id: indexed(uint256)
    state: GroupState
    reference: uint256

event Credited:
    account: indexed(address)
    amount: uint256

event Withdrawn:
    account: indexed(address)
    amount: uint256

REGISTRY: public(immutable(address))
MIN_SLOT_BOND: public(immutable(uint256))
MAX_TASK_TIME: public(immutable(uint256))

next_key_id: public(uint256)
next_group_id: public(uint256)
keys: public(HashMap[uint256, Key])
key_tolerance: public(HashMap[uint256, HashMap[uint256, uint256]])
slots: public(HashMap[bytes32, Slot])
groups: public(HashMap[uint256, Group])
group_slots: public(HashMap[uint256, HashMap[uint256, bytes32]])
jurors: public(HashMap[uint256, HashMap[uint256, address]])
juror_commitment: HashMap[uint256, HashMap[uint256, bytes32]]
juror_fingerprint: public(HashMap[uint256, HashMap[uint256, uint256]])
juror_revealed: public(HashMap[uint256, uint256])
owed: public(HashMap[address, uint256])
total_owed: public(uint256)
held: public(uint256)
burned: public(uint256)


@deploy
def __init__(registry: address, min_slot_bond: uint256, max_task_time: uint256):
    """
    @notice Created by the Registry constructor; all values fixed forever.
    @param registry The Registry (only its `eligible` view is used).
    @param min_slot_bond Least bond a key may ask of a worker per slot (wei).
    @param max_task_time Longest commit period a slot may ask for (s).
    """
    REGISTRY = registry
    MIN_SLOT_BOND = min_slot_bond
    MAX_TASK_TIME = max_task_time
    self.next_key_id = 1
    self.next_group_id = 1


# ----------------------------------------------------------------------- keys
@external
@payable
def commit_key(
    commitment: bytes32,
    threshold: uint256,
    slot_bond: uint256,
    tolerances: uint256[PROFILES],
    reveal_by: uint256,
) -> uint256:
    """
    @notice Commit a sampling key before any of its slots exists; `msg.value` is the key
            bond, forfeited by a failed audit or a key not revealed by `reveal_by`.
    @param commitment keccak256(abi_encode(secret, threshold)).
    @param threshold A primary is checked iff keccak(secret, commitment) < threshold.
    @param slot_bond Bond a worker posts per accepted slot (and a juror per enrolment).
    @param tolerances Largest accepted per-lane fingerprint difference, per profile.
    @param reveal_by Timestamp by which the secret must be revealed.
    @return The key id.
    """
    assert msg.value > 0, "tasks: key bond required"
    assert slot_bond >= MIN_SLOT_BOND and slot_bond > 0, "tasks: slot bond too small"
    assert reveal_by > block.timestamp, "tasks: reveal_by in the past"
    key_id: uint256 = self.next_key_id
    self.next_key_id = key_id + 1
    self.keys[key_id] = Key(
        requester=msg.sender,
        commitment=commitment,
        threshold=threshold,
        bond=msg.value,
        slot_bond=slot_bond,
        reveal_by=reveal_by,
        secret=empty(bytes32),
        revealed_at=0,
        failed=False,
        released=False,
    )
    for p: uint256 in range(PROFILES):
        self.key_tolerance[key_id][p] = tolerances[p]
    self.held += msg.value
    log KeyCommitted(
        key_id=key_id,
        requester=msg.sender,
        commitment=commitment,
        threshold=threshold,
        bond=msg.value,
        slot_bond=slot_bond,
    )
    return key_id


@external
def reveal_key(key_id: uint256, secret: bytes32):
    """
    @notice Reveal the sampling secret; no slot of this key can be posted or committed
            afterwards, and the audit window opens.
    @param key_id The key.
    @param secret The committed secret.
    """
    assert self.keys[key_id].requester == msg.sender, "tasks: not the key's requester"
    assert self.keys[key_id].revealed_at == 0, "tasks: key already revealed"
    digest: bytes32 = keccak256(abi_encode(secret, self.keys[key_id].threshold))
    assert digest == self.keys[key_id].commitment, "tasks: secret does not open the key"
    self.keys[key_id].secret = secret
    self.keys[key_id].revealed_at = block.timestamp
    log KeyRevealed(key_id=key_id, secret=secret)


@view
@external
def is_checked(key_id: uint256, commitment: bytes32) -> bool:
    """
    @notice The derived sampling decision of a primary with `commitment` (revealed keys).
    @param key_id The key.
    @param commitment The primary's result commitment.
    @return Whether that primary had to be checked.
    """
    assert self.keys[key_id].revealed_at != 0, "tasks: key not revealed"
    return self._decide(key_id, commitment)


@external
@nonreentrant
def audit(slot_id: bytes32):
    """
    @notice Recompute a committed primary's sampling decision; if its grouping disagrees
            (a dropped or an aimed check) the key fails and its bond goes to the caller.
    @param slot_id A committed, non-checker slot of a revealed key.
    """
    key_id: uint256 = self.slots[slot_id].key_id
    assert key_id != 0, "tasks: unknown slot"
    assert self.keys[key_id].revealed_at != 0, "tasks: key not revealed"
    assert not self.keys[key_id].failed, "tasks: key already failed"
    assert not self.keys[key_id].released, "tasks: key released"
    assert not self.slots[slot_id].checker, "tasks: checker slots are not sampled"
    commitment: bytes32 = self.slots[slot_id].commitment
    assert commitment != empty(bytes32), "tasks: slot never committed"
    g: uint256 = self.slots[slot_id].group
    grouped: bool = g != 0 and self.groups[g].size > 1
    assert grouped != self._decide(key_id, commitment), "tasks: sampling decision respected"
    self.keys[key_id].failed = True
    bond: uint256 = self.keys[key_id].bond
    self.keys[key_id].bond = 0
    self.held -= bond
    self._credit(msg.sender, bond)
    log KeyFailed(key_id=key_id, slot_id=slot_id, auditor=msg.sender)


@external
def release_key(key_id: uint256):
    """
    @notice Return the key bond: to the requester after an audit window without failure,
            or burn it when the secret was not revealed by `reveal_by`. Anyone may call.
    @param key_id The key.
    """
    assert not self.keys[key_id].failed and not self.keys[key_id].released, "tasks: key closed"
    assert self.keys[key_id].requester != empty(address), "tasks: unknown key"
    bond: uint256 = self.keys[key_id].bond
    revealed_at: uint256 = self.keys[key_id].revealed_at
    self.keys[key_id].released = True
    self.keys[key_id].bond = 0
    self.held -= bond
    if revealed_at != 0:
        assert block.timestamp >= revealed_at + AUDIT_WINDOW, "tasks: audit window open"
        self._credit(self.keys[key_id].requester, bond)
    else:
        assert block.timestamp >= self.keys[key_id].reveal_by, "tasks: key not due"
        self.burned += bond


# ---------------------------------------------------------------------- slots
@external
@payable
def post(
    key_id: uint256,
    slot_ids: DynArray[bytes32, MAX_BATCH],
    workers: DynArray[address, MAX_BATCH],
    specs: DynArray[bytes32, MAX_BATCH],
    profiles: DynArray[uint256, MAX_BATCH],
    commit_period: uint256,
):
    """
    @notice Post a batch of slots, each escrowing an equal share of `msg.value`. Naming a
            worker obliges it to nothing; it may accept by committing.
    @param key_id The requester's unrevealed key.
    @param slot_ids Fresh blinded ids (random to everyone but the requester).
    @param workers The worker offered each slot.
    @param specs keccak256(abi_encode(spec_hash, blind)) per slot.
    @param profiles Execution profile index per slot (< 4).
    @param commit_period Seconds until the slots' commit deadline.
    """
    assert self.keys[key_id].requester == msg.sender, "tasks: not the key's requester"
    assert self.keys[key_id].revealed_at == 0, "tasks: key revealed"
    n: uint256 = len(slot_ids)
    assert n > 0 and len(workers) == n and len(specs) == n and len(profiles) == n, "tasks: bad batch"
    assert msg.value % n == 0 and msg.value // n > 0, "tasks: fee must split evenly"
    assert commit_period >= MIN_COMMIT_PERIOD, "tasks: commit period too short"
    assert commit_period <= MAX_TASK_TIME, "tasks: commit period too long"
    fee: uint256 = msg.value // n
    deadline: uint256 = block.timestamp + commit_period
    for i: uint256 in range(n, bound=MAX_BATCH):
        sid: bytes32 = slot_ids[i]
        assert self.slots[sid].key_id == 0, "tasks: slot id taken"
        assert profiles[i] < PROFILES, "tasks: bad profile"
        self.slots[sid] = Slot(
            key_id=key_id,
            worker=workers[i],
            spec=specs[i],
            profile=profiles[i],
            fee=fee,
            commit_deadline=deadline,
            commitment=empty(bytes32),
            fingerprint=0,
            group=0,
            checker=False,
            state=SlotState.POSTED,
        )
        log SlotPosted(
            slot_id=sid,
            key_id=key_id,
            worker=workers[i],
            spec=specs[i],
            profile=profiles[i],
            fee=fee,
            commit_deadline=deadline,
        )
    self.held += msg.value


@external
@payable
def commit(slot_ids: DynArray[bytes32, MAX_BATCH], commitments: DynArray[bytes32, MAX_BATCH]):
    """
    @notice Accept slots offered to the caller: post each slot's bond (`msg.value` is the
            sum) and commit keccak256(abi_encode(slot_id, worker, fingerprint, salt)).
    @param slot_ids The slots.
    @param commitments One commitment per slot.
    """
    n: uint256 = len(slot_ids)
    assert n > 0 and len(commitments) == n, "tasks: bad batch"
    assert staticcall Registry(REGISTRY).eligible(msg.sender, ROLE_WORKER), "tasks: worker not eligible"
    total: uint256 = 0
    for i: uint256 in range(n, bound=MAX_BATCH):
        sid: bytes32 = slot_ids[i]
        assert self.slots[sid].worker == msg.sender, "tasks: not offered to the caller"
        assert self.slots[sid].state == SlotState.POSTED, "tasks: already committed"
        assert block.timestamp < self.slots[sid].commit_deadline, "tasks: commit closed"
        key_id: uint256 = self.slots[sid].key_id
        assert self.keys[key_id].revealed_at == 0, "tasks: key revealed"
        assert commitments[i] != empty(bytes32), "tasks: empty commitment"
        total += self.keys[key_id].slot_bond
        self.slots[sid].commitment = commitments[i]
        self.slots[sid].state = SlotState.COMMITTED
        log SlotCommitted(slot_id=sid, worker=msg.sender, commitment=commitments[i])
    assert msg.value == total, "tasks: wrong bond"
    self.held += total


@external
def group(
    slot_ids: DynArray[bytes32, MAX_GROUP],
    spec_hash: bytes32,
    blinds: DynArray[bytes32, MAX_GROUP],
):
    """
    @notice Reveal a task's check group after every member's commit deadline: the first
            slot is the primary, the others its checkers; all share one spec and profile.
            A group of one declares the primary unchecked.
    @param slot_ids Member slots.
    @param spec_hash The task's spec hash.
    @param blinds Each member's spec blind.
    """
    k: uint256 = len(slot_ids)
    assert k > 0 and len(blinds) == k, "tasks: bad group"
    key_id: uint256 = self.slots[slot_ids[0]].key_id
    assert self.keys[key_id].requester == msg.sender, "tasks: not the key's requester"
    profile: uint256 = self.slots[slot_ids[0]].profile
    gid: uint256 = self.next_group_id
    self.next_group_id = gid + 1
    for i: uint256 in range(k, bound=MAX_GROUP):
        sid: bytes32 = slot_ids[i]
        assert self.slots[sid].key_id == key_id, "tasks: slots of another key"
        assert self.slots[sid].group == 0, "tasks: slot already grouped"
        assert self.slots[sid].profile == profile, "tasks: mixed profiles"
        assert self.slots[sid].state != SlotState.REVEALED, "tasks: member already revealed"
        assert block.timestamp >= self.slots[sid].commit_deadline, "tasks: commits still open"
        assert keccak256(abi_encode(spec_hash, blinds[i])) == self.slots[sid].spec, "tasks: spec mismatch"
        for j: uint256 in range(i, bound=MAX_GROUP):
            if j > i and j < k:
                assert slot_ids[j] != sid, "tasks: duplicate slot"
        self.slots[sid].group = gid
        self.slots[sid].checker = i > 0
        self.group_slots[gid][i] = sid
    self.groups[gid] = Group(
        key_id=key_id,
        size=k,
        profile=profile,
        spec_hash=spec_hash,
        reveal_deadline=block.timestamp + REVEAL_WINDOW,
        state=GroupState.OPEN,
        enroll_end=0,
        seal_block=0,
        jury_mask=0,
        jury_deadline=0,
        enrolled=0,
        verdict=0,
        contester=empty(address),
    )
    log GroupFormed(group_id=gid, key_id=key_id, spec_hash=spec_hash, size=k)


@external
def reveal(
    slot_ids: DynArray[bytes32, MAX_BATCH],
    fingerprints: DynArray[uint256, MAX_BATCH],
    salts: DynArray[bytes32, MAX_BATCH],
):
    """
    @notice Open commitments: once the slot is grouped, or for an ungrouped slot once the
            group window after its commit deadline passed; before the reveal deadline.
    @param slot_ids The caller's committed slots.
    @param fingerprints Eight int32 lanes per slot (lane i in bits 32i..32i+31).
    @param salts The commitments' salts.
    """
    n: uint256 = len(slot_ids)
    assert n > 0 and len(fingerprints) == n and len(salts) == n, "tasks: bad batch"
    for i: uint256 in range(n, bound=MAX_BATCH):
        sid: bytes32 = slot_ids[i]
        assert self.slots[sid].worker == msg.sender, "tasks: not the slot's worker"
        assert self.slots[sid].state == SlotState.COMMITTED, "tasks: not committed"
        assert block.timestamp < self._reveal_deadline(sid), "tasks: reveal closed"
        g: uint256 = self.slots[sid].group
        assert g != 0 or block.timestamp >= self.slots[sid].commit_deadline + GROUP_WINDOW, "tasks: reveal not open"
        expected: bytes32 = keccak256(abi_encode(sid, msg.sender, fingerprints[i], salts[i]))
        assert expected == self.slots[sid].commitment, "tasks: reveal does not match"
        self.slots[sid].fingerprint = fingerprints[i]
        self.slots[sid].state = SlotState.REVEALED
        log SlotRevealed(slot_id=sid, fingerprint=fingerprints[i])


@view
@internal
def _reveal_deadline(sid: bytes32) -> uint256:
    g: uint256 = self.slots[sid].group
    if g != 0:
        return self.groups[g].reveal_deadline
    return self.slots[sid].commit_deadline + GROUP_WINDOW + REVEAL_WINDOW


# ------------------------------------------------------------------ settlement
@external
@nonreentrant
def settle_single(slot_ids: DynArray[bytes32, MAX_BATCH]):
    """
    @notice Settle ungrouped slots or groups of one: revealed -> fee and bond to the
            worker; committed but silent past the deadline -> bond burned, fee refunded;
            never accepted past the commit deadline -> fee refunded. Anyone may call.
    @param slot_ids The slots.
    """
    for i: uint256 in range(len(slot_ids), bound=MAX_BATCH):
        sid: bytes32 = slot_ids[i]
        g: uint256 = self.slots[sid].group
        assert self.slots[sid].key_id != 0, "tasks: unknown slot"
        assert g == 0 or self.groups[g].size == 1, "tasks: slot in a check group"
        if g != 0:
            self.groups[g].state = GroupState.SETTLED
        self._settle_alone(sid)


@internal
def _settle_alone(sid: bytes32):
    state: SlotState = self.slots[sid].state
    key_id: uint256 = self.slots[sid].key_id
    requester: address = self.keys[key_id].requester
    fee: uint256 = self.slots[sid].fee
    bond: uint256 = self.keys[key_id].slot_bond
    if state == SlotState.REVEALED:
        self._pay(sid, fee + bond, bond, fee)
    elif state == SlotState.COMMITTED:
        assert block.timestamp >= self._reveal_deadline(sid), "tasks: reveal still open"
        self._slash(sid, bond, 0)
        self._refund(requester, fee)
    elif state == SlotState.POSTED:
        assert block.timestamp >= self.slots[sid].commit_deadline, "tasks: commits still open"
        self.slots[sid].state = SlotState.REFUNDED
        self._refund(requester, fee)
        log SlotSettled(slot_id=sid, worker=self.slots[sid].worker, state=SlotState.REFUNDED, amount=0)
    else:
        raise "tasks: slot settled"


@view
@internal
def _match(a: uint256, b: uint256, tol: uint256) -> bool:
    for lane: uint256 in range(LANES):
        x: int256 = self._lane(a, lane)
        y: int256 = self._lane(b, lane)
        if abs(x - y) > convert(tol, int256):
            return False
    return True


@pure
@internal
def _lane(word: uint256, lane: uint256) -> int256:
    raw: uint256 = (word >> (32 * lane)) & 4294967295
    if raw >= 2147483648:
        return convert(raw, int256) - 4294967296
    return convert(raw, int256)


@view
@internal
def _pivot(values: DynArray[uint256, MAX_JURY], ok: DynArray[bool, MAX_JURY], tol: uint256) -> (uint256, uint256):
    best: uint256 = 0
    best_count: uint256 = 0
    for i: uint256 in range(len(values), bound=MAX_JURY):
        if not ok[i]:
            continue
        count: uint256 = 0
        for j: uint256 in range(len(values), bound=MAX_JURY):
            if ok[j] and self._match(values[i], values[j], tol):
                count += 1
        if count > best_count:
            best = values[i]
            best_count = count
    return best, best_count


@external
@nonreentrant
def finalize_groups(gids: DynArray[uint256, MAX_BATCH]):
    """
    @notice Advance check groups of two or more. An open group (every member revealed or
            the reveal deadline passed): unanimous -> paid; a strict majority of the
            members that accepted -> contestable for CONTEST_WINDOW; no majority ->
            escalated. A contestable group whose window passed uncontested is settled by
            its majority. Members that never accepted are left out (fee refunded); accepted
            but silent ones lose their bond. Anyone may call.
    @param gids The groups.
    """
    for gid: uint256 in gids:
        state: GroupState = self.groups[gid].state
        if state == GroupState.CONTESTABLE:
            assert block.timestamp >= self.groups[gid].enroll_end, "tasks: contest window open"
            self._settle_members(gid, self.groups[gid].verdict, True)
            self.groups[gid].state = GroupState.SETTLED
            log GroupSettled(group_id=gid, state=GroupState.SETTLED, reference=self.groups[gid].verdict)
        else:
            assert state == GroupState.OPEN, "tasks: group not open"
            self._first_verdict(gid)


@internal
def _first_verdict(gid: uint256):
    k: uint256 = self.groups[gid].size
    assert k > 1, "tasks: use settle_single"
    tol: uint256 = self.key_tolerance[self.groups[gid].key_id][self.groups[gid].profile]
    values: DynArray[uint256, MAX_JURY] = []
    ok: DynArray[bool, MAX_JURY] = []
    pending: bool = False
    accepted: uint256 = 0
    revealed: uint256 = 0
    for i: uint256 in range(k, bound=MAX_GROUP):
        state: SlotState = self.slots[self.group_slots[gid][i]].state
        pending = pending or state == SlotState.COMMITTED
        values.append(self.slots[self.group_slots[gid][i]].fingerprint)
        ok.append(state == SlotState.REVEALED)
        if state != SlotState.POSTED:
            accepted += 1
        if state == SlotState.REVEALED:
            revealed += 1
    assert not pending or block.timestamp >= self.groups[gid].reveal_deadline, "tasks: reveal still open"
    pivot: uint256 = 0
    count: uint256 = 0
    pivot, count = self._pivot(values, ok, tol)
    if count == revealed:
        self._settle_members(gid, pivot, True)
        self.groups[gid].state = GroupState.SETTLED
        log GroupSettled(group_id=gid, state=GroupState.SETTLED, reference=pivot)
    elif 2 * count > accepted:
        self.groups[gid].state = GroupState.CONTESTABLE
        self.groups[gid].verdict = pivot
        self.groups[gid].enroll_end = block.timestamp + CONTEST_WINDOW
        log GroupContestable(group_id=gid, verdict=pivot, contest_end=block.timestamp + CONTEST_WINDOW)
    else:
        self._escalate(gid)


@internal
def _escalate(gid: uint256):
    self.groups[gid].state = GroupState.ESCALATED
    self.groups[gid].enroll_end = block.timestamp + ENROLL_WINDOW
    log GroupEscalated(group_id=gid, enroll_end=block.timestamp + ENROLL_WINDOW)


@external
@payable
def contest(gid: uint256, index: uint256):
    """
    @notice A revealed member outvoted by the majority escalates the group by posting a
            second bond, returned if the jury agrees with it and burned otherwise.
    @param gid The contestable group.
    @param index The caller's member index.
    """
    assert self.groups[gid].state == GroupState.CONTESTABLE, "tasks: not contestable"
    assert block.timestamp < self.groups[gid].enroll_end, "tasks: contest window closed"
    sid: bytes32 = self.group_slots[gid][index]
    assert index < self.groups[gid].size and self.slots[sid].worker == msg.sender, "tasks: not a member"
    assert self.slots[sid].state == SlotState.REVEALED, "tasks: not revealed"
    key_id: uint256 = self.groups[gid].key_id
    tol: uint256 = self.key_tolerance[key_id][self.groups[gid].profile]
    assert not self._match(self.slots[sid].fingerprint, self.groups[gid].verdict, tol), "tasks: agrees with the verdict"
    assert msg.value == self.keys[key_id].slot_bond, "tasks: wrong bond"
    self.held += msg.value
    self.groups[gid].contester = msg.sender
    self._escalate(gid)


@internal
def _settle_members(gid: uint256, reference: uint256, has_reference: bool):
    """Pay members matching `reference`, slash accepted members that do not (or never
    revealed), refund fees of members that never accepted."""
    key_id: uint256 = self.groups[gid].key_id
    tol: uint256 = self.key_tolerance[key_id][self.groups[gid].profile]
    bond: uint256 = self.keys[key_id].slot_bond
    requester: address = self.keys[key_id].requester
    for i: uint256 in range(self.groups[gid].size, bound=MAX_GROUP):
        sid: bytes32 = self.group_slots[gid][i]
        state: SlotState = self.slots[sid].state
        fee: uint256 = self.slots[sid].fee
        if state == SlotState.POSTED:
            self.slots[sid].state = SlotState.REFUNDED
            self._refund(requester, fee)
        elif not has_reference:
            self._pay(sid, bond, bond, 0)
            self._refund(requester, fee)
        elif state == SlotState.REVEALED and self._match(self.slots[sid].fingerprint, reference, tol):
            self._pay(sid, fee + bond, bond, fee)
        else:
            self._slash(sid, bond, gid)
            self._refund(requester, fee)


# ------------------------------------------------------------------ escalation
@external
@payable
def enroll(gid: uint256, commitment: bytes32, profile: uint256):
    """
    @notice Enrol as a juror of an escalated group (an eligible worker outside it, in its
            profile): post the slot bond and commit keccak256(abi_encode(gid, juror,
            fingerprint, salt)) of the task named by the group's spec hash.
    @param gid The escalated group.
    @param commitment The juror's commitment.
    @param profile The juror's execution profile (must be the group's).
    """
    assert self.groups[gid].state == GroupState.ESCALATED, "tasks: group not escalated"
    assert block.timestamp < self.groups[gid].enroll_end, "tasks: enrolment closed"
    assert profile == self.groups[gid].profile, "tasks: another profile"
    key_id: uint256 = self.groups[gid].key_id
    assert msg.sender != self.keys[key_id].requester, "tasks: the requester cannot judge"
    for i: uint256 in range(self.groups[gid].size, bound=MAX_GROUP):
        assert self.slots[self.group_slots[gid][i]].worker != msg.sender, "tasks: a member cannot judge"
    assert staticcall Registry(REGISTRY).eligible(msg.sender, ROLE_WORKER), "tasks: worker not eligible"
    assert msg.value == self.keys[key_id].slot_bond, "tasks: wrong bond"
    n: uint256 = self.groups[gid].enrolled
    assert n < MAX_ENROLL, "tasks: jury roll full"
    for i: uint256 in range(n, bound=MAX_ENROLL):
        assert self.jurors[gid][i] != msg.sender, "tasks: already enrolled"
    self.jurors[gid][n] = msg.sender
    self.juror_commitment[gid][n] = commitment
    self.groups[gid].enrolled = n + 1
    self.held += msg.value
    log JurorEnrolled(group_id=gid, juror=msg.sender, index=n)


@external
def draw_jury(gid: uint256):
    """
    @notice After enrolment closes: the first call fixes the next block as the seed
            block; a call after it draws min(2k + 1, 9) jurors from the roll with that
            block's hash. With fewer than 3 enrolled the group is voided (fees refunded,
            bonds returned). Anyone may call.
    @param gid The escalated group.
    """
    assert self.groups[gid].state == GroupState.ESCALATED, "tasks: group not escalated"
    assert self.groups[gid].jury_mask == 0, "tasks: jury drawn"
    assert block.timestamp >= self.groups[gid].enroll_end, "tasks: enrolment open"
    seal: uint256 = self.groups[gid].seal_block
    if seal == 0:
        self.groups[gid].seal_block = block.number + 1
        return
    assert block.number > seal, "tasks: seed block not mined"
    seed: bytes32 = blockhash(seal)
    n: uint256 = self.groups[gid].enrolled
    if n < MIN_JURY or seed == empty(bytes32):
        self._void(gid)
        return
    size: uint256 = min(min(2 * self.groups[gid].size + 1, MAX_JURY), n)
    order: DynArray[uint256, MAX_ENROLL] = []
    for i: uint256 in range(n, bound=MAX_ENROLL):
        order.append(i)
    mask: uint256 = 0
    for i: uint256 in range(size, bound=MAX_JURY):
        left: uint256 = n - i
        j: uint256 = i + convert(keccak256(abi_encode(seed, i)), uint256) % left
        pick: uint256 = order[j]
        order[j] = order[i]
        order[i] = pick
        mask |= 1 << pick
    self.groups[gid].jury_mask = mask
    self.groups[gid].jury_deadline = block.timestamp + REVEAL_WINDOW
    log JuryDrawn(group_id=gid, mask=mask)


@external
def juror_reveal(gid: uint256, index: uint256, fingerprint: uint256, salt: bytes32):
    """
    @notice A drawn juror opens its commitment before the jury deadline.
    @param gid The group.
    @param index The juror's enrolment index.
    @param fingerprint Its fingerprint lanes.
    @param salt Its salt.
    """
    assert self.groups[gid].state == GroupState.ESCALATED, "tasks: group not escalated"
    assert self.groups[gid].jury_mask & (1 << index) != 0, "tasks: not a drawn juror"
    assert self.jurors[gid][index] == msg.sender, "tasks: not the juror"
    assert block.timestamp < self.groups[gid].jury_deadline, "tasks: reveal closed"
    assert self.juror_revealed[gid] & (1 << index) == 0, "tasks: already revealed"
    expected: bytes32 = keccak256(abi_encode(gid, msg.sender, fingerprint, salt))
    assert expected == self.juror_commitment[gid][index], "tasks: reveal does not match"
    self.juror_fingerprint[gid][index] = fingerprint
    self.juror_revealed[gid] |= 1 << index


@external
@nonreentrant
def finalize_escalation(gid: uint256):
    """
    @notice Settle an escalated group after every drawn juror revealed or the jury
            deadline passed. A strict majority of the drawn jury fixes the reference:
            members and jurors matching it get their bonds (and members their fees) back,
            every other bond is slashed; half the slashed bonds go to the majority jurors,
            the rest is burned. Without a jury majority the group is voided. Undrawn
            jurors get their bonds back. Anyone may call.
    @param gid The group.
    """
    assert self.groups[gid].state == GroupState.ESCALATED, "tasks: group not escalated"
    mask: uint256 = self.groups[gid].jury_mask
    assert mask != 0, "tasks: jury not drawn"
    shown: uint256 = self.juror_revealed[gid]
    assert shown == mask or block.timestamp >= self.groups[gid].jury_deadline, "tasks: reveal still open"
    key_id: uint256 = self.groups[gid].key_id
    tol: uint256 = self.key_tolerance[key_id][self.groups[gid].profile]
    n: uint256 = self.groups[gid].enrolled
    values: DynArray[uint256, MAX_JURY] = []
    ok: DynArray[bool, MAX_JURY] = []
    drawn: uint256 = 0
    for i: uint256 in range(n, bound=MAX_ENROLL):
        if mask & (1 << i) != 0:
            drawn += 1
            values.append(self.juror_fingerprint[gid][i])
            ok.append(shown & (1 << i) != 0)
    reference: uint256 = 0
    count: uint256 = 0
    reference, count = self._pivot(values, ok, tol)
    if 2 * count <= drawn:
        self._void(gid)
        return
    before: uint256 = self.burned
    self._settle_members(gid, reference, True)
    bond: uint256 = self.keys[key_id].slot_bond
    winners: DynArray[address, MAX_JURY] = []
    for i: uint256 in range(n, bound=MAX_ENROLL):
        juror: address = self.jurors[gid][i]
        if mask & (1 << i) == 0:
            self.held -= bond
            self._credit(juror, bond)
        elif shown & (1 << i) != 0 and self._match(self.juror_fingerprint[gid][i], reference, tol):
            self.held -= bond
            self._credit(juror, bond)
            winners.append(juror)
        else:
            self.held -= bond
            self.burned += bond
    contester: address = self.groups[gid].contester
    if contester != empty(address):
        self.held -= bond
        if self._contester_won(gid, contester):
            self._credit(contester, bond)
        else:
            self.burned += bond
    pool: uint256 = (self.burned - before) * JURY_SHARE_BPS // 10000
    share: uint256 = pool // len(winners)
    self.burned -= share * len(winners)
    for w: address in winners:
        self._credit(w, share)
    self.groups[gid].state = GroupState.SETTLED
    log GroupSettled(group_id=gid, state=GroupState.SETTLED, reference=reference)


@view
@internal
def _contester_won(gid: uint256, contester: address) -> bool:
    for i: uint256 in range(self.groups[gid].size, bound=MAX_GROUP):
        sid: bytes32 = self.group_slots[gid][i]
        if self.slots[sid].worker == contester:
            return self.slots[sid].state == SlotState.PAID
    return False


@internal
def _void(gid: uint256):
    self._settle_members(gid, 0, False)
    bond: uint256 = self.keys[self.groups[gid].key_id].slot_bond
    for i: uint256 in range(self.groups[gid].enrolled, bound=MAX_ENROLL):
        self.held -= bond
        self._credit(self.jurors[gid][i], bond)
    if self.groups[gid].contester != empty(address):
        self.held -= bond
        self._credit(self.groups[gid].contester, bond)
    self.groups[gid].state = GroupState.VOID
    log GroupSettled(group_id=gid, state=GroupState.VOID, reference=0)


# -------------------------------------------------------------------- money
@internal
def _pay(sid: bytes32, amount: uint256, bond: uint256, fee: uint256):
    self.slots[sid].state = SlotState.PAID
    self.held -= bond + fee
    worker: address = self.slots[sid].worker
    self._credit(worker, amount)
    log SlotSettled(slot_id=sid, worker=worker, state=SlotState.PAID, amount=amount)


@internal
def _slash(sid: bytes32, bond: uint256, gid: uint256):
    self.slots[sid].state = SlotState.SLASHED
    self.held -= bond
    self.burned += bond
    log SlotSettled(slot_id=sid, worker=self.slots[sid].worker, state=SlotState.SLASHED, amount=bond)


@internal
def _refund(requester: address, fee: uint256):
    self.held -= fee
    self._credit(requester, fee)


@external
@nonreentrant
def withdraw():
    """
    @notice Withdraw the caller's balance (fees, returned bonds, refunds, jury shares).
    """
    amount: uint256 = self.owed[msg.sender]
    assert amount > 0, "tasks: nothing owed"
    self.owed[msg.sender] = 0
    self.total_owed -= amount
    raw_call(msg.sender, b"", value=amount)
    log Withdrawn(account=msg.sender, amount=amount)


@internal
def _credit(account: address, amount: uint256):
    if amount == 0:
        return
    self.owed[account] += amount
    self.total_owed += amount
    log Credited(account=account, amount=amount)


@internal
@view
def _decide(key_id: uint256, commitment: bytes32) -> bool:
    digest: bytes32 = keccak256(abi_encode(self.keys[key_id].secret, commitment))
    return convert(digest, uint256) < self.keys[key_id].threshold
