"""Round robin: each available member in turn, in config order.

A cursor remembers the slot after the last pick; the next pick is the first
candidate at or after the cursor (wrapping), so a member that leaves and comes
back takes its old turn instead of resetting the rotation. Candidates arrive in
slot order, which makes finding the cursor a bisection: O(log n) per pick, plus
one step per skipped member (avoided, at its limit, or ramping).

Slow ramp: a ramping member keeps a credit that grows by its ramp factor each
time its turn comes; it takes the turn only when the credit reaches 1, so it
gets `factor` of its turns, deterministically.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Container, Sequence

from appliance.core import ramp
from appliance.core.balancing import Candidate, LoadBlind
from appliance.core.model import Pool


class RoundRobin(LoadBlind):
    __slots__ = ("_cursor", "_slow_ramp", "_credit")

    def __init__(self, pool: Pool) -> None:
        self._cursor = 0
        self._slow_ramp = pool.slow_ramp
        self._credit = ramp.RampCredit()

    def pick(
        self, candidates: Sequence[Candidate], key: bytes | None, avoid: Container[str], now: float
    ) -> Candidate | None:
        count = len(candidates)
        if count == 0:
            return None
        start = bisect_left(candidates, self._cursor, key=lambda c: c.slot)
        fallback = None
        for offset in range(count):
            member = candidates[(start + offset) % count]
            if member.name in avoid or not member.available:
                continue
            if not self._credit.takes_turn(member.name, ramp.factor(member.ramp_start, self._slow_ramp, now)):
                fallback = fallback or member
                continue
            self._cursor = member.slot + 1
            return member
        if fallback is not None:  # only ramping members can take it: better them than nobody
            self._cursor = fallback.slot + 1
        return fallback

    def __repr__(self) -> str:
        return f"<RoundRobin cursor={self._cursor}>"
