"""MX routing against a local DNS server: preference, implicit MX, null MX, failures, cache."""

import asyncio
from collections.abc import Iterator

import pytest

from adapters.dns import MxResolver, RouteError, nameservers_from
from tests.support.dns import LocalDns, Zone


@pytest.fixture
def dns_server() -> Iterator[LocalDns]:
    zone = Zone(
        mx={
            "example.net": [(20, "mx2.example.net."), (10, "mx1.example.net.")],
            "nullmx.example": [(0, ".")],
            "noaddress.example": [(10, "ghost.noaddress.example.")],
        },
        a={
            "mx1.example.net": ["127.0.0.2"],
            "mx2.example.net": ["127.0.0.3"],
            "implicit.example": ["127.0.0.4"],
        },
        aaaa={"mx1.example.net": ["::1"]},
        servfail={"broken.example"},
    )
    zone.a["noaddress.example"] = []
    zone.a["ghost.noaddress.example"] = []
    server = LocalDns(zone)
    try:
        yield server
    finally:
        server.stop()


def route(server: LocalDns, domain: str) -> object:
    resolver = MxResolver(server.nameservers, timeout=2)
    return asyncio.run(resolver.route(domain))


def test_mx_hosts_by_preference_with_addresses(dns_server: LocalDns) -> None:
    found = route(dns_server, "example.net")
    assert [(h.preference, h.host, h.addresses) for h in found.hosts] == [
        (10, "mx1.example.net", ("127.0.0.2", "::1")),
        (20, "mx2.example.net", ("127.0.0.3",)),
    ]
    assert not found.implicit


def test_a_domain_without_mx_is_its_own_mx(dns_server: LocalDns) -> None:
    found = route(dns_server, "implicit.example")
    assert found.implicit
    assert [(h.host, h.addresses) for h in found.hosts] == [("implicit.example", ("127.0.0.4",))]


@pytest.mark.parametrize(
    ("domain", "permanent", "text"),
    [
        ("nullmx.example", True, "null MX"),
        ("nowhere.example", True, "NXDOMAIN"),
        ("broken.example", False, "DNS lookup of broken.example MX failed"),
        ("noaddress.example", False, "No MX host of noaddress.example has an address"),
    ],
)
def test_failures_say_whether_to_retry(
    dns_server: LocalDns, domain: str, permanent: bool, text: str
) -> None:
    with pytest.raises(RouteError, match=text) as caught:
        route(dns_server, domain)
    assert caught.value.permanent is permanent


def test_answers_are_cached_by_ttl(dns_server: LocalDns) -> None:
    resolver = MxResolver(dns_server.nameservers, timeout=2)

    async def twice() -> None:
        await resolver.route("example.net")
        await resolver.route("example.net")

    asyncio.run(twice())
    assert dns_server.zone.queries.count(("example.net", "MX")) == 1


def test_a_cached_route_expires_with_its_shortest_ttl(dns_server: LocalDns) -> None:
    dns_server.zone.ttl = 1
    resolver = MxResolver(dns_server.nameservers, timeout=2)

    async def before_and_after_a_change() -> tuple[str, str]:
        first = await resolver.route("example.net")
        dns_server.zone.mx["example.net"] = [(5, "mx2.example.net.")]
        assert (await resolver.route("example.net")) is first  # still cached
        await asyncio.sleep(1.5)
        second = await resolver.route("example.net")
        return first.hosts[0].host, second.hosts[0].host

    assert asyncio.run(before_and_after_a_change()) == ("mx1.example.net", "mx2.example.net")


def test_nameserver_lists() -> None:
    assert nameservers_from("127.0.0.1:5353, [::1]:53,192.0.2.53") == [
        ("127.0.0.1", 5353),
        ("::1", 53),
        ("192.0.2.53", 53),
    ]
