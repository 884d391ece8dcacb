"""The relay's protocol class keeps aiosmtpd's state, set up once per listener."""

import asyncio

import pytest
from aiosmtpd.smtp import SMTP

from adapters.smtp_server import ListenerSettings, RelayProtocol, _Tables


class Handler:
    async def handle_DATA(self, server: object, session: object, envelope: object) -> str:
        return "250 OK"


def build() -> tuple[SMTP, RelayProtocol]:
    async def make() -> tuple[SMTP, RelayProtocol]:
        handler = Handler()
        stock = SMTP(handler, hostname="h", enable_SMTPUTF8=True)
        ours = RelayProtocol(
            handler, ListenerSettings(hostname="h"), _Tables(RelayProtocol, handler)
        )
        return stock, ours

    return asyncio.run(make())


def test_every_attribute_aiosmtpd_sets_up_is_set_up() -> None:
    stock, ours = build()
    assert set(vars(stock)) <= set(vars(ours))
    assert set(stock._smtp_methods) <= set(ours._smtp_methods)
    assert set(ours._auth_methods) == set(stock._auth_methods) == {"LOGIN", "PLAIN"}
    assert all(m.method.__self__ is ours for m in ours._auth_methods.values())
    assert ours._smtp_methods["MAIL"] == ours.smtp_MAIL
    assert {"DATA", "EHLO"} <= set(ours._handle_hooks)


@pytest.mark.parametrize(
    "arg",
    [
        "<shop@example.com>",
        "<shop@example.com> SIZE=1000 BODY=8BITMIME",
        " <ann.b+tag@sub.example.net>",
        "<grüße@example.de> SMTPUTF8",
        '<"quoted local"@example.com>',
        "<>",
        "<not an address>",
        "shop@example.com",
        "<a@b",
        "<@route:a@example.com>",
    ],
)
def test_the_fast_address_path_agrees_with_aiosmtpd(arg: str) -> None:
    stock, ours = build()
    assert ours._getaddr(arg) == stock._getaddr(arg)
