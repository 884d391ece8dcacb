"""A local DNS server for tests (dnslib), serving the zone a test gives it."""

from collections.abc import Callable
from dataclasses import dataclass, field

import dns.resolver
from dnslib import AAAA, MX, QTYPE, RCODE, RR, TXT, A, DNSRecord
from dnslib.server import BaseResolver, DNSHandler, DNSServer


@dataclass
class Zone:
    """Records by name: `mx[name] = [(preference, host)]`, `a[name] = [address]`, ..."""

    mx: dict[str, list[tuple[int, str]]] = field(default_factory=dict)
    a: dict[str, list[str]] = field(default_factory=dict)
    aaaa: dict[str, list[str]] = field(default_factory=dict)
    txt: dict[str, str] = field(default_factory=dict)
    servfail: set[str] = field(default_factory=set)
    ttl: int = 300
    queries: list[tuple[str, str]] = field(default_factory=list)


class _ZoneResolver(BaseResolver):  # type: ignore[misc]
    def __init__(self, zone: Zone) -> None:
        self.zone = zone

    def resolve(self, request: DNSRecord, handler: DNSHandler) -> DNSRecord:
        reply = request.reply()
        name = str(request.q.qname).rstrip(".").lower()
        kind = QTYPE[request.q.qtype]
        self.zone.queries.append((name, kind))
        if name in self.zone.servfail:
            reply.header.rcode = RCODE.SERVFAIL
            return reply
        zone = self.zone
        known = name in zone.mx or name in zone.a or name in zone.aaaa or name in zone.txt
        if not known:
            reply.header.rcode = RCODE.NXDOMAIN
            return reply
        ttl = self.zone.ttl
        if kind == "MX":
            for preference, host in self.zone.mx.get(name, []):
                reply.add_answer(RR(name, QTYPE.MX, rdata=MX(host, preference), ttl=ttl))
        elif kind == "A":
            for address in self.zone.a.get(name, []):
                reply.add_answer(RR(name, QTYPE.A, rdata=A(address), ttl=ttl))
        elif kind == "TXT" and name in self.zone.txt:
            value = self.zone.txt[name].encode()
            chunks = [value[i : i + 255] for i in range(0, len(value), 255)]
            reply.add_answer(RR(name, QTYPE.TXT, rdata=TXT(chunks), ttl=ttl))
        elif kind == "AAAA":
            for address in self.zone.aaaa.get(name, []):
                reply.add_answer(RR(name, QTYPE.AAAA, rdata=AAAA(address), ttl=ttl))
        return reply


class _QuietLogger:
    def __getattr__(self, name: str) -> object:
        return lambda *args, **kwargs: None


class LocalDns:
    """UDP DNS on 127.0.0.1, an ephemeral port; `.nameservers` for the resolver; `.stop()`."""

    def __init__(self, zone: Zone) -> None:
        self.zone = zone
        self.server = DNSServer(
            _ZoneResolver(zone), address="127.0.0.1", port=0, logger=_QuietLogger()
        )
        self.server.start_thread()
        self.port = int(self.server.server.server_address[1])
        self.nameservers = [("127.0.0.1", self.port)]

    def stop(self) -> None:
        self.server.stop()
        self.server.server.server_close()


def txt_from(dns_server: "LocalDns") -> Callable[..., bytes | None]:
    """dkimpy's DNS function, asking the test DNS server."""

    def txt(name: bytes, timeout: int = 5) -> bytes | None:
        resolver = dns.resolver.Resolver(configure=False)
        resolver.nameservers = ["127.0.0.1"]
        resolver.nameserver_ports = {"127.0.0.1": dns_server.port}
        answer = resolver.resolve(name.decode(), "TXT")
        return b"".join(b"".join(r.strings) for r in answer)

    return txt
