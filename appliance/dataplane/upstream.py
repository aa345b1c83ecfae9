"""Connections to members: connect with a deadline, and a pool of idle keep-alive ones.

Reusing member connections doubled the prototype's throughput, so every HTTP
exchange asks the pool first. An idle connection is handed out only when it is
young enough and a non-blocking peek shows the member has neither closed it nor
sent stray bytes on it; the caller still treats a failure before the first
response byte on a reused connection as "stale" and tries a fresh one.
"""

from __future__ import annotations

import errno
import logging
import os
import socket
import ssl
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass

import h11
import trio

from appliance.core.model import Endpoint
from appliance.dataplane.sockio import ByteStream, SocketIO
from appliance.errors import UpstreamConnectError

LOGGER = logging.getLogger("appliance.upstream")

# Linux: bind() with port 0 leaves the port to connect(), so one source address shares its ports
# across destinations (~28k per destination instead of ~28k in all). Not in every Python's socket module.
IP_BIND_ADDRESS_NO_PORT = getattr(socket, "IP_BIND_ADDRESS_NO_PORT", 24)
_SOURCE_EXHAUSTED = (errno.EADDRNOTAVAIL, errno.EADDRINUSE)
IDLE_MAX_AGE = 30.0  # how long an idle member connection is kept; the peek catches members that closed sooner
IDLE_PER_MEMBER = 256  # enough for every client connection of a busy VIP to find one warm
_PEEK_FLAGS = socket.MSG_PEEK | socket.MSG_DONTWAIT


class UpstreamConnection:
    """One connection to a member with the h11 client state that rides on it."""

    __slots__ = ("key", "stream", "http", "idle_since", "reused", "source", "on_close", "_raw", "_tls")

    def __init__(self, key: PoolKey, stream: ByteStream, raw: socket.socket, source: str | None = None) -> None:
        self.key = key
        self.stream = stream
        self.http = h11.Connection(h11.CLIENT)
        self.idle_since = 0.0
        self.reused = False
        self.source = source  # the SNAT address it was opened from, if any
        self.on_close: Callable[[], None] | None = None  # told once when it closes (SNAT accounting)
        self._raw = raw
        self._tls = key[1] is not None

    def forget(self) -> None:
        """Runs the close hook once; every path that closes the stream calls this too."""
        hook, self.on_close = self.on_close, None
        if hook is not None:
            hook()

    @property
    def endpoint(self) -> Endpoint:
        return self.key[0]

    def looks_alive(self) -> bool:
        """True when the member has neither closed nor written to this idle connection.

        Over TLS a member may legitimately send records while idle (session
        tickets), so there only a close counts.
        """
        try:
            data = self._raw.recv(1, _PEEK_FLAGS)
        except BlockingIOError:
            return True
        except OSError:
            return False
        return self._tls and data != b""

    async def aclose(self) -> None:
        self.close()

    def close(self) -> None:
        self.stream.close()  # no close_notify to an idle or failed member: nothing waits for it
        self.forget()

    def __repr__(self) -> str:
        return f"<UpstreamConnection {self.endpoint} {self.http.our_state}/{self.http.their_state}>"


async def connect(
    endpoint: Endpoint, timeout: float, tls: MemberTls | None = None, source: str | None = None
) -> UpstreamConnection:
    """Opens a new connection to a member, with TLS when the pool re-encrypts, from `source` if given.

    Raises:
        SourceExhausted: `source` has no port left toward this member (EADDRNOTAVAIL, EADDRINUSE).
        UpstreamConnectError: refused, unreachable, TLS handshake failed, or
            not done within `timeout`.
    """
    family = socket.AF_INET6 if endpoint.is_ipv6 else socket.AF_INET
    raw = socket.socket(family, socket.SOCK_STREAM)
    try:
        raw.setblocking(False)
        if source is not None:
            _bind_source(raw, source)
        code = raw.connect_ex((endpoint.host, endpoint.port))
        if source is not None and code in _SOURCE_EXHAUSTED:
            raise SourceExhausted(f"source {source}: {os.strerror(code)}")
        if code == errno.EINPROGRESS:
            with trio.move_on_after(timeout) as scope:
                await trio.lowlevel.wait_writable(raw)
            if scope.cancelled_caught:
                raise UpstreamConnectError(f"connect timeout after {timeout:g}s")
            code = raw.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
        if code:
            raise UpstreamConnectError(_describe(code))
    except BaseException:
        raw.close()
        raise
    plain = SocketIO(raw)
    if tls is None:
        return UpstreamConnection((endpoint, None), plain, raw, source)
    from appliance.dataplane.tls import connect_tls

    try:
        stream = await connect_tls(plain, tls.context, tls.server_name, timeout)
    except BaseException:
        plain.close()
        raise
    return UpstreamConnection((endpoint, tls), stream, raw, source)


class SourceExhausted(UpstreamConnectError):
    """The SNAT address cannot open another connection to this member: try the next address."""


def _bind_source(raw: socket.socket, source: str) -> None:
    try:
        raw.setsockopt(socket.IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, 1)
    except OSError:
        pass  # not Linux, or IPv6-only stack: bind() then takes a port at once
    try:
        raw.bind((source, 0))
    except OSError as exc:
        if exc.errno in _SOURCE_EXHAUSTED:
            raise SourceExhausted(f"source {source}: {exc.strerror}") from None
        raise UpstreamConnectError(f"cannot bind source {source}: {exc.strerror or exc}") from None


def _describe(code: int) -> str:
    if code == errno.ECONNREFUSED:
        return "connect refused"
    if code == errno.ECONNRESET:
        return "connection reset"
    return f"connect failed: {os.strerror(code)}"


@dataclass(frozen=True, eq=False, slots=True)
class MemberTls:
    """How a pool re-encrypts to its members; one object per pool config, so it keys idle pools."""

    context: ssl.SSLContext
    server_name: str | None


PoolKey = tuple[Endpoint, MemberTls | None]
Opener = Callable[[str, Endpoint, float, "MemberTls | None", float], Awaitable[UpstreamConnection]]


class UpstreamPools:
    """Idle keep-alive connections per member endpoint (and TLS setting), newest first out."""

    def __init__(self, opener: Opener | None = None) -> None:
        self._idle: dict[PoolKey, list[UpstreamConnection]] = {}
        self.member_tls: dict[str, MemberTls] = {}  # pool name -> its TLS to members; set by the control plane
        self._open = opener  # how new connections are opened (SNAT sources); None: from the default address

    async def acquire(
        self,
        endpoint: Endpoint,
        timeout: float,
        now: float,
        tls: MemberTls | None = None,
        pool: str = "",
        wait_until: float = 0.0,
    ) -> UpstreamConnection:
        """An idle connection to `endpoint` if a good one is kept, else a new one (for LB pool `pool`)."""
        idle = self._idle.get((endpoint, tls))
        while idle:
            conn = idle.pop()
            if now - conn.idle_since < IDLE_MAX_AGE and conn.looks_alive():
                conn.reused = True
                return conn
            await conn.aclose()
        return await self.open(endpoint, timeout, tls, pool, wait_until)

    async def open(
        self, endpoint: Endpoint, timeout: float, tls: MemberTls | None, pool: str, wait_until: float
    ) -> UpstreamConnection:
        """A new connection, from the LB pool's SNAT source when it has one."""
        if self._open is None:
            return await connect(endpoint, timeout, tls)
        return await self._open(pool, endpoint, timeout, tls, wait_until)

    def release(self, conn: UpstreamConnection, now: float) -> bool:
        """Puts a connection whose exchange completed cleanly back; False if it cannot be."""
        http = conn.http
        if http.our_state is not h11.DONE or http.their_state is not h11.DONE:
            return False
        if http.trailing_data[0]:
            # Bytes after a complete response (or a body after HEAD/204/304): the
            # next client would read someone else's answer.
            LOGGER.warning("member %s sent bytes after a complete response; connection closed", conn.endpoint)
            return False
        idle = self._idle.setdefault(conn.key, [])
        if len(idle) >= IDLE_PER_MEMBER:
            return False
        http.start_next_cycle()
        conn.idle_since = now
        idle.append(conn)
        return True

    def retain(self, keep: Iterable[PoolKey] = ()) -> None:
        """Closes the idle connections to every member (and TLS setting) not in `keep`.

        Called whenever members leave service (down, disabled, forced offline,
        removed) and at shutdown: an idle connection to such a member must not
        carry the next request.
        """
        keep_set = set(keep)
        for key in [k for k in self._idle if k not in keep_set]:
            for conn in self._idle.pop(key):
                conn.close()

    def idle_count(self, endpoint: Endpoint, tls: MemberTls | None = None) -> int:
        """Idle connections kept for a member (for tests now, for metrics later)."""
        return len(self._idle.get((endpoint, tls), ()))

    def __repr__(self) -> str:
        return f"<UpstreamPools {sum(map(len, self._idle.values()))} idle over {len(self._idle)} members>"
