"""Stand-ins for the snapshot's members in balancer tests: what `Candidate` promises, and nothing else."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(slots=True)
class C:
    """A mutable candidate: tests change `active` and `available` as the data plane would."""

    slot: int
    name: str
    ratio: int = 1
    active: int = 0
    available: bool = True
    ramp_start: float | None = None


@dataclass(frozen=True, slots=True)
class FrozenC:
    """An immutable candidate, for balancers that must not depend on mutating members."""

    slot: int
    name: str
    ratio: int = 1
    active: int = 0
    available: bool = True
    ramp_start: float | None = None
