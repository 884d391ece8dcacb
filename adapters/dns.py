"""Where a recipient domain's mail goes: MX lookup with dnspython (RFC 5321 §5.1, RFC 7505).

- MX hosts by preference, each with its addresses (A, then AAAA);
- no MX record: the domain itself is the implicit MX, if it has an address;
- a null MX (`MX 0 .`): the domain takes no mail, a permanent failure;
- NXDOMAIN: permanent; timeouts, SERVFAIL and the like: temporary.
Answers are cached by their TTL (dnspython's cache), and so are whole routes, the MTA asking
for one per batch of mail. Nameservers come from
`POSTLINE_DNS_NAMESERVERS` (`127.0.0.1:5353,...`) or the system's resolv.conf.
"""

import os
import time
from dataclasses import dataclass

import dns.asyncresolver
import dns.exception
import dns.name
import dns.resolver

NAMESERVERS_ENV = "POSTLINE_DNS_NAMESERVERS"
ROUTE_CACHE_MAX_SECONDS = 3600.0


class RouteError(Exception):
    """No way to reach the domain, worded as a reply: `code` 5xx when it is final (do not
    retry), None when the lookup may work later; `text` starts with an enhanced code."""

    def __init__(self, text: str, *, code: int | None) -> None:
        super().__init__(text)
        self.text = text
        self.code = code

    @property
    def permanent(self) -> bool:
        return self.code is not None


@dataclass(frozen=True, slots=True)
class MxHost:
    preference: int
    host: str
    addresses: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Route:
    """The MX hosts of a domain, most preferred first, each with at least one address."""

    domain: str
    hosts: tuple[MxHost, ...]
    implicit: bool = False  # no MX record: the domain's own address


def nameservers_from(value: str) -> list[tuple[str, int]]:
    """`127.0.0.1:5353,[::1]:53,192.0.2.53` -> [(address, port)]."""
    servers = []
    for item in filter(None, (part.strip() for part in value.split(","))):
        if item.startswith("["):
            address, _, port = item[1:].partition("]:")
        elif item.count(":") == 1:
            address, _, port = item.partition(":")
        else:
            address, port = item, ""
        servers.append((address, int(port) if port else 53))
    return servers


class MxResolver:
    """Async MX routing with a TTL cache."""

    def __init__(
        self, nameservers: list[tuple[str, int]] | None = None, timeout: float = 10.0
    ) -> None:
        self._resolver = _resolver(nameservers, timeout)
        self._resolver.cache = dns.resolver.Cache()
        self._routes: dict[str, tuple[float, Route]] = {}

    async def route(self, domain: str) -> Route:
        """The MX hosts of `domain`, or RouteError."""
        cached = self._routes.get(domain)
        if cached is not None and cached[0] > time.time():
            return cached[1]
        expires = [float("inf")]
        route = await self._lookup(domain, expires)
        if len(self._routes) > 10_000:
            self._routes.clear()
        self._routes[domain] = (min(expires[0], time.time() + ROUTE_CACHE_MAX_SECONDS), route)
        return route

    async def _lookup(self, domain: str, expires: list[float]) -> Route:
        """Resolve a route; `expires[0]` becomes the earliest expiry of the answers used."""
        try:
            answer = await self._resolver.resolve(domain, "MX")
        except dns.resolver.NXDOMAIN:
            raise RouteError(
                f"5.1.2 Host or domain name not found: {domain} (NXDOMAIN)", code=550
            ) from None
        except dns.resolver.NoAnswer:
            addresses = await self._addresses(domain, expires)
            if not addresses:
                raise RouteError(
                    f"5.1.2 Domain {domain} has neither MX nor address records", code=550
                ) from None
            return Route(domain, (MxHost(0, domain, addresses),), implicit=True)
        except dns.exception.DNSException as error:
            raise RouteError(
                f"4.4.3 DNS lookup of {domain} MX failed: {error}", code=None
            ) from None
        expires[0] = min(expires[0], answer.expiration)
        records = sorted(answer, key=lambda r: (r.preference, str(r.exchange)))
        if any(r.exchange == dns.name.root for r in records):
            raise RouteError(f"5.1.10 {domain} does not accept mail (null MX)", code=556)
        hosts = []
        for record in records:
            host = str(record.exchange).rstrip(".").lower()
            addresses = await self._addresses(host, expires)
            if addresses:
                hosts.append(MxHost(record.preference, host, addresses))
        if not hosts:
            raise RouteError(f"4.4.3 No MX host of {domain} has an address", code=None)
        return Route(domain, tuple(hosts))

    async def _addresses(self, host: str, expires: list[float]) -> tuple[str, ...]:
        """A and AAAA addresses of `host`; RouteError (temporary) when a lookup fails, as
        opposed to the name having no address."""
        addresses: list[str] = []
        failure = None
        for kind in ("A", "AAAA"):
            try:
                answer = await self._resolver.resolve(host, kind)
            except (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer):
                continue
            except dns.exception.DNSException as error:
                failure = f"4.4.3 DNS lookup of {host} {kind} failed: {error}"
                continue
            expires[0] = min(expires[0], answer.expiration)
            addresses += [record.address for record in answer]
        if failure is not None and not addresses:
            raise RouteError(failure, code=None)
        return tuple(addresses)


class LookupFailed(Exception):
    """A DNS lookup that did not get an answer (timeout, SERVFAIL...): try again later."""


class RecordLookup:
    """TXT and CNAME answers for checking a domain's records: never cached, so that a record
    just published (or removed) is seen at once."""

    def __init__(
        self, nameservers: list[tuple[str, int]] | None = None, timeout: float = 5.0
    ) -> None:
        self._resolver = _resolver(nameservers, timeout)

    async def values(self, name: str, kind: str) -> list[str]:
        """The TXT strings (each record's strings joined) or CNAME targets at `name`."""
        try:
            answer = await self._resolver.resolve(name, kind)
        except (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer):
            return []
        except dns.exception.DNSException as error:
            raise LookupFailed(f"DNS lookup of {name} {kind} failed: {error}") from None
        if kind == "TXT":
            return [b"".join(record.strings).decode("utf-8", "replace") for record in answer]
        return [str(record.target).rstrip(".").lower() for record in answer]


def _resolver(
    nameservers: list[tuple[str, int]] | None, timeout: float
) -> dns.asyncresolver.Resolver:
    """A resolver on `nameservers`, else `POSTLINE_DNS_NAMESERVERS`, else resolv.conf."""
    configured = nameservers
    if configured is None and os.environ.get(NAMESERVERS_ENV):
        configured = nameservers_from(os.environ[NAMESERVERS_ENV])
    resolver = dns.asyncresolver.Resolver(configure=configured is None)
    if configured is not None:
        resolver.nameservers = [address for address, _ in configured]
        resolver.nameserver_ports = {address: port for address, port in configured}
    resolver.lifetime = timeout
    return resolver
