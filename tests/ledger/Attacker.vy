# pragma version ~=0.4.3
"""
@title Reentrancy attacker (test only)
@notice Forwards calls to a target; when armed, its receive hook re-enters the target
        once with a stored payload and records whether the re-entry succeeded.
"""

target: public(address)
payload: Bytes[1024]
armed: public(bool)
attempts: public(uint256)
reentered: public(bool)


@external
@payable
def forward(target: address, data: Bytes[1024]):
    """
    @notice Call `target` with `data` and `msg.value`, reverting if it reverts.
    """
    raw_call(target, data, value=msg.value)


@external
def arm(target: address, data: Bytes[1024]):
    """
    @notice Re-enter `target` with `data` on the next receipt of ether.
    """
    self.target = target
    self.payload = data
    self.armed = True


@external
@payable
def __default__():
    if self.armed:
        self.armed = False
        self.attempts += 1
        self.reentered = raw_call(self.target, self.payload, revert_on_failure=False)
