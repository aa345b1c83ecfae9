"""Priority group activation (F5's minimum active members).

Members carry a ``priority_group``; a higher number is preferred. With
``min_active_members`` N > 0 the candidates are the members of the highest
group while it has at least N *available* members; below that the next lower
group is added, and so on, cumulatively, until the available members number N
or every group is in. When a higher group recovers, traffic is confined to it
again at the next pick. A member at its connection limit counts as
unavailable. With N = 0 every ready member is a candidate.

The cumulative candidate tuples are built once per snapshot, so the balancer
sees the same tuple object (and keeps its structures) until activation
changes. Counting available members is O(number of groups) when no member of
the pool has a connection limit, and otherwise a scan of the groups examined:
availability under limits is live, so the definition forces the count.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Generic, Protocol, TypeVar


class _Grouped(Protocol):
    @property
    def slot(self) -> int: ...

    @property
    def priority_group(self) -> int: ...

    @property
    def available(self) -> bool: ...


M = TypeVar("M", bound=_Grouped)


class PriorityGroups(Generic[M]):
    """The ready members of a pool split by priority group, highest first."""

    __slots__ = ("_groups", "_prefixes", "_min_active", "_limited", "all")

    def __init__(self, ready: Sequence[M], min_active: int, limited: bool) -> None:
        levels = sorted({m.priority_group for m in ready}, reverse=True)
        self._groups = tuple(tuple(m for m in ready if m.priority_group == level) for level in levels)
        prefixes: list[tuple[M, ...]] = []
        for depth in range(1, len(levels) + 1):
            members = [m for group in self._groups[:depth] for m in group]
            prefixes.append(tuple(sorted(members, key=lambda m: m.slot)))
        self._prefixes = tuple(prefixes)
        self._min_active = min_active
        self._limited = limited
        self.all: tuple[M, ...] = tuple(ready)

    def candidates(self) -> tuple[M, ...]:
        """The members that may take new traffic now (an identity-stable tuple)."""
        if self._min_active <= 0 or not self._prefixes:
            return self.all
        count = 0
        for depth, group in enumerate(self._groups):
            count += sum(1 for m in group if m.available) if self._limited else len(group)
            if count >= self._min_active:
                return self._prefixes[depth]
        return self._prefixes[-1]

    def __repr__(self) -> str:
        sizes = "/".join(str(len(g)) for g in self._groups)
        return f"<PriorityGroups {sizes} min_active={self._min_active}>"
