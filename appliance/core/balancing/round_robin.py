"""Round robin: each available member in turn, in config order.

A cursor remembers the slot after the last pick; the next pick is the first
candidate at or after the cursor (wrapping), so a member that leaves and comes
back takes its old turn instead of resetting the rotation. Candidates arrive in
slot order, which makes finding the cursor a bisection, not a scan.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Container, Sequence

from appliance.core.balancing import Candidate
from appliance.core.model import Pool


class RoundRobin:
    __slots__ = ("_cursor",)

    def __init__(self, pool: Pool) -> None:
        self._cursor = 0

    def pick(
        self, candidates: Sequence[Candidate], key: bytes | None, avoid: Container[str]
    ) -> Candidate | None:
        count = len(candidates)
        if count == 0:
            return None
        start = bisect_left(candidates, self._cursor, key=lambda c: c.slot)
        for offset in range(count):
            member = candidates[(start + offset) % count]
            if member.name not in avoid:
                self._cursor = member.slot + 1
                return member
        return None

    def on_open(self, member: Candidate) -> None:
        pass

    def on_close(self, member: Candidate) -> None:
        pass

    def observe(self, member: Candidate, response_time: float) -> None:
        pass

    def __repr__(self) -> str:
        return f"<RoundRobin cursor={self._cursor}>"
