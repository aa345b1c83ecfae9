"""Listening sockets: one per expanded listen address, each with its own accept loop.

Listeners are keyed by endpoint. Which virtual server an endpoint serves is
looked up at every accept, so a reload that only moves an endpoint to another
virtual server touches no socket; a reload opens only added endpoints and
closes only removed ones. Connections outlive their listener: they run in the
process-wide connection nursery, so closing a listener (reload, drain, HA
step-down) never cuts a connection in flight.
"""

from __future__ import annotations

import errno
import logging
import socket
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import trio

from appliance.core.model import Endpoint
from appliance.dataplane.sockio import SocketIO
from appliance.errors import StartError

LOGGER = logging.getLogger("appliance.listen")

BACKLOG = 1024  # SOMAXCONN on modern Linux is 4096; HAProxy defaults to maxconn
IP_FREEBIND = getattr(socket, "IP_FREEBIND", 15)  # bind an address the host does not have (yet)
ACCEPT_BACKOFF = 0.1  # out of file descriptors: wait before accepting again (trio does the same)
_RESOURCE_ERRORS = {errno.EMFILE, errno.ENFILE, errno.ENOMEM, errno.ENOBUFS}

Handler = Callable[[SocketIO, str, Endpoint, Any], Awaitable[None]]


def bind_socket(endpoint: Endpoint) -> socket.socket:
    """A listening socket on `endpoint` with SO_REUSEADDR and IP_FREEBIND.

    Raises:
        OSError: the address is in use or cannot be bound.
    """
    family = socket.AF_INET6 if endpoint.is_ipv6 else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            sock.setsockopt(socket.IPPROTO_IPV6, getattr(socket, "IPV6_FREEBIND", 78), 1)
        else:
            sock.setsockopt(socket.IPPROTO_IP, IP_FREEBIND, 1)
        sock.bind((endpoint.host, endpoint.port))
        sock.listen(BACKLOG)
        sock.setblocking(False)
    except BaseException:
        sock.close()
        raise
    return sock


class Listeners:
    """The set of open listening sockets and the endpoint -> virtual server map.

    Args:
        connections: the nursery client handlers run in (outlives listeners).
        handler: called as ``handler(stream, vs_name, endpoint, peer)`` per connection.
    """

    def __init__(self, connections: trio.Nursery, handler: Handler) -> None:
        self._connections = connections
        self._handler = handler
        self._open: dict[Endpoint, trio.CancelScope] = {}
        self._serves: dict[Endpoint, str] = {}

    @property
    def endpoints(self) -> list[Endpoint]:
        return list(self._open)

    def open_for(self, vs: str) -> int:
        """How many sockets of virtual server `vs` are listening."""
        return sum(1 for endpoint in self._open if self._serves.get(endpoint) == vs)

    async def apply(self, wanted: Mapping[Endpoint, str], nursery: trio.Nursery) -> None:
        """Opens the endpoints not open yet and closes those no longer wanted.

        All new sockets are bound before anything changes; if one fails, the
        ones just bound are closed and nothing running is touched.

        Raises:
            StartError: naming the virtual server and address that could not be bound.
        """
        added = [ep for ep in wanted if ep not in self._open]
        bound: list[tuple[Endpoint, socket.socket]] = []
        failures: list[str] = []
        for endpoint in added:
            try:
                bound.append((endpoint, bind_socket(endpoint)))
            except OSError as exc:
                failures.append(f"virtual server {wanted[endpoint]}: cannot listen on {endpoint}: {exc.strerror or exc}")
        if failures:
            for _, sock in bound:
                sock.close()
            raise StartError("\n".join(failures))
        for endpoint in [ep for ep in self._open if ep not in wanted]:
            self._open.pop(endpoint).cancel()
        self._serves = dict(wanted)
        for endpoint, sock in bound:
            scope = trio.CancelScope()
            self._open[endpoint] = scope
            nursery.start_soon(self._accept_loop, endpoint, sock, scope)
        if added:
            LOGGER.info("listening on %d new address(es), %d in all", len(added), len(self._open))

    def close_all(self) -> None:
        for scope in self._open.values():
            scope.cancel()
        self._open.clear()

    async def _accept_loop(self, endpoint: Endpoint, sock: socket.socket, scope: trio.CancelScope) -> None:
        with sock, scope:
            while True:
                try:
                    client, peer = sock.accept()
                except BlockingIOError:
                    await trio.lowlevel.wait_readable(sock)
                    continue
                except OSError as exc:
                    if exc.errno in _RESOURCE_ERRORS:
                        LOGGER.error("accept on %s: %s; retrying in %gs", endpoint, exc.strerror, ACCEPT_BACKOFF)
                        await trio.sleep(ACCEPT_BACKOFF)
                        continue
                    if exc.errno in (errno.ECONNABORTED, errno.EPROTO):
                        continue  # the client gave up while queued
                    raise
                vs_name = self._serves.get(endpoint)
                if vs_name is None:
                    client.close()
                    continue
                self._connections.start_soon(self._handler, SocketIO(client), vs_name, endpoint, peer)
                await trio.lowlevel.checkpoint()  # a flood of connects must not starve the rest
