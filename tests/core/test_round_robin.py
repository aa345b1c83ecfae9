"""Round robin over candidates in config order, with avoid, connection limits and slow ramp."""

from __future__ import annotations

from candidates import FrozenC as C

from appliance.core.balancing import make_balancer
from appliance.core.model import Endpoint, Member, Pool

MEMBERS = [C(i, f"m{i}") for i in range(4)]


def balancer(slow_ramp: float = 0.0):
    members = tuple(Member(address=Endpoint(host="127.0.0.1", port=9000 + i), name=f"m{i}") for i in range(4))
    return make_balancer(Pool(name="p", members=members, slow_ramp=slow_ramp))


def picks(b, candidates, n, avoid=(), now=0.0):
    return [b.pick(candidates, None, avoid, now).name for _ in range(n)]


def test_each_member_in_turn_in_config_order() -> None:
    assert picks(balancer(), MEMBERS, 9) == ["m0", "m1", "m2", "m3", "m0", "m1", "m2", "m3", "m0"]


def test_a_member_leaving_and_returning_keeps_the_rotation() -> None:
    b = balancer()
    assert picks(b, MEMBERS, 2) == ["m0", "m1"]
    without_m2 = [m for m in MEMBERS if m.name != "m2"]
    assert picks(b, without_m2, 3) == ["m3", "m0", "m1"]
    assert picks(b, MEMBERS, 3) == ["m2", "m3", "m0"]


def test_avoid_and_connection_limits_skip_members_and_none_when_nobody_can() -> None:
    b = balancer()
    assert picks(b, MEMBERS, 3, avoid={"m1"}) == ["m0", "m2", "m3"]
    full = [C(0, "m0", available=False), C(1, "m1"), C(2, "m2", available=False)]
    assert picks(b, full, 3) == ["m1", "m1", "m1"]
    assert b.pick(MEMBERS, None, {"m0", "m1", "m2", "m3"}, 0.0) is None
    assert b.pick([], None, (), 0.0) is None


def test_a_ramping_member_gets_its_ramp_share_of_turns() -> None:
    b = balancer(slow_ramp=10.0)
    ramping = [C(0, "m0"), C(1, "m1", ramp_start=100.0)]
    at_quarter = picks(b, ramping, 500, now=102.5)  # factor 0.25
    assert at_quarter.count("m1") / at_quarter.count("m0") == 0.25
    assert picks(b, ramping, 4, now=110.0) == ["m0", "m1", "m0", "m1"]  # ramp over: even again
