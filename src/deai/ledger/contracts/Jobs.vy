# pragma version ~=0.4.3
"""
@title deai Jobs
@notice Training jobs with an escrowed budget, a stake-weighted validator committee per
        round, commit-reveal of the round result and Merkle-sum payouts.
        Result of a round = (new model hash, payouts Merkle-sum root, round payout total).
        A round opens at block B (job creation or the previous round's finalize); its seed
        is keccak(job, round, blockhash(B)), which nobody who opens the round can know
        when sending; anyone draws it with `draw_round` from block B + 1 on. Seats are
        drawn with replacement, proportional to stake; a result wins with a strict
        majority of all drawn seats. A member accepts its duty by committing, which locks
        SLASH_AMOUNT per seat of its stake until the round is final; only accepted duties
        are punished: a member that committed and never revealed, or revealed against a
        super-majority result (below), is slashed; a drawn member that never committed
        loses nothing but its share of the fee. A split round (two revealed results
        differ) is never decided by its own committee: finalize escalates it once, to a
        freshly drawn committee of ESCALATED_SEATS seats in the same round (new windows,
        a new seed); the first committee's revealed members stay locked, and an
        escalated seat risks the first committee's total penalty spread over its seats. The escalated
        round is decided over the seats of both committees: a result wins with a strict
        majority of all their drawn seats, and a revealed dissenter (of either
        committee) is slashed only when the winner holds at least DISSENT_NUM /
        DISSENT_DEN (3/4) of them; an escalated round nobody drew slashes no dissenter.
        So an honest member is slashed only where an attacker holds 3/4 of the seats of
        two independent draws together (the binomial risk left is stated in
        docs/ledger.md). Every window is at least MIN_PERIOD; a round
        past its reveal deadline plus FINALIZE_GRACE may be finalized by anyone for a tip.
        Claims open when the job is done: each leaf is claimed once (a bitmap by leaf
        index) and the Merkle-sum proof must add up to the job's settled total, so claims
        can never exceed it. Money moves by pull (`withdraw`) except claims, which push
        with a small gas stipend and fall back to a pull balance.
        There is no owner and no admin function.
"""

interface Registry:
    def draw(seed: bytes32, size: uint256) -> DynArray[address, 16]: view
    def total_weight() -> uint256: view
    def last_change_block() -> uint256: view
    def MIN_STAKE() -> uint256: view
    def lock(node: address, amount: uint256): nonpayable
    def lock_up_to(node: address, amount: uint256) -> uint256: nonpayable
    def release(node: address, amount: uint256, penalty: uint256) -> uint256: nonpayable

MAX_COMMITTEE: constant(uint256) = 16
MAX_ROUNDS: constant(uint256) = 100000
MAX_PROOF: constant(uint256) = 49  # leaf index + (sibling hash, sibling sum) * 24 levels
MAX_BATCH: constant(uint256) = 64
# jobs per claim_jobs: arguments live in memory sized by their bounds, and memory costs
# quadratically, so a smaller bound keeps every claim_jobs call cheap
MAX_CLAIM_JOBS: constant(uint256) = 16
LOW128: constant(uint256) = (1 << 128) - 1
PAY_GAS: constant(uint256) = 10000
SENTINEL: constant(uint256) = 1 << 255
LEAF_TAG: constant(bytes32) = keccak256("deai.jobs.leaf")
MIN_PERIOD: public(constant(uint256)) = 300  # = Registry.MIN_PERIOD
FINALIZE_GRACE: public(constant(uint256)) = 300  # = Registry.FINALIZE_GRACE
TIP_DIVISOR: public(constant(uint256)) = 100  # late-finalize tip: round budget / 100
# a revealed dissenter is slashed only if the winner holds >= 3/4 of the drawn seats
DISSENT_NUM: public(constant(uint256)) = 3
DISSENT_DEN: public(constant(uint256)) = 4
# seats drawn for a split round's escalation (the most a draw returns)
ESCALATED_SEATS: public(constant(uint256)) = MAX_COMMITTEE

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
    tipped: uint256

struct Round:
    index: uint256
    seed: bytes32
    size: uint256  # distinct members
    commit_deadline: uint256
    reveal_deadline: uint256
    masks: uint256
    seats: uint256  # seats drawn (members may hold several)
    seed_block: uint256
    drawn: bool
    level: uint256  # 0; 1 once the round escalated

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
    seed_block: uint256
    commit_deadline: uint256
    reveal_deadline: uint256

event SeedRearmed:
    job_id: indexed(uint256)
    round: uint256
    seed_block: uint256

event RoundEscalated:
    job_id: indexed(uint256)
    round: uint256
    seed_block: uint256
    commit_deadline: uint256
    reveal_deadline: uint256

event RoundDrawn:
    job_id: indexed(uint256)
    round: uint256
    seed: bytes32
    committee: DynArray[address, MAX_COMMITTEE]
    seats: DynArray[uint256, MAX_COMMITTEE]

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

event FinalizeTipped:
    job_id: indexed(uint256)
    round: uint256
    caller: indexed(address)
    amount: uint256

event JobDone:
    job_id: indexed(uint256)

event Claimed:
    job_id: indexed(uint256)
    account: indexed(address)
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
job_data: HashMap[uint256, Job]  # claimed_total: see claim_book
rounds: public(HashMap[uint256, Round])
members: HashMap[uint256, HashMap[uint256, address]]
seats: HashMap[uint256, HashMap[uint256, uint256]]
commitments: HashMap[uint256, HashMap[uint256, bytes32]]
reveals: HashMap[uint256, HashMap[uint256, bytes32]]
results: public(HashMap[bytes32, Result])
# an escalated round's first committee, revealed members only (locked until final)
appeal_members: HashMap[uint256, HashMap[uint256, address]]
appeal_seats: HashMap[uint256, HashMap[uint256, uint256]]
appeal_reveals: HashMap[uint256, HashMap[uint256, bytes32]]
appeal_book: HashMap[uint256, uint256]  # size | drawn seats << 8 | revealed mask << 16
# what an escalated committee's members locked (their free stake, up to their penalty)
level_locks: HashMap[uint256, HashMap[uint256, uint256]]
claimed_bits: HashMap[uint256, HashMap[uint256, uint256]]
# while a job's claims are open (DONE, with a settled total above zero): payable_total
# << 128 | claimed_total, one storage word a claim reads and writes; 0 before and after
claim_book: HashMap[uint256, uint256]
owed: public(HashMap[address, uint256])
total_owed: public(uint256)


@deploy
def __init__(registry: address, slash_amount: uint256, max_round_time: uint256):
    """
    @notice Created by the Registry constructor; all three values are fixed forever.
    @param registry The Registry that stakes, locks and slashes.
    @param slash_amount Wei locked and, on a fault, slashed per seat of a member.
    @param max_round_time Upper bound on commit + reveal periods: the withdrawal delay
           minus FINALIZE_GRACE minus one, so the delay outlasts the longest duty.
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
    @notice Create a training job escrowing `msg.value`; round 0 opens at once and can be
            drawn from the next block on.
    @dev Each round may pay at most deposit // rounds; the division remainder is credited
         back to the requester now.
    @param spec_hash Hash of the off-chain job specification.
    @param rounds Number of rounds.
    @param committee_size Seats drawn per round (at most MAX_COMMITTEE).
    @param commit_period Seconds from a round's opening to its commit deadline.
    @param reveal_period Seconds from the commit deadline to the reveal deadline.
    @param claim_period Seconds after the job ends during which payouts can be claimed.
    @return The job id.
    """
    assert rounds > 0 and rounds <= MAX_ROUNDS, "jobs: bad rounds"
    assert committee_size > 0 and committee_size <= MAX_COMMITTEE, "jobs: bad committee size"
    assert commit_period >= MIN_PERIOD and reveal_period >= MIN_PERIOD, "jobs: period too short"
    assert commit_period + reveal_period <= MAX_ROUND_TIME, "jobs: round too long"
    assert claim_period >= MIN_PERIOD, "jobs: claim period too short"
    assert msg.value < 1 << 128, "jobs: deposit too large"
    budget: uint256 = msg.value // rounds
    assert budget > 0, "jobs: budget too small"
    job_id: uint256 = self.next_job_id
    self.next_job_id = job_id + 1
    self.job_data[job_id] = Job(
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
        tipped=0,
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
def draw_round(job_id: uint256):
    """
    @notice Draw the current round's committee from the seed block's hash. Anyone may
            call, from the block after the round opened until its commit deadline. If
            any validator weight changed after the seed block (a stake, role or unstake
            change, or a slash, which anyone may trigger by finalizing: whoever did it
            could have read the seed first) or the seed block is older than 256 blocks,
            the seed is re-armed at this block instead and the draw is retried from the
            next block.
    @param job_id The job.
    """
    assert self.job_data[job_id].state == JobState.OPEN, "jobs: job not open"
    rnd: Round = self.rounds[job_id]
    assert not rnd.drawn, "jobs: already drawn"
    assert block.timestamp < rnd.commit_deadline, "jobs: commit closed"
    assert block.number > rnd.seed_block, "jobs: seed not ready"
    changed: uint256 = staticcall Registry(REGISTRY).last_change_block()
    if changed > rnd.seed_block or block.number - rnd.seed_block > 256:
        self.rounds[job_id].seed_block = block.number
        log SeedRearmed(job_id=job_id, round=rnd.index, seed_block=block.number)
        return
    seed: bytes32 = keccak256(abi_encode(job_id, rnd.index, blockhash(rnd.seed_block)))
    size: uint256 = self._seat_count(job_id, rnd.level)
    drawn: DynArray[address, MAX_COMMITTEE] = staticcall Registry(REGISTRY).draw(seed, size)
    committee: DynArray[address, MAX_COMMITTEE] = []
    counts: DynArray[uint256, MAX_COMMITTEE] = []
    for who: address in drawn:
        found: bool = False
        for j: uint256 in range(len(committee), bound=MAX_COMMITTEE):
            if committee[j] == who:
                counts[j] += 1
                found = True
                break
        if not found:
            committee.append(who)
            counts.append(1)
    for i: uint256 in range(len(committee), bound=MAX_COMMITTEE):
        self.members[job_id][i] = committee[i]
        self.seats[job_id][i] = counts[i]
    self.rounds[job_id].seed = seed
    self.rounds[job_id].size = len(committee)
    self.rounds[job_id].seats = len(drawn)
    self.rounds[job_id].drawn = True
    log RoundDrawn(job_id=job_id, round=rnd.index, seed=seed, committee=committee, seats=counts)


@external
def commit(job_id: uint256, round: uint256, index: uint256, commitment: bytes32):
    """
    @notice Accept the duty and commit to a round result as committee member `index`;
            locks SLASH_AMOUNT per seat of the caller's stake until the round is final
            (in an escalated round: the first committee's SLASH_AMOUNT * seats spread
            over the new seats, rounded up, and at most the caller's free stake).
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
    if self.rounds[job_id].level == 0:
        extcall Registry(REGISTRY).lock(msg.sender, SLASH_AMOUNT * self.seats[job_id][index])
    else:
        rnd: Round = self.rounds[job_id]
        # an escalated seat risks the first committee's stake spread over more seats;
        # a member whose stake is locked by other duties locks what is free (its
        # penalty is taken from its stake all the same)
        want: uint256 = self._per_seat(job_id, rnd) * self.seats[job_id][index]
        got: uint256 = extcall Registry(REGISTRY).lock_up_to(msg.sender, want)
        self.level_locks[job_id][index] = got
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
    @param root Merkle-sum root of cumulative payouts after this round.
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
    assert total <= self.job_data[job_id].round_budget, "jobs: total above round budget"
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
            deadline passed (an undrawn round: once its commit deadline passed). Anyone
            may call; after the reveal deadline plus FINALIZE_GRACE the caller earns a
            tip of up to round budget / TIP_DIVISOR out of the round's unpaid budget.
            Releases every lock, slashes accepted duties that failed, opens the next
            round or ends the job.
    @param job_id The job.
    @param round The job's current round.
    """
    assert self.job_data[job_id].state == JobState.OPEN, "jobs: job not open"
    rnd: Round = self.rounds[job_id]
    assert rnd.index == round, "jobs: wrong round"
    budget: uint256 = self.job_data[job_id].round_budget
    if not rnd.drawn and rnd.level == 0:
        assert block.timestamp >= rnd.commit_deadline, "jobs: round not over"
        self._close(job_id, round, budget, rnd.reveal_deadline)
        log RoundAborted(job_id=job_id, round=round, refund=budget)
        self._advance(job_id, round)
        return
    if rnd.drawn:
        all_in: uint256 = (1 << rnd.size) - 1
        assert (
            block.timestamp >= rnd.reveal_deadline or (rnd.masks >> 16) & all_in == all_in
        ), "jobs: round not over"
    else:
        assert block.timestamp >= rnd.commit_deadline, "jobs: round not over"
    if rnd.level == 0 and self._split(job_id, rnd):
        self._escalate(job_id, round, rnd)
        return
    winner: bytes32 = empty(bytes32)
    votes: uint256 = 0
    seats: uint256 = rnd.seats
    winner, votes, seats = self._tally(job_id, rnd)
    if winner != empty(bytes32):
        res: Result = self.results[winner]
        self.job_data[job_id].model_hash = res.model_hash
        self.job_data[job_id].root = res.root
        self.job_data[job_id].payable_total += res.total
        self._close(job_id, round, budget - res.total, rnd.reveal_deadline)
        log RoundSettled(
            job_id=job_id,
            round=round,
            model_hash=res.model_hash,
            root=res.root,
            total=res.total,
            votes=votes,
        )
    else:
        self._close(job_id, round, budget, rnd.reveal_deadline)
        log RoundAborted(job_id=job_id, round=round, refund=budget)
    # an escalated round nobody drew punishes no dissent (nobody checked the split)
    punish: bool = votes * DISSENT_DEN >= seats * DISSENT_NUM and rnd.drawn
    self._release_members(job_id, round, rnd, winner, punish)
    if rnd.level > 0:
        self._release_appeal(job_id, round, winner, punish)
    self._advance(job_id, round)


@external
@nonreentrant
def claim(job_id: uint256, account: address, cumulative: uint256, proof: DynArray[bytes32, MAX_PROOF]):
    """
    @notice Pay `account` its payout in the done job `job_id`, once per leaf. Anyone may
            submit the claim; the money always goes to `account`.
    @param job_id The job.
    @param account The payee named in the leaf.
    @param cumulative Wei owed to `account` per the job's final root.
    @param proof Leaf index, then (sibling hash, sibling sum) per level of the Merkle-sum
           tree (see deai.ledger.merkle).
    """
    book: uint256 = self._open_book(job_id)
    root: bytes32 = self.job_data[job_id].root
    self.claim_book[job_id] = self._settle_claim(job_id, root, book, account, cumulative, proof)
    self._pay(account, cumulative)


@external
@nonreentrant
def claim_many(
    job_id: uint256,
    accounts: DynArray[address, MAX_BATCH],
    cumulatives: DynArray[uint256, MAX_BATCH],
    proofs: DynArray[DynArray[bytes32, MAX_PROOF], MAX_BATCH],
):
    """
    @notice Batch form of `claim`: one transaction pays many leaves of one job.
    @param job_id The job.
    @param accounts Payees.
    @param cumulatives Their amounts.
    @param proofs Their proofs (leaf index first).
    """
    n: uint256 = len(accounts)
    assert len(cumulatives) == n and len(proofs) == n, "jobs: length mismatch"
    book: uint256 = self._open_book(job_id)
    root: bytes32 = self.job_data[job_id].root
    for i: uint256 in range(n, bound=MAX_BATCH):
        book = self._settle_claim(job_id, root, book, accounts[i], cumulatives[i], proofs[i])
    self.claim_book[job_id] = book
    for i: uint256 in range(n, bound=MAX_BATCH):
        self._pay(accounts[i], cumulatives[i])


@external
@nonreentrant
def claim_jobs(
    account: address,
    job_ids: DynArray[uint256, MAX_CLAIM_JOBS],
    cumulatives: DynArray[uint256, MAX_CLAIM_JOBS],
    proofs: DynArray[DynArray[bytes32, MAX_PROOF], MAX_CLAIM_JOBS],
):
    """
    @notice One payee's leaves in many done jobs, paid as one transfer: the per-payment
            cost (value transfer, account creation) is paid once, not once per job.
            Anyone may submit it; the money always goes to `account`.
    @param account The payee named in every leaf.
    @param job_ids The jobs, at most MAX_CLAIM_JOBS (each at most once per leaf: a repeat
           fails "nothing to claim").
    @param cumulatives The payee's amount in each job.
    @param proofs The Merkle-sum proofs (leaf index first), one per job.
    """
    n: uint256 = len(job_ids)
    assert len(cumulatives) == n and len(proofs) == n, "jobs: length mismatch"
    total: uint256 = 0
    for i: uint256 in range(n, bound=MAX_CLAIM_JOBS):
        job_id: uint256 = job_ids[i]
        book: uint256 = self._open_book(job_id)  # read after any earlier write of this job
        root: bytes32 = self.job_data[job_id].root
        self.claim_book[job_id] = self._settle_claim(
            job_id, root, book, account, cumulatives[i], proofs[i]
        )
        total += cumulatives[i]
    self._pay(account, total)


@external
@nonreentrant
def sweep(job_id: uint256):
    """
    @notice After the job ended and its claim period passed, return unclaimed payouts to
            the requester and close claims. Anyone may call.
    @param job_id The job.
    """
    assert self.job_data[job_id].state == JobState.DONE, "jobs: job not done"
    assert (
        block.timestamp >= self.job_data[job_id].done_at + self.job_data[job_id].claim_period
    ), "jobs: claim period not over"
    self.job_data[job_id].state = JobState.SWEPT
    book: uint256 = self.claim_book[job_id]
    self.claim_book[job_id] = 0  # claims closed
    self.job_data[job_id].claimed_total = book & LOW128
    unclaimed: uint256 = self.job_data[job_id].payable_total - (book & LOW128)
    if unclaimed > 0:
        self._refund(job_id, unclaimed)
    log Swept(job_id=job_id, amount=unclaimed)


@external
@nonreentrant
def withdraw():
    """
    @notice Withdraw the caller's pull balance (refunds, tips and deferred payments).
    """
    amount: uint256 = self.owed[msg.sender]
    assert amount > 0, "jobs: nothing owed"
    self.owed[msg.sender] = 0
    self.total_owed -= amount
    raw_call(msg.sender, b"", value=amount)
    log Withdrawn(account=msg.sender, amount=amount)


@view
@external
def jobs(job_id: uint256) -> Job:
    """
    @notice The job's record; `claimed_total` is live while claims are open.
    @param job_id The job.
    @return The job.
    """
    job: Job = self.job_data[job_id]
    job.claimed_total = self._claimed(job_id)
    return job


@view
@external
def committee(job_id: uint256) -> DynArray[address, MAX_COMMITTEE]:
    """
    @notice The current round's distinct committee members in index order (empty until
            the round is drawn).
    @param job_id The job.
    @return Members.
    """
    out: DynArray[address, MAX_COMMITTEE] = []
    for i: uint256 in range(self.rounds[job_id].size, bound=MAX_COMMITTEE):
        out.append(self.members[job_id][i])
    return out


@view
@external
def committee_seats(job_id: uint256) -> DynArray[uint256, MAX_COMMITTEE]:
    """
    @notice Seats held by each member of the current round, in index order.
    @param job_id The job.
    @return Seat counts.
    """
    out: DynArray[uint256, MAX_COMMITTEE] = []
    for i: uint256 in range(self.rounds[job_id].size, bound=MAX_COMMITTEE):
        out.append(self.seats[job_id][i])
    return out


@view
@external
def is_claimed(job_id: uint256, index: uint256) -> bool:
    """
    @notice Whether leaf `index` of the job's final root was claimed.
    @param job_id The job.
    @param index Leaf index.
    @return True once claimed.
    """
    return (self.claimed_bits[job_id][index >> 8] >> (index & 255)) & 1 == 1


@view
@external
def escrow(job_id: uint256) -> uint256:
    """
    @notice Wei this contract still holds for `job_id` (unsettled budgets plus settled,
            unclaimed payouts). deposit == claimed + refunded + tipped + escrow, always.
    @param job_id The job.
    @return Wei held.
    """
    return (
        self.job_data[job_id].deposit
        - self._claimed(job_id)
        - self.job_data[job_id].refunded
        - self.job_data[job_id].tipped
    )


@view
@internal
def _claimed(job_id: uint256) -> uint256:
    # wei claimed so far: in the claim book while claims are open, else in the job record
    book: uint256 = self.claim_book[job_id]
    if book != 0:
        return book & LOW128
    return self.job_data[job_id].claimed_total


@view
@internal
def _seat_count(job_id: uint256, level: uint256) -> uint256:
    # never more seats than eligible stake backs with MIN_STAKE each
    per: uint256 = staticcall Registry(REGISTRY).MIN_STAKE()
    cap: uint256 = (staticcall Registry(REGISTRY).total_weight()) // per
    if level > 0:
        return min(ESCALATED_SEATS, cap)
    return min(self.job_data[job_id].committee_size, cap)


@view
@internal
def _per_seat(job_id: uint256, rnd: Round) -> uint256:
    # an escalated seat's penalty: the first committee's total, spread over the new seats
    first_seats: uint256 = (self.appeal_book[job_id] >> 8) & 255
    return (SLASH_AMOUNT * first_seats + rnd.seats - 1) // max(rnd.seats, 1)


@view
@internal
def _tally(job_id: uint256, rnd: Round) -> (bytes32, uint256, uint256):
    # the result holding a strict majority of all drawn seats (of both committees once
    # escalated), its seats, and the drawn seats counted
    book: uint256 = 0
    if rnd.level > 0:
        book = self.appeal_book[job_id]
    first: uint256 = book & 255
    seats: uint256 = rnd.seats + ((book >> 8) & 255)
    shown: uint256 = book >> 16  # the first committee's revealed members
    for k: uint256 in range(2 * MAX_COMMITTEE):
        h: bytes32 = empty(bytes32)
        if k < MAX_COMMITTEE:
            if k >= rnd.size or rnd.masks & (1 << (k + 16)) == 0:
                continue
            h = self.reveals[job_id][k]
        else:
            if k - MAX_COMMITTEE >= first or shown & (1 << (k - MAX_COMMITTEE)) == 0:
                continue
            h = self.appeal_reveals[job_id][k - MAX_COMMITTEE]
        count: uint256 = self._votes(job_id, rnd, h, first, shown)
        if count * 2 > seats:
            return h, count, seats
    return empty(bytes32), 0, seats


@view
@internal
def _votes(job_id: uint256, rnd: Round, h: bytes32, first: uint256, shown: uint256) -> uint256:
    # seats revealed for result h, over the current committee and the first one's record
    count: uint256 = 0
    for j: uint256 in range(rnd.size, bound=MAX_COMMITTEE):
        if rnd.masks & (1 << (j + 16)) != 0 and self.reveals[job_id][j] == h:
            count += self.seats[job_id][j]
    for j: uint256 in range(first, bound=MAX_COMMITTEE):
        if shown & (1 << j) != 0 and self.appeal_reveals[job_id][j] == h:
            count += self.appeal_seats[job_id][j]
    return count


@view
@internal
def _split(job_id: uint256, rnd: Round) -> bool:
    # two revealed results differ
    seen: bytes32 = empty(bytes32)
    for i: uint256 in range(rnd.size, bound=MAX_COMMITTEE):
        if rnd.masks & (1 << (i + 16)) == 0:
            continue
        h: bytes32 = self.reveals[job_id][i]
        if seen == empty(bytes32):
            seen = h
        elif h != seen:
            return True
    return False


@internal
def _escalate(job_id: uint256, round: uint256, rnd: Round):
    # keep the revealed members of the split committee (locked) and slash its silent
    # ones now; redraw the round with ESCALATED_SEATS seats and fresh windows
    shown: uint256 = 0
    for i: uint256 in range(rnd.size, bound=MAX_COMMITTEE):
        if rnd.masks & (1 << i) == 0:
            continue  # never accepted: nothing locked
        member: address = self.members[job_id][i]
        if rnd.masks & (1 << (i + 16)) != 0:
            self.appeal_members[job_id][i] = member
            self.appeal_seats[job_id][i] = self.seats[job_id][i]
            self.appeal_reveals[job_id][i] = self.reveals[job_id][i]
            shown |= 1 << i
            continue
        amount: uint256 = SLASH_AMOUNT * self.seats[job_id][i]
        taken: uint256 = extcall Registry(REGISTRY).release(member, amount, amount)
        self.job_data[job_id].slashed += taken
        log MemberSlashed(job_id=job_id, round=round, member=member, amount=taken, revealed=False)
    self.appeal_book[job_id] = rnd.size | (rnd.seats << 8) | (shown << 16)
    self._open_round(job_id, round)
    self.rounds[job_id].level = 1
    new: Round = self.rounds[job_id]
    log RoundEscalated(
        job_id=job_id,
        round=round,
        seed_block=new.seed_block,
        commit_deadline=new.commit_deadline,
        reveal_deadline=new.reveal_deadline,
    )


@internal
def _release_appeal(job_id: uint256, round: uint256, winner: bytes32, punish_dissent: bool):
    # the first committee of an escalated round: revealed against the winner is faulty
    # only when the winner holds a super-majority of both committees' seats
    book: uint256 = self.appeal_book[job_id]
    shown: uint256 = book >> 16
    for i: uint256 in range(book & 255, bound=MAX_COMMITTEE):
        if shown & (1 << i) == 0:
            continue
        member: address = self.appeal_members[job_id][i]
        amount: uint256 = SLASH_AMOUNT * self.appeal_seats[job_id][i]
        faulty: bool = (
            punish_dissent and winner != empty(bytes32) and self.appeal_reveals[job_id][i] != winner
        )
        penalty: uint256 = 0
        if faulty:
            penalty = amount
        taken: uint256 = extcall Registry(REGISTRY).release(member, amount, penalty)
        if faulty:
            self.job_data[job_id].slashed += taken
            log MemberSlashed(
                job_id=job_id, round=round, member=member, amount=taken, revealed=True
            )
    self.appeal_book[job_id] = 0


@internal
def _release_members(
    job_id: uint256, round: uint256, rnd: Round, winner: bytes32, punish_dissent: bool
):
    # committed and silent: always faulty; revealed against the winner: faulty only when
    # the winner holds a super-majority of the seats (punish_dissent)
    per: uint256 = SLASH_AMOUNT
    if rnd.level > 0:
        per = self._per_seat(job_id, rnd)
    for i: uint256 in range(rnd.size, bound=MAX_COMMITTEE):
        if rnd.masks & (1 << i) == 0:
            continue  # never accepted: nothing locked, nothing to slash
        member: address = self.members[job_id][i]
        amount: uint256 = per * self.seats[job_id][i]
        held: uint256 = amount
        if rnd.level > 0:
            held = self.level_locks[job_id][i]
        revealed: bool = rnd.masks & (1 << (i + 16)) != 0
        faulty: bool = not revealed or (
            punish_dissent and winner != empty(bytes32) and self.reveals[job_id][i] != winner
        )
        penalty: uint256 = 0
        if faulty:
            penalty = amount
        taken: uint256 = extcall Registry(REGISTRY).release(member, held, penalty)
        if faulty:
            self.job_data[job_id].slashed += taken
            log MemberSlashed(
                job_id=job_id, round=round, member=member, amount=taken, revealed=revealed
            )


@internal
def _close(job_id: uint256, round: uint256, unpaid: uint256, reveal_deadline: uint256):
    # refund the round's unpaid budget, less a tip to a late finalizer
    tip: uint256 = 0
    if block.timestamp >= reveal_deadline + FINALIZE_GRACE:
        tip = min(unpaid, self.job_data[job_id].round_budget // TIP_DIVISOR)
    if tip > 0:
        self.job_data[job_id].tipped += tip
        self.owed[msg.sender] += tip
        self.total_owed += tip
        log FinalizeTipped(job_id=job_id, round=round, caller=msg.sender, amount=tip)
    if unpaid > tip:
        self._refund(job_id, unpaid - tip)


@internal
def _advance(job_id: uint256, round: uint256):
    if round + 1 < self.job_data[job_id].rounds:
        self._open_round(job_id, round + 1)
    else:
        self.job_data[job_id].state = JobState.DONE
        self.job_data[job_id].done_at = block.timestamp
        # open the claim book (paid once here, so no claim writes a fresh storage word for it)
        self.claim_book[job_id] = self.job_data[job_id].payable_total << 128
        log JobDone(job_id=job_id)


@internal
def _check_member(job_id: uint256, round: uint256, index: uint256):
    assert self.job_data[job_id].state == JobState.OPEN, "jobs: job not open"
    assert self.rounds[job_id].index == round, "jobs: wrong round"
    assert index < self.rounds[job_id].size, "jobs: bad index"
    assert self.members[job_id][index] == msg.sender, "jobs: not a member"


@internal
def _open_round(job_id: uint256, round: uint256):
    commit_deadline: uint256 = block.timestamp + self.job_data[job_id].commit_period
    reveal_deadline: uint256 = commit_deadline + self.job_data[job_id].reveal_period
    self.rounds[job_id] = Round(
        index=round,
        seed=empty(bytes32),
        size=0,
        commit_deadline=commit_deadline,
        reveal_deadline=reveal_deadline,
        masks=SENTINEL,
        seats=0,
        seed_block=block.number,
        drawn=False,
        level=0,
    )
    log RoundOpened(
        job_id=job_id,
        round=round,
        seed_block=block.number,
        commit_deadline=commit_deadline,
        reveal_deadline=reveal_deadline,
    )


@view
@internal
def _open_book(job_id: uint256) -> uint256:
    # the claim book of a job whose claims are open: non-zero exactly while the job is
    # DONE with a settled total above zero (a job with nothing settled pays nobody)
    book: uint256 = self.claim_book[job_id]
    if book == 0:
        assert self.job_data[job_id].state == JobState.DONE, "jobs: claims closed"
        raise "jobs: nothing settled"
    return book


@internal
def _settle_claim(
    job_id: uint256,
    root: bytes32,
    book: uint256,
    account: address,
    amount: uint256,
    proof: DynArray[bytes32, MAX_PROOF],
) -> uint256:
    # check one leaf against the root and the settled total (book >> 128), mark it
    # claimed; returns the book with the amount added to the claimed total
    words: uint256 = len(proof)
    assert words % 2 == 1, "jobs: invalid proof"
    index: uint256 = convert(proof[0], uint256)
    node: bytes32 = keccak256(abi_encode(LEAF_TAG, job_id, index, account, amount))
    total: uint256 = amount
    for k: uint256 in range(words // 2, bound=MAX_PROOF // 2):
        j: uint256 = unsafe_add(unsafe_add(k, k), 1)  # < words: no overflow
        sibling: bytes32 = proof[j]
        sibling_sum: uint256 = convert(proof[unsafe_add(j, 1)], uint256)
        if convert(node, uint256) < convert(sibling, uint256):
            node = keccak256(abi_encode(node, total, sibling, sibling_sum))
        else:
            node = keccak256(abi_encode(sibling, sibling_sum, node, total))
        total += sibling_sum
    assert node == root, "jobs: invalid proof"
    assert total == book >> 128, "jobs: root does not sum to the payouts"
    word: uint256 = self.claimed_bits[job_id][index >> 8]
    bit: uint256 = 1 << (index & 255)
    assert word & bit == 0, "jobs: nothing to claim"
    assert amount > 0, "jobs: nothing to claim"
    self.claimed_bits[job_id][index >> 8] = word | bit
    log Claimed(job_id=job_id, account=account, amount=amount)
    # never reached by valid proofs (their leaves sum to at most the total): fail closed
    assert (book & LOW128) + amount <= book >> 128, "jobs: claims exceed payouts"
    return book + amount


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
    requester: address = self.job_data[job_id].requester
    self.job_data[job_id].refunded += amount
    self.owed[requester] += amount
    self.total_owed += amount
    log Credited(account=requester, amount=amount)
