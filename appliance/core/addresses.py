"""Address, range, block and listen-spec parsing, with lazy expansion.

Forms (SPEC §2; an IPv6 address is always in brackets when a port follows):

    127.0.0.1:8080               one address, one port
    127.0.0.2-127.0.0.9:8080     inclusive address range (same family, end >= start)
    127.0.1.0/29:8080            every host address of the block
    127.0.0.1:8081-8084          inclusive port range
    "[::1]:8080"                 IPv6
    "[::1]-[::5]:80"             IPv6 range (also written "[::1-::5]:80")
    "[fd00::/126]:80"            IPv6 block (also written "[fd00::]/126:80")

An address range or block may be combined with a port range. The host addresses
of an IPv4 block exclude its network and broadcast addresses up to /30; /31 (RFC
3021) and /32 have none to exclude. IPv6 has no broadcast: every address of an
IPv6 block counts.

Nothing here materialises a range: a span knows its `count` by arithmetic, so a
caller can refuse `10.0.0.0/8:80` (16,777,214 sockets) before a single object is
built. Errors are `AddressError` (a `ValueError`) with a message written for the
operator; `core.config` adds the file, line and path.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterator
from dataclasses import dataclass

from appliance.core.model import Endpoint

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

PORT_MIN = 1  # port 0 asks bind() for any free port: never what a config means
PORT_MAX = 65_535  # the 16-bit port field
IPV4_ALL_HOSTS_PREFIX = 31  # RFC 3021: /31 and /32 have no network or broadcast address to skip

ENDPOINT_FORMS = 'ADDRESS:PORT such as 127.0.0.1:8080 or "[::1]:8080"'

# "[A]", "[A]-[B]" or "[A]/N"; A itself may hold "X-Y" or "X/N".
_BRACKETED = re.compile(r"^\[([^\[\]]+)\](?:-\[([^\[\]]+)\]|/([0-9]+))?$")
_PORT = re.compile(r"^[0-9]{1,5}$")


class AddressError(ValueError):
    """A malformed address, range, block or port; the message is for the operator."""


@dataclass(frozen=True, slots=True)
class AddressSpan:
    """`count` consecutive addresses from `first`; iterated lazily."""

    first: IPAddress
    count: int

    def __iter__(self) -> Iterator[IPAddress]:
        start = int(self.first)
        make = ipaddress.IPv4Address if self.first.version == 4 else ipaddress.IPv6Address
        for offset in range(self.count):
            yield make(start + offset)


@dataclass(frozen=True, slots=True)
class PortSpan:
    first: int
    last: int

    @property
    def count(self) -> int:
        return self.last - self.first + 1


@dataclass(frozen=True, slots=True)
class ListenSpec:
    """A parsed listen entry: every address of `hosts` on every port of `ports`."""

    hosts: AddressSpan
    ports: PortSpan

    @property
    def count(self) -> int:
        return self.hosts.count * self.ports.count

    def endpoints(self) -> Iterator[Endpoint]:
        """Address-major: all ports of the first address, then the next address."""
        for address in self.hosts:
            host = str(address)
            for port in range(self.ports.first, self.ports.last + 1):
                yield Endpoint(host=host, port=port)


# ---------------------------------------------------------------- public parsers


def parse_listen(text: str) -> ListenSpec:
    """`HOSTS:PORTS` where HOSTS is an address, range or block and PORTS a port or range."""
    hosts, ports = _split_port(text)
    return ListenSpec(hosts=_parse_hosts(hosts, bracketed=True), ports=_parse_ports(ports))


def parse_endpoint(text: str) -> Endpoint:
    """Exactly one `ADDRESS:PORT`: no range, no block."""
    spec = parse_listen(text)
    if spec.hosts.count != 1 or spec.ports.count != 1:
        raise AddressError(f"expected one {ENDPOINT_FORMS}, not a range or block, got '{text}'")
    return Endpoint(host=str(spec.hosts.first), port=spec.ports.first)


def parse_addresses(text: str) -> AddressSpan:
    """An address, range or block without a port; IPv6 may be written bare or in brackets."""
    return _parse_hosts(text.strip(), bracketed=False)


# ---------------------------------------------------------------- pieces


def _split_port(text: str) -> tuple[str, str]:
    host, sep, port = text.strip().rpartition(":")
    if not sep or not host or not port or host.endswith(":") or port.endswith("]"):
        raise AddressError(f"expected {ENDPOINT_FORMS}, got '{text}'")
    return host, port


def _parse_ports(text: str) -> PortSpan:
    first_text, dash, last_text = text.partition("-")
    first = _port(first_text)
    last = _port(last_text) if dash else first
    if last < first:
        raise AddressError(f"port range end {last} is before its start {first}")
    return PortSpan(first=first, last=last)


def _port(text: str) -> int:
    if not _PORT.match(text):
        raise AddressError(f"port must be a number {PORT_MIN}..{PORT_MAX}, got '{text}'")
    port = int(text)
    if not PORT_MIN <= port <= PORT_MAX:
        raise AddressError(f"port must be {PORT_MIN}..{PORT_MAX}, got {port}")
    return port


def _parse_hosts(text: str, *, bracketed: bool) -> AddressSpan:
    """Hosts part of a listen entry (`bracketed`: IPv6 must be in brackets) or a bare address list entry."""
    if text.startswith("["):
        match = _BRACKETED.match(text)
        if match is None:
            raise AddressError(f"malformed address '{text}' (an IPv6 range is written [::1]-[::5])")
        inner, range_end, prefix = match.groups()
        if range_end is not None:
            inner = f"{inner}-{range_end}"
        elif prefix is not None:
            inner = f"{inner}/{prefix}"
        span = _parse_span(inner)
        if span.first.version != 6:
            raise AddressError(f"only IPv6 addresses go in brackets, got '{text}'")
        return span
    if "[" in text or "]" in text:
        raise AddressError(f"malformed address '{text}' (an IPv6 range is written [::1]-[::5])")
    if bracketed and ":" in text:
        raise AddressError(f'an IPv6 address goes in brackets when a port follows: "[{text}]:PORT"')
    return _parse_span(text)


def _parse_span(text: str) -> AddressSpan:
    if "-" in text:
        start_text, _, end_text = text.partition("-")
        start, end = _address(start_text), _address(end_text)
        if start.version != end.version:
            raise AddressError(f"address range '{text}' mixes IPv4 and IPv6")
        if int(end) < int(start):
            raise AddressError(f"address range end {end} is before its start {start}")
        return AddressSpan(first=start, count=int(end) - int(start) + 1)
    if "/" in text:
        return _block(text)
    return AddressSpan(first=_address(text), count=1)


def _block(text: str) -> AddressSpan:
    try:
        network = ipaddress.ip_network(text, strict=True)
    except ValueError as exc:
        if "host bits set" in str(exc):
            fixed = ipaddress.ip_network(text, strict=False)
            raise AddressError(f"'{text}' has host bits set; the block is {fixed}") from None
        raise AddressError(f"not an address block: {exc}") from None
    if network.version == 4 and network.prefixlen < IPV4_ALL_HOSTS_PREFIX:
        return AddressSpan(first=network.network_address + 1, count=network.num_addresses - 2)
    return AddressSpan(first=network.network_address, count=network.num_addresses)


def _address(text: str) -> IPAddress:
    text = text.strip()
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        pass
    if re.fullmatch(r"[0-9.]+:[0-9-]*", text):
        raise AddressError(f"'{text}' has a port; only an address is expected here")
    if re.fullmatch(r"[0-9.]+", text):
        try:
            ipaddress.IPv4Address(text)
        except ValueError as exc:
            raise AddressError(f"not an IPv4 address: {exc}") from None
    raise AddressError(f"'{text}' is not an IP address (host names are not resolved)")
