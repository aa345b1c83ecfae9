"""The one interface every load-balancing method implements.

A balancer is built from a pool's members and rebuilt only when that set
changes. ``pick`` chooses among the *candidates*, the members the snapshot found
available (in config order, each knowing its ``slot``: its position in the
pool), skipping any member named in ``avoid`` (retries after a failed connect).
``key`` is what a hashing method hashes (the client address); others ignore it.
``on_open``/``on_close``/``observe`` feed methods that follow load or speed.
"""

from __future__ import annotations

from collections.abc import Container, Sequence
from typing import Protocol

from appliance.core.model import Method, Pool


class Candidate(Protocol):
    """What a balancer needs to know of a member."""

    @property
    def slot(self) -> int: ...

    @property
    def name(self) -> str: ...


class Balancer(Protocol):
    def pick(
        self, candidates: Sequence[Candidate], key: bytes | None, avoid: Container[str]
    ) -> Candidate | None: ...

    def on_open(self, member: Candidate) -> None: ...

    def on_close(self, member: Candidate) -> None: ...

    def observe(self, member: Candidate, response_time: float) -> None: ...


def make_balancer(pool: Pool) -> Balancer:
    """The balancer for a pool's method; methods not built yet fall back to round robin."""
    from appliance.core.balancing.round_robin import RoundRobin

    builders: dict[Method, type[RoundRobin]] = {Method.ROUND_ROBIN: RoundRobin}
    return builders.get(pool.method, RoundRobin)(pool)
