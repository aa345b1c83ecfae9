"""Least connections and ratio least connections.

Theory of operation: every candidate has a *score*, its load per unit of
capacity: ``active`` for least_connections, ``active / ratio`` for
ratio_least_connections, and in both divided by the ramp factor while the member
ramps up (``core.ramp``). A pick takes the lowest score; among equal scores,
the first at or after a cursor in slot order, wrapping, and the cursor moves
past the winner: round robin among the tied, as F5 breaks ties (HAProxy and
nginx do the same). ``active`` is the truth; nothing here counts on its own.

Structure, built once per candidates tuple (its identity is the cache key; we
keep a reference so the id cannot be reused) and kept across picks: buckets of
candidate indexes by score, each in slot order, and the sorted list of scores.
A pick reads the lowest bucket and bisects it for the cursor: O(log n).
Scores are one correctly rounded division of two integers (active x STEPS over
ratio x ramp step), so equal loads compare equal and ties really are ties.

Keeping scores true when counters change elsewhere: the data plane may open or
close connections that never pass through this instance (another worker, the
balancer a reload replaced). So a member's score is re-read from ``active``
- whenever a pick looks at it (a count that went up is found before the member
  can win on a stale low score),
- at the next pick after ``on_open``/``on_close`` names it,
- and by a sweep that re-reads one more candidate at every pick, so a count
  that went down unseen is found within n picks.
A member whose score changed moves bucket: O(log n) comparisons and a memmove.

Skipped: a member named in ``avoid`` or at its connection limit is passed over
for this pick and keeps its place; each costs one step, so a pick is
O(log n + s) for s such members ahead of the winner.

Slow ramp scales both what a returning member may hold and what it is offered,
so it is neither flooded (HAProxy's leastconn pitfall: an idle member has the
lowest load and takes every new connection) nor starved (RAMP_FLOOR):
- capacity: its score is active / (ratio x factor), so at factor f it settles
  at f of the connections its peers hold. The factor is taken in steps of
  RAMP_FLOOR (5 %), and a heap of step times re-buckets a ramping member when
  its step changes: at most 1 / RAMP_FLOOR moves over a whole ramp instead of
  a re-key at every pick, and nothing to scan however many members ramp;
- share: when it would win, it takes the pick only once its credit, growing by
  its factor at each such turn, reaches 1 (as in round robin and ratio). An
  idle ramping member with short connections, always lowest, therefore gets f
  of the picks it wins, not all of them. The factor here is exact, and relative
  to the candidate furthest up its ramp (all ramping alike changes nothing).
"""

from __future__ import annotations

import math
from bisect import bisect_left, insort
from collections.abc import Container, Sequence
from heapq import heappop, heappush

from appliance.core import ramp
from appliance.core.balancing import Candidate
from appliance.core.model import Pool

STEPS = round(1.0 / ramp.RAMP_FLOOR)  # the capacity ramp moves in steps of the floor: 20 steps of 5 %
_NEVER = float("-inf")  # ramp end of a member that is not ramping


class _LeastLoad:
    """Lowest score wins, ties round robin; the subclasses say whether ``ratio`` counts."""

    _WEIGHTED = False
    __slots__ = (
        "_slow_ramp", "_candidates", "_slots", "_index", "_divisor", "_score", "_buckets",
        "_scores", "_steps_due", "_ramp_until", "_earliest", "_dirty", "_sweep", "_cursor", "_credit",
    )

    def __init__(self, pool: Pool) -> None:
        self._slow_ramp = pool.slow_ramp
        self._candidates: Sequence[Candidate] | None = None  # the tuple the buckets were built for
        self._slots: list[int] = []  # per index
        self._index: dict[str, int] = {}  # name -> index in candidates
        self._divisor: list[int] = []  # per index: ratio x ramp step; score = active x STEPS / divisor
        self._score: list[float] = []  # per index: the score it is bucketed under
        self._buckets: dict[float, list[int]] = {}  # score -> indexes in slot order
        self._scores: list[float] = []  # the buckets' scores, ascending
        self._steps_due: list[tuple[float, int]] = []  # heap: (time of next ramp step, index)
        self._ramp_until: list[float] = []  # per index: when its ramp ends
        self._earliest: float | None = None  # earliest ramp start, None if a candidate never ramped
        self._dirty: set[str] = set()  # named by on_open/on_close since the last pick
        self._sweep = 0
        self._cursor = 0  # slot after the last pick: round robin among equal scores
        self._credit = ramp.RampCredit()

    def pick(
        self, candidates: Sequence[Candidate], key: bytes | None, avoid: Container[str], now: float
    ) -> Candidate | None:
        if candidates is not self._candidates:
            self._rebuild(candidates, now)
        if not candidates:
            return None
        self._refresh(candidates, now)
        start = bisect_left(self._slots, self._cursor)
        declined: set[int] = set()
        fallback: Candidate | None = None
        moved = True
        while moved:  # a member found with a stale score moves; then look again
            moved = False
            for score in self._scores:
                bucket = self._buckets[score]
                size = len(bucket)
                first = bisect_left(bucket, start)
                for offset in range(size):
                    index = bucket[first + offset - size if first + offset >= size else first + offset]
                    member = candidates[index]
                    load = member.active * STEPS / self._divisor[index]
                    if load != score:
                        self._move(index, load)
                        moved = True
                        break
                    if index in declined or member.name in avoid or not member.available:
                        continue
                    if self._ramp_until[index] > now and not self._takes_turn(member, now):
                        declined.add(index)
                        fallback = fallback or member
                        continue
                    self._cursor = member.slot + 1
                    return member
                if moved:
                    break
        if fallback is not None:  # only ramping members can take it: better them than nobody
            self._cursor = fallback.slot + 1
        return fallback

    def on_open(self, member: Candidate) -> None:
        self._dirty.add(member.name)

    def on_close(self, member: Candidate) -> None:
        self._dirty.add(member.name)

    def observe(self, member: Candidate, response_time: float) -> None:
        pass

    def _takes_turn(self, member: Candidate, now: float) -> bool:
        """A ramping member's credit decides whether it takes a pick it would win."""
        share = ramp.factor(member.ramp_start, self._slow_ramp, now)
        share /= ramp.factor(self._earliest, self._slow_ramp, now)
        return self._credit.takes_turn(member.name, share)

    def _refresh(self, candidates: Sequence[Candidate], now: float) -> None:
        """Ramp steps that came due, members named since the last pick, and one more by sweep."""
        due = self._steps_due
        while due and due[0][0] <= now:
            _, index = heappop(due)
            self._set_step(candidates, index, now)
        if self._dirty:
            for name in self._dirty:
                found = self._index.get(name)
                if found is not None:
                    self._reread(candidates, found)
            self._dirty.clear()
        self._sweep = (self._sweep + 1) % len(candidates)
        self._reread(candidates, self._sweep)

    def _reread(self, candidates: Sequence[Candidate], index: int) -> None:
        load = candidates[index].active * STEPS / self._divisor[index]
        if load != self._score[index]:
            self._move(index, load)

    def _set_step(self, candidates: Sequence[Candidate], index: int, now: float) -> None:
        """Put a ramping member on its current step and schedule the next one."""
        member = candidates[index]
        step = _step(member.ramp_start, self._slow_ramp, now)
        self._divisor[index] = self._ratio(member) * step
        self._reread(candidates, index)
        if step < STEPS and member.ramp_start is not None:
            following = member.ramp_start + self._slow_ramp * (step + 1) / STEPS
            heappush(self._steps_due, (max(following, math.nextafter(now, math.inf)), index))

    def _move(self, index: int, score: float) -> None:
        old = self._score[index]
        bucket = self._buckets[old]
        del bucket[bisect_left(bucket, index)]
        if not bucket:
            del self._buckets[old]
            del self._scores[bisect_left(self._scores, old)]
        target = self._buckets.get(score)
        if target is None:
            self._buckets[score] = [index]
            insort(self._scores, score)
        else:
            insort(target, index)
        self._score[index] = score

    def _ratio(self, member: Candidate) -> int:
        return max(1, member.ratio) if self._WEIGHTED else 1  # config keeps ratio >= 1

    def _rebuild(self, candidates: Sequence[Candidate], now: float) -> None:
        """Buckets for a new candidates tuple, from the live counts; O(n log n)."""
        count = len(candidates)
        before = self._index
        self._slots = [member.slot for member in candidates]
        self._index = {member.name: index for index, member in enumerate(candidates)}
        self._divisor = [self._ratio(member) * STEPS for member in candidates]
        self._score = [0.0] * count
        self._buckets = {}
        self._steps_due = []
        self._ramp_until = [_NEVER] * count
        for index, member in enumerate(candidates):
            if member.name not in before:
                self._credit.forget(member.name)  # (re)joining starts a new ramp: no credit left over
            score = member.active * STEPS / self._divisor[index]
            self._score[index] = score
            self._buckets.setdefault(score, []).append(index)
        self._scores = sorted(self._buckets)
        if self._slow_ramp > 0.0:
            for index, member in enumerate(candidates):
                if member.ramp_start is not None and member.ramp_start + self._slow_ramp > now:
                    self._ramp_until[index] = member.ramp_start + self._slow_ramp
                    self._set_step(candidates, index, now)
        starts = [member.ramp_start for member in candidates]
        self._earliest = None if not starts or None in starts else min(s for s in starts if s is not None)
        self._dirty.clear()
        self._sweep = 0
        self._candidates = candidates  # keep the reference: its identity is the cache key

    def __repr__(self) -> str:
        name = type(self).__name__
        if not self._scores:
            return f"<{name} no candidates>"
        least = self._score[self._buckets[self._scores[0]][0]]
        return f"<{name} {len(self._score)} candidates, least load {least:g}, cursor at slot {self._cursor}>"


def _step(ramp_start: float | None, slow_ramp: float, now: float) -> int:
    """The ramp factor in whole steps of RAMP_FLOOR, 1..STEPS (never 0: no starving)."""
    return min(STEPS, max(1, math.floor(ramp.factor(ramp_start, slow_ramp, now) * STEPS + 1e-9)))


class LeastConnections(_LeastLoad):
    """Fewest ``active``; ties in round-robin order."""

    __slots__ = ()


class RatioLeastConnections(_LeastLoad):
    """Fewest ``active / ratio``; ties in round-robin order."""

    _WEIGHTED = True
    __slots__ = ()
