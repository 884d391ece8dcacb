import uuid
from datetime import UTC, datetime
from decimal import Decimal

import pytest
from eventsourcing.persistence import (
    DatetimeAsISO,
    DecimalAsStr,
    JSONTranscoder,
    TranscodingNotRegisteredError,
    UUIDAsHex,
)

from adapters.transcoder import MsgspecTranscoder


def with_transcodings(transcoder: JSONTranscoder) -> JSONTranscoder:
    for transcoding in (UUIDAsHex(), DecimalAsStr(), DatetimeAsISO()):
        transcoder.register(transcoding)
    return transcoder


STATE = {
    "timestamp": datetime(2026, 11, 23, 18, 0, tzinfo=UTC),
    "owner": uuid.UUID("12345678-1234-5678-1234-567812345678"),
    "amount": Decimal("1.10"),
    "nested": {"ids": [uuid.UUID(int=1), 2, "x"], "flag": True, "none": None},
    "text": "Grüße",
}


def test_roundtrip_restores_types() -> None:
    transcoder = with_transcodings(MsgspecTranscoder())
    assert transcoder.decode(transcoder.encode(STATE)) == STATE


@pytest.mark.parametrize(
    ("writer", "reader"),
    [
        (MsgspecTranscoder, JSONTranscoder),
        (JSONTranscoder, MsgspecTranscoder),
    ],
)
def test_same_stored_format_as_the_library(writer: type, reader: type) -> None:
    data = with_transcodings(writer()).encode(STATE)
    assert with_transcodings(reader()).decode(data) == STATE


def test_unknown_type_is_refused() -> None:
    with pytest.raises(TranscodingNotRegisteredError):
        MsgspecTranscoder().encode({"x": object()})
