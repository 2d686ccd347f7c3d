import contextlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from deai.errors import InvalidMessage
from deai.node.messages import OpenJob, TrainTask, Update, decode, encode


def test_roundtrip_and_exact_size() -> None:
    msg = Update("job", 3, "identity", 4, "float32", b"\x00" * 16, 12)
    data = encode(msg)
    assert decode(data) == msg
    assert len(data) > 16 and data.endswith(b"\x00" * 16)


@pytest.mark.parametrize(
    "data",
    [b"", b"\x05\x00\x00\x00{}", b"\x02\x00\x00\x00{}", b"\x10\x00\x00\x00" + b"x" * 16],
)
def test_garbage_is_rejected(data: bytes) -> None:
    with pytest.raises(InvalidMessage):
        decode(data)


def test_wrong_types_unknown_kinds_and_trailing_bytes_are_rejected() -> None:
    good = encode(TrainTask("j", 1, b"abc", "h"))
    with pytest.raises(InvalidMessage, match="trailing"):
        decode(good + b"!")
    bad_type = good.replace(b'"round":1', b'"round":"1"')
    bad_type = len(bad_type[4 : bad_type.index(b"}}") + 2]).to_bytes(4, "little") + bad_type[4:]
    with pytest.raises(InvalidMessage):
        decode(bad_type)
    unknown = encode(OpenJob("j", "{}", "h")).replace(b"open_job", b"pickle!!")
    with pytest.raises(InvalidMessage, match="unknown message kind"):
        decode(unknown)


@given(st.binary(max_size=200))
def test_decode_never_crashes_on_random_bytes(data: bytes) -> None:
    with contextlib.suppress(InvalidMessage):
        decode(data)
