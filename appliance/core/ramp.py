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


_EPSILON = 1e-9  # ten credits of 0.1 add up to a hair under 1 in floating point; that is a whole turn


class RampCredit:
    """Deterministic thinning: a member offered turns takes `share` of them.

    Each offer adds the member's share to its credit; it takes the turn when
    the credit reaches 1 (and pays 1). No randomness, so tests see exact
    sequences and a ramping member is never skipped twice in a row by bad luck.
    """

    __slots__ = ("_credit",)

    def __init__(self) -> None:
        self._credit: dict[str, float] = {}  # member -> turns owed, below 1

    def takes_turn(self, name: str, share: float) -> bool:
        if share >= 1.0:
            self._credit.pop(name, None)
            return True
        credit = self._credit.get(name, 0.0) + share
        if credit < 1.0 - _EPSILON:
            self._credit[name] = credit
            return False
        self._credit[name] = credit - 1.0
        return True

    def forget(self, name: str) -> None:
        """A member that leaves and returns starts a new ramp with no credit left over."""
        self._credit.pop(name, None)
