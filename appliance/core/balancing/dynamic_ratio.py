"""Observed and Predictive: F5's one-second sampler turned into dynamic ratios.

Theory of operation
-------------------
F5 (K6406): every second BIG-IP reads each member's L4 connection count and
turns it into a ratio: Observed favours the members with fewer connections;
Predictive also compares each count with the previous one and raises the ratio
of a member whose count falls (improving), lowers it for one whose count rises
(declining), leaves it for an unchanged count. Traffic then follows the ratios.

Here that is a sampler with no timer: the first pick at or after
``next_sample`` (``now`` of the previous sample + ``SAMPLE_PERIOD``) reads
``active`` of every candidate (connections in tcp, in-flight requests in http,
process-wide), so there is one sample per period however many picks there are,
and none while the pool is idle. A sample computes, per candidate ``i`` with
configured ``ratio_i`` and sampled count ``c_i``::

    load_i  = c_i / ratio_i                      # connections per unit of capacity
    mean    = sum(c) / sum(ratio)                 # the same, for the whole candidate set
    observed_i = (mean + 1) / (load_i + 1)        # > 1 less loaded than average, < 1 more

The +1 is one connection of smoothing: an idle pool gives everyone 1 (plain
ratio), and a member with 1 connection against 0 is not shut out. Counts are
normalised by ratio so that a ratio-3 member carrying three times the
connections is exactly average: Observed corrects load imbalance without
undoing the configured capacity.

Predictive multiplies by a trend. Between two consecutive samples of the same
member the relative change of its count is ``step_i = ln((c_prev + 1) / (c_i +
1))`` (> 0 falling count: improving; < 0 rising: declining; 0 unchanged); the
slope is smoothed over samples and turned into a factor::

    slope_i ← TREND_ALPHA × step_i + (1 - TREND_ALPHA) × slope_i   (0 for a member new to the samples)
    trend_i = clamp(exp(TREND_GAIN × slope_i), 1 / TREND_LIMIT, TREND_LIMIT)
    predictive_i = observed_i × trend_i

With ``TREND_GAIN = 2``, under a steady relative trend ``exp(2 × slope)`` is
``(c_now + 1) / (c_in_two_periods + 1)``: Predictive weighs a member by the
count it is heading for, two seconds ahead. The smoothing keeps a noisy count
(3, 5, 3, 5 ...) from flipping the trend every second, which would otherwise
amplify the oscillation it is meant to damp.

The dynamic ratio is ``ratio_i × clamp(factor_i, RATIO_MIN, RATIO_MAX)``; the
floor keeps every member on the schedule (it is still probed, so its count is
fresh), the cap keeps an empty member from taking everything at once.
``ratios()`` shows them. Slow ramp multiplies the dynamic ratio by
``core.ramp.factor`` at every pick.

Picks between samples: smooth weighted round robin over the dynamic ratios by
earliest deadline first: each candidate has a virtual deadline in a heap; a
pick takes the earliest deadline (ties by slot order) and moves it on by
1 / weight. A member at its connection limit passes its turn (its deadline
moves on as if picked, so it neither bursts when it frees up nor blocks the
heap); an avoided member keeps its turn for the next pick. O(log n) per pick,
plus O(log n) per member passed over. At each sample, and when the candidates
tuple changes, every deadline is rescaled to the new weight keeping the share
of its period still to run (a member halfway to its turn stays halfway): O(n)
plus a heapify, once a second at most (and the virtual clock restarts at 0, so
the deadlines stay small floats however long the process runs).
"""

from __future__ import annotations

import math
from collections.abc import Container, Sequence
from heapq import heapify, heappop, heappush

from appliance.core import ramp
from appliance.core.balancing import Candidate
from appliance.core.model import Pool

SAMPLE_PERIOD = 1.0  # s between samples of the connection counts, as F5's observed/predictive
RATIO_MIN = 0.1  # floor of the dynamic factor: the busiest member keeps a tenth of its share, still probed
RATIO_MAX = 10.0  # cap: a member that just emptied takes at most ten times its share, not everything
TREND_ALPHA = 0.5  # smoothing of the per-sample slope: one noisy sample moves it half way
TREND_GAIN = 2.0  # predictive looks two sample periods ahead along the slope
TREND_LIMIT = 4.0  # the trend alone changes a ratio at most 4x either way (F5 folklore: 4 vs 1)

_Entry = tuple[float, int, int]  # (deadline, slot, position in the candidates tuple)


class Observed:
    """Dynamic ratios from the connection count sampled each second (F5 observed)."""

    PREDICTIVE = False

    __slots__ = (
        "_slow_ramp",
        "_next_sample",
        "_sampled_at",
        "_samples",
        "_counts",
        "_slopes",
        "_factors",
        "_configured",
        "_tuple",
        "_heap",
        "_base",
        "_last_weight",
        "_vtime",
    )

    def __init__(self, pool: Pool) -> None:
        self._slow_ramp = pool.slow_ramp
        self._next_sample: float | None = None
        self._sampled_at: float | None = None
        self._samples = 0
        # the last sample, by member name (members that were candidates then)
        self._counts: dict[str, int] = {}
        self._slopes: dict[str, float] = {}
        self._factors: dict[str, float] = {}
        self._configured: dict[str, int] = {}
        # the schedule, for one candidates tuple
        self._tuple: Sequence[Candidate] | None = None
        self._heap: list[_Entry] = []
        self._base: list[float] = []  # position -> ratio × dynamic factor
        self._last_weight: list[float] = []  # position -> weight that set its current deadline
        self._vtime = 0.0  # deadline of the last pick

    # ---------------------------------------------------------------- the interface

    def pick(
        self, candidates: Sequence[Candidate], key: bytes | None, avoid: Container[str], now: float
    ) -> Candidate | None:
        if not candidates:
            return None
        if self._next_sample is None or now >= self._next_sample:
            self._sample(candidates, now)
        elif candidates is not self._tuple:
            self._reschedule(candidates, now)
        return self._take(candidates, avoid, now)

    def on_open(self, member: Candidate) -> None:
        pass  # the sampler reads `active`, which counts every worker's connections

    def on_close(self, member: Candidate) -> None:
        pass

    def observe(self, member: Candidate, response_time: float) -> None:
        pass  # F5's observed/predictive follow connection counts, not response times

    # ---------------------------------------------------------------- for the API, the TUI and tests

    def ratios(self) -> dict[str, float]:
        """The dynamic ratio of each member at the last sample: configured ratio × dynamic factor."""
        return {name: self._configured[name] * factor for name, factor in self._factors.items()}

    @property
    def samples(self) -> int:
        """How many samples have been taken."""
        return self._samples

    @property
    def sampled_at(self) -> float | None:
        """`now` of the last sample (None: no pick yet)."""
        return self._sampled_at

    def __repr__(self) -> str:
        shown = " ".join(f"{name}={ratio:.2f}" for name, ratio in self.ratios().items())
        return f"<{type(self).__name__} samples={self._samples} [{shown}]>"

    # ---------------------------------------------------------------- internals

    def _sample(self, candidates: Sequence[Candidate], now: float) -> None:
        counts = [c.active for c in candidates]
        mean = sum(counts) / sum(c.ratio for c in candidates)
        previous, old_slopes = self._counts, self._slopes
        new_counts: dict[str, int] = {}
        slopes: dict[str, float] = {}
        factors: dict[str, float] = {}
        configured: dict[str, int] = {}
        predictive = self.PREDICTIVE
        for member, count in zip(candidates, counts):
            name, ratio = member.name, member.ratio
            factor = (mean + 1.0) / (count / ratio + 1.0)
            if predictive:
                before = previous.get(name)
                if before is None:
                    slope = 0.0  # new to the samples (or back after an absence): no trend yet
                else:
                    step = math.log((before + 1.0) / (count + 1.0))
                    slope = TREND_ALPHA * step + (1.0 - TREND_ALPHA) * old_slopes.get(name, 0.0)
                slopes[name] = slope
                factor *= _clamp(math.exp(TREND_GAIN * slope), 1.0 / TREND_LIMIT, TREND_LIMIT)
            new_counts[name] = count
            factors[name] = _clamp(factor, RATIO_MIN, RATIO_MAX)
            configured[name] = ratio
        self._counts, self._slopes, self._factors, self._configured = new_counts, slopes, factors, configured
        self._samples += 1
        self._sampled_at = now
        self._next_sample = now + SAMPLE_PERIOD
        self._reschedule(candidates, now)

    def _reschedule(self, candidates: Sequence[Candidate], now: float) -> None:
        """Deadlines for `candidates` at the current factors, each keeping its place in its period."""
        factors, slow_ramp = self._factors, self._slow_ramp
        base = [c.ratio * factors.get(c.name, 1.0) for c in candidates]
        weights = [
            b if c.ramp_start is None else b * ramp.factor(c.ramp_start, slow_ramp, now)
            for b, c in zip(base, candidates)
        ]
        # how much of its period each member still has to run, times the weight that set it
        left: list[float | None] = [None] * len(candidates)
        if self._tuple is not None:
            vtime, last = self._vtime, self._last_weight
            if candidates is self._tuple:
                for deadline, _, position in self._heap:
                    left[position] = max(deadline - vtime, 0.0) * last[position]
            else:
                where = {c.name: position for position, c in enumerate(candidates)}
                old = self._tuple
                for deadline, _, position in self._heap:
                    now_at = where.get(old[position].name)
                    if now_at is not None:
                        left[now_at] = max(deadline - vtime, 0.0) * last[position]
        heap: list[_Entry] = [
            ((1.0 if kept is None else kept) / weight, member.slot, position)
            for position, (member, weight, kept) in enumerate(zip(candidates, weights, left))
        ]
        heapify(heap)
        self._tuple, self._heap, self._base, self._last_weight = candidates, heap, base, weights
        self._vtime = 0.0  # deadlines restart from 0 at every reschedule: the floats never grow large

    def _take(self, candidates: Sequence[Candidate], avoid: Container[str], now: float) -> Candidate | None:
        heap = self._heap
        passed: list[_Entry] = []
        chosen: Candidate | None = None
        while heap:
            entry = heappop(heap)
            member = candidates[entry[2]]
            if member.name in avoid or not member.available:
                passed.append(entry)
                continue
            chosen = member
            self._vtime = entry[0]
            heappush(heap, self._next(entry, member, now))
            break
        for entry in passed:
            member = candidates[entry[2]]
            if chosen is not None and not member.available:
                entry = self._next(entry, member, now)  # at its limit: its turn has passed
            heappush(heap, entry)
        return chosen

    def _next(self, entry: _Entry, member: Candidate, now: float) -> _Entry:
        deadline, slot, position = entry
        weight = self._base[position]
        if member.ramp_start is not None:
            weight *= ramp.factor(member.ramp_start, self._slow_ramp, now)
        self._last_weight[position] = weight
        return (deadline + 1.0 / weight, slot, position)


class Predictive(Observed):
    """Observed plus the trend of each member's count between samples (F5 predictive)."""

    PREDICTIVE = True

    __slots__ = ()


def _clamp(value: float, low: float, high: float) -> float:
    return max(low, min(value, high))
