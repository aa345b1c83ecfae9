"""Priority group activation across every count of available members."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from appliance.core.priority import PriorityGroups


@dataclass
class M:
    slot: int
    priority_group: int
    available: bool = True
    name: str = ""


def pool() -> list[M]:
    # Group 10: slots 0, 2, 4; group 5: slots 1, 3; group 0: slot 5.
    return [M(0, 10), M(1, 5), M(2, 10), M(3, 5), M(4, 10), M(5, 0)]


def slots(members: tuple[M, ...]) -> list[int]:
    return [m.slot for m in members]


@pytest.mark.parametrize(
    ("available_in_top", "expected"),
    [
        (3, [0, 2, 4]),  # enough in the top group: confined to it
        (2, [0, 1, 2, 3, 4]),  # 2 + 2 from group 5 >= 3
        (1, [0, 1, 2, 3, 4]),  # 1 + 2 = 3
        (0, [0, 1, 2, 3, 4, 5]),  # 0 + 2 < 3: group 0 added as well
    ],
)
def test_groups_are_added_cumulatively_until_enough_are_available(available_in_top: int, expected: list[int]) -> None:
    members = pool()
    for m in [m for m in members if m.priority_group == 10][available_in_top:]:
        m.available = False  # e.g. at its connection limit
    groups = PriorityGroups(members, min_active=3, limited=True)
    assert slots(groups.candidates()) == expected


def test_traffic_is_confined_again_when_the_higher_group_recovers() -> None:
    members = pool()
    groups = PriorityGroups(members, min_active=2, limited=True)
    first = groups.candidates()
    assert slots(first) == [0, 2, 4]
    members[0].available = members[2].available = False
    assert slots(groups.candidates()) == [0, 1, 2, 3, 4]
    members[0].available = True
    again = groups.candidates()
    assert again is first  # the same tuple: balancers keep their structures


def test_without_limits_counts_are_static_and_zero_means_every_member() -> None:
    members = pool()
    members[0].available = False  # ignored: the pool has no connection limits
    assert slots(PriorityGroups(members, min_active=3, limited=False).candidates()) == [0, 2, 4]
    assert slots(PriorityGroups(members, min_active=0, limited=False).candidates()) == [0, 1, 2, 3, 4, 5]
    assert PriorityGroups([], min_active=2, limited=False).candidates() == ()


@pytest.mark.parametrize("ready_count", range(0, 7))
def test_every_count_of_ready_members(ready_count: int) -> None:
    """With members leaving in slot order, the candidates are always the highest groups that reach 2."""
    ready = pool()[:ready_count]
    got = slots(PriorityGroups(ready, min_active=2, limited=False).candidates())
    by_group: dict[int, list[int]] = {}
    for m in ready:
        by_group.setdefault(m.priority_group, []).append(m.slot)
    expected: list[int] = []
    for level in sorted(by_group, reverse=True):
        expected += by_group[level]
        if len(expected) >= 2:
            break
    assert got == sorted(expected)
