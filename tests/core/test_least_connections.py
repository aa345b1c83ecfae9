"""Least connections and ratio least connections: scripted opens and closes, ties, limits, slow ramp."""

from __future__ import annotations

import pytest
from candidates import C
from hypothesis import given, settings
from hypothesis import strategies as st

from appliance.core.balancing.least_connections import (
    LeastConnections,
    RatioLeastConnections,
)
from appliance.core.model import Pool


def members(count: int, **overrides: object) -> tuple[C, ...]:
    return tuple(C(i, f"m{i}", **overrides) for i in range(count))  # type: ignore[arg-type]


def least(slow_ramp: float = 0.0) -> LeastConnections:
    return LeastConnections(Pool(name="p", slow_ramp=slow_ramp))


def ratio_least(slow_ramp: float = 0.0) -> RatioLeastConnections:
    return RatioLeastConnections(Pool(name="p", slow_ramp=slow_ramp))


def open_(b, candidates, avoid=(), now: float = 0.0) -> C:
    """Pick, then open the connection as the data plane does: counter first, then on_open."""
    chosen = b.pick(candidates, None, avoid, now)
    assert chosen is not None
    chosen.active += 1
    b.on_open(chosen)
    return chosen


def close(b, member: C) -> None:
    member.active -= 1
    b.on_close(member)


def opens(b, candidates, n: int, avoid=(), now: float = 0.0) -> list[str]:
    return [open_(b, candidates, avoid, now).name for _ in range(n)]


def test_fewest_active_wins_and_ties_go_round_robin() -> None:
    b = least()
    pool = members(4)
    assert opens(b, pool, 4) == ["m0", "m1", "m2", "m3"]
    close(b, pool[2])
    assert opens(b, pool, 1) == ["m2"]  # the only one with fewer
    assert opens(b, pool, 4) == ["m3", "m0", "m1", "m2"]  # all tied at 1: on from the cursor
    close(b, pool[0])
    close(b, pool[3])
    assert opens(b, pool, 3) == ["m3", "m0", "m1"]  # m3 and m0 tied lowest, from the cursor; then all tied
    assert [m.active for m in pool] == [2, 3, 2, 2]


def test_connections_opened_and_closed_elsewhere_are_seen() -> None:
    b = least()
    pool = members(3)
    assert opens(b, pool, 3) == ["m0", "m1", "m2"]
    pool[0].active += 5  # another worker opened five, never through this instance
    assert opens(b, pool, 2) == ["m1", "m2"]
    pool[0].active -= 6  # ... and they all closed, unseen: found by the sweep within n picks
    sequence = opens(b, pool, 6)
    assert sequence.count("m0") >= 3


def test_a_rebuilt_balancer_starts_from_the_live_counts() -> None:
    pool = members(3)
    pool[0].active, pool[1].active, pool[2].active = 4, 1, 3  # left by the balancer a reload replaced
    b = least()
    assert opens(b, pool, 4) == ["m1", "m1", "m2", "m1"]  # at 3, m1 and m2 tie: m2 is after the cursor


def test_members_at_their_limit_or_avoided_are_skipped_none_when_nobody_can() -> None:
    b = least()
    pool = members(3)
    pool[0].available = False  # at its connection limit
    assert opens(b, pool, 4) == ["m1", "m2", "m1", "m2"]
    assert opens(b, pool, 1, avoid={"m1"}) == ["m2"]
    pool[0].available = True
    assert opens(b, pool, 1) == ["m0"]
    assert b.pick(pool, None, {"m0", "m1", "m2"}, 0.0) is None
    assert b.pick((), None, (), 0.0) is None


def test_ratio_least_connections_settles_at_the_ratio_of_concurrency() -> None:
    b = ratio_least()
    pool = (C(0, "big", ratio=2), C(1, "small", ratio=1))
    opens(b, pool, 300)
    assert (pool[0].active, pool[1].active) == (200, 100)
    for _ in range(1000):  # churn: close the busiest by load, open anew
        close(b, pool[0] if pool[0].active / 2 >= pool[1].active else pool[1])
        open_(b, pool)
    assert pool[0].active / pool[1].active == pytest.approx(2.0, abs=0.03)


def test_ratio_least_connections_ties_are_exact_and_round_robin() -> None:
    b = ratio_least()
    pool = (C(0, "a", ratio=3, active=3), C(1, "b", ratio=1, active=1), C(2, "c", ratio=3, active=2))
    assert opens(b, pool, 1) == ["c"]  # 2/3 < 1
    assert opens(b, pool, 3) == ["a", "b", "c"]  # 3/3, 1/1, 3/3: tied, in slot order


def test_plain_least_connections_ignores_ratio() -> None:
    b = least()
    pool = (C(0, "a", ratio=10, active=1), C(1, "b", ratio=1, active=0))
    assert opens(b, pool, 3) == ["b", "a", "b"]


@pytest.mark.parametrize("make", [least, ratio_least])
@pytest.mark.parametrize("step", range(1, 11))
def test_slow_ramp_share_of_short_connections_in_ten_steps(make, step: int) -> None:
    b = make(slow_ramp=10.0)
    pair = (C(0, "a"), C(1, "b", ramp_start=100.0))
    got = {"a": 0, "b": 0}
    for _ in range(2200):  # each connection closes before the next opens: everybody idle, all tied
        member = open_(b, pair, now=100.0 + step)
        got[member.name] += 1
        close(b, member)
    assert got["b"] / got["a"] == pytest.approx(step / 10, abs=0.005)


@pytest.mark.parametrize("make", [least, ratio_least])
@pytest.mark.parametrize("step", range(1, 11))
def test_slow_ramp_scales_the_concurrency_of_long_connections_in_ten_steps(make, step: int) -> None:
    b = make(slow_ramp=10.0)
    pool = (C(0, "a", ratio=2), C(1, "b", ratio=2), C(2, "r", ratio=2, ramp_start=100.0))
    opens(b, pool, 420, now=100.0 + step)  # nothing closes
    assert pool[2].active / pool[0].active == pytest.approx(step / 10, abs=0.015)
    assert abs(pool[0].active - pool[1].active) <= 1


def test_a_fresh_member_with_no_connections_does_not_take_every_new_one() -> None:
    b = least(slow_ramp=10.0)
    pool = members(3, active=10) + (C(3, "fresh", ramp_start=100.0),)
    sequence = opens(b, pool, 40, now=101.0)  # factor 0.1; without the ramp: the first 10 all "fresh"
    assert sequence.count("fresh") == 2
    assert "fresh" not in sequence[:5]
    # short connections: it is idle again at once, and still gets only its share of the picks it wins
    b = least(slow_ramp=10.0)
    pool = members(3, active=10) + (C(3, "fresh", ramp_start=100.0),)
    got = 0
    for _ in range(200):
        member = open_(b, pool, now=101.0)
        got += member.name == "fresh"
        close(b, member)
    assert got == 20


def test_a_ramping_member_is_not_starved_and_ramps_as_time_passes() -> None:
    b = least(slow_ramp=10.0)
    pool = members(3, active=50) + (C(3, "fresh", ramp_start=100.0),)
    got = []
    for second in range(11):
        sequence = opens(b, pool, 30, now=100.0 + second)
        got.append(sequence.count("fresh"))
    assert got[0] >= 1  # RAMP_FLOOR: never nothing
    assert pool[3].active == pytest.approx(pool[0].active, abs=2)  # ramp over: even load
    assert sum(got[:5]) < sum(got[6:])


def test_only_ramping_members_still_take_traffic() -> None:
    b = least(slow_ramp=10.0)
    pool = (C(0, "a", ramp_start=100.0), C(1, "b", ramp_start=104.0), C(2, "c", available=False))
    sequence = opens(b, pool, 60, now=105.0)  # factors 0.5 and 0.1: 5 to 1, whatever the floor of all
    assert sequence.count("a") + sequence.count("b") == 60
    assert pool[0].active / pool[1].active == pytest.approx(5, rel=0.25)


def test_repr_is_an_operators_view() -> None:
    b = least()
    assert repr(b) == "<LeastConnections no candidates>"
    pool = members(2)
    opens(b, pool, 3)
    assert repr(b) == "<LeastConnections 2 candidates, least load 1, cursor at slot 1>"


# ---------------------------------------------------------------- properties (Hypothesis)

_member = st.tuples(
    st.integers(1, 5),  # ratio
    st.integers(0, 6),  # active
    st.booleans(),  # available
    st.one_of(st.none(), st.floats(0.0, 30.0)),  # ramp_start
)
_step = st.one_of(
    st.tuples(st.just("pick"), st.sets(st.integers(0, 7), max_size=8), st.floats(0.0, 3.0)),
    st.tuples(st.just("flip"), st.integers(0, 7), st.booleans()),
    st.tuples(st.just("close"), st.integers(0, 7), st.booleans()),  # notified through on_close or not
    st.tuples(st.just("subset"), st.sets(st.integers(0, 7))),
)

def _run(make, pool, slow_ramp: float, steps: list[tuple], check) -> None:
    everyone = tuple(
        C(i, f"m{i}", ratio, active, available, start) for i, (ratio, active, available, start) in enumerate(pool)
    )
    candidates = everyone
    b = make(slow_ramp)
    now = 0.0
    for step in steps:
        if step[0] == "flip":
            everyone[step[1] % len(everyone)].available = step[2]
        elif step[0] == "close":
            member = everyone[step[1] % len(everyone)]
            if member.active:
                member.active -= 1
                if step[2]:
                    b.on_close(member)
        elif step[0] == "subset":
            candidates = tuple(m for m in everyone if m.slot in step[1])
        else:
            avoid = {f"m{i}" for i in step[1]}
            now += step[2]
            chosen = b.pick(candidates, None, avoid, now)
            takers = [m for m in candidates if m.available and m.name not in avoid]
            check(chosen, takers)
            if chosen is not None:
                chosen.active += 1
                b.on_open(chosen)

def _safe(chosen, takers) -> None:
    if not takers:
        assert chosen is None
    else:
        assert chosen is not None and any(chosen is m for m in takers)

@settings(max_examples=300, deadline=None)
@given(
    make=st.sampled_from([least, ratio_least]),
    pool=st.lists(_member, min_size=1, max_size=8),
    slow_ramp=st.sampled_from([0.0, 10.0]),
    steps=st.lists(_step, max_size=60),
)
def test_property_never_an_unavailable_or_avoided_member_and_always_one_when_possible(
    make, pool, slow_ramp: float, steps: list[tuple]
) -> None:
    _run(make, pool, slow_ramp, steps, _safe)

@settings(max_examples=300, deadline=None)
@given(
    weighted=st.booleans(),
    pool=st.lists(_member, min_size=1, max_size=8),
    steps=st.lists(_step.filter(lambda step: step[0] != "close" or step[2]), max_size=60),
)
def test_property_the_least_loaded_taker_wins_when_every_change_is_reported(
    weighted: bool, pool, steps: list[tuple]
) -> None:
    def load(member: C) -> float:
        return member.active / member.ratio if weighted else member.active

    def check(chosen, takers) -> None:
        _safe(chosen, takers)
        if chosen is not None:
            assert load(chosen) == min(load(m) for m in takers)

    _run(ratio_least if weighted else least, pool, 0.0, steps, check)
