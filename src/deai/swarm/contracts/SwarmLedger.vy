# pragma version ~=0.4.3
"""
@title deai SwarmLedger
@notice Stakes of block servers, client deposits paid out by signed vouchers, and
        disputes over signed span receipts decided by two witnesses drawn by stake.
        A dispute names one row a server signed ("on the history named in_hash, blocks
        [start, end) of model_root give the row hashing to row_hash"); two witnesses of
        the same model and execution profile recompute it off-chain and commit-reveal
        their rows; the contract compares the fixed-point rows with the deployment's
        relative tolerance. The accused is slashed only if both witnesses agree with
        each other and both disagree with it. No owner, no admin function: every slash
        follows from a signature of the slashed party and the witnesses' reveals.
"""

MAX_SERVERS: constant(uint256) = 64
MAX_ROW_BYTES: constant(uint256) = 4096  # 1024 int32 values
MAX_WORDS: constant(uint256) = 128  # MAX_ROW_BYTES / 32
MAX_PROOF: constant(uint256) = 32
MAX_BATCH: constant(uint256) = 64
ONE: constant(uint256) = 4096  # 2^12: fixed-point 1.0 (deai.swarm.wire.FRAC_BITS)
CODEC_INT8: constant(uint256) = 1
EIP191: constant(Bytes[28]) = b"\x19Ethereum Signed Message:\n32"

struct Server:
    stake: uint256
    model_root: bytes32
    profile: bytes32
    unbond_at: uint256  # 0 while bonded
    disputes: uint256  # open disputes it is accused in or witnesses
    listed: bool

struct Account:
    balance: uint256
    unlock_at: uint256  # 0 while locked

struct Receipt:
    client: address
    session: bytes32
    call: uint256
    model_root: bytes32
    profile: bytes32
    start: uint256
    end: uint256
    codec: uint256
    first_position: uint256
    n_rows: uint256
    rows_root: bytes32

struct Claim:
    k: uint256
    position: uint256
    in_hash: bytes32
    row_hash: bytes32

flag Verdict:
    OPEN
    GUILTY
    CLEARED
    INCONCLUSIVE

struct Dispute:
    opener: address
    accused: address
    model_root: bytes32
    profile: bytes32
    start: uint256
    end: uint256
    position: uint256
    in_hash: bytes32
    row_hash: bytes32
    codec: uint256
    bond: uint256
    commit_deadline: uint256
    reveal_deadline: uint256
    verdict: Verdict

event ServerRegistered:
    server: indexed(address)
    model_root: bytes32
    profile: bytes32
    stake: uint256

event Redeemed:
    client: indexed(address)
    server: indexed(address)
    cumulative: uint256
    amount: uint256

event DisputeOpened:
    dispute_id: indexed(uint256)
    accused: indexed(address)
    opener: address
    witness0: address
    witness1: address
    start: uint256
    end: uint256
    position: uint256
    in_hash: bytes32

event WitnessCommitted:
    dispute_id: indexed(uint256)
    witness: indexed(address)

event WitnessRevealed:
    dispute_id: indexed(uint256)
    witness: indexed(address)
    row: Bytes[MAX_ROW_BYTES]

event DisputeSettled:
    dispute_id: indexed(uint256)
    verdict: Verdict
    slashed: uint256

event Slashed:
    server: indexed(address)
    amount: uint256
    reason: String[32]

MIN_STAKE: public(immutable(uint256))
UNBOND_DELAY: public(immutable(uint256))
CHANNEL_DELAY: public(immutable(uint256))
TOL_PPB: public(immutable(uint256))
SLASH_AMOUNT: public(immutable(uint256))
WITNESS_SLASH: public(immutable(uint256))
WITNESS_FEE: public(immutable(uint256))
DISPUTE_BOND: public(immutable(uint256))
COMMIT_PERIOD: public(immutable(uint256))
REVEAL_PERIOD: public(immutable(uint256))
BURN: public(immutable(address))
RECEIPT_TAG: public(immutable(bytes32))
VOUCHER_TAG: public(immutable(bytes32))

servers: public(HashMap[address, Server])
server_list: public(DynArray[address, MAX_SERVERS])
accounts: public(HashMap[address, Account])
paid: public(HashMap[address, HashMap[address, uint256]])  # client -> server -> wei
owed: public(HashMap[address, uint256])
total_owed: public(uint256)
total_stake: public(uint256)
total_balances: public(uint256)
open_bonds: public(uint256)
next_dispute: public(uint256)
disputes: public(HashMap[uint256, Dispute])
witnesses: public(HashMap[uint256, address[2]])
commitments: public(HashMap[uint256, bytes32[2]])
revealed: public(HashMap[uint256, bytes32[2]])  # keccak of each revealed row (0 = none)


@deploy
def __init__(
    min_stake: uint256,
    unbond_delay: uint256,
    channel_delay: uint256,
    tol_ppb: uint256,
    slash_amount: uint256,
    witness_slash: uint256,
    witness_fee: uint256,
    commit_period: uint256,
    reveal_period: uint256,
    burn: address,
):
    """
    @notice Fix every rule forever.
    @param min_stake Wei a server must keep staked to serve and witness.
    @param unbond_delay Seconds between unbonding and withdrawing stake; longer than a
           dispute, so a server cannot run from one.
    @param channel_delay Seconds a client's deposit stays redeemable after it asks to leave.
    @param tol_ppb Relative tolerance of row comparisons, parts per billion.
    @param slash_amount Wei taken from a server found guilty.
    @param witness_slash Wei taken from a drawn witness that does not reveal.
    @param witness_fee Wei paid from the bond to each revealing witness.
    @param commit_period Seconds witnesses have to commit.
    @param reveal_period Seconds after that to reveal.
    @param burn Where slashed stake goes (nobody's key).
    """
    assert unbond_delay > commit_period + reveal_period, "swarm: unbond shorter than a dispute"
    assert min_stake >= slash_amount and min_stake >= witness_slash, "swarm: stake below slash"
    MIN_STAKE = min_stake
    UNBOND_DELAY = unbond_delay
    CHANNEL_DELAY = channel_delay
    TOL_PPB = tol_ppb
    SLASH_AMOUNT = slash_amount
    WITNESS_SLASH = witness_slash
    WITNESS_FEE = witness_fee
    DISPUTE_BOND = 3 * witness_fee  # two fees, and one for the accused if cleared
    COMMIT_PERIOD = commit_period
    REVEAL_PERIOD = reveal_period
    BURN = burn
    RECEIPT_TAG = keccak256("deai/swarm/receipt/v1")
    VOUCHER_TAG = keccak256("deai/swarm/voucher/v1")
    self.next_dispute = 1


# ------------------------------------------------------------------ servers
@external
@payable
def register(model_root: bytes32, profile: bytes32):
    """
    @notice Stake (or add stake) as a server of `model_root` with execution `profile`.
            Registering accepts the witness duty for disputes on that model and profile.
    @param model_root The manifest root of the model served.
    @param profile keccak256 of the execution profile string.
    """
    s: Server = self.servers[msg.sender]
    if not s.listed:
        assert len(self.server_list) < MAX_SERVERS, "swarm: server list full"
        self.server_list.append(msg.sender)
        s.listed = True
    else:
        assert s.disputes == 0 or (s.model_root == model_root and s.profile == profile), "swarm: in dispute"
    s.stake += msg.value
    s.model_root = model_root
    s.profile = profile
    s.unbond_at = 0
    assert s.stake >= MIN_STAKE, "swarm: stake below minimum"
    self.servers[msg.sender] = s
    self.total_stake += msg.value
    log ServerRegistered(server=msg.sender, model_root=model_root, profile=profile, stake=s.stake)


@external
def begin_unbond():
    """
    @notice Stop serving and witnessing; the stake stays slashable for UNBOND_DELAY.
    """
    assert self.servers[msg.sender].stake > 0, "swarm: not staked"
    self.servers[msg.sender].unbond_at = block.timestamp + UNBOND_DELAY


@external
def withdraw_stake():
    """
    @notice Take the stake back once unbonded and out of every dispute.
    """
    s: Server = self.servers[msg.sender]
    assert s.unbond_at != 0 and block.timestamp >= s.unbond_at, "swarm: still bonded"
    assert s.disputes == 0, "swarm: in dispute"
    amount: uint256 = s.stake
    self.servers[msg.sender].stake = 0
    self.total_stake -= amount
    self._credit(msg.sender, amount)


@view
@internal
def _eligible(node: address, model_root: bytes32, profile: bytes32) -> bool:
    s: Server = self.servers[node]
    return s.stake >= MIN_STAKE and s.unbond_at == 0 and s.model_root == model_root and s.profile == profile


@view
@external
def is_server(node: address, model_root: bytes32, profile: bytes32) -> bool:
    """
    @notice Whether `node` is staked, bonded and registered for this model and profile.
    """
    return self._eligible(node, model_root, profile)


# ------------------------------------------------------------------ clients and vouchers
@external
@payable
def deposit():
    """
    @notice Add to the caller's deposit, from which servers redeem its vouchers.
    """
    self.accounts[msg.sender].balance += msg.value
    self.accounts[msg.sender].unlock_at = 0
    self.total_balances += msg.value


@external
def request_withdrawal():
    """
    @notice Start the CHANNEL_DELAY after which the deposit can be withdrawn; servers
            holding vouchers must redeem them before then.
    """
    self.accounts[msg.sender].unlock_at = block.timestamp + CHANNEL_DELAY


@external
def withdraw_deposit():
    """
    @notice Withdraw the whole remaining deposit after the channel delay.
    """
    a: Account = self.accounts[msg.sender]
    assert a.unlock_at != 0 and block.timestamp >= a.unlock_at, "swarm: deposit locked"
    self.accounts[msg.sender].balance = 0
    self.total_balances -= a.balance
    self._credit(msg.sender, a.balance)


@internal
def _recover(digest: bytes32, v: uint8, r: bytes32, s: bytes32) -> address:
    signed: bytes32 = keccak256(concat(EIP191, digest))
    return ecrecover(signed, convert(v, uint256), convert(r, uint256), convert(s, uint256))


@internal
def _redeem(client: address, cumulative: uint256, v: uint8, r: bytes32, s: bytes32) -> uint256:
    digest: bytes32 = keccak256(abi_encode(VOUCHER_TAG, self, client, msg.sender, cumulative))
    assert self._recover(digest, v, r, s) == client, "swarm: voucher not signed by client"
    done: uint256 = self.paid[client][msg.sender]
    if cumulative <= done:
        return 0
    amount: uint256 = min(cumulative - done, self.accounts[client].balance)
    self.paid[client][msg.sender] = done + amount
    self.accounts[client].balance -= amount
    self.total_balances -= amount
    self._credit(msg.sender, amount)
    log Redeemed(client=client, server=msg.sender, cumulative=cumulative, amount=amount)
    return amount


@external
def redeem(client: address, cumulative: uint256, v: uint8, r: bytes32, s: bytes32) -> uint256:
    """
    @notice Be paid `cumulative - already paid` (at most the client's deposit) for a voucher
            the client signed for the caller.
    @return The wei credited.
    """
    return self._redeem(client, cumulative, v, r, s)


@external
def redeem_batch(
    clients: DynArray[address, MAX_BATCH],
    cumulatives: DynArray[uint256, MAX_BATCH],
    vs: DynArray[uint8, MAX_BATCH],
    rs: DynArray[bytes32, MAX_BATCH],
    ss: DynArray[bytes32, MAX_BATCH],
) -> uint256:
    """
    @notice Redeem many clients' vouchers in one transaction.
    @return The wei credited in total.
    """
    n: uint256 = len(clients)
    assert len(cumulatives) == n and len(vs) == n and len(rs) == n and len(ss) == n, "swarm: length mismatch"
    total: uint256 = 0
    for i: uint256 in range(n, bound=MAX_BATCH):
        total += self._redeem(clients[i], cumulatives[i], vs[i], rs[i], ss[i])
    return total


# ------------------------------------------------------------------ disputes
@view
@internal
def _receipt_digest(server: address, rc: Receipt) -> bytes32:
    return keccak256(
        abi_encode(
            RECEIPT_TAG, self, server, rc.client, rc.session, rc.call, rc.model_root,
            rc.profile, rc.start, rc.end, rc.codec, rc.first_position, rc.n_rows, rc.rows_root,
        )
    )


@pure
@internal
def _merkle_ok(leaf: bytes32, proof: DynArray[bytes32, MAX_PROOF], root: bytes32) -> bool:
    node: bytes32 = leaf
    for sibling: bytes32 in proof:
        if convert(node, uint256) < convert(sibling, uint256):
            node = keccak256(concat(node, sibling))
        else:
            node = keccak256(concat(sibling, node))
    return node == root


@internal
def _draw(dispute_id: uint256, model_root: bytes32, profile: bytes32, skip0: address, skip1: address, skip2: address) -> address:
    total: uint256 = 0
    for node: address in self.server_list:
        if node != skip0 and node != skip1 and node != skip2 and self._eligible(node, model_root, profile):
            total += self.servers[node].stake
    assert total > 0, "swarm: not enough witnesses"
    seed: uint256 = convert(keccak256(abi_encode(block.prevrandao, dispute_id, skip2)), uint256)
    pick: uint256 = seed % total
    for node: address in self.server_list:
        if node != skip0 and node != skip1 and node != skip2 and self._eligible(node, model_root, profile):
            stake: uint256 = self.servers[node].stake
            if pick < stake:
                return node
            pick -= stake
    raise "swarm: draw failed"


@external
@payable
def open_dispute(
    accused: address,
    rc: Receipt,
    claim: Claim,
    proof: DynArray[bytes32, MAX_PROOF],
    v: uint8,
    r: bytes32,
    s: bytes32,
) -> uint256:
    """
    @notice Hold a row the accused signed against it. Escrows DISPUTE_BOND and draws two
            witnesses by stake among the other servers of the same model and profile.
    @param accused The server that signed the receipt.
    @param rc The receipt's fields.
    @param claim The disputed row's claim (leaf of rc.rows_root).
    @param proof Its sorted-pair Merkle proof.
    @return The dispute id.
    """
    assert msg.value == DISPUTE_BOND, "swarm: wrong bond"
    srv: Server = self.servers[accused]
    assert srv.stake > 0, "swarm: accused not staked"
    assert rc.model_root == srv.model_root and rc.profile == srv.profile, "swarm: receipt for another registration"
    assert self._recover(self._receipt_digest(accused, rc), v, r, s) == accused, "swarm: receipt not signed by accused"
    assert claim.k < rc.n_rows, "swarm: row out of range"
    leaf: bytes32 = keccak256(abi_encode(claim.k, claim.position, claim.in_hash, claim.row_hash))
    assert self._merkle_ok(leaf, proof, rc.rows_root), "swarm: claim not in receipt"
    dispute_id: uint256 = self.next_dispute
    self.next_dispute = dispute_id + 1
    w0: address = self._draw(dispute_id, rc.model_root, rc.profile, accused, msg.sender, empty(address))
    w1: address = self._draw(dispute_id, rc.model_root, rc.profile, accused, msg.sender, w0)
    self.disputes[dispute_id] = Dispute(
        opener=msg.sender,
        accused=accused,
        model_root=rc.model_root,
        profile=rc.profile,
        start=rc.start,
        end=rc.end,
        position=claim.position,
        in_hash=claim.in_hash,
        row_hash=claim.row_hash,
        codec=rc.codec,
        bond=msg.value,
        commit_deadline=block.timestamp + COMMIT_PERIOD,
        reveal_deadline=block.timestamp + COMMIT_PERIOD + REVEAL_PERIOD,
        verdict=Verdict.OPEN,
    )
    self.witnesses[dispute_id] = [w0, w1]
    self.servers[accused].disputes += 1
    self.servers[w0].disputes += 1
    self.servers[w1].disputes += 1
    self.open_bonds += msg.value
    log DisputeOpened(
        dispute_id=dispute_id, accused=accused, opener=msg.sender, witness0=w0, witness1=w1,
        start=rc.start, end=rc.end, position=claim.position, in_hash=claim.in_hash,
    )
    return dispute_id


@view
@internal
def _slot(dispute_id: uint256, who: address) -> uint256:
    ws: address[2] = self.witnesses[dispute_id]
    if who == ws[0]:
        return 0
    if who == ws[1]:
        return 1
    raise "swarm: not a witness"


@external
def commit(dispute_id: uint256, commitment: bytes32):
    """
    @notice A drawn witness commits keccak256(abi_encode(dispute_id, witness,
            keccak256(row), salt)) before the commit deadline.
    """
    d: Dispute = self.disputes[dispute_id]
    assert d.verdict == Verdict.OPEN, "swarm: not open"
    assert block.timestamp < d.commit_deadline, "swarm: commit closed"
    i: uint256 = self._slot(dispute_id, msg.sender)
    self.commitments[dispute_id][i] = commitment
    log WitnessCommitted(dispute_id=dispute_id, witness=msg.sender)


@external
def reveal(dispute_id: uint256, row: Bytes[MAX_ROW_BYTES], salt: bytes32):
    """
    @notice A witness reveals its row (fixed-point, big-endian int32) after the commit
            deadline and before the reveal deadline.
    """
    d: Dispute = self.disputes[dispute_id]
    assert d.verdict == Verdict.OPEN, "swarm: not open"
    assert block.timestamp >= d.commit_deadline, "swarm: still committing"
    assert block.timestamp < d.reveal_deadline, "swarm: reveal closed"
    i: uint256 = self._slot(dispute_id, msg.sender)
    assert len(row) > 0 and len(row) % 32 == 0, "swarm: bad row length"
    h: bytes32 = keccak256(row)
    expected: bytes32 = keccak256(abi_encode(dispute_id, msg.sender, h, salt))
    assert self.commitments[dispute_id][i] == expected, "swarm: reveal does not match commitment"
    self.revealed[dispute_id][i] = h
    log WitnessRevealed(dispute_id=dispute_id, witness=msg.sender, row=row)


@pure
@internal
def _lane(word: uint256, k: uint256) -> int256:
    v: uint256 = (word >> (224 - 32 * k)) & 4294967295
    if v >= 2147483648:
        return convert(v, int256) - 4294967296
    return convert(v, int256)


@pure
@internal
def _maxabs(row: Bytes[MAX_ROW_BYTES]) -> uint256:
    m: uint256 = 0
    for j: uint256 in range(len(row) // 32, bound=MAX_WORDS):
        w: uint256 = convert(extract32(row, 32 * j), uint256)
        for k: uint256 in range(8):
            m = max(m, convert(abs(self._lane(w, k)), uint256))
    return m


@view
@internal
def _close(claimed: Bytes[MAX_ROW_BYTES], ref: Bytes[MAX_ROW_BYTES], codec: uint256) -> bool:
    """Whether `claimed` is within tolerance of `ref` (deai.swarm.verify.compare)."""
    if len(claimed) != len(ref):
        return False
    d: uint256 = 0
    for j: uint256 in range(len(ref) // 32, bound=MAX_WORDS):
        a: uint256 = convert(extract32(claimed, 32 * j), uint256)
        b: uint256 = convert(extract32(ref, 32 * j), uint256)
        if a != b:
            for k: uint256 in range(8):
                d = max(d, convert(abs(self._lane(a, k) - self._lane(b, k)), uint256))
    allowed: uint256 = TOL_PPB * max(self._maxabs(ref), ONE) // 10**9
    if codec == CODEC_INT8:
        allowed += (self._maxabs(claimed) + 253) // 254 + 1
    return d <= allowed


@view
@external
def rows_close(claimed: Bytes[MAX_ROW_BYTES], ref: Bytes[MAX_ROW_BYTES], codec: uint256) -> bool:
    """
    @notice The comparison finalize uses, for clients to check before they dispute.
    """
    return self._close(claimed, ref, codec)


@external
def finalize(
    dispute_id: uint256,
    accused_row: Bytes[MAX_ROW_BYTES],
    row0: Bytes[MAX_ROW_BYTES],
    row1: Bytes[MAX_ROW_BYTES],
):
    """
    @notice Decide a dispute after the reveal deadline (or once both witnesses revealed).
            Anyone may call it with the rows (the witnesses' are in their reveal events;
            the accused's is the one its receipt hashes, held by the opener). With an
            accused row that does not match, the dispute is decided as if none was given.
    """
    d: Dispute = self.disputes[dispute_id]
    assert d.verdict == Verdict.OPEN, "swarm: not open"
    rev: bytes32[2] = self.revealed[dispute_id]
    both: bool = rev[0] != empty(bytes32) and rev[1] != empty(bytes32)
    assert block.timestamp >= d.reveal_deadline or (both and block.timestamp >= d.commit_deadline), "swarm: too early"
    ws: address[2] = self.witnesses[dispute_id]
    verdict: Verdict = Verdict.INCONCLUSIVE
    have_accused: bool = keccak256(accused_row) == d.row_hash
    if both and keccak256(row0) == rev[0] and keccak256(row1) == rev[1] and have_accused:
        if self._close(row1, row0, 0):
            far0: bool = not self._close(accused_row, row0, d.codec)
            far1: bool = not self._close(accused_row, row1, d.codec)
            if far0 and far1:
                verdict = Verdict.GUILTY
            elif not far0 and not far1:
                verdict = Verdict.CLEARED
    # money: fees to revealing witnesses, slashes, the rest of the bond
    fees: uint256 = 0
    for i: uint256 in range(2):
        self.servers[ws[i]].disputes -= 1
        if rev[i] != empty(bytes32):
            fees += WITNESS_FEE
            self._credit(ws[i], WITNESS_FEE)
        else:
            self._slash(ws[i], WITNESS_SLASH, "witness did not reveal")
    self.servers[d.accused].disputes -= 1
    self.open_bonds -= d.bond
    rest: uint256 = d.bond - fees
    slashed: uint256 = 0
    if verdict == Verdict.GUILTY:
        slashed = self._slash(d.accused, SLASH_AMOUNT, "failed span check")
        refund: uint256 = min(fees, slashed)
        # the opener is made whole from the slash; the rest of the slash is burned
        self.owed[BURN] -= refund
        self.total_owed -= refund
        self._credit(d.opener, rest + refund)
    elif verdict == Verdict.CLEARED:
        self._credit(d.accused, rest)
    else:
        self._credit(d.opener, rest)
    self.disputes[dispute_id].verdict = verdict
    log DisputeSettled(dispute_id=dispute_id, verdict=verdict, slashed=slashed)


# ------------------------------------------------------------------ money
@internal
def _credit(account: address, amount: uint256):
    if amount > 0:
        self.owed[account] += amount
        self.total_owed += amount


@internal
def _slash(node: address, amount: uint256, reason: String[32]) -> uint256:
    taken: uint256 = min(amount, self.servers[node].stake)
    self.servers[node].stake -= taken
    self.total_stake -= taken
    self.owed[BURN] += taken
    self.total_owed += taken
    log Slashed(server=node, amount=taken, reason=reason)
    return taken


@external
def withdraw():
    """
    @notice Pay out everything credited to the caller.
    """
    amount: uint256 = self.owed[msg.sender]
    assert amount > 0, "swarm: nothing owed"
    self.owed[msg.sender] = 0
    self.total_owed -= amount
    raw_call(msg.sender, b"", value=amount)
