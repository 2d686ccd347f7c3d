# pragma version ~=0.4.3
"""
@title deai Jobs
@notice Training jobs with an escrowed budget, a stake-weighted validator committee per
        round, commit-reveal of the round result and cumulative Merkle payouts.
        Result of a round = (new model hash, payouts Merkle root, round payout total).
        A strict majority of the drawn committee settles the round; revealed dissenters and
        members who never revealed are slashed through the Registry. No majority aborts the
        round and returns its budget to the requester. Every waiting state has a deadline
        past which anyone may call `finalize_round` or `sweep`.
        Money moves by pull (`withdraw`) except claims, which push with a small gas stipend
        and fall back to a pull balance, so a hostile receiver can block nobody.
        There is no owner and no admin function.
"""

interface Registry:
    def draw(seed: bytes32, size: uint256) -> DynArray[address, 16]: view
    def slash(node: address, amount: uint256) -> uint256: nonpayable

MAX_COMMITTEE: constant(uint256) = 16
MAX_ROUNDS: constant(uint256) = 100000
MAX_PROOF: constant(uint256) = 24
MAX_BATCH: constant(uint256) = 64
PAY_GAS: constant(uint256) = 10000
SENTINEL: constant(uint256) = 1 << 255

flag JobState:
    OPEN
    DONE
    SWEPT

struct Job:
    requester: address
    spec_hash: bytes32
    rounds: uint256
    committee_size: uint256
    commit_period: uint256
    reveal_period: uint256
    claim_period: uint256
    deposit: uint256
    round_budget: uint256
    state: JobState
    done_at: uint256
    model_hash: bytes32
    root: bytes32
    payable_total: uint256
    claimed_total: uint256
    refunded: uint256
    slashed: uint256

struct Round:
    index: uint256
    seed: bytes32
    size: uint256
    commit_deadline: uint256
    reveal_deadline: uint256
    masks: uint256

struct Result:
    model_hash: bytes32
    root: bytes32
    total: uint256

event JobCreated:
    job_id: indexed(uint256)
    requester: indexed(address)
    spec_hash: bytes32
    deposit: uint256
    rounds: uint256
    committee_size: uint256

event RoundOpened:
    job_id: indexed(uint256)
    round: uint256
    seed: bytes32
    committee: DynArray[address, MAX_COMMITTEE]
    commit_deadline: uint256
    reveal_deadline: uint256

event Committed:
    job_id: indexed(uint256)
    round: uint256
    member: indexed(address)
    commitment: bytes32

event Revealed:
    job_id: indexed(uint256)
    round: uint256
    member: indexed(address)
    result_hash: bytes32

event RoundSettled:
    job_id: indexed(uint256)
    round: uint256
    model_hash: bytes32
    root: bytes32
    total: uint256
    votes: uint256

event RoundAborted:
    job_id: indexed(uint256)
    round: uint256
    refund: uint256

event MemberSlashed:
    job_id: indexed(uint256)
    round: uint256
    member: indexed(address)
    amount: uint256
    revealed: bool

event JobDone:
    job_id: indexed(uint256)

event Claimed:
    job_id: indexed(uint256)
    account: indexed(address)
    cumulative: uint256
    amount: uint256

event Swept:
    job_id: indexed(uint256)
    amount: uint256

event Credited:
    account: indexed(address)
    amount: uint256

event Withdrawn:
    account: indexed(address)
    amount: uint256

REGISTRY: public(immutable(address))
SLASH_AMOUNT: public(immutable(uint256))
MAX_ROUND_TIME: public(immutable(uint256))

next_job_id: public(uint256)
jobs: public(HashMap[uint256, Job])
rounds: public(HashMap[uint256, Round])
members: HashMap[uint256, HashMap[uint256, address]]
commitments: HashMap[uint256, HashMap[uint256, bytes32]]
reveals: HashMap[uint256, HashMap[uint256, bytes32]]
results: public(HashMap[bytes32, Result])
claimed: public(HashMap[uint256, HashMap[address, uint256]])
owed: public(HashMap[address, uint256])
total_owed: public(uint256)


@deploy
def __init__(registry: address, slash_amount: uint256, max_round_time: uint256):
    """
    @notice Created by the Registry constructor; all three values are fixed forever.
    @param registry The Registry that stakes and slashes.
    @param slash_amount Wei slashed from a faulty committee member.
    @param max_round_time Upper bound on commit + reveal periods (the withdrawal delay),
           so a member cannot unstake and leave before its round can punish it.
    """
    REGISTRY = registry
    SLASH_AMOUNT = slash_amount
    MAX_ROUND_TIME = max_round_time
    self.next_job_id = 1


@external
@payable
@nonreentrant
def create_job(
    spec_hash: bytes32,
    rounds: uint256,
    committee_size: uint256,
    commit_period: uint256,
    reveal_period: uint256,
    claim_period: uint256,
) -> uint256:
    """
    @notice Create a training job escrowing `msg.value`; round 0 opens at once.
    @dev Each round may pay at most deposit // rounds; the division remainder is credited
         back to the requester now.
    @param spec_hash Hash of the off-chain job specification.
    @param rounds Number of rounds.
    @param committee_size Validators drawn per round.
    @param commit_period Seconds from a round's opening to its commit deadline.
    @param reveal_period Seconds from the commit deadline to the reveal deadline.
    @param claim_period Seconds after the job ends during which payouts can be claimed.
    @return The job id.
    """
    assert rounds > 0 and rounds <= MAX_ROUNDS, "jobs: bad rounds"
    assert committee_size > 0 and committee_size <= MAX_COMMITTEE, "jobs: bad committee size"
    assert commit_period > 0 and reveal_period > 0, "jobs: zero period"
    assert commit_period + reveal_period <= MAX_ROUND_TIME, "jobs: round too long"
    assert claim_period > 0, "jobs: zero claim period"
    budget: uint256 = msg.value // rounds
    assert budget > 0, "jobs: budget too small"
    job_id: uint256 = self.next_job_id
    self.next_job_id = job_id + 1
    self.jobs[job_id] = Job(
        requester=msg.sender,
        spec_hash=spec_hash,
        rounds=rounds,
        committee_size=committee_size,
        commit_period=commit_period,
        reveal_period=reveal_period,
        claim_period=claim_period,
        deposit=msg.value,
        round_budget=budget,
        state=JobState.OPEN,
        done_at=0,
        model_hash=empty(bytes32),
        root=empty(bytes32),
        payable_total=0,
        claimed_total=0,
        refunded=0,
        slashed=0,
    )
    log JobCreated(
        job_id=job_id,
        requester=msg.sender,
        spec_hash=spec_hash,
        deposit=msg.value,
        rounds=rounds,
        committee_size=committee_size,
    )
    rest: uint256 = msg.value - budget * rounds
    if rest > 0:
        self._refund(job_id, rest)
    self._open_round(job_id, 0)
    return job_id


@external
def commit(job_id: uint256, round: uint256, index: uint256, commitment: bytes32):
    """
    @notice Commit to a round result as committee member number `index`.
    @param job_id The job.
    @param round The job's current round.
    @param index The caller's position in the committee.
    @param commitment keccak256(abi_encode(job_id, round, member, model_hash, root, total,
           salt)).
    """
    self._check_member(job_id, round, index)
    assert block.timestamp < self.rounds[job_id].commit_deadline, "jobs: commit closed"
    masks: uint256 = self.rounds[job_id].masks
    bit: uint256 = 1 << index
    assert masks & bit == 0, "jobs: already committed"
    self.commitments[job_id][index] = commitment
    self.rounds[job_id].masks = masks | bit
    log Committed(job_id=job_id, round=round, member=msg.sender, commitment=commitment)


@external
def reveal(
    job_id: uint256,
    round: uint256,
    index: uint256,
    model_hash: bytes32,
    root: bytes32,
    total: uint256,
    salt: bytes32,
):
    """
    @notice Reveal the committed result. Opens at the commit deadline, or as soon as
            every member has committed; closes at the reveal deadline.
    @param job_id The job.
    @param round The job's current round.
    @param index The caller's position in the committee.
    @param model_hash Hash of the new global model.
    @param root Merkle root of cumulative payouts after this round.
    @param total Wei this round adds to the payouts (at most the round budget).
    @param salt The commitment's salt.
    """
    self._check_member(job_id, round, index)
    masks: uint256 = self.rounds[job_id].masks
    size: uint256 = self.rounds[job_id].size
    all_in: uint256 = (1 << size) - 1
    assert (
        block.timestamp >= self.rounds[job_id].commit_deadline or masks & all_in == all_in
    ), "jobs: reveal not open"
    assert block.timestamp < self.rounds[job_id].reveal_deadline, "jobs: reveal closed"
    bit: uint256 = 1 << index
    assert masks & bit != 0, "jobs: not committed"
    assert masks & (bit << 16) == 0, "jobs: already revealed"
    expected: bytes32 = keccak256(
        abi_encode(job_id, round, msg.sender, model_hash, root, total, salt)
    )
    assert expected == self.commitments[job_id][index], "jobs: reveal does not match"
    assert total <= self.jobs[job_id].round_budget, "jobs: total above round budget"
    result_hash: bytes32 = keccak256(abi_encode(model_hash, root, total))
    if self.results[result_hash].model_hash != model_hash or self.results[result_hash].root != root:
        self.results[result_hash] = Result(model_hash=model_hash, root=root, total=total)
    self.reveals[job_id][index] = result_hash
    self.rounds[job_id].masks = masks | (bit << 16)
    log Revealed(job_id=job_id, round=round, member=msg.sender, result_hash=result_hash)


@external
@nonreentrant
def finalize_round(job_id: uint256, round: uint256):
    """
    @notice Settle or abort the current round once every member revealed or the reveal
            deadline passed. Anyone may call. Opens the next round or ends the job.
    @param job_id The job.
    @param round The job's current round.
    """
    assert self.jobs[job_id].state == JobState.OPEN, "jobs: job not open"
    assert self.rounds[job_id].index == round, "jobs: wrong round"
    size: uint256 = self.rounds[job_id].size
    masks: uint256 = self.rounds[job_id].masks
    all_in: uint256 = (1 << size) - 1
    assert (
        block.timestamp >= self.rounds[job_id].reveal_deadline
        or (masks >> 16) & all_in == all_in
    ), "jobs: round not over"
    hashes: DynArray[bytes32, MAX_COMMITTEE] = []
    for i: uint256 in range(size, bound=MAX_COMMITTEE):
        if masks & (1 << (i + 16)) != 0:
            hashes.append(self.reveals[job_id][i])
        else:
            hashes.append(empty(bytes32))
    winner: bytes32 = empty(bytes32)
    votes: uint256 = 0
    for i: uint256 in range(size, bound=MAX_COMMITTEE):
        if hashes[i] == empty(bytes32):
            continue
        count: uint256 = 0
        for j: uint256 in range(size, bound=MAX_COMMITTEE):
            if hashes[j] == hashes[i]:
                count += 1
        if count * 2 > size:
            winner = hashes[i]
            votes = count
            break
    budget: uint256 = self.jobs[job_id].round_budget
    if winner != empty(bytes32):
        res: Result = self.results[winner]
        self.jobs[job_id].model_hash = res.model_hash
        self.jobs[job_id].root = res.root
        self.jobs[job_id].payable_total += res.total
        if budget > res.total:
            self._refund(job_id, budget - res.total)
        log RoundSettled(
            job_id=job_id,
            round=round,
            model_hash=res.model_hash,
            root=res.root,
            total=res.total,
            votes=votes,
        )
    else:
        self._refund(job_id, budget)
        log RoundAborted(job_id=job_id, round=round, refund=budget)
    for i: uint256 in range(size, bound=MAX_COMMITTEE):
        revealed: bool = hashes[i] != empty(bytes32)
        if not revealed or (winner != empty(bytes32) and hashes[i] != winner):
            member: address = self.members[job_id][i]
            taken: uint256 = extcall Registry(REGISTRY).slash(member, SLASH_AMOUNT)
            self.jobs[job_id].slashed += taken
            log MemberSlashed(
                job_id=job_id, round=round, member=member, amount=taken, revealed=revealed
            )
    if round + 1 < self.jobs[job_id].rounds:
        self._open_round(job_id, round + 1)
    else:
        self.jobs[job_id].state = JobState.DONE
        self.jobs[job_id].done_at = block.timestamp
        log JobDone(job_id=job_id)


@external
@nonreentrant
def claim(job_id: uint256, account: address, cumulative: uint256, proof: DynArray[bytes32, MAX_PROOF]):
    """
    @notice Pay `account` its cumulative payout in `job_id` minus what it already claimed.
            Anyone may submit the claim; the money always goes to `account`.
    @param job_id The job.
    @param account The payee named in the leaf.
    @param cumulative Cumulative wei owed to `account` per the job's latest root.
    @param proof Sorted-pair Merkle proof of keccak256(abi_encode(job_id, account,
           cumulative)).
    """
    root: bytes32 = self._claimable_root(job_id)
    amount: uint256 = self._settle_claim(job_id, root, account, cumulative, proof)
    total: uint256 = self.jobs[job_id].claimed_total + amount
    assert total <= self.jobs[job_id].payable_total, "jobs: claims exceed payouts"
    self.jobs[job_id].claimed_total = total
    self._pay(account, amount)


@external
@nonreentrant
def claim_many(
    job_id: uint256,
    accounts: DynArray[address, MAX_BATCH],
    cumulatives: DynArray[uint256, MAX_BATCH],
    proofs: DynArray[DynArray[bytes32, MAX_PROOF], MAX_BATCH],
):
    """
    @notice Batch form of `claim`: one transaction pays many accounts of one job.
    @param job_id The job.
    @param accounts Payees.
    @param cumulatives Their cumulative amounts.
    @param proofs Their Merkle proofs.
    """
    n: uint256 = len(accounts)
    assert len(cumulatives) == n and len(proofs) == n, "jobs: length mismatch"
    root: bytes32 = self._claimable_root(job_id)
    total: uint256 = self.jobs[job_id].claimed_total
    for i: uint256 in range(n, bound=MAX_BATCH):
        amount: uint256 = self._settle_claim(job_id, root, accounts[i], cumulatives[i], proofs[i])
        total += amount
        self._pay(accounts[i], amount)
    assert total <= self.jobs[job_id].payable_total, "jobs: claims exceed payouts"
    self.jobs[job_id].claimed_total = total


@external
@nonreentrant
def sweep(job_id: uint256):
    """
    @notice After the job ended and its claim period passed, return unclaimed payouts to
            the requester and close claims. Anyone may call.
    @param job_id The job.
    """
    assert self.jobs[job_id].state == JobState.DONE, "jobs: job not done"
    assert (
        block.timestamp >= self.jobs[job_id].done_at + self.jobs[job_id].claim_period
    ), "jobs: claim period not over"
    self.jobs[job_id].state = JobState.SWEPT
    unclaimed: uint256 = self.jobs[job_id].payable_total - self.jobs[job_id].claimed_total
    if unclaimed > 0:
        self._refund(job_id, unclaimed)
    log Swept(job_id=job_id, amount=unclaimed)


@external
@nonreentrant
def withdraw():
    """
    @notice Withdraw the caller's pull balance (refunds and deferred payments).
    """
    amount: uint256 = self.owed[msg.sender]
    assert amount > 0, "jobs: nothing owed"
    self.owed[msg.sender] = 0
    self.total_owed -= amount
    raw_call(msg.sender, b"", value=amount)
    log Withdrawn(account=msg.sender, amount=amount)


@view
@external
def committee(job_id: uint256) -> DynArray[address, MAX_COMMITTEE]:
    """
    @notice The current round's committee in index order.
    @param job_id The job.
    @return Members.
    """
    out: DynArray[address, MAX_COMMITTEE] = []
    for i: uint256 in range(self.rounds[job_id].size, bound=MAX_COMMITTEE):
        out.append(self.members[job_id][i])
    return out


@view
@external
def escrow(job_id: uint256) -> uint256:
    """
    @notice Wei this contract still holds for `job_id` (unsettled budgets plus settled,
            unclaimed payouts). deposit == claimed + refunded + escrow, always.
    @param job_id The job.
    @return Wei held.
    """
    return (
        self.jobs[job_id].deposit
        - self.jobs[job_id].claimed_total
        - self.jobs[job_id].refunded
    )


@internal
def _check_member(job_id: uint256, round: uint256, index: uint256):
    assert self.jobs[job_id].state == JobState.OPEN, "jobs: job not open"
    assert self.rounds[job_id].index == round, "jobs: wrong round"
    assert index < self.rounds[job_id].size, "jobs: bad index"
    assert self.members[job_id][index] == msg.sender, "jobs: not a member"


@internal
def _open_round(job_id: uint256, round: uint256):
    seed: bytes32 = keccak256(abi_encode(job_id, round, blockhash(block.number - 1)))
    size: uint256 = self.jobs[job_id].committee_size
    committee: DynArray[address, MAX_COMMITTEE] = staticcall Registry(REGISTRY).draw(seed, size)
    for i: uint256 in range(len(committee), bound=MAX_COMMITTEE):
        self.members[job_id][i] = committee[i]
    commit_deadline: uint256 = block.timestamp + self.jobs[job_id].commit_period
    reveal_deadline: uint256 = commit_deadline + self.jobs[job_id].reveal_period
    self.rounds[job_id] = Round(
        index=round,
        seed=seed,
        size=len(committee),
        commit_deadline=commit_deadline,
        reveal_deadline=reveal_deadline,
        masks=SENTINEL,
    )
    log RoundOpened(
        job_id=job_id,
        round=round,
        seed=seed,
        committee=committee,
        commit_deadline=commit_deadline,
        reveal_deadline=reveal_deadline,
    )


@view
@internal
def _claimable_root(job_id: uint256) -> bytes32:
    state: JobState = self.jobs[job_id].state
    assert state == JobState.OPEN or state == JobState.DONE, "jobs: claims closed"
    root: bytes32 = self.jobs[job_id].root
    assert root != empty(bytes32), "jobs: nothing settled"
    return root


@internal
def _settle_claim(
    job_id: uint256,
    root: bytes32,
    account: address,
    cumulative: uint256,
    proof: DynArray[bytes32, MAX_PROOF],
) -> uint256:
    node: bytes32 = keccak256(abi_encode(job_id, account, cumulative))
    for sibling: bytes32 in proof:
        if convert(node, uint256) < convert(sibling, uint256):
            node = keccak256(concat(node, sibling))
        else:
            node = keccak256(concat(sibling, node))
    assert node == root, "jobs: invalid proof"
    already: uint256 = self.claimed[job_id][account]
    assert cumulative > already, "jobs: nothing to claim"
    self.claimed[job_id][account] = cumulative
    log Claimed(job_id=job_id, account=account, cumulative=cumulative, amount=cumulative - already)
    return cumulative - already


@internal
def _pay(to: address, amount: uint256):
    # push with a small stipend; a receiver that reverts or burns gas gets a pull balance
    ok: bool = raw_call(to, b"", value=amount, gas=PAY_GAS, revert_on_failure=False)
    if not ok:
        self.owed[to] += amount
        self.total_owed += amount
        log Credited(account=to, amount=amount)


@internal
def _refund(job_id: uint256, amount: uint256):
    requester: address = self.jobs[job_id].requester
    self.jobs[job_id].refunded += amount
    self.owed[requester] += amount
    self.total_owed += amount
    log Credited(account=requester, amount=amount)
