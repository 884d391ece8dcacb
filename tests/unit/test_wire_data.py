"""The message bytes written after DATA (adapters.smtp_client.wire_data)."""

import pytest

from adapters.smtp_client import wire_data


@pytest.mark.parametrize(
    ("data", "wire"),
    [
        (b"Subject: x\r\n\r\nbody\r\n", b"Subject: x\r\n\r\nbody\r\n.\r\n"),
        # a line that starts with a dot gets another one (RFC 5321 4.5.2)
        (b"a\r\n.b\r\n..c\r\n", b"a\r\n..b\r\n...c\r\n.\r\n"),
        (b".first\r\n", b"..first\r\n.\r\n"),
        # no final line ending: one is added before the terminating dot
        (b"a\r\nb", b"a\r\nb\r\n.\r\n"),
        # bare LF or CR: normalised to CRLF, then stuffed
        (b"a\n.b\rc\r\n", b"a\r\n..b\r\nc\r\n.\r\n"),
        (b"", b".\r\n"),
    ],
)
def test_wire_data(data: bytes, wire: bytes) -> None:
    assert wire_data(data) == wire


def test_a_dot_alone_on_a_line_cannot_end_the_message_early() -> None:
    wire = wire_data(b"before\r\n.\r\nafter\r\n")
    assert wire.index(b"\r\n.\r\n") == len(wire) - 5
