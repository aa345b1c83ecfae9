"""The pool queue: requests and connections that wait for a member below its limit.

When every candidate of a pool is at its `connection_limit`, a new request
(http) or connection (tcp) waits in the pool's bounded FIFO queue (`queue:
{size, timeout}`; size 0 means no queue) instead of being refused at once, as
HAProxy's server queues do. A member closing a connection wakes the oldest
waiter, which picks again; a waiter that reaches `timeout` is answered 503
(http) or closed (tcp). Queues are per pool name and live as long as the
process, so they survive reloads.
"""

from __future__ import annotations

import collections

import trio


class PoolQueues:
    def __init__(self) -> None:
        self._waiting: dict[str, collections.deque[trio.Event]] = {}

    async def wait(self, pool: str, size: int, deadline: float) -> bool:
        """Waits for a freed slot until `deadline`; False when the queue is full or the time is up."""
        queue = self._waiting.setdefault(pool, collections.deque())
        if size <= 0 or len(queue) >= size:
            return False
        woken = trio.Event()
        queue.append(woken)
        try:
            with trio.move_on_at(deadline):
                await woken.wait()
        finally:
            if not woken.is_set():
                queue.remove(woken)
        return woken.is_set()

    def slot_freed(self, pool: str) -> None:
        """A member of `pool` closed a connection or finished a request: wake the oldest waiter."""
        queue = self._waiting.get(pool)
        if queue:
            queue.popleft().set()

    def waiting(self, pool: str) -> int:
        return len(self._waiting.get(pool, ()))

    def __repr__(self) -> str:
        return f"<PoolQueues {sum(map(len, self._waiting.values()))} waiting>"
