"""Passive failure detection: live traffic's failures, counted per member.

A connect that fails, or a member that resets or closes before answering,
counts against it (timeouts do not: a slow member is the monitor's business);
any answer clears the count. When a pool's `passive.failures` in a row are
reached, the control plane is told (``sink``), and it takes the member down at
once instead of waiting for its next probe.
"""

from __future__ import annotations

from collections.abc import Callable

from appliance.core.snapshot import MemberView, PoolView

Sink = Callable[[str, str, str], None]  # (pool, member, reason)


class PassiveDetector:
    def __init__(self, sink: Sink | None = None) -> None:
        self.sink = sink

    def failed(self, pool: PoolView, member: MemberView, reason: str) -> None:
        streak = member.stats.failed()
        limit = pool.config.passive.failures
        if limit and streak >= limit and self.sink is not None and member.health.serves:
            self.sink(pool.name, member.name, reason)

    @staticmethod
    def succeeded(member: MemberView) -> None:
        member.stats.succeeded()
