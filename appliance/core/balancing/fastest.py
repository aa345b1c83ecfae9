"""Fastest: the member expected to answer soonest.

Theory of operation
-------------------
Every response time the data plane reports (``observe``: request sent to
response head in http, connect time in tcp) feeds an exponentially weighted
moving average per member. A pick scores each candidate it looks at::

    score = rt × (active + 1) / (ratio × ramp)

- ``rt``: the member's response-time estimate at ``now`` (below), never under
  ``RT_FLOOR``;
- ``active + 1``: its outstanding requests (connections in tcp) plus the one
  about to be sent: a member twice as fast with three requests queued is not
  the one that answers soonest;
- ``ratio``: the configured capacity weight (>= 1, the config enforces it);
- ``ramp``: ``core.ramp.factor`` at ``now`` (slow ramp: a returning member
  looks 1/ramp times slower, so it gets that fraction of the traffic and of
  the concurrency).

The lowest score wins; ties go round robin (exact mode) or to the first random
draw (sampled mode), so equal members share the traffic.

Response-time estimate
----------------------
``observe(m, x)`` updates ``ewma_m`` and stamps it with the latest ``now``
seen by ``pick`` (``observe`` carries no clock; the response came from a pick
made at most one response time earlier, which is the resolution that matters
here). ``w = 2 ** (-(now - stamp) / DECAY_HALF_LIFE)`` is the confidence left
in an estimate ``now - stamp`` seconds old:

- ranking: ``rt = mean + (ewma - mean) × w``: a stale estimate decays toward
  the pool mean, so a member that was awful once and therefore is never picked
  (never observed) is retried after a minute or so instead of being shunned
  forever, and one that was great but went quiet (at its connection limit,
  out of the candidates) does not come back with a stale head start;
- update: ``ewma ← x × (1 - (1 - ALPHA) × w) + ewma × (1 - ALPHA) × w``: with a
  fresh estimate (w ≈ 1) this is the plain EWMA ``ALPHA × x + (1 - ALPHA) ×
  ewma``; with a stale one (w ≈ 0) the new sample replaces it, so the retry
  costs one request, not ten;
- a member with no sample yet ranks at ``mean``: it is tried as soon as the
  known members are loaded or slower than average, neither starved (as with
  "unknown = slowest") nor flooded (as with "unknown = zero").

``mean`` is a pool-wide EWMA (same ``ALPHA``) of every response time observed:
the recent typical response of the pool, traffic weighted, O(1) to keep and
blind to members that left long ago. Before the first sample there is no mean
and every member ranks at the same nominal 1 s: the score is then
``(active + 1) / (ratio × ramp)``, ratio least connections.

Cost of a pick
--------------
An exact argmin cannot be kept in a heap: every score moves with ``now``
(decay, ramp) and ``active`` is a process-wide counter that other workers move
without telling this balancer. So:

- up to ``EXACT_SCAN_MAX`` candidates a pick scans them all from a round-robin
  cursor (exact; ties round robin): about 5 µs at 8, twice a sampled pick,
  well inside the budget, and a small pool is where an operator expects the
  fastest member to get the traffic, which two random choices out of three
  would not give it;
- above, it is Envoy's least-request "power of two choices" (Mitzenmacher):
  two distinct eligible candidates drawn at random in proportion to their
  ratio (bisection in a cumulative-ratio table built once per candidates
  tuple), the lower score wins. O(log n) for the draw, O(1) scoring, with
  live scores; the pick is approximate: it avoids the slow and the loaded
  rather than always finding the single fastest, which also keeps many
  workers from stampeding onto the same member with the same stale view.
  ``rng`` is injected (a per-worker ``random.Random`` from the shell; the
  default is seeded so tests and benchmarks repeat). If ``MAX_DRAWS`` draws
  find no eligible candidate (most are at their limit or avoided), the pick
  falls back to the scan, so it returns a member whenever one can take it.
"""

from __future__ import annotations

import random
from bisect import bisect_left, bisect_right
from collections.abc import Container, Sequence
from itertools import accumulate

from appliance.core import ramp
from appliance.core.balancing import Candidate
from appliance.core.model import Pool

ALPHA = 0.1  # EWMA weight of a new sample: a memory of about 1/ALPHA = 10 responses
DECAY_HALF_LIFE = 10.0  # s without a sample that halve an estimate's distance to the pool mean
RT_FLOOR = 1e-6  # s; a 0 s sample (coarse clock) must not make `active` irrelevant
NOMINAL_RT = 1.0  # s; everyone's estimate before any sample: only ratios of scores matter
EXACT_SCAN_MAX = 8  # up to this many candidates the exact scan (~5 µs at 8) is still cheap
MAX_DRAWS = 8  # random draws before falling back to a scan (most candidates full or avoided)
DEFAULT_SEED = 0x5EED  # tests and benchmarks repeat; the shell injects a per-worker Random


class Fastest:
    __slots__ = ("_slow_ramp", "_rng", "_estimates", "_mean", "_clock", "_cursor", "_tuple", "_cumulative")

    def __init__(self, pool: Pool, *, rng: random.Random | None = None) -> None:
        self._slow_ramp = pool.slow_ramp
        self._rng = rng if rng is not None else random.Random(DEFAULT_SEED)
        self._estimates: dict[str, tuple[float, float]] = {}  # name -> (ewma, stamp)
        self._mean: float | None = None
        self._clock = 0.0  # the latest `now` a pick saw: the stamp of the next samples
        self._cursor = 0  # exact mode: slot after the last pick, for round-robin ties
        self._tuple: Sequence[Candidate] | None = None
        self._cumulative: list[int] = []  # sampled mode: running sum of ratios, per candidates tuple

    # ---------------------------------------------------------------- the interface

    def pick(
        self, candidates: Sequence[Candidate], key: bytes | None, avoid: Container[str], now: float
    ) -> Candidate | None:
        if now > self._clock:
            self._clock = now
        if len(candidates) <= EXACT_SCAN_MAX:
            return self._scan(candidates, avoid, now)
        if candidates is not self._tuple:
            self._tuple = candidates
            self._cumulative = list(accumulate(c.ratio for c in candidates))
        cumulative = self._cumulative
        total = cumulative[-1]
        draw = self._rng.random
        first: Candidate | None = None
        for _ in range(MAX_DRAWS):
            member = candidates[bisect_right(cumulative, draw() * total)]
            if member is first or member.name in avoid or not member.available:
                continue
            if first is None:
                first = member
                continue
            return member if self._score(member, now) < self._score(first, now) else first
        return first if first is not None else self._scan(candidates, avoid, now)

    def on_open(self, member: Candidate) -> None:
        pass  # `active` is read from the candidate: it counts every worker's requests

    def on_close(self, member: Candidate) -> None:
        pass

    def observe(self, member: Candidate, response_time: float) -> None:
        sample = max(response_time, 0.0)
        self._mean = sample if self._mean is None else self._mean + ALPHA * (sample - self._mean)
        known = self._estimates.get(member.name)
        if known is None:
            ewma = sample
        else:
            old, stamp = known
            keep = (1.0 - ALPHA) * _confidence(self._clock - stamp)
            ewma = sample + keep * (old - sample)
        self._estimates[member.name] = (ewma, self._clock)

    # ---------------------------------------------------------------- for the API, the TUI and tests

    def response_time(self, name: str, now: float) -> float:
        """The response-time estimate a pick at `now` would use for member `name`, in seconds."""
        return self._estimate(name, now)

    def __repr__(self) -> str:
        mean = "none" if self._mean is None else f"{self._mean * 1000:.1f}ms"
        return f"<Fastest mean={mean} sampled={len(self._estimates)}>"

    # ---------------------------------------------------------------- internals

    def _estimate(self, name: str, now: float) -> float:
        mean = self._mean
        if mean is None:
            return NOMINAL_RT
        known = self._estimates.get(name)
        if known is None:
            return max(mean, RT_FLOOR)
        ewma, stamp = known
        estimate = mean + (ewma - mean) * _confidence(now - stamp)
        return estimate if estimate > RT_FLOOR else RT_FLOOR

    def _score(self, member: Candidate, now: float) -> float:
        share: float = member.ratio
        if member.ramp_start is not None:
            share *= ramp.factor(member.ramp_start, self._slow_ramp, now)
        return self._estimate(member.name, now) * (member.active + 1) / share

    def _scan(self, candidates: Sequence[Candidate], avoid: Container[str], now: float) -> Candidate | None:
        count = len(candidates)
        if count == 0:
            return None
        start = bisect_left(candidates, self._cursor, key=lambda c: c.slot)
        best: Candidate | None = None
        best_score = 0.0
        for offset in range(count):
            member = candidates[(start + offset) % count]
            if member.name in avoid or not member.available:
                continue
            score = self._score(member, now)
            if best is None or score < best_score:  # strict: the first in rotation order keeps a tie
                best, best_score = member, score
        if best is not None:
            self._cursor = best.slot + 1
        return best


def _confidence(age: float) -> float:
    """How much of an estimate `age` seconds old is still trusted: 1 when fresh, halving every half-life."""
    if age <= 0.0:
        return 1.0
    return float(2.0 ** (-age / DECAY_HALF_LIFE))
