"""Client connections in flight, so that a drain can end idle ones and wait for the rest."""

from __future__ import annotations

import trio


class ConnectionTracker:
    """Counts handlers and holds the cancel scopes of keep-alive waits.

    On drain, connections waiting idle between requests are ended at once, busy
    ones finish their current request and answer it with ``Connection: close``.
    """

    def __init__(self) -> None:
        self.active = 0
        self.draining = False
        self.idle_scopes: set[trio.CancelScope] = set()
        self._changed = trio.Event()

    def opened(self) -> None:
        self.active += 1

    def closed(self) -> None:
        self.active -= 1
        self._changed.set()

    def drain(self) -> None:
        self.draining = True
        for scope in list(self.idle_scopes):
            scope.cancel()

    async def wait_all_closed(self) -> None:
        while self.active > 0:
            self._changed = trio.Event()
            await self._changed.wait()

    def __repr__(self) -> str:
        return f"<ConnectionTracker {self.active} active, {len(self.idle_scopes)} idle{' draining' if self.draining else ''}>"
