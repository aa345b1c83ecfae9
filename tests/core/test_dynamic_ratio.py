"""Observed and predictive: a sampler each SAMPLE_PERIOD turning connection counts into dynamic ratios."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from itertools import groupby

import pytest
from candidates import C
from hypothesis import given, settings
from hypothesis import strategies as st

from appliance.core.balancing.dynamic_ratio import (
    RATIO_MAX,
    RATIO_MIN,
    SAMPLE_PERIOD,
    TREND_LIMIT,
    Observed,
    Predictive,
)
from appliance.core.model import Pool


def members(*ratios: int) -> tuple[C, ...]:
    return tuple(C(i, "abcdefghijklmnopqrstuvwxyz"[i], ratio) for i, ratio in enumerate(ratios))


def picks(b: Observed, candidates: tuple[C, ...], n: int, now: float = 0.0, avoid: tuple[str, ...] = ()) -> list[str]:
    names = []
    for _ in range(n):
        member = b.pick(candidates, None, avoid, now)
        assert member is not None
        names.append(member.name)
    return names


def set_counts(candidates: tuple[C, ...], counts: tuple[int, ...]) -> None:
    for member, count in zip(candidates, counts):
        member.active = count


@pytest.fixture(params=[Observed, Predictive])
def method(request: pytest.FixtureRequest) -> type[Observed]:
    cls: type[Observed] = request.param
    return cls


# ---------------------------------------------------------------- the formulas, sample by sample


@pytest.mark.parametrize(
    "counts, ratios",
    [
        ((0, 0, 0), {"a": 1, "b": 1, "c": 2}),  # idle pool: the configured ratios
        ((3, 3, 6), {"a": 1, "b": 1, "c": 2}),  # loads per unit of ratio equal: the configured ratios
        ((2, 6, 8), {"a": 1 * 5 / 3, "b": 1 * 5 / 7, "c": 2 * 5 / 5}),  # mean 16/4 = 4; (4+1)/(load+1)
        ((30, 0, 0), {"a": 8.5 / 31, "b": 8.5, "c": 2 * 8.5}),  # mean 7.5
        ((100, 0, 0), {"a": 26 / 101, "b": RATIO_MAX, "c": 2 * RATIO_MAX}),  # mean 25: capped at 10
    ],
)
def test_observed_ratios_follow_each_sample(counts: tuple[int, ...], ratios: dict[str, float]) -> None:
    ms = members(1, 1, 2)
    b = Observed(Pool(name="p"))
    set_counts(ms, counts)
    b.pick(ms, None, (), 0.0)
    assert b.ratios() == pytest.approx(ratios)


def test_observed_floor_keeps_the_busiest_member_on_the_schedule() -> None:
    ms = members(1, 19)
    b = Observed(Pool(name="p"))
    set_counts(ms, (1000, 0))  # mean 50: (50+1)/(1000+1) = 0.051, under the floor
    b.pick(ms, None, (), 0.0)
    assert b.ratios() == pytest.approx({"a": RATIO_MIN, "b": 19 * RATIO_MAX})
    assert "a" in picks(b, ms, 2000)


def test_observed_and_predictive_follow_a_scripted_series_of_samples() -> None:
    ms_o, ms_p = members(1, 1), members(1, 1)
    observed, predictive = Observed(Pool(name="p")), Predictive(Pool(name="p"))
    series = [(2, 4), (4, 4), (8, 4), (8, 4), (2, 4)]
    # observed: (mean+1)/(count+1); predictive × exp(2 × slope), slope ← ½ ln((prev+1)/(count+1)) + ½ slope
    expected_observed = [(4 / 3, 4 / 5), (1, 1), (7 / 9, 7 / 5), (7 / 9, 7 / 5), (4 / 3, 4 / 5)]
    trend_a = [1, 3 / 5, 5 / 9 * (3 / 5) ** 0.5, (5 / 9 * (3 / 5) ** 0.5) ** 0.5, 3 * (5 / 9 * (3 / 5) ** 0.5) ** 0.25]
    trend_a[-1] = min(trend_a[-1], TREND_LIMIT)
    for second, counts in enumerate(series):
        set_counts(ms_o, counts)
        set_counts(ms_p, counts)
        observed.pick(ms_o, None, (), float(second))
        predictive.pick(ms_p, None, (), float(second))
        obs_a, obs_b = expected_observed[second]
        assert observed.ratios() == pytest.approx({"a": obs_a, "b": obs_b})
        assert predictive.ratios() == pytest.approx({"a": obs_a * trend_a[second], "b": obs_b})


def test_predictive_trend_is_capped() -> None:
    ms = members(1, 1, 1, 1)
    b = Predictive(Pool(name="p"))
    set_counts(ms, (1000, 10, 10, 10))
    b.pick(ms, None, (), 0.0)
    set_counts(ms, (10, 10, 10, 10))  # a falls to the average at once: exp(ln(1001/11)) = 91, capped at 4
    b.pick(ms, None, (), 1.0)
    assert b.ratios() == pytest.approx({"a": TREND_LIMIT, "b": 1.0, "c": 1.0, "d": 1.0})


def share_per_second(b: Observed, ms: tuple[C, ...], series: Sequence[tuple[int, ...]], name: str) -> list[float]:
    shares = []
    for second, counts in enumerate(series):
        set_counts(ms, counts)
        taken = Counter(picks(b, ms, 300, now=float(second)))
        shares.append(taken[name] / 300)
    return shares


def test_a_declining_member_loses_share_faster_under_predictive_than_under_observed() -> None:
    series = [(4, 4, 4), (6, 4, 4), (8, 4, 4), (10, 4, 4), (12, 4, 4)]  # a's count keeps rising
    observed = share_per_second(Observed(Pool(name="p")), members(1, 1, 1), series, "a")
    predictive = share_per_second(Predictive(Pool(name="p")), members(1, 1, 1), series, "a")
    assert observed[0] == predictive[0] == pytest.approx(1 / 3)
    for later in range(1, len(series)):
        assert predictive[later] < observed[later] < observed[later - 1]
        assert predictive[0] - predictive[later] > observed[0] - observed[later]


def test_an_improving_member_gains_share_faster_under_predictive() -> None:
    series = [(12, 4, 4), (10, 4, 4), (8, 4, 4), (6, 4, 4)]  # a's count keeps falling
    observed = share_per_second(Observed(Pool(name="p")), members(1, 1, 1), series, "a")
    predictive = share_per_second(Predictive(Pool(name="p")), members(1, 1, 1), series, "a")
    for later in range(1, len(series)):
        assert predictive[later] > observed[later]


def test_an_unchanged_count_fades_the_trend_back_to_observed() -> None:
    ms = members(1, 1)
    b = Predictive(Pool(name="p"))
    for second, count in enumerate([4, 8] + [8] * 12):
        set_counts(ms, (count, 4))
        b.pick(ms, None, (), float(second))
    assert b.ratios()["a"] == pytest.approx((6 + 1) / (8 + 1), rel=1e-3)  # the observed ratio again


# ---------------------------------------------------------------- the sampler


def test_sampling_happens_once_per_period_regardless_of_pick_rate(method: type[Observed]) -> None:
    ms = members(1, 1)
    b = method(Pool(name="p"))
    assert b.samples == 0 and b.sampled_at is None and b.ratios() == {}
    for i in range(1000):  # a thousand picks in the first period, the counts moving under them
        set_counts(ms, (i % 7, 0))
        b.pick(ms, None, (), i / 1000)
    assert b.samples == 1 and b.sampled_at == 0.0
    assert b.ratios() == {"a": 1.0, "b": 1.0}  # the counts of the first pick: (0, 0)
    set_counts(ms, (3, 1))
    b.pick(ms, None, (), SAMPLE_PERIOD)
    assert b.samples == 2 and b.ratios()["a"] < b.ratios()["b"]
    b.pick(ms, None, (), 5.3)  # a quiet pool: one sample on the next pick, not one per missed period
    assert b.samples == 3 and b.sampled_at == 5.3
    b.pick(ms, None, (), 6.0)
    assert b.samples == 3
    b.pick(ms, None, (), 6.3)
    assert b.samples == 4


def test_no_candidates_no_pick_and_no_sample(method: type[Observed]) -> None:
    b = method(Pool(name="p"))
    assert b.pick((), None, (), 0.0) is None
    assert b.samples == 0


# ---------------------------------------------------------------- the schedule between samples


def test_an_idle_pool_is_smooth_weighted_round_robin_by_ratio(method: type[Observed]) -> None:
    ms = members(3, 1)
    sequence = picks(method(Pool(name="p")), ms, 40)
    assert Counter(sequence) == {"a": 30, "b": 10}
    assert max(len(list(run)) for _, run in groupby(sequence)) <= 3


def test_picks_follow_the_dynamic_ratios_within_a_period(method: type[Observed]) -> None:
    ms = members(1, 1, 2)
    b = method(Pool(name="p"))
    set_counts(ms, (2, 6, 8))  # dynamic ratios 5/3 : 5/7 : 2
    taken = Counter(picks(b, ms, 1000))
    ratios = b.ratios()
    total = sum(ratios.values())
    for name, ratio in ratios.items():
        assert taken[name] == pytest.approx(1000 * ratio / total, abs=1.5)


def test_a_slow_pick_rate_still_rotates_through_every_member(method: type[Observed]) -> None:
    ms = members(1, 1, 1, 1)
    b = method(Pool(name="p"))
    # one pick per period: every pick resamples and reschedules, each member keeps its place in line
    assert [picks(b, ms, 1, now=float(t))[0] for t in range(8)] == list("abcdabcd")


def test_unavailable_members_pass_their_turn_avoided_ones_keep_it(method: type[Observed]) -> None:
    ms = members(1, 1, 1)
    b = method(Pool(name="p"))
    assert picks(b, ms, 2, avoid=("a",)) == ["b", "c"]
    assert picks(b, ms, 1) == ["a"]  # avoided for one request only: its turn was kept
    ms[1].available = False  # at its connection limit
    assert picks(b, ms, 4) == ["a", "c", "a", "c"]
    ms[1].available = True
    assert picks(b, ms, 6) == ["a", "b", "c", "a", "b", "c"]  # back in step, no burst to catch up
    assert b.pick(ms, None, ("a", "c"), 0.0) is ms[1]
    ms[1].available = False
    assert b.pick(ms, None, ("a", "c"), 0.0) is None


def test_a_candidates_change_keeps_the_rotation(method: type[Observed]) -> None:
    ms = members(1, 1, 1)
    b = method(Pool(name="p"))
    assert picks(b, ms, 2) == ["a", "b"]
    without_b = (ms[0], ms[2])
    assert picks(b, without_b, 3) == ["c", "a", "c"]
    assert picks(b, ms, 3) == ["a", "b", "c"]  # b returns one period ahead, level with the others


def test_slow_ramp_multiplies_the_dynamic_ratio(method: type[Observed]) -> None:
    ms = (C(0, "a"), C(1, "b", ramp_start=100.0))
    b = method(Pool(name="p", slow_ramp=10.0))
    at_quarter = Counter(picks(b, ms, 500, now=102.5))  # factor 0.25
    assert at_quarter["b"] / at_quarter["a"] == pytest.approx(0.25, abs=0.01)
    assert Counter(picks(b, ms, 100, now=110.0)) == {"a": 50, "b": 50}


# ---------------------------------------------------------------- properties


@settings(max_examples=200, deadline=None)
@given(
    predictive=st.booleans(),
    ratios=st.lists(st.integers(1, 5), min_size=1, max_size=12),
    steps=st.lists(
        st.tuples(
            st.floats(0.0, 2.5),  # time step
            st.lists(st.integers(0, 50), min_size=12, max_size=12),  # counts
            st.lists(st.booleans(), min_size=12, max_size=12),  # available
            st.lists(st.booleans(), min_size=12, max_size=12),  # avoided
            st.integers(0, 12),  # candidates dropped from the end (a new tuple)
        ),
        min_size=1,
        max_size=12,
    ),
)
def test_property_picks_an_eligible_member_whenever_there_is_one_and_ratios_stay_in_bounds(
    predictive: bool,
    ratios: list[int],
    steps: list[tuple[float, list[int], list[bool], list[bool], int]],
) -> None:
    everyone = tuple(C(i, f"m{i}", ratio) for i, ratio in enumerate(ratios))
    b = (Predictive if predictive else Observed)(Pool(name="p", slow_ramp=3.0))
    now = 0.0
    for dt, counts, available, avoided, dropped in steps:
        now += dt
        for member, count, ok in zip(everyone, counts, available):
            member.active, member.available = count, ok
            member.ramp_start = 1.0 if member.slot % 3 == 0 else None
        candidates = everyone[: max(len(everyone) - dropped, 0)]
        avoid = {m.name for m, skip in zip(candidates, avoided) if skip}
        eligible = {m.name for m in candidates if m.available and m.name not in avoid}
        for _ in range(3):
            chosen = b.pick(candidates, None, avoid, now)
            if eligible:
                assert chosen is not None and chosen.name in eligible
            else:
                assert chosen is None
        configured = {m.name: m.ratio for m in everyone}
        for name, ratio in b.ratios().items():
            assert configured[name] * RATIO_MIN - 1e-9 <= ratio <= configured[name] * RATIO_MAX + 1e-9
