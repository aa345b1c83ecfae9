"""Round robin over candidates in config order, with avoid and changing candidate sets."""

from __future__ import annotations

from dataclasses import dataclass

from appliance.core.balancing import make_balancer
from appliance.core.model import Endpoint, Member, Pool


@dataclass(frozen=True)
class C:
    slot: int
    name: str


MEMBERS = [C(i, f"m{i}") for i in range(4)]


def balancer():
    pool = Pool(name="p", members=tuple(Member(address=Endpoint(host="127.0.0.1", port=9000 + i), name=f"m{i}") for i in range(4)))
    return make_balancer(pool)


def picks(b, candidates, n, avoid=()):
    return [b.pick(candidates, None, avoid).name for _ in range(n)]


def test_each_member_in_turn_in_config_order() -> None:
    assert picks(balancer(), MEMBERS, 9) == ["m0", "m1", "m2", "m3", "m0", "m1", "m2", "m3", "m0"]


def test_a_member_leaving_and_returning_keeps_the_rotation() -> None:
    b = balancer()
    assert picks(b, MEMBERS, 2) == ["m0", "m1"]
    without_m2 = [m for m in MEMBERS if m.name != "m2"]
    assert picks(b, without_m2, 3) == ["m3", "m0", "m1"]
    assert picks(b, MEMBERS, 3) == ["m2", "m3", "m0"]


def test_avoid_skips_members_and_none_when_all_avoided() -> None:
    b = balancer()
    assert picks(b, MEMBERS, 3, avoid={"m1"}) == ["m0", "m2", "m3"]
    assert b.pick(MEMBERS, None, {"m0", "m1", "m2", "m3"}) is None
    assert b.pick([], None, ()) is None
