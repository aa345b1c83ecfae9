"""The one interface every load-balancing method implements.

A balancer is built from a pool's config (``make_balancer``) and kept while
the pool's member list stays the same. At every new connection (tcp) or
request (http) the data plane calls ``pick(candidates, key, avoid, now)``:

- ``candidates``: the members that may take traffic by admin state, health and
  priority group, in slot order (``slot`` is the position in the pool). The
  sequence is *identity-stable*: the snapshot hands out the same tuple object
  until health, admin state or the active priority groups change. A balancer
  that needs a structure over the candidates (a heap, a hash table) builds it
  when it sees a new tuple and reuses it while the tuple is the same, so a
  pick costs O(log n) or O(1), never a scan of the pool.
- A candidate may still be unable to take this one: at its connection limit
  (``available`` is False) or named in ``avoid`` (retries after a failed
  connect). The balancer skips those and returns the next best, or None when
  no candidate can take it.
- ``key``: the client address (already masked by ``hash_mask``) for hashing
  methods; others ignore it.
- ``now``: monotonic seconds, for slow ramp (``core.ramp``) and for methods
  that sample over time (observed, predictive).

``on_open``/``on_close`` follow every connection (tcp) or in-flight request
(http) to a member; ``observe`` gets each response time (http: request sent to
response head; tcp: connect time). Counters live in the member's
``MemberStats`` too (``active``), which is what ``Candidate.active`` reads.
"""

from __future__ import annotations

from collections.abc import Callable, Container, Sequence
from typing import Protocol

from appliance.core.model import Method, Pool


class Candidate(Protocol):
    """What a balancer may read of a member."""

    @property
    def slot(self) -> int: ...

    @property
    def name(self) -> str: ...

    @property
    def ratio(self) -> int: ...

    @property
    def active(self) -> int:
        """Open connections (tcp) or in-flight requests (http), process-wide."""
        ...

    @property
    def available(self) -> bool:
        """Below its connection limit (the other conditions made it a candidate)."""
        ...

    @property
    def ramp_start(self) -> float | None:
        """When the member last became available (None: at start-up, never ramps)."""
        ...


class Balancer(Protocol):
    def pick(
        self, candidates: Sequence[Candidate], key: bytes | None, avoid: Container[str], now: float
    ) -> Candidate | None: ...

    def on_open(self, member: Candidate) -> None: ...

    def on_close(self, member: Candidate) -> None: ...

    def observe(self, member: Candidate, response_time: float) -> None: ...


class LoadBlind:
    """Base of the methods that follow neither load nor speed: the feedback hooks do nothing."""

    __slots__ = ()

    def on_open(self, member: Candidate) -> None:
        pass

    def on_close(self, member: Candidate) -> None:
        pass

    def observe(self, member: Candidate, response_time: float) -> None:
        pass


BalancerFactory = Callable[[Pool], Balancer]


def make_balancer(pool: Pool) -> Balancer:
    """The balancer for a pool's method."""
    from appliance.core.balancing.dynamic_ratio import Observed, Predictive
    from appliance.core.balancing.fastest import Fastest
    from appliance.core.balancing.ip_hash import IpHash
    from appliance.core.balancing.least_connections import LeastConnections, RatioLeastConnections
    from appliance.core.balancing.ratio import Ratio
    from appliance.core.balancing.round_robin import RoundRobin

    builders: dict[Method, BalancerFactory] = {
        Method.ROUND_ROBIN: RoundRobin,
        Method.RATIO: Ratio,
        Method.LEAST_CONNECTIONS: LeastConnections,
        Method.RATIO_LEAST_CONNECTIONS: RatioLeastConnections,
        Method.FASTEST: Fastest,
        Method.OBSERVED: Observed,
        Method.PREDICTIVE: Predictive,
        Method.IP_HASH: IpHash,
    }
    return builders[pool.method](pool)
