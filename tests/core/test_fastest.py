"""Fastest: EWMA response time × (outstanding + 1) / (ratio × ramp), exact scan for small pools, P2C above."""

from __future__ import annotations

import random
from collections import Counter

import pytest
from candidates import C
from hypothesis import given, settings
from hypothesis import strategies as st

from appliance.core.balancing.fastest import (
    ALPHA,
    DECAY_HALF_LIFE,
    EXACT_SCAN_MAX,
    NOMINAL_RT,
    Fastest,
)
from appliance.core.model import Pool


def members(n: int) -> tuple[C, ...]:
    return tuple(C(i, f"m{i}") for i in range(n))


def fastest(slow_ramp: float = 0.0, seed: int = 1) -> Fastest:
    return Fastest(Pool(name="p", slow_ramp=slow_ramp), rng=random.Random(seed))


def picks(b: Fastest, candidates: tuple[C, ...], n: int, avoid: tuple[str, ...] = (), now: float = 0.0) -> list[str]:
    names = []
    for _ in range(n):
        member = b.pick(candidates, None, avoid, now)
        assert member is not None
        names.append(member.name)
    return names


def serve(b: Fastest, candidates: tuple[C, ...], n: int, now: float = 0.0) -> list[str]:
    """n picks that stay outstanding: each pick opens a request on its member."""
    taken = []
    for _ in range(n):
        member = b.pick(candidates, None, (), now)
        mine = candidates[member.slot] if member is not None else None
        assert mine is not None and mine is member
        mine.active += 1
        b.on_open(mine)
        taken.append(member.name)
    return taken


def test_before_any_sample_it_is_least_outstanding_with_round_robin_ties() -> None:
    ms = members(3)
    b = fastest()
    assert b.response_time("m0", 0.0) == NOMINAL_RT
    assert picks(b, ms, 6) == ["m0", "m1", "m2", "m0", "m1", "m2"]
    ms[0].active = 2
    ms[2].active = 1
    assert picks(b, ms, 3) == ["m1", "m1", "m1"]


def test_shifts_to_a_member_whose_response_time_falls() -> None:
    ms = members(3)
    b = fastest()
    for m in ms:
        b.observe(m, 0.050)
    assert picks(b, ms, 3) == ["m0", "m1", "m2"]  # all equal: round robin
    b.observe(ms[2], 0.005)  # one fast answer: 0.1 × 5 + 0.9 × 50 = 45.5 ms
    assert b.response_time("m2", 0.0) == pytest.approx(ALPHA * 0.005 + (1 - ALPHA) * 0.050)
    assert picks(b, ms, 4) == ["m2"] * 4
    for _ in range(30):  # m2 slows down again, m1 speeds up
        b.observe(ms[2], 0.200)
        b.observe(ms[1], 0.010)
    assert picks(b, ms, 4) == ["m1"] * 4


def test_outstanding_requests_weigh_in() -> None:
    ms = members(2)
    b = fastest()
    b.observe(ms[0], 0.25)
    b.observe(ms[1], 0.75)
    # scores 0.25 × (a0 + 1) vs 0.75 × (a1 + 1): m0 takes requests until it has 2 outstanding, then a tie
    # goes round robin (m1, the one after the last pick)
    assert serve(b, ms, 4) == ["m0", "m0", "m1", "m0"]
    ms[0].active = ms[1].active = 0
    taken = Counter(serve(b, ms, 40))
    assert taken == {"m0": 30, "m1": 10}  # three times as fast: three times the concurrency


def test_unavailable_and_avoided_members_are_skipped_and_none_when_nobody_can() -> None:
    ms = members(3)
    b = fastest()
    b.observe(ms[0], 0.001)
    b.observe(ms[1], 0.010)
    b.observe(ms[2], 0.100)
    assert picks(b, ms, 2) == ["m0", "m0"]
    assert picks(b, ms, 2, avoid=("m0",)) == ["m1", "m1"]
    ms[1].available = False
    assert picks(b, ms, 2, avoid=("m0",)) == ["m2", "m2"]
    assert b.pick(ms, None, ("m0", "m2"), 0.0) is None
    assert b.pick((), None, (), 0.0) is None


def test_a_new_member_ranks_at_the_pool_mean_and_is_tried() -> None:
    ms = members(3)
    b = fastest()
    b.observe(ms[0], 0.010)
    b.observe(ms[1], 0.030)
    mean = 0.010 + ALPHA * (0.030 - 0.010)  # pool-wide EWMA of every response
    assert b.response_time("m2", 0.0) == pytest.approx(mean)  # no sample yet
    # scores 10 × (a0 + 1), 30 × (a1 + 1) and the newcomer's 12 × (a2 + 1): it is tried on the second request
    assert serve(b, ms, 4) == ["m0", "m2", "m0", "m2"]
    ms[0].active = ms[2].active = 0
    assert picks(b, ms, 1) == ["m0"]
    b.observe(ms[2], 0.050)  # its first answer is slow: it ranks by its own sample from now on
    assert b.response_time("m2", 0.0) == pytest.approx(0.050)


def test_stale_estimates_decay_toward_the_pool_mean() -> None:
    ms = members(2)
    b = fastest()
    b.pick(ms, None, (), 0.0)
    b.observe(ms[0], 1.000)  # awful once: never picked again, so never observed again
    for _ in range(60):
        b.observe(ms[1], 0.010)
    mean = b.response_time("nobody", 0.0)
    ms[1].active = 2  # m1 at 30 ms with its queue
    assert b.pick(ms, None, (), 0.0) is ms[1]
    half = b.response_time("m0", DECAY_HALF_LIFE)
    assert half == pytest.approx(mean + (1.000 - mean) / 2)  # half-life: half the distance to the mean
    assert b.pick(ms, None, (), 60.0) is ms[0]  # a minute on, 1 s has decayed to ~27 ms: retried
    b.observe(ms[0], 0.005)  # it has recovered: the stale estimate gives way to the sample at once
    keep = (1 - ALPHA) * 2 ** (-60.0 / DECAY_HALF_LIFE)
    assert b.response_time("m0", 60.0) == pytest.approx(0.005 * (1 - keep) + 1.000 * keep)  # ~19 ms
    assert b.pick(ms, None, (), 60.0) is ms[0]  # where a plain EWMA would still say ~0.9 s


def test_a_great_but_silent_member_loses_its_head_start() -> None:
    ms = members(2)
    b = fastest()
    b.observe(ms[0], 0.001)
    for _ in range(60):
        b.observe(ms[1], 0.020)
    ms[1].active = 0
    ms[0].active = 5  # 6 ms even with five queued: still the fastest
    assert b.pick(ms, None, (), 0.0) is ms[0]
    assert b.response_time("m0", 100.0) == pytest.approx(b.response_time("nobody", 100.0), rel=0.01)
    assert b.pick(ms, None, (), 100.0) is ms[1]  # 100 s later its 1 ms is forgotten


def test_slow_ramp_makes_a_returning_member_look_slower_by_its_ramp_factor() -> None:
    ms = (C(0, "m0"), C(1, "m1", ramp_start=100.0))
    b = fastest(slow_ramp=10.0)
    b.observe(ms[0], 0.010)
    b.observe(ms[1], 0.010)
    # at a quarter of the ramp m1 scores 4 × 10 ms: m0 takes requests until 3 are outstanding
    assert Counter(serve(b, ms, 50, now=102.5)) == {"m0": 40, "m1": 10}
    ms[0].active = ms[1].active = 0
    assert Counter(serve(b, ms, 50, now=110.0)) == {"m0": 25, "m1": 25}  # ramp over


def test_ratio_divides_the_score() -> None:
    ms = (C(0, "m0", ratio=3), C(1, "m1"))
    b = fastest()
    assert Counter(serve(b, ms, 40)) == {"m0": 30, "m1": 10}


# ---------------------------------------------------------------- sampled mode (power of two choices)


def big_pool(n: int = 64) -> tuple[C, ...]:
    assert n > EXACT_SCAN_MAX
    return members(n)


def test_p2c_shuns_the_slow_member_and_spreads_over_the_rest() -> None:
    ms = big_pool(32)
    b = fastest()
    for m in ms:
        b.observe(m, 0.010)
    for _ in range(20):
        b.observe(ms[5], 0.500)
    taken = Counter(picks(b, ms, 3200))
    assert "m5" not in taken  # it loses every pair it is drawn in
    assert len(taken) == 31
    assert max(taken.values()) < 3 * min(taken.values())


def test_p2c_follows_outstanding_requests() -> None:
    ms = big_pool(16)
    b = fastest()
    for m in ms:
        b.observe(m, 0.010)
    serve(b, ms, 1600)
    assert max(m.active for m in ms) - min(m.active for m in ms) <= 6  # P2C keeps the spread tight


def test_p2c_draws_in_proportion_to_ratio() -> None:
    ms = tuple(C(i, f"m{i}", ratio=4 if i == 0 else 1) for i in range(16))
    b = fastest()
    taken = Counter(serve(b, ms, 1900))
    assert taken["m0"] == pytest.approx(1900 * 4 / 19, rel=0.1)


def test_p2c_is_repeatable_with_the_same_seed_and_falls_back_to_a_scan() -> None:
    ms = big_pool()
    assert picks(fastest(seed=7), ms, 50) == picks(fastest(seed=7), ms, 50)
    b = fastest()
    for m in ms:
        m.available = m.name == "m63"
    assert picks(b, ms, 3) == ["m63"] * 3  # one member in 64 can take it: the draws miss, the scan finds it
    assert b.pick(ms, None, ("m63",), 0.0) is None


# ---------------------------------------------------------------- properties

member_spec = st.tuples(
    st.integers(1, 5),  # ratio
    st.integers(0, 20),  # active
    st.booleans(),  # available
    st.sampled_from([None, 0.0, 5.0]),  # ramp_start
    st.one_of(st.none(), st.floats(0.0, 2.0)),  # a response time to observe, or none
)


@settings(max_examples=300, deadline=None)
@given(
    specs=st.lists(member_spec, min_size=1, max_size=2 * EXACT_SCAN_MAX + 4),
    avoid_mask=st.lists(st.booleans(), max_size=2 * EXACT_SCAN_MAX + 4),
    now=st.floats(0.0, 1000.0),
    seed=st.integers(0, 2**32),
)
def test_property_picks_an_eligible_member_whenever_there_is_one(
    specs: list[tuple[int, int, bool, float | None, float | None]],
    avoid_mask: list[bool],
    now: float,
    seed: int,
) -> None:
    ms = tuple(C(i, f"m{i}", ratio, active, ok, start) for i, (ratio, active, ok, start, _) in enumerate(specs))
    avoid = {m.name for m, skip in zip(ms, avoid_mask) if skip}
    b = fastest(slow_ramp=10.0, seed=seed)
    for m, (*_, rt) in zip(ms, specs):
        if rt is not None:
            b.observe(m, rt)
    eligible = {m.name for m in ms if m.available and m.name not in avoid}
    for _ in range(5):
        member = b.pick(ms, None, avoid, now)
        if eligible:
            assert member is not None and member.name in eligible
        else:
            assert member is None


@settings(max_examples=200, deadline=None)
@given(rts=st.lists(st.floats(0.001, 1.0), min_size=2, max_size=EXACT_SCAN_MAX), actives=st.data())
def test_property_exact_mode_picks_the_lowest_score(rts: list[float], actives: st.DataObject) -> None:
    ms = members(len(rts))
    for m in ms:
        m.active = actives.draw(st.integers(0, 10))
    b = fastest()
    for m, rt in zip(ms, rts):
        b.observe(m, rt)
    chosen = b.pick(ms, None, (), 0.0)
    assert chosen is not None
    scores = {m.name: b.response_time(m.name, 0.0) * (m.active + 1) for m in ms}
    assert scores[chosen.name] == min(scores.values())
