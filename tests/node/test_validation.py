"""Each kind of bad peer input is rejected, recorded against its sender, and the round
goes on without it."""

import pytest
import torch

from deai.compression.base import IdentityCodec
from deai.errors import InvalidUpdate
from deai.job.spec import UpdatePolicy
from deai.node.messages import Update
from deai.node.validation import RejectReason, decode_update

POLICY = UpdatePolicy(max_norm=10.0, max_examples=100)
CODECS = {"identity": IdentityCodec()}


def _update(vec: torch.Tensor, **kw: object) -> Update:
    enc = IdentityCodec().encode(vec)
    fields = {
        "job_id": "j",
        "round": 1,
        "codec": enc.codec,
        "dim": enc.dim,
        "dtype": "float32",
        "payload": enc.payload,
        "num_examples": 10,
    }
    fields.update(kw)
    return Update(**fields)  # type: ignore[arg-type]


def _check(msg: Update) -> torch.Tensor:
    return decode_update(msg, round_=1, dim=4, policy=POLICY, codecs=CODECS)


def test_good_update_passes() -> None:
    assert torch.equal(_check(_update(torch.ones(4))), torch.ones(4))


@pytest.mark.parametrize(
    ("msg", "reason"),
    [
        (_update(torch.ones(4), round=0), RejectReason.WRONG_ROUND),
        (_update(torch.ones(5)), RejectReason.WRONG_SHAPE),
        (_update(torch.ones(4), dtype="float64"), RejectReason.WRONG_DTYPE),
        (_update(torch.ones(4), codec="zip"), RejectReason.UNKNOWN_CODEC),
        (_update(torch.ones(4), payload=b"\x00" * 15), RejectReason.MALFORMED),
        (_update(torch.tensor([1.0, float("nan"), 0, 0])), RejectReason.NON_FINITE),
        (_update(torch.tensor([1.0, float("inf"), 0, 0])), RejectReason.NON_FINITE),
        (_update(torch.full((4,), 100.0)), RejectReason.NORM_TOO_LARGE),
        (_update(torch.ones(4), num_examples=0), RejectReason.BAD_EXAMPLE_COUNT),
        (_update(torch.ones(4), num_examples=-5), RejectReason.BAD_EXAMPLE_COUNT),
        (_update(torch.ones(4), num_examples=101), RejectReason.BAD_EXAMPLE_COUNT),
    ],
)
def test_bad_updates_are_rejected_with_their_reason(msg: Update, reason: RejectReason) -> None:
    with pytest.raises(InvalidUpdate) as info:
        _check(msg)
    assert info.value.reason == reason
