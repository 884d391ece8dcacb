"""The MTA's SMTP client (adapters.smtp_client) against scripted servers on real sockets:
pipelined and one-by-one transactions, refusals at every step, odd servers."""

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from adapters.smtp_client import ConnectFailed, MxConnection

Answer = Callable[[bytes], bytes]


class ScriptedServer:
    """An SMTP server on 127.0.0.1 that answers each command line with `answer(line)` and
    keeps what it read: `.chunks` (each read from the socket) and `.messages` (each message
    taken after a 354, as sent, dot-stuffing and all)."""

    def __init__(self, answer: Answer, greeting: bytes = b"220 scripted ESMTP\r\n") -> None:
        self.answer = answer
        self.greeting = greeting
        self.chunks: list[bytes] = []
        self.messages: list[bytes] = []
        self.connections = 0
        self.writers: list[asyncio.StreamWriter] = []
        self.port = 0

    async def __aenter__(self) -> "ScriptedServer":
        self._server = await asyncio.start_server(self._session, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        self._server.close()
        await self._server.wait_closed()

    async def _session(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        self.writers.append(writer)
        writer.write(self.greeting)
        buffer, in_data = b"", False
        try:
            while chunk := await reader.read(65536):
                self.chunks.append(chunk)
                buffer += chunk
                while True:
                    if in_data:
                        if buffer.startswith(b".\r\n"):
                            message, buffer = b"", buffer[3:]
                        elif (end := buffer.find(b"\r\n.\r\n")) >= 0:
                            message, buffer = buffer[: end + 2], buffer[end + 5 :]
                        else:
                            break
                        self.messages.append(message)
                        writer.write(self.answer(b"."))
                        in_data = False
                        continue
                    line, found, rest = buffer.partition(b"\r\n")
                    if not found:
                        break
                    buffer = rest
                    reply = self.answer(line)
                    writer.write(reply)
                    if reply.startswith(b"221") or reply.startswith(b"421"):
                        writer.close()
                        return
                    in_data = line == b"DATA" and reply.startswith(b"354")
        except ConnectionError:
            writer.transport.abort()
            return
        writer.close()


def esmtp(*extensions: str, refuse: dict[bytes, bytes] | None = None) -> Answer:
    """A server offering `extensions`; a command starting with a key of `refuse` gets its
    value, everything else the usual positive reply."""
    refuse = refuse or {}

    def answer(line: bytes) -> bytes:
        for start, reply in refuse.items():
            if line.startswith(start):
                return reply
        if line.startswith(b"EHLO"):
            lines = ["scripted.test greets you", *extensions]
            return "".join(
                f"250{' ' if i == len(lines) - 1 else '-'}{x}\r\n" for i, x in enumerate(lines)
            ).encode()
        if line.startswith(b"HELO"):
            return b"250 scripted.test\r\n"
        if line == b"DATA":
            return b"354 End data with <CR><LF>.<CR><LF>\r\n"
        if line == b"QUIT":
            return b"221 2.0.0 Bye\r\n"
        if line.startswith(b"RCPT"):
            return b"250 2.1.5 Ok\r\n"
        return b"250 2.0.0 Ok\r\n"

    return answer


def run(server: ScriptedServer, work: Callable[[MxConnection], Awaitable[Any]]) -> Any:
    async def main() -> Any:
        async with server:
            connection = await MxConnection.open(
                "mx.scripted.test", ("127.0.0.1",), port=server.port, helo="me.test", timeout=5
            )
            connection.command_timeout = 5
            try:
                return await work(connection)
            finally:
                await connection.close()

    return asyncio.run(main())


MESSAGE = b"Subject: hi\r\n\r\n.a line that starts with a dot\r\n"


def test_a_pipelining_server_gets_the_envelope_in_one_write() -> None:
    server = ScriptedServer(
        esmtp("PIPELINING", "SIZE 1000000", refuse={b"RCPT TO:<b@": b"550 5.1.1 No such user\r\n"})
    )

    async def work(connection: MxConnection) -> Any:
        return await connection.send("s@x.test", ["a@y.test", "b@y.test", "c@y.test"], MESSAGE)

    replies = run(server, work)
    assert {r: (reply.code, reply.message) for r, reply in replies.items()} == {
        "a@y.test": (250, "2.0.0 Ok"),
        "b@y.test": (550, "5.1.1 No such user"),
        "c@y.test": (250, "2.0.0 Ok"),
    }
    envelope = b"".join(
        [
            b"MAIL FROM:<s@x.test> SIZE=%d\r\n" % (len(MESSAGE) + 4),
            b"RCPT TO:<a@y.test>\r\nRCPT TO:<b@y.test>\r\nRCPT TO:<c@y.test>\r\nDATA\r\n",
        ]
    )
    assert envelope in server.chunks  # one group, before any reply of it was read
    assert server.messages == [b"Subject: hi\r\n\r\n..a line that starts with a dot\r\n"]


def test_a_server_without_pipelining_gets_one_command_at_a_time() -> None:
    server = ScriptedServer(esmtp("SIZE 1000000"))

    async def work(connection: MxConnection) -> Any:
        return await connection.send("s@x.test", ["a@y.test", "b@y.test"], MESSAGE)

    replies = run(server, work)
    assert {reply.code for reply in replies.values()} == {250}
    commands = [c for c in server.chunks if not c.startswith(b"Subject")]
    assert all(c.count(b"\r\n") == 1 for c in commands), commands


@pytest.mark.parametrize("pipelining", [True, False], ids=["pipelining", "one-by-one"])
def test_every_recipient_refused_sends_nothing_and_keeps_the_session(pipelining: bool) -> None:
    # A pipelining server that says 354 anyway gets an empty message (RFC 2920 §3.1).
    extensions = ["PIPELINING"] if pipelining else []
    server = ScriptedServer(esmtp(*extensions, refuse={b"RCPT": b"550 5.1.1 Unknown\r\n"}))

    async def work(connection: MxConnection) -> Any:
        refused = await connection.send("s@x.test", ["a@y.test", "b@y.test"], MESSAGE)
        usable = connection.usable
        server.answer = esmtp(*extensions)
        again = await connection.send("s@x.test", ["c@y.test"], MESSAGE)
        return refused, usable, again

    refused, usable, again = run(server, work)
    assert {(r.code, r.message) for r in refused.values()} == {(550, "5.1.1 Unknown")}
    assert usable
    assert again["c@y.test"].code == 250
    assert server.messages == ([b""] if pipelining else []) + [MESSAGE.replace(b"\n.", b"\n..")]
    assert server.connections == 1


def test_a_refused_sender_is_reset_and_the_session_goes_on() -> None:
    server = ScriptedServer(
        esmtp(
            "PIPELINING",
            refuse={
                b"MAIL": b"553 5.7.1 Sender refused\r\n",
                b"RCPT": b"503 5.5.1 MAIL first\r\n",
                b"DATA": b"503 5.5.1 No recipients\r\n",
            },
        )
    )

    async def work(connection: MxConnection) -> Any:
        return await connection.send("s@x.test", ["a@y.test"], MESSAGE), connection.usable

    replies, usable = run(server, work)
    assert (replies["a@y.test"].code, usable) == (553, True)
    assert b"RSET\r\n" in server.chunks
    assert server.messages == []


def test_421_in_a_pipelined_envelope_ends_the_session() -> None:
    server = ScriptedServer(esmtp("PIPELINING", refuse={b"MAIL": b"421 4.3.2 Going down\r\n"}))

    async def work(connection: MxConnection) -> Any:
        return await connection.send("s@x.test", ["a@y.test"], MESSAGE), connection.usable

    replies, usable = run(server, work)
    assert (replies["a@y.test"].code, replies["a@y.test"].message) == (421, "4.3.2 Going down")
    assert not usable


def test_a_server_without_esmtp_gets_helo() -> None:
    server = ScriptedServer(esmtp(refuse={b"EHLO": b"502 5.5.2 What?\r\n"}))

    async def work(connection: MxConnection) -> Any:
        return await connection.send("s@x.test", ["a@y.test"], MESSAGE)

    assert run(server, work)["a@y.test"].code == 250
    assert b"HELO me.test\r\n" in server.chunks


def test_multi_line_replies_are_read_whole() -> None:
    server = ScriptedServer(
        esmtp(
            "PIPELINING",
            refuse={
                b"RCPT": b"550-5.1.1 The email account does not exist.\r\n"
                b"550 5.1.1 Please check it.\r\n"
            },
        )
    )

    async def work(connection: MxConnection) -> Any:
        return await connection.send("s@x.test", ["a@y.test"], MESSAGE)

    reply = run(server, work)["a@y.test"]
    assert (reply.code, reply.message) == (
        550,
        "5.1.1 The email account does not exist.\n5.1.1 Please check it.",
    )


def test_a_server_that_does_not_speak_smtp_is_a_failed_connection() -> None:
    server = ScriptedServer(esmtp(), greeting=b"SSH-2.0-OpenSSH_9.2\r\n")

    async def main() -> ConnectFailed:
        async with server:
            with pytest.raises(ConnectFailed) as failure:
                await MxConnection.open(
                    "mx.scripted.test", ("127.0.0.1",), port=server.port, helo="me", timeout=5
                )
            return failure.value

    failure = asyncio.run(main())
    assert failure.reply.code is None
    assert "Not an SMTP reply" in failure.reply.message


def test_a_server_that_never_answers_the_data_times_out() -> None:
    def answer(line: bytes) -> bytes:
        return b"" if line == b"." else esmtp("PIPELINING")(line)

    server = ScriptedServer(answer)

    async def work(connection: MxConnection) -> Any:
        connection.command_timeout = 0.3
        return await connection.send("s@x.test", ["a@y.test"], MESSAGE), connection.usable

    replies, usable = run(server, work)
    assert replies["a@y.test"].code is None
    assert replies["a@y.test"].message == "Timed out talking to mx.scripted.test[127.0.0.1]"
    assert not usable


def test_control_characters_in_an_address_never_reach_the_wire() -> None:
    server = ScriptedServer(esmtp("PIPELINING"))
    bad = "a@y.test\r\nRCPT TO:<evil@z.test>"

    async def work(connection: MxConnection) -> Any:
        return await connection.send("s@x.test", [bad, "b@y.test"], MESSAGE)

    replies = run(server, work)
    assert (replies[bad].code, replies["b@y.test"].code) == (553, 250)  # only it is refused
    assert not any(b"evil" in chunk for chunk in server.chunks)
    assert len(server.messages) == 1


def test_421_to_a_recipient_in_a_pipelined_envelope_ends_the_session() -> None:
    server = ScriptedServer(
        esmtp("PIPELINING", refuse={b"RCPT TO:<b@": b"421 4.7.0 Too many errors\r\n"})
    )

    async def work(connection: MxConnection) -> Any:
        replies = await connection.send("s@x.test", ["a@y.test", "b@y.test"], MESSAGE)
        return replies, connection.usable

    replies, usable = run(server, work)
    assert {r: reply.code for r, reply in replies.items()} == {"a@y.test": 421, "b@y.test": 421}
    assert not usable
    assert server.messages == []


def test_a_server_that_hangs_up_mid_envelope_gives_no_reply_and_no_session() -> None:
    def answer(line: bytes) -> bytes:
        if line.startswith(b"RCPT"):
            raise ConnectionResetError  # the server goes away without a word
        return esmtp("PIPELINING")(line)

    server = ScriptedServer(answer)

    async def work(connection: MxConnection) -> Any:
        return await connection.send("s@x.test", ["a@y.test"], MESSAGE), connection.usable

    replies, usable = run(server, work)
    assert replies["a@y.test"].code is None
    assert "Connection" in replies["a@y.test"].message
    assert not usable


def test_a_reply_nobody_asked_for_makes_the_session_unusable() -> None:
    server = ScriptedServer(esmtp("PIPELINING"))

    async def work(connection: MxConnection) -> Any:
        first = await connection.send("s@x.test", ["a@y.test"], MESSAGE)
        before = connection.usable
        for writer in server.writers:  # the server times the idle session out on its own
            writer.write(b"421 4.4.2 Idle for too long\r\n")
        await asyncio.sleep(0.1)
        return first, before, connection.usable

    first, before, after = run(server, work)
    assert (first["a@y.test"].code, before, after) == (250, True, False)
