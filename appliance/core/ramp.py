"""Slow ramp: the share of a member that has just become available.

A member that comes back (health down -> up, admin state back to enabled,
added at runtime; not at appliance start) gets ``factor`` of its full share,
growing linearly from ``RAMP_FLOOR`` to 1 over the pool's ``slow_ramp``
(F5's slow ramp time; HAProxy's ``slowstart``). Every method applies it at
every pick: weighted methods multiply the member's weight by it, least-
connection methods divide its connection count by it (so it also gets only
that fraction of the concurrency: the HAProxy leastconn pitfall, where a
fresh member with zero connections takes every new one, cannot happen), and
the floor keeps it from being starved (the Envoy pitfall).
"""

from __future__ import annotations

RAMP_FLOOR = 0.05  # a returning member starts at 5 % of its share, never at zero


def factor(ramp_start: float | None, slow_ramp: float, now: float) -> float:
    """The member's share, 0 < factor <= 1, at `now`."""
    if ramp_start is None or slow_ramp <= 0.0:
        return 1.0
    elapsed = now - ramp_start
    if elapsed >= slow_ramp:
        return 1.0
    return max(RAMP_FLOOR, elapsed / slow_ramp)
