"""Ratio: smooth weighted round robin, each member in proportion to its ``ratio``.

Theory of operation: a stride scheduler (earliest virtual deadline first). A
member of ratio w has a *stride* of 1/w period of virtual time, and a heap holds
each candidate's next turn (its *key*). A pick pops the earliest key, advances
virtual time to it and pushes the member back one stride later. In any period of
virtual time a member has exactly w turns, so every run of sum(ratio) picks
gives each member exactly its ratio; the turns of all members are merged by
time, so they interleave instead of coming in bursts (3:1 is a a b a a a b ...;
5:1:1 is a b a a a c a, never more than three a in a row where nginx's smooth
round robin allows four). Equal keys go to the lower slot. Keys are integers
in units of 1/D period, D a common multiple of every ratio, so every stride is
a whole number of units: ties are exact and nothing drifts however long the
appliance runs.

Phases: members first seen together with the same ratio start evenly spread
over their first stride ((2r+1)/2m of it, like seats around a table), so equal
members alternate in slot order and light members fall between heavy ones.

Changing candidates (health, admin state, priority groups): the heap is built
in O(n) once per candidates tuple (identity is the cache key, and we keep a
reference so the id cannot be reused) and kept across picks. A member that
leaves keeps how far its next turn was ahead of virtual time and gets the same
distance when it returns: it neither jumps the queue nor loses its place.

Skipped in one pick:
- named in ``avoid`` (a retry): keeps its turn and is first in line at the next
  pick (it does not bank the turns that pass meanwhile: a member whose key is
  behind virtual time is rescheduled from now, never in a catch-up burst);
- at its connection limit: its turn passes as if taken: it could not use it,
  and banking it would send a burst back the moment it dropped below the limit.
Each is looked at once per pick, so a pick costs O((1 + s) log n) for s such
members ahead of the winner, O(log n) when everybody can take traffic; when
nobody can, the pick visits every candidate and returns None.

Slow ramp (``core.ramp``), computed at every pick: a ramping member keeps its
full-weight place in the heap but takes a turn only when its credit, which grows
by its ramp factor at each turn it is offered, reaches 1; the other turns pass
to whoever is next. So it gets ``factor`` of its turns, its effective weight is
ratio x factor, and nothing is re-keyed as the factor grows. The factor is taken
relative to the candidate furthest up its ramp: when every candidate came back
at once, scaling all alike would change no share, only the cost of the pick.
A declined turn costs one heap step; a member declines fewer than
1 / RAMP_FLOOR turns in a row, so this adds a bounded constant, never a scan.
"""

from __future__ import annotations

import math
from collections.abc import Container, Sequence
from heapq import heapify, heappop, heappush, heapreplace

from appliance.core import ramp
from appliance.core.balancing import Candidate, LoadBlind
from appliance.core.model import Pool

_NEVER = float("-inf")  # ramp end of a member that is not ramping


class Ratio(LoadBlind):
    __slots__ = (
        "_slow_ramp", "_candidates", "_heap", "_stride", "_unit", "_vtime", "_away",
        "_credit", "_ramp_until", "_earliest",
    )

    def __init__(self, pool: Pool) -> None:
        self._slow_ramp = pool.slow_ramp
        self._candidates: Sequence[Candidate] | None = None  # the tuple the heap was built for
        self._heap: list[tuple[int, int]] = []  # (next turn, index in candidates)
        self._stride: list[int] = []  # per index: unit // ratio
        self._unit = 1  # virtual time units per period
        self._vtime = 0  # key of the last turn taken or passed
        self._away: dict[str, int] = {}  # member not a candidate now -> its next turn minus vtime
        self._credit = ramp.RampCredit()
        self._ramp_until: list[float] = []  # per index: when its ramp ends
        self._earliest: float | None = None  # earliest ramp start, None if a candidate never ramped

    def pick(
        self, candidates: Sequence[Candidate], key: bytes | None, avoid: Container[str], now: float
    ) -> Candidate | None:
        if candidates is not self._candidates:
            self._rebuild(candidates)
        heap = self._heap
        held: list[tuple[int, int]] = []  # looked at once this pick, pushed back at the end
        vtime = self._vtime
        chosen: Candidate | None = None
        while heap:
            turn, index = heap[0]
            member = candidates[index]
            if member.name in avoid:
                held.append(heappop(heap))
                continue
            if turn > vtime:
                vtime = turn
            following = vtime + self._stride[index]
            if not member.available:
                heappop(heap)
                held.append((following, index))
                continue
            if self._ramp_until[index] > now and not self._takes_turn(member, now):
                heapreplace(heap, (following, index))
                continue
            heapreplace(heap, (following, index))
            chosen = member
            break
        for entry in held:
            heappush(heap, entry)
        self._vtime = vtime
        return chosen

    def _takes_turn(self, member: Candidate, now: float) -> bool:
        """A ramping member's credit decides whether it takes the turn it is offered."""
        share = ramp.factor(member.ramp_start, self._slow_ramp, now)
        share /= ramp.factor(self._earliest, self._slow_ramp, now)
        return self._credit.takes_turn(member.name, share)

    def _rebuild(self, candidates: Sequence[Candidate]) -> None:
        """Carry every member's place over to a new candidates tuple; O(n)."""
        old = self._candidates
        turns: dict[str, int] = {}
        if old is not None:
            turns = {old[index].name: turn for turn, index in self._heap}
        names = {member.name for member in candidates}
        for name, turn in turns.items():
            if name not in names:
                self._away[name] = max(0, turn - self._vtime)
        for name in names - turns.keys():  # (re)joining starts a new ramp: no credit left over
            self._credit.forget(name)
        ratios = [max(1, member.ratio) for member in candidates]  # config keeps ratio >= 1
        fresh: dict[int, list[int]] = {}  # ratio -> indexes of members never seen, in slot order
        for index, member in enumerate(candidates):
            if member.name not in turns and member.name not in self._away:
                fresh.setdefault(ratios[index], []).append(index)
        unit = math.lcm(self._unit, *ratios, *(2 * len(group) * ratio for ratio, group in fresh.items()))
        if unit != self._unit:
            self._rescale(unit // self._unit, turns)
            self._unit = unit
        self._stride = [unit // ratio for ratio in ratios]
        heap: list[tuple[int, int]] = []
        for index, member in enumerate(candidates):
            if member.name in turns:
                heap.append((turns[member.name], index))
            elif member.name in self._away:
                ahead = min(self._away.pop(member.name), self._stride[index])
                heap.append((self._vtime + ahead, index))
        for ratio, group in fresh.items():
            for seat, index in enumerate(group):
                heap.append((self._vtime + self._stride[index] * (2 * seat + 1) // (2 * len(group)), index))
        heapify(heap)
        self._heap = heap
        self._ramp_until = [
            _NEVER if m.ramp_start is None or self._slow_ramp <= 0.0 else m.ramp_start + self._slow_ramp
            for m in candidates
        ]
        starts = [m.ramp_start for m in candidates]
        self._earliest = None if not starts or None in starts else min(s for s in starts if s is not None)
        self._candidates = candidates  # keep the reference: its identity is the cache key

    def _rescale(self, factor: int, turns: dict[str, int]) -> None:
        self._vtime *= factor
        for name in turns:
            turns[name] *= factor
        for name in self._away:
            self._away[name] *= factor

    def __repr__(self) -> str:
        if self._candidates is None or not self._heap:
            return "<Ratio no candidates>"
        following = self._candidates[self._heap[0][1]].name
        return f"<Ratio {len(self._candidates)} candidates, next {following}>"
