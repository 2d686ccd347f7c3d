# pragma version ~=0.4.3
"""
@title Seed grinder by finalize timing (test only)
@notice Finalizes a round and reverts unless the next round's committee gives `want` a
        seat majority, so it can retry in a later block. Against a seed from the opening
        block's hash the next committee cannot be drawn inside the finalizing transaction.
"""

interface Jobs:
    def finalize_round(job_id: uint256, round: uint256): nonpayable
    def draw_round(job_id: uint256): nonpayable
    def committee(job_id: uint256) -> DynArray[address, 16]: view
    def committee_seats(job_id: uint256) -> DynArray[uint256, 16]: view


@external
def grind(jobs: address, job_id: uint256, round: uint256, want: address, size: uint256):
    """
    @notice Finalize `round` only if round + 1 favours `want`.
    """
    extcall Jobs(jobs).finalize_round(job_id, round)
    ok: bool = raw_call(
        jobs, abi_encode(job_id, method_id=method_id("draw_round(uint256)")), revert_on_failure=False
    )
    assert ok, "grinder: cannot see the next committee"
    members: DynArray[address, 16] = staticcall Jobs(jobs).committee(job_id)
    seats: DynArray[uint256, 16] = staticcall Jobs(jobs).committee_seats(job_id)
    mine: uint256 = 0
    for j: uint256 in range(len(members), bound=16):
        if members[j] == want:
            mine += seats[j]
    assert mine * 2 > size, "grinder: unfavourable"
