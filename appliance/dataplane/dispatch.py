"""From an accepted socket to the handler of its virtual server's mode.

Per connection: count it (for the drain, and in its virtual server's
``VirtualServerStats``, which goes on to the handler to count requests and
bytes), find the address the client reached (the listen address, or
``getsockname`` on a wildcard listener), terminate TLS when the virtual server
has it (under its own handshake deadline), then hand the stream to the HTTP
proxy or the TCP relay. A failed handshake costs only that connection and is
one access-log line.
"""

from __future__ import annotations

import logging
import ssl
from collections.abc import Callable, Mapping
from typing import Any

from appliance.core.model import Endpoint, Mode
from appliance.core.snapshot import Snapshot
from appliance.core.stats import ServerStats, VirtualServerStats
from appliance.dataplane.access_log import AccessLog
from appliance.dataplane.http_proxy import HttpProxy
from appliance.dataplane.sockio import ByteStream, SocketIO
from appliance.dataplane.tcp_relay import TcpRelay
from appliance.dataplane.tls import TlsHandshakeError, accept_tls
from appliance.dataplane.tracker import ConnectionTracker

LOGGER = logging.getLogger("appliance.dispatch")

_WILDCARDS = frozenset({"0.0.0.0", "::"})


class Dispatcher:
    """Routes accepted connections; `server_tls` is swapped whole by reloads.

    `server_stats` holds every virtual server's counters for the process's
    lifetime (a dispatcher outlives reloads); pass one to share it, or read
    ``dispatcher.server_stats``.
    """

    def __init__(
        self,
        snapshot: Callable[[], Snapshot],
        tracker: ConnectionTracker,
        access_log: AccessLog,
        proxy: HttpProxy,
        relay: TcpRelay,
        server_stats: ServerStats | None = None,
    ) -> None:
        self._snapshot = snapshot
        self._tracker = tracker
        self._log = access_log
        self._proxy = proxy
        self._relay = relay
        self.server_tls: Mapping[str, ssl.SSLContext] = {}  # virtual server name -> context
        self.server_stats = ServerStats() if server_stats is None else server_stats

    async def serve(self, sock: SocketIO, vs_name: str, endpoint: Endpoint, peer: Any) -> None:
        """Resource handling: the stream is closed on every path, by the handler or here."""
        self._tracker.opened()
        counters: VirtualServerStats | None = None
        try:
            vs = self._snapshot().virtual_server(vs_name)
            if vs is None:
                sock.close()
                return
            counters = self.server_stats.of(vs_name)
            counters.opened()
            vip = str(endpoint)
            if endpoint.host in _WILDCARDS:
                local = sock.sock.getsockname()
                vip = str(Endpoint(host=local[0], port=local[1]))
            client = (peer[0], peer[1])
            stream: ByteStream = sock
            context = self.server_tls.get(vs_name)
            if context is not None and vs.tls is not None:
                try:
                    stream = await accept_tls(sock, context, vs.tls.handshake_timeout)
                except TlsHandshakeError as exc:
                    sock.close()
                    if self._log.enabled:
                        self._log.write(client=f"{client[0]}:{client[1]}", vip=vip, vs=vs_name, error=f"TLS handshake: {exc}")
                    return
            if vs.mode is Mode.HTTP:
                await self._proxy.serve(stream, vs_name, vip, client, tls=context is not None, counters=counters)
            else:
                await self._relay.serve(stream, vs_name, vip, client, counters=counters)
        finally:
            if counters is not None:
                counters.closed()
            self._tracker.closed()
