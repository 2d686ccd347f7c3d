# pragma version ~=0.4.3
"""
@title Seed grinder by job-id bumping (test only)
@notice Creates minimum jobs one after another and keeps the first whose committee gives
        `want` a majority of seats; reverts if none does. Against a seed from the
        opening block's hash it can never see a committee inside its own transaction.
"""

interface Jobs:
    def create_job(spec_hash: bytes32, rounds: uint256, committee_size: uint256, commit_period: uint256, reveal_period: uint256, claim_period: uint256) -> uint256: payable
    def draw_round(job_id: uint256): nonpayable
    def committee(job_id: uint256) -> DynArray[address, 16]: view
    def committee_seats(job_id: uint256) -> DynArray[uint256, 16]: view

tries_seen: public(uint256)
draws_seen: public(uint256)


@external
@payable
def grind(jobs: address, size: uint256, period: uint256, want: address, tries: uint256) -> uint256:
    """
    @notice Bump job ids until `want` holds a seat majority of round 0.
    @return The favourable job id.
    """
    per: uint256 = msg.value // tries
    for i: uint256 in range(tries, bound=64):
        job_id: uint256 = extcall Jobs(jobs).create_job(
            empty(bytes32), 1, size, period, period, period, value=per
        )
        self.tries_seen += 1
        ok: bool = raw_call(
            jobs, abi_encode(job_id, method_id=method_id("draw_round(uint256)")), revert_on_failure=False
        )
        if not ok:
            continue
        self.draws_seen += 1
        members: DynArray[address, 16] = staticcall Jobs(jobs).committee(job_id)
        seats: DynArray[uint256, 16] = staticcall Jobs(jobs).committee_seats(job_id)
        mine: uint256 = 0
        for j: uint256 in range(len(members), bound=16):
            if members[j] == want:
                mine += seats[j]
        if mine * 2 > size:
            return job_id
    raise "grinder: no favourable draw"
