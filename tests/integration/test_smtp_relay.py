"""The SMTP relay over real sockets, with real clients: smtplib, aiosmtplib and swaks."""

import asyncio
import base64
import ipaddress
import smtplib
import subprocess
import time
import uuid
from collections.abc import Iterator
from email.message import EmailMessage
from pathlib import Path

import aiosmtplib
import pytest

from domain.message import FORMAT_RFC5322
from engine.relay import RelayPolicy
from engine.runtime import Runtime
from projections.email_logs import get_message
from tests.support.smtp import Certificates, LiveSmtp, RawClient, loopback_settings
from tests.support.tools import swaks as swaks_path

MESSAGE = (
    b"From: Shop <shop@example.com>\r\n"
    b"To: Ann <ann@example.net>\r\n"
    b"Subject: =?utf-8?q?Your_order_=E2=9C=93?=\r\n"
    b"Message-ID: <order-1@example.com>\r\n"
    b"X-MT-Category: orders\r\n"
    b'X-MT-Custom-Variables: {"order_id": "12345", "tags": ["a", "b"]}\r\n'
    b"\r\n"
    b"Your order has shipped.\r\n"
)


@pytest.fixture
def certificates(tmp_path: Path) -> Certificates:
    return Certificates(tmp_path)


@pytest.fixture
def relay(
    runtime: Runtime, certificates: Certificates, account: tuple[int, str]
) -> Iterator[LiveSmtp]:
    live = LiveSmtp(runtime, certificates)
    try:
        yield live
    finally:
        live.stop()


def logged(runtime: Runtime, account_id: int, message_id: str) -> dict:
    runtime.email_logs.catch_up()
    found = get_message(runtime.store.db, account_id, message_id)
    assert found is not None, f"{message_id} is not in the email logs"
    return found


def queued_id(reply: str | bytes) -> str:
    text = reply.decode() if isinstance(reply, bytes) else reply
    assert text.startswith("Ok: queued as ") or "2.0.0 Ok: queued as " in text, text
    return text.rsplit(" ", 1)[1]


def test_starttls_auth_plain_with_smtplib_stores_the_message_as_sent(
    runtime: Runtime, relay: LiveSmtp, certificates: Certificates, account: tuple[int, str]
) -> None:
    account_id, token = account
    with smtplib.SMTP("127.0.0.1", relay.port(), timeout=10) as client:
        client.ehlo("app.example.com")
        assert client.has_extn("starttls")
        client.starttls(context=certificates.client_context())
        client.ehlo("app.example.com")
        for extension in ("pipelining", "enhancedstatuscodes", "size", "8bitmime", "smtputf8"):
            assert client.has_extn(extension), extension
        assert client.esmtp_features["auth"].split() == ["LOGIN", "PLAIN"]
        client.login("api", token)  # smtplib prefers PLAIN here
        code, _ = client.mail("shop@example.com")
        assert code == 250
        client.rcpt("ann@example.net")
        client.rcpt("bob@example.org")
        code, reply = client.data(MESSAGE)
    assert code == 250
    first = queued_id(reply)

    log = logged(runtime, account_id, first)
    assert (log["subject"], log["from"], log["to"]) == (
        "Your order ✓",
        "shop@example.com",
        "ann@example.net",
    )
    assert (log["category"], log["custom_variables"]) == (
        "orders",
        {"order_id": "12345", "tags": "a"},
    )
    assert log["events"][0]["details"] == {"source": "smtp", "client_ip": "127.0.0.1"}

    message = runtime.store.get(uuid.UUID(first))
    assert message.format == FORMAT_RFC5322
    assert runtime.store.get_blob(message.body) == MESSAGE  # byte for byte
    received = runtime.store.get_blob(message.head)
    assert received.startswith(b"Received: from app.example.com ([127.0.0.1])\r\n")
    assert b"with ESMTPSA id " + uuid.UUID(first).hex.encode() in received


def test_auth_login_over_starttls_with_aiosmtplib(
    runtime: Runtime, relay: LiveSmtp, certificates: Certificates, account: tuple[int, str]
) -> None:
    account_id, token = account
    message = EmailMessage()
    message["From"] = "shop@example.com"
    message["To"] = "ann@example.net"
    message["Subject"] = "Plain subject"
    message.set_content("Hello")

    async def send() -> tuple[dict, str]:
        client = aiosmtplib.SMTP(
            hostname="127.0.0.1",
            port=relay.port(),
            start_tls=True,
            tls_context=certificates.client_context(),
        )
        async with client:
            await client.ehlo()  # the session starts over after STARTTLS
            await client.auth_login("api", token)
            return await client.send_message(message)

    errors, reply = asyncio.run(send())
    assert errors == {}
    log = logged(runtime, account_id, queued_id(reply))
    assert (log["subject"], log["category"], log["custom_variables"]) == (
        "Plain subject",
        None,
        {},
    )


def test_mail_without_auth_is_refused_and_bad_credentials_say_why(
    relay: LiveSmtp, account: tuple[int, str]
) -> None:
    client = RawClient(relay.port())
    assert client.greeting == "220 relay.test Postline ESMTP"
    assert client.command("EHLO app.example.com").startswith("250-relay.test")
    assert client.command("MAIL FROM:<shop@example.com>") == "530 5.7.1 Authentication required"
    assert client.command("RCPT TO:<ann@example.net>") == "503 5.5.1 Error: need MAIL command"
    wrong_token = base64.b64encode(b"\0api\0not-a-token").decode()
    assert (
        client.command(f"AUTH PLAIN {wrong_token}")
        == "535 5.7.8 Authentication credentials invalid"
    )
    wrong_user = base64.b64encode(b"\0someone\0" + account[1].encode()).decode()
    assert client.command(f"AUTH PLAIN {wrong_user}") == (
        "535 5.7.8 Authentication credentials invalid: the username is 'api' and the password "
        "an API token"
    )
    good = base64.b64encode(b"\0api\0" + account[1].encode()).decode()
    assert client.command(f"AUTH PLAIN {good}") == "235 2.7.0 Authentication successful"
    assert client.command("MAIL FROM:<shop@example.com>") == "250 2.1.0 Ok"
    client.close()


def test_auth_is_offered_only_after_starttls_off_loopback(
    runtime: Runtime, certificates: Certificates, account: tuple[int, str]
) -> None:
    live = LiveSmtp(runtime, certificates, loopback_settings(certificates, plaintext_auth=False))
    try:
        client = RawClient(live.port())
        ehlo = client.command("EHLO app.example.com")
        assert "STARTTLS" in ehlo
        assert "AUTH" not in ehlo
        assert client.command("AUTH PLAIN AGFwaQB4") == (
            "538 5.7.11 Encryption required for requested authentication mechanism"
        )
        client.close()
        with smtplib.SMTP("127.0.0.1", live.port(), timeout=10) as smtp:
            smtp.starttls(context=certificates.client_context())
            smtp.ehlo("app.example.com")
            assert "PLAIN" in smtp.esmtp_features["auth"]
            assert smtp.login("api", account[1])[0] == 235
    finally:
        live.stop()


def test_implicit_tls_listener(
    runtime: Runtime, certificates: Certificates, account: tuple[int, str]
) -> None:
    settings = loopback_settings(certificates, implicit_tls=True, plaintext_auth=False)
    live = LiveSmtp(runtime, certificates, settings)
    try:
        context = certificates.client_context()
        with smtplib.SMTP_SSL("127.0.0.1", live.port(), context=context, timeout=10) as smtp:
            smtp.ehlo("app.example.com")
            assert "starttls" not in smtp.esmtp_features
            smtp.login("api", account[1])
            smtp.mail("shop@example.com")
            smtp.rcpt("ann@example.net")
            _, reply = smtp.data(MESSAGE)
        received = runtime.store.get_blob(runtime.store.get(uuid.UUID(queued_id(reply))).head)
        assert b" with ESMTPSA id " in received
    finally:
        live.stop()


def test_size_limits_answer_552_5_3_4(relay: LiveSmtp, account: tuple[int, str]) -> None:
    client = authenticated(relay, account)
    assert client.command("MAIL FROM:<shop@example.com> SIZE=10485761") == (
        "552 5.3.4 Message size exceeds fixed limit"
    )
    assert client.command("MAIL FROM:<shop@example.com> SIZE=1000") == "250 2.1.0 Ok"
    assert client.command("RCPT TO:<ann@example.net>") == "250 2.1.5 Ok"
    assert client.command("DATA").startswith("354")
    line = b"x" * 998 + b"\r\n"
    client.send(b"Subject: big\r\n\r\n" + line * (10 * 1024 * 1024 // len(line) + 1) + b".\r\n")
    assert client.reply() == "552 5.3.4 Message size exceeds fixed limit"
    assert client.command("NOOP") == "250 2.0.0 Ok"  # the session goes on
    client.close()


def test_at_most_100_messages_per_connection(
    runtime: Runtime, relay: LiveSmtp, account: tuple[int, str]
) -> None:
    client = authenticated(relay, account)
    for _ in range(100):
        client.send(
            b"MAIL FROM:<shop@example.com>\r\nRCPT TO:<ann@example.net>\r\nDATA\r\n"
        )  # pipelined
        assert [client.reply(), client.reply()] == ["250 2.1.0 Ok", "250 2.1.5 Ok"]
        assert client.reply().startswith("354")
        client.send(b"Subject: hi\r\n\r\nhello\r\n.\r\n")
        assert client.reply().startswith("250 2.0.0 Ok: queued as ")
    assert client.command("MAIL FROM:<shop@example.com>") == (
        "421 4.7.0 Too many messages for this connection; reconnect to send more"
    )
    assert client.closed()
    client.close()
    again = authenticated(relay, account)  # a new connection may go on
    assert again.command("MAIL FROM:<shop@example.com>") == "250 2.1.0 Ok"
    again.close()


def test_at_most_10_connections_per_account(relay: LiveSmtp, account: tuple[int, str]) -> None:
    clients = [authenticated(relay, account) for _ in range(10)]
    extra = RawClient(relay.port())
    extra.command("EHLO app.example.com")
    auth = base64.b64encode(b"\0api\0" + account[1].encode()).decode()
    assert extra.command(f"AUTH PLAIN {auth}") == "535 5.7.8 Too many connections per account"
    clients.pop().close()
    deadline = time.monotonic() + 5
    while (reply := extra.command(f"AUTH PLAIN {auth}")) != "235 2.7.0 Authentication successful":
        assert reply == "535 5.7.8 Too many connections per account"
        assert time.monotonic() < deadline, "a closed connection was never released"
        time.sleep(0.05)
    for client in [*clients, extra]:
        client.close()


def test_idle_clients_get_421_4_4_2(
    runtime: Runtime, certificates: Certificates, account: tuple[int, str]
) -> None:
    live = LiveSmtp(runtime, certificates, loopback_settings(certificates, timeout=0.3))
    try:
        client = RawClient(live.port())
        assert client.reply() == "421 4.4.2 relay.test Error: timeout exceeded"
        assert client.closed()
        client.close()
    finally:
        live.stop()


def test_more_than_1000_recipients_get_452_4_5_3(
    runtime: Runtime, relay: LiveSmtp, account: tuple[int, str]
) -> None:
    client = authenticated(relay, account)
    assert client.command("MAIL FROM:<shop@example.com>") == "250 2.1.0 Ok"
    client.send(b"".join(b"RCPT TO:<user%d@example.net>\r\n" % i for i in range(1001)))
    replies = [client.reply() for _ in range(1001)]
    assert replies[:1000] == ["250 2.1.5 Ok"] * 1000
    assert replies[1000] == "452 4.5.3 Too many recipients"
    assert client.command("DATA").startswith("354")
    client.send(b"Subject: many\r\n\r\nhi\r\n.\r\n")
    ids_reply = client.reply()
    assert ids_reply.startswith("250 2.0.0 Ok: queued as ")
    runtime.email_logs.catch_up()
    with runtime.store.db.transaction(commit=False) as cursor:
        cursor.execute(
            runtime.store.db.prepare("SELECT count(*) AS n FROM {email_logs} WHERE subject = ?"),
            ("many",),
        )
        row = cursor.fetchone()
    assert (row["n"] if isinstance(row, dict) else row[0]) == 1000
    client.close()


def test_bad_commands_get_5xx_and_the_session_survives(
    relay: LiveSmtp, account: tuple[int, str]
) -> None:
    client = authenticated(relay, account)
    assert client.command("FROB") == '500 5.5.2 Error: command "FROB" not recognized'
    assert client.command("MAIL FROM:<not an address>") == "553 5.1.7 Bad sender address syntax"
    assert client.command("MAIL FROM:<>") == (
        "550 5.7.1 The null sender <> is not accepted: send from an address of your domain"
    )
    assert client.command("MAIL FROM:<shop@@example.com>") == "553 5.1.7 Bad sender address syntax"
    assert client.command("MAIL FROM shop@example.com").startswith("501 5.5.4 Syntax: MAIL FROM:")
    assert client.command("NOOP " + "x" * 600) == "500 5.5.2 Command line too long"
    assert client.command("MAIL FROM:<shop@example.com>") == "250 2.1.0 Ok"
    assert client.command("RCPT TO:<nobody>") == "553 5.1.3 Bad recipient address syntax"
    assert client.command("DATA") == "503 5.5.1 Error: need RCPT command"
    assert client.command("RCPT TO:<ann@example.net>") == "250 2.1.5 Ok"
    assert client.command("DATA").startswith("354")
    client.send(b"Subject: smuggle\r\n\r\nline one\n.\nMAIL FROM:<x@example.com>\r\n.\r\n")
    assert client.reply() == (
        "550 5.5.2 Message contains a bare <LF> or <CR>: lines must end with <CR><LF>"
    )
    assert client.command("NOOP") == "250 2.0.0 Ok"
    client.close()


def test_a_flood_of_bare_line_feeds_is_cut_off(relay: LiveSmtp) -> None:
    client = RawClient(relay.port())
    client.send(b"\n" * 10_000)
    replies = [client.reply() for _ in range(20)]
    assert replies == ["500 5.5.2 Error: bad syntax"] * 20
    assert client.reply() == "421 4.7.0 Too many errors; closing the connection"
    assert client.closed()
    client.close()


def test_pipelined_groups_are_answered_in_order(
    runtime: Runtime, relay: LiveSmtp, account: tuple[int, str]
) -> None:
    client = RawClient(relay.port())
    auth = base64.b64encode(b"\0api\0" + account[1].encode()).decode()
    commands = [
        "EHLO app.example.com",
        f"AUTH PLAIN {auth}",
        "MAIL FROM:<shop@example.com>",
        "RCPT TO:<ann@example.net>",
        "RCPT TO:<bad>",
        "RCPT TO:<bob@example.org>",
        "DATA",
    ]
    client.send("".join(f"{c}\r\n" for c in commands).encode())
    assert "250-PIPELINING" in client.reply()
    assert [client.reply() for _ in range(5)] == [
        "235 2.7.0 Authentication successful",
        "250 2.1.0 Ok",
        "250 2.1.5 Ok",
        "553 5.1.3 Bad recipient address syntax",
        "250 2.1.5 Ok",
    ]
    assert client.reply().startswith("354")
    client.send(b"Subject: piped\r\n\r\nhi\r\n.\r\nQUIT\r\n")
    first = queued_id(client.reply())
    assert client.reply() == "221 2.0.0 Bye"
    client.close()
    assert logged(runtime, account_id_of(runtime, first), first)["subject"] == "piped"


def test_trusted_networks_relay_without_auth_as_their_token(
    runtime: Runtime, certificates: Certificates, account: tuple[int, str]
) -> None:
    account_id, _ = account
    token_id = runtime.auth.authenticate(account[1]).token_id  # type: ignore[union-attr]
    trusted = RelayPolicy(
        trusted_networks=(ipaddress.ip_network("127.0.0.0/8"),), trusted_token_id=token_id
    )
    elsewhere = RelayPolicy(
        trusted_networks=(ipaddress.ip_network("10.0.0.0/8"),), trusted_token_id=token_id
    )
    live = LiveSmtp(runtime, certificates, policy=trusted)
    other = LiveSmtp(runtime, certificates, policy=elsewhere)
    try:
        with smtplib.SMTP("127.0.0.1", live.port(), timeout=10) as smtp:
            smtp.ehlo("app.example.com")
            smtp.mail("shop@example.com")
            smtp.rcpt("ann@example.net")
            _, reply = smtp.data(MESSAGE)
        log = logged(runtime, account_id, queued_id(reply))
        assert log["to"] == "ann@example.net"
        client = RawClient(other.port())
        client.command("EHLO app.example.com")
        assert client.command("MAIL FROM:<shop@example.com>") == "530 5.7.1 Authentication required"
        client.close()
    finally:
        live.stop()
        other.stop()


def test_swaks_starttls_auth_and_pipelining(
    runtime: Runtime, relay: LiveSmtp, certificates: Certificates, account: tuple[int, str]
) -> None:
    swaks = swaks_path()
    for extra in (["--tls", "--tls-ca-path", str(certificates.ca_file)], ["--pipeline"]):
        result = subprocess.run(
            [
                swaks,
                "--server",
                f"127.0.0.1:{relay.port()}",
                "--auth",
                "LOGIN",
                "--auth-user",
                "api",
                "--auth-password",
                account[1],
                "--from",
                "shop@example.com",
                "--to",
                "ann@example.net,bob@example.org",
                "--header",
                "X-MT-Category: swaks",
                *extra,
            ],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert result.returncode == 0, result.stdout + result.stderr
        queued = [line for line in result.stdout.splitlines() if "queued as" in line]
        assert len(queued) == 1, result.stdout
        message_id = queued[0].rsplit(" ", 1)[1]
        assert logged(runtime, account[0], message_id)["category"] == "swaks"


def authenticated(relay: LiveSmtp, account: tuple[int, str]) -> RawClient:
    client = RawClient(relay.port())
    client.command("EHLO app.example.com")
    auth = base64.b64encode(b"\0api\0" + account[1].encode()).decode()
    assert client.command(f"AUTH PLAIN {auth}") == "235 2.7.0 Authentication successful"
    return client


def account_id_of(runtime: Runtime, message_id: str) -> int:
    return int(runtime.store.get(uuid.UUID(message_id)).account_id)


def test_data_is_unstuffed_and_its_end_is_found_across_packets(
    runtime: Runtime, relay: LiveSmtp, account: tuple[int, str]
) -> None:
    client = authenticated(relay, account)

    def data(*pieces: bytes) -> str:
        client.command("MAIL FROM:<shop@example.com>")
        client.command("RCPT TO:<ann@example.net>")
        assert client.command("DATA").startswith("354")
        for piece in pieces:
            client.send(piece)
            time.sleep(0.05)  # separate TCP segments
        return client.reply()

    reply = data(b"Subject: dots\r\n\r\n..hidden\r\n", b"...\r\nend\r", b"\n.", b"\r\n")
    stored = runtime.store.get(uuid.UUID(queued_id(reply)))
    body = runtime.store.get_blob(stored.body)
    assert body == b"Subject: dots\r\n\r\n.hidden\r\n..\r\nend\r\n"

    empty = runtime.store.get(uuid.UUID(queued_id(data(b".\r\n"))))
    assert runtime.store.get_blob(empty.body) == b""

    too_long = data(b"Subject: long\r\n\r\n" + b"x" * 1000 + b"\r\n.\r\n")
    assert too_long == "500 5.5.2 Line too long: at most 998 characters (RFC 5321 4.5.3.1.6)"
    longest = data(b"Subject: long\r\n\r\n" + b"x" * 999 + b"\r\n.\r\n")
    assert longest.startswith("250 2.0.0 Ok: queued as ")
    client.close()


def test_the_size_limit_holds_to_the_byte_whatever_the_packets(
    runtime: Runtime, certificates: Certificates, account: tuple[int, str]
) -> None:
    live = LiveSmtp(runtime, certificates, loopback_settings(certificates, data_size_limit=100))
    try:
        client = authenticated(live, account)
        for size, expected in ((100, "250 2.0.0 Ok: queued as "), (101, "552 5.3.4 ")):
            body = b"Subject: s\r\n\r\n" + b"x" * (size - 16) + b"\r\n"
            assert len(body) == size
            client.command("MAIL FROM:<shop@example.com>")
            client.command("RCPT TO:<ann@example.net>")
            assert client.command("DATA").startswith("354")
            client.send(body + b".")
            time.sleep(0.05)
            client.send(b"\r\n")
            reply = client.reply()
            assert reply.startswith(expected), (size, reply)
            if size == 100:
                stored = runtime.store.get(uuid.UUID(queued_id(reply)))
                assert runtime.store.get_blob(stored.body) == body
        client.close()
    finally:
        live.stop()


def test_starttls_after_auth_gives_the_connection_back_to_its_account(
    relay: LiveSmtp, certificates: Certificates, account: tuple[int, str]
) -> None:
    for _ in range(12):  # more than the 10 an account may hold at once
        with smtplib.SMTP("127.0.0.1", relay.port(), timeout=10) as client:
            client.ehlo("app.example.com")
            client.login("api", account[1])  # offered before TLS on loopback
            client.starttls(context=certificates.client_context())
            client.ehlo("app.example.com")
            assert client.login("api", account[1])[0] == 235  # counted once more, not twice
