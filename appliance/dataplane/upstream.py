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
from collections.abc import Iterable

import h11
import trio

from appliance.core.model import Endpoint
from appliance.dataplane.sockio import SocketIO
from appliance.errors import UpstreamConnectError

LOGGER = logging.getLogger("appliance.upstream")

IDLE_MAX_AGE = 30.0  # below nginx's 75 s and Apache's 5..15 s defaults would be too eager; HAProxy purges at 5 s
IDLE_PER_MEMBER = 256  # enough for every client connection of a busy VIP to find one warm
_PEEK_FLAGS = socket.MSG_PEEK | socket.MSG_DONTWAIT


class UpstreamConnection:
    """One TCP connection to a member with the h11 client state that rides on it."""

    __slots__ = ("endpoint", "stream", "http", "idle_since", "reused")

    def __init__(self, endpoint: Endpoint, stream: SocketIO) -> None:
        self.endpoint = endpoint
        self.stream = stream
        self.http = h11.Connection(h11.CLIENT)
        self.idle_since = 0.0
        self.reused = False

    def looks_alive(self) -> bool:
        """True when the member has neither closed nor written to this idle connection."""
        try:
            self.stream.sock.recv(1, _PEEK_FLAGS)  # b"" is a close, anything else is stray data
        except BlockingIOError:
            return True
        except OSError:
            return False
        return False

    async def aclose(self) -> None:
        self.stream.close()

    def __repr__(self) -> str:
        return f"<UpstreamConnection {self.endpoint} {self.http.our_state}/{self.http.their_state}>"


async def connect(endpoint: Endpoint, timeout: float) -> UpstreamConnection:
    """Opens a new connection to a member.

    Raises:
        UpstreamConnectError: refused, unreachable or not done within `timeout`.
    """
    family = socket.AF_INET6 if endpoint.is_ipv6 else socket.AF_INET
    raw = socket.socket(family, socket.SOCK_STREAM)
    try:
        raw.setblocking(False)
        code = raw.connect_ex((endpoint.host, endpoint.port))
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
    return UpstreamConnection(endpoint, SocketIO(raw))


def _describe(code: int) -> str:
    if code == errno.ECONNREFUSED:
        return "connect refused"
    if code == errno.ECONNRESET:
        return "connection reset"
    return f"connect failed: {os.strerror(code)}"


class UpstreamPools:
    """Idle keep-alive connections per member endpoint, newest first out."""

    def __init__(self) -> None:
        self._idle: dict[Endpoint, list[UpstreamConnection]] = {}

    async def acquire(self, endpoint: Endpoint, timeout: float, now: float) -> UpstreamConnection:
        idle = self._idle.get(endpoint)
        while idle:
            conn = idle.pop()
            if now - conn.idle_since < IDLE_MAX_AGE and conn.looks_alive():
                conn.reused = True
                return conn
            await conn.aclose()
        return await connect(endpoint, timeout)

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
        idle = self._idle.setdefault(conn.endpoint, [])
        if len(idle) >= IDLE_PER_MEMBER:
            return False
        http.start_next_cycle()
        conn.idle_since = now
        idle.append(conn)
        return True

    async def close_endpoints(self, keep: Iterable[Endpoint] | None = None) -> None:
        """Closes idle connections to every endpoint not in `keep` (all when None)."""
        keep_set = set(keep or ())
        for endpoint in [e for e in self._idle if e not in keep_set]:
            for conn in self._idle.pop(endpoint):
                await conn.aclose()

    def idle_count(self, endpoint: Endpoint) -> int:
        return len(self._idle.get(endpoint, ()))

    def __repr__(self) -> str:
        return f"<UpstreamPools {sum(map(len, self._idle.values()))} idle over {len(self._idle)} members>"
