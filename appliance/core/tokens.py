"""Cookie values that name a member: our signed token, and BIG-IP's address encoding.

Signed token (the default). One cookie carries up to ``MAX_ENTRIES`` entries,
one per pool the client was balanced in, so a virtual server that routes to
several pools keeps every one of them sticky under one cookie name. An entry is
24 bytes, base64url (32 characters), entries joined by ".":

    version (1) | pool tag (3) | issued (4, unix seconds) | member id (6) | MAC (10)

The pool tag and member id are HMAC-SHA256 of the names under the key, so the
token says nothing about addresses or names; the MAC (HMAC-SHA256, 80 bits)
covers the entry and the pool's name, so an entry cannot be moved to another
pool, forged, or re-dated. Any process with the same key (every listen address,
every virtual server of the pool, the HA peer) honours it; nothing is stored.

F5 encoding (``encoding: f5``, K6917): ``<a+b*256+c*256^2+d*256^3>.<port byte-swapped>.0000``
for IPv4, ``vi<32 hex>.<port byte-swapped>`` for IPv6, and the route-domain forms
``rd<N>o00000000000000000000ffff<8 hex>o<port>`` and ``rd<N>o<32 hex>o<port>``.
Read in every form, written in the first two; readable by anyone.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import ipaddress
import re
import struct
from dataclasses import dataclass

from appliance.core.model import Endpoint

VERSION = 1
MAX_ENTRIES = 8  # pools remembered per cookie; the least recent goes first
FUTURE_SKEW = 86_400  # an entry dated further ahead than this is refused (HAProxy's rule for its cookie dates)
_HEAD = struct.Struct("!B3sI6s")  # version, pool tag, issued, member id; the MAC follows
_MAC_SIZE = 10
_ENTRY_SIZE = _HEAD.size + _MAC_SIZE


@dataclass(frozen=True, slots=True)
class Entry:
    """One verified entry of a signed token."""

    member_id: bytes
    issued: int


class TokenSigner:
    """Issues and verifies signed persistence entries under one key."""

    def __init__(self, key: bytes) -> None:
        self._key = key
        self._tags: dict[tuple[bytes, str], bytes] = {}

    def _tag(self, kind: bytes, name: str, size: int) -> bytes:
        cached = self._tags.get((kind, name))
        if cached is None:
            cached = self._tags[(kind, name)] = hmac.digest(self._key, kind + b"\0" + name.encode(), hashlib.sha256)[:size]
        return cached

    def member_id(self, pool: str, member: str) -> bytes:
        return self._tag(b"member", f"{pool}\0{member}", 6)

    def issue(self, pool: str, member: str, now: int) -> bytes:
        """One entry naming `member` of `pool`, dated `now`."""
        head = _HEAD.pack(VERSION, self._tag(b"pool", pool, 3), now & 0xFFFFFFFF, self.member_id(pool, member))
        return base64.urlsafe_b64encode(head + self._mac(head, pool)).rstrip(b"=")

    def read(self, value: bytes, pool: str, now: int, max_age: float) -> tuple[Entry | None, list[bytes]]:
        """The valid entry for `pool` in a cookie value, and the other pools' entries.

        An entry of `pool` that is forged, tampered with, dated in the future
        or older than `max_age` (when > 0) yields None; it is dropped, not kept.
        """
        tag = self._tag(b"pool", pool, 3)
        found: Entry | None = None
        others: list[bytes] = []
        for text in value.split(b".")[:MAX_ENTRIES]:
            raw = _decode(text)
            if raw is None:
                continue
            if raw[1:4] != tag:
                others.append(text)
                continue
            head, mac = raw[: _HEAD.size], raw[_HEAD.size :]
            _, _, issued, member_id = _HEAD.unpack(head)
            if found is not None or not hmac.compare_digest(mac, self._mac(head, pool)):
                continue
            if issued > now + FUTURE_SKEW or (max_age > 0 and now - issued > max_age):
                continue
            found = Entry(member_id, issued)
        return found, others

    def _mac(self, head: bytes, pool: str) -> bytes:
        return hmac.digest(self._key, head + pool.encode(), hashlib.sha256)[:_MAC_SIZE]


def join(entry: bytes, others: list[bytes]) -> bytes:
    """A cookie value: the new entry first, then the other pools' entries while they fit."""
    return b".".join([entry, *others[: MAX_ENTRIES - 1]])


def _decode(text: bytes) -> bytes | None:
    if len(text) != 32:
        return None
    try:
        raw = base64.urlsafe_b64decode(text + b"=" * (-len(text) % 4))
    except (binascii.Error, ValueError):
        return None
    return raw if len(raw) == _ENTRY_SIZE and raw[0] == VERSION else None


# ---------------------------------------------------------------- F5 BIG-IP encoding


def _swap(port: int) -> int:
    return ((port & 0xFF) << 8) | (port >> 8)


def f5_encode(address: Endpoint) -> bytes:
    """BIG-IP's cookie value for a member address (K6917)."""
    ip = ipaddress.ip_address(address.host)
    if isinstance(ip, ipaddress.IPv4Address):
        return b"%d.%d.0000" % (int.from_bytes(ip.packed, "little"), _swap(address.port))
    return b"vi%s.%d" % (ip.packed.hex().encode(), _swap(address.port))


_F5_V4 = re.compile(rb"(\d{1,10})\.(\d{1,5})\.0000")
_F5_V6 = re.compile(rb"vi([0-9a-f]{32})\.(\d{1,5})", re.IGNORECASE)
_F5_RD_V6 = re.compile(rb"rd\d{1,5}o([0-9a-f]{32})o(\d{1,5})", re.IGNORECASE)  # IPv4 in a route domain: ::ffff:a.b.c.d


def f5_decode(value: bytes) -> tuple[str, int] | None:
    """The member address (IP text in Python's spelling, port) a BIG-IP cookie value names.

    None when the value is in none of BIG-IP's forms.
    """
    ip: ipaddress.IPv4Address | ipaddress.IPv6Address
    if m := _F5_V4.fullmatch(value):
        number, port = int(m[1]), int(m[2])
        if number > 0xFFFFFFFF:
            return None
        ip, port = ipaddress.IPv4Address(number.to_bytes(4, "little")), _swap(port) if port <= 0xFFFF else -1
    elif m := _F5_V6.fullmatch(value):
        port = int(m[2])
        ip, port = ipaddress.IPv6Address(bytes.fromhex(m[1].decode())), _swap(port) if port <= 0xFFFF else -1
    elif m := _F5_RD_V6.fullmatch(value):
        ip, port = ipaddress.IPv6Address(bytes.fromhex(m[1].decode())), int(m[2])
    else:
        return None
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped  # how BIG-IP writes an IPv4 member in the IPv6 forms
    return (str(ip), port) if 0 < port <= 0xFFFF else None
