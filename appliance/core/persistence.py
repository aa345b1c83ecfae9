"""Persistence: which member a returning client's request must go back to.

A record is honoured while its member is not forced offline, is healthy (up or
unchecked) and is below its connection limit: a `disabled` member keeps its
persistent clients (F5's Disabled, HAProxy's drain), and a persistent client
stays on its member whatever its priority group or slow ramp. Otherwise the
request is balanced afresh and the record is replaced in the same response.

Cookie records live in the client (see ``tokens``); source-address records in
a bounded table per virtual server (least recently used out first).
"""

from __future__ import annotations

import collections
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from appliance.core import cookies, tokens
from appliance.core.balancing.ip_hash import masked_key
from appliance.core.model import AdminState, CookieEncoding, CookieMode, Member, Persistence, PersistenceType, VirtualServer
from appliance.core.snapshot import MemberView, PoolView

Triple = tuple[bytes, bytes, bytes]

DEFAULT_COOKIE = "LBSESSION"
F5_PREFIX = "BIGipServer"  # BIG-IP names its cookie after the pool


def honoured(member: MemberView) -> bool:
    """Whether a persistence record may still send traffic to `member`."""
    limit = member.config.connection_limit
    return (
        member.admin_state is not AdminState.FORCED_OFFLINE
        and member.health.serves
        and (limit == 0 or member.stats.active < limit)
    )


@dataclass(slots=True)
class Sticky:
    """What one request's persistence record said, for its response."""

    member: MemberView | None = None  # the record's member, when honoured
    presented: bool = False  # the request carried a record for this pool (honoured or not)
    refresh: bool = False  # honoured, but old enough to be re-issued (sliding `max_age`)
    others: list[bytes] = field(default_factory=list)  # the cookie's entries for other pools

    def outcome(self, member: MemberView, recorded: bool) -> str | None:
        """The access log's `persist` field: hit, replaced, new, or None."""
        if self.member is member:
            return "hit"
        if self.presented:
            return "replaced"
        return "new" if recorded else None


class _Index:
    """One pool's members by token id, address and `cookie_value`; rebuilt when its members change."""

    __slots__ = ("members", "by_id", "by_address", "by_value")

    def __init__(self, pool: str, members: tuple[Member, ...], signer: tokens.TokenSigner | None) -> None:
        self.members = members
        self.by_id = {signer.member_id(pool, m.name): m.name for m in members} if signer is not None else {}
        self.by_address = {(m.address.host, m.address.port): m.name for m in members}
        self.by_value = {m.cookie_value.encode(): m.name for m in members if m.cookie_value is not None}


class CookiePersistence:
    """Cookie persistence of one virtual server: `insert`, `rewrite` or `passive`."""

    def __init__(self, spec: Persistence, signer: tokens.TokenSigner | None) -> None:
        self.spec = spec
        self.mode = spec.mode
        self.f5 = spec.encoding is CookieEncoding.F5
        self.signer = signer
        self._names: dict[str, bytes] = {}
        self._indexes: dict[str, _Index] = {}

    def cookie_name(self, pool: str) -> bytes:
        name = self._names.get(pool)
        if name is None:
            default = f"{F5_PREFIX}{pool}" if self.f5 else DEFAULT_COOKIE
            name = self._names[pool] = (self.spec.cookie or default).encode()
        return name

    def _index(self, pool: PoolView) -> _Index:
        index = self._indexes.get(pool.name)
        if index is None or index.members is not pool.config.members:
            index = self._indexes[pool.name] = _Index(pool.name, pool.config.members, self.signer)
        return index

    def lookup(self, pool: PoolView, headers: Sequence[Triple], now: int) -> Sticky:
        """Reads the request's record for `pool`; `now` is wall-clock seconds."""
        value = cookies.read(headers, self.cookie_name(pool.name))
        if value is None:
            return Sticky()
        index = self._index(pool)
        sticky = Sticky(presented=True)
        if self.f5:
            address = tokens.f5_decode(value)
            name = index.by_address.get(address) if address is not None else None
        elif self.mode is CookieMode.PASSIVE:
            name = index.by_value.get(value)
        else:
            assert self.signer is not None
            entry, sticky.others = self.signer.read(value, pool.name, now, self.spec.max_age)
            name = index.by_id.get(entry.member_id) if entry is not None else None
            sticky.presented = entry is not None or len(sticky.others) < len(value.split(b"."))
            if entry is not None and self.spec.max_age > 0:
                sticky.refresh = now - entry.issued > self.spec.max_age / 2
        member = pool.by_name.get(name) if name is not None else None
        if member is not None and honoured(member):
            sticky.member = member
        return sticky

    def forwarded(self, headers: list[Triple], pool: str) -> list[Triple]:
        """The request headers for the member: our cookie removed (`insert`, `rewrite`)."""
        if self.mode is CookieMode.PASSIVE:
            return headers  # the application's own cookie
        return cookies.strip(headers, self.cookie_name(pool))

    def respond(self, sticky: Sticky, member: MemberView, headers: list[Triple], *, secure: bool, now: int) -> str | None:
        """Sets or rewrites the cookie in the member's response headers, in place.

        Returns the access log's `persist` field.
        """
        name = self.cookie_name(member.pool)
        fresh = sticky.member is not member or sticky.refresh
        if self.mode is CookieMode.PASSIVE:
            value = member.config.cookie_value
            if sticky.member is member or not sticky.presented or value is None:
                return sticky.outcome(member, False)
            if cookies.set_by_member(headers, name) is None:  # the record pointed elsewhere: point it here
                headers.append(self._set(name, value.encode(), secure))
            return sticky.outcome(member, True)
        if self.mode is CookieMode.REWRITE:
            if cookies.rewrite(headers, name, self._value(sticky, member, now)):
                return sticky.outcome(member, True)
            if sticky.presented and fresh:  # not honoured, or due for re-issue (sliding max_age)
                headers.append(self._set(name, self._value(sticky, member, now), secure))
                return sticky.outcome(member, True)
            return sticky.outcome(member, False)
        headers[:] = cookies.drop_set(headers, name)  # the member's own is never let through (HAProxy's insert)
        if not fresh:
            return "hit"
        headers.append(self._set(name, self._value(sticky, member, now), secure))
        return sticky.outcome(member, True)

    def _value(self, sticky: Sticky, member: MemberView, now: int) -> bytes:
        if self.f5:
            return tokens.f5_encode(member.address)
        assert self.signer is not None
        return tokens.join(self.signer.issue(member.pool, member.name, now), sticky.others)

    def _set(self, name: bytes, value: bytes, secure: bool) -> Triple:
        return cookies.set_cookie(name, value, secure=secure, max_age=int(self.spec.max_age))


class SourceTable:
    """Client address -> member, per pool, kept for `timeout` after last use; at most `size` records."""

    def __init__(self, timeout: float, size: int) -> None:
        self.timeout = timeout
        self.size = size
        # (pool, key) -> (member, last use), least recently used first; expiry follows the current timeout
        self._records: collections.OrderedDict[tuple[str, bytes], tuple[str, float]] = collections.OrderedDict()

    def __len__(self) -> int:
        return len(self._records)

    def get(self, pool: str, key: bytes, now: float) -> str | None:
        record = self._records.get((pool, key))
        if record is None:
            return None
        if record[1] + self.timeout <= now:
            del self._records[(pool, key)]
            return None
        return record[0]

    def put(self, pool: str, key: bytes, member: str, now: float) -> None:
        records = self._records
        records[(pool, key)] = (member, now)
        records.move_to_end((pool, key))
        while records:  # the least recently used are at the front: expired ones first, then over the bound
            oldest = next(iter(records.values()))
            if oldest[1] + self.timeout > now and len(records) <= self.size:
                break
            records.popitem(last=False)


class SourcePersistence:
    """Source-address persistence of one virtual server, honouring each pool's `hash_mask`."""

    def __init__(self, spec: Persistence, table: SourceTable) -> None:
        self.spec = spec
        self.table = table

    def lookup(self, pool: PoolView, client: bytes, now: float) -> Sticky:
        name = self.table.get(pool.name, masked_key(client, pool.config.hash_mask), now)
        if name is None:
            return Sticky()
        member = pool.by_name.get(name)
        if member is not None and honoured(member):
            return Sticky(member=member, presented=True)
        return Sticky(presented=True)

    def record(self, pool: PoolView, client: bytes, member: MemberView, now: float) -> None:
        """Remembers (or refreshes) the client's member: on each use and when a connection ends."""
        self.table.put(pool.name, masked_key(client, pool.config.hash_mask), member.name, now)


class Persistences:
    """The persistence of every virtual server; source tables survive reloads."""

    def __init__(self) -> None:
        self.by_vs: Mapping[str, CookiePersistence | SourcePersistence] = {}

    def configure(self, servers: Mapping[str, VirtualServer], key: bytes | None) -> None:
        """Applies a (re)loaded config; `key` signs cookies (None when no server needs it)."""
        signer = tokens.TokenSigner(key) if key is not None else None
        built: dict[str, CookiePersistence | SourcePersistence] = {}
        for vs in servers.values():
            spec = vs.persistence
            if spec is None:
                continue
            if spec.type is PersistenceType.COOKIE:
                built[vs.name] = CookiePersistence(spec, signer)
                continue
            old = self.by_vs.get(vs.name)
            if isinstance(old, SourcePersistence):
                table = old.table
                table.timeout, table.size = spec.timeout, spec.max_records
            else:
                table = SourceTable(spec.timeout, spec.max_records)
            built[vs.name] = SourcePersistence(spec, table)
        self.by_vs = built


def needs_key(servers: Mapping[str, VirtualServer]) -> bool:
    """Whether any virtual server issues signed cookies (insert or rewrite, signed encoding)."""
    return any(
        vs.persistence is not None
        and vs.persistence.type is PersistenceType.COOKIE
        and vs.persistence.encoding is CookieEncoding.SIGNED
        and vs.persistence.mode is not CookieMode.PASSIVE
        for vs in servers.values()
    )
