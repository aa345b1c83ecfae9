"""Ratio: smooth weighted round robin with exact shares, skipping, changing candidates and slow ramp."""

from __future__ import annotations

import pytest
from candidates import C
from hypothesis import given, settings
from hypothesis import strategies as st

from appliance.core.balancing.ratio import Ratio
from appliance.core.model import Pool


def members(*ratios: int) -> tuple[C, ...]:
    return tuple(C(i, "abcdefghij"[i], ratio) for i, ratio in enumerate(ratios))


def balancer(slow_ramp: float = 0.0) -> Ratio:
    return Ratio(Pool(name="p", slow_ramp=slow_ramp))


def picks(b: Ratio, candidates, n: int, avoid=(), now: float = 0.0) -> str:
    out = []
    for _ in range(n):
        chosen = b.pick(candidates, None, avoid, now)
        assert chosen is not None
        out.append(chosen.name)
    return "".join(out)


def longest_run(sequence: str) -> int:
    best = run = 1
    for before, after in zip(sequence, sequence[1:]):
        run = run + 1 if before == after else 1
        best = max(best, run)
    return best


def test_three_to_one_over_forty_picks_is_thirty_ten_never_more_than_three_in_a_row() -> None:
    sequence = picks(balancer(), members(3, 1), 40)
    assert sequence[:12] == "aabaaabaaaba"
    assert (sequence.count("a"), sequence.count("b")) == (30, 10)
    assert longest_run(sequence) == 3


def test_five_one_one_interleaves_at_least_as_smoothly_as_nginx() -> None:
    # nginx's smooth weighted round robin gives a a b a c a a, which repeated has four a in a row;
    # here the two light members sit evenly between the a's: never more than three.
    sequence = picks(balancer(), members(5, 1, 1), 70)
    assert sequence[:7] == "abaaaca"
    assert sequence == sequence[:7] * 10
    assert longest_run(sequence) == 3


@pytest.mark.parametrize("ratios", [(1, 1, 1), (3, 1), (5, 1, 1), (3, 2, 1), (2, 2, 1, 1), (7, 3, 3, 1), (4, 6, 9)])
def test_every_run_of_sum_ratio_picks_gives_each_member_exactly_its_ratio(ratios: tuple[int, ...]) -> None:
    period = sum(ratios)
    sequence = picks(balancer(), members(*ratios), period * 6)
    for start in range(len(sequence) - period + 1):
        window = sequence[start : start + period]
        assert [window.count("abcdefghij"[i]) for i in range(len(ratios))] == list(ratios), (start, window)


def test_equal_ratios_are_round_robin_in_slot_order() -> None:
    assert picks(balancer(), members(2, 2, 2, 2), 8) == "abcdabcd"


def test_a_large_pool_gets_exact_shares_per_period() -> None:
    pool = tuple(C(i, f"m{i}", ratio=1 + i % 4) for i in range(1024))
    period = sum(m.ratio for m in pool)
    b = balancer()
    counts: dict[str, int] = {}
    for _ in range(period):
        chosen = b.pick(pool, None, (), 0.0)
        assert chosen is not None
        counts[chosen.name] = counts.get(chosen.name, 0) + 1
    assert all(counts[m.name] == m.ratio for m in pool)


def test_an_avoided_member_keeps_its_turn_for_the_next_pick() -> None:
    b = balancer()
    three = members(1, 1, 1)
    assert picks(b, three, 1) == "a"
    assert picks(b, three, 1, avoid={"b"}) == "c"  # b's turn, but this retry avoids it
    assert picks(b, three, 6) == "babcab"  # b first, then back to one turn each per round


def test_a_member_at_its_limit_loses_its_turns_and_comes_back_without_a_burst() -> None:
    b = balancer()
    two = members(1, 1)
    assert picks(b, two, 3) == "aba"
    two[1].available = False
    assert picks(b, two, 6) == "aaaaaa"
    two[1].available = True
    assert picks(b, two, 6) == "bababa"  # no catch-up for the turns it could not take


def test_none_when_nobody_can_take_it_and_avoided_members_keep_their_places() -> None:
    b = balancer()
    three = members(2, 1, 1)
    assert b.pick(three, None, {"a", "b", "c"}, 0.0) is None
    assert b.pick((), None, (), 0.0) is None  # everybody left, and comes back to the same place
    assert picks(b, three, 8) == picks(balancer(), three, 8) == "abacabac"
    three[1].available = False
    assert b.pick(three, None, {"a", "c"}, 0.0) is None  # b's turn passed: it was at its limit
    three[1].available = True
    assert picks(b, three, 8) == "aacabaca"  # b waits for its next turn; a and c kept theirs


def test_proportions_follow_the_candidate_set_and_a_member_returns_to_its_place() -> None:
    b = balancer()
    abc = members(3, 2, 1)
    assert picks(b, abc, 6) == "abacba"
    without_b = (abc[0], abc[2])
    during = picks(b, without_b, 40)
    assert (during.count("a"), during.count("c")) == (30, 10)
    after = picks(b, abc, 60)
    for start in range(len(after) - 5):
        window = after[start : start + 6]
        assert (window.count("a"), window.count("b"), window.count("c")) == (3, 2, 1), window


def test_a_new_tuple_with_the_same_members_continues_the_same_schedule() -> None:
    same, fresh = balancer(), balancer()
    abc = members(3, 2, 1)
    expected = picks(same, abc, 30)
    assert "".join(picks(fresh, tuple(abc), 1) for _ in range(30)) == expected


def test_members_joining_later_are_spread_among_themselves() -> None:
    b = balancer()
    first = members(1, 1)
    assert picks(b, first, 4) == "abab"
    grown = first + (C(2, "c"), C(3, "d"))
    sequence = picks(b, grown, 40)
    assert all(sequence.count(name) == 10 for name in "abcd")


@pytest.mark.parametrize("step", range(1, 11))
def test_slow_ramp_share_in_ten_steps(step: int) -> None:
    b = balancer(slow_ramp=10.0)
    pair = (C(0, "a", ratio=2), C(1, "b", ratio=2, ramp_start=100.0))
    factor = step / 10
    sequence = picks(b, pair, 2200, now=100.0 + step)
    assert sequence.count("b") / sequence.count("a") == pytest.approx(factor, abs=0.005)


def test_a_ramping_member_counts_its_ratio_times_its_factor() -> None:
    b = balancer(slow_ramp=10.0)
    pair = (C(0, "a", ratio=1), C(1, "b", ratio=4, ramp_start=100.0))
    sequence = picks(b, pair, 1500, now=102.5)  # factor 0.25: effective weight 4 x 0.25 = 1
    assert sequence.count("b") / sequence.count("a") == pytest.approx(1.0, abs=0.01)
    assert longest_run(sequence) <= 3


def test_members_that_all_came_back_together_share_as_if_none_ramped() -> None:
    b = balancer(slow_ramp=10.0)
    returned = tuple(C(i, "abc"[i], ratio=i + 1, ramp_start=100.0) for i in range(3))
    assert picks(b, returned, 12, now=100.5) == picks(balancer(), members(1, 2, 3), 12)


def test_ramp_starts_from_the_floor_and_never_starves() -> None:
    b = balancer(slow_ramp=10.0)
    pair = (C(0, "a"), C(1, "b", ramp_start=100.0))
    sequence = picks(b, pair, 420, now=100.0)  # just back: RAMP_FLOOR, 5 %
    assert sequence.count("b") == 20


# ---------------------------------------------------------------- properties (Hypothesis)

_member = st.tuples(
    st.integers(1, 5),  # ratio
    st.booleans(),  # available
    st.one_of(st.none(), st.floats(0.0, 30.0)),  # ramp_start
)
_step = st.one_of(
    st.tuples(st.just("pick"), st.sets(st.integers(0, 7), max_size=8), st.floats(0.0, 3.0)),
    st.tuples(st.just("flip"), st.integers(0, 7), st.booleans()),
    st.tuples(st.just("subset"), st.sets(st.integers(0, 7))),
)

@settings(max_examples=300, deadline=None)
@given(
    pool=st.lists(_member, min_size=1, max_size=8),
    slow_ramp=st.sampled_from([0.0, 10.0]),
    steps=st.lists(_step, max_size=60),
)
def test_property_never_an_unavailable_or_avoided_member_and_always_one_when_possible(
    pool: list[tuple[int, bool, float | None]], slow_ramp: float, steps: list[tuple]
) -> None:
    everyone = tuple(C(i, f"m{i}", ratio, 0, available, start) for i, (ratio, available, start) in enumerate(pool))
    candidates = everyone
    b = balancer(slow_ramp)
    now = 0.0
    for step in steps:
        if step[0] == "flip":
            everyone[step[1] % len(everyone)].available = step[2]
        elif step[0] == "subset":
            candidates = tuple(m for m in everyone if m.slot in step[1])
        else:
            avoid = {f"m{i}" for i in step[1]}
            now += step[2]
            chosen = b.pick(candidates, None, avoid, now)
            takers = [m for m in candidates if m.available and m.name not in avoid]
            if not takers:
                assert chosen is None
            else:
                assert chosen is not None and any(chosen is m for m in takers)

@settings(max_examples=200, deadline=None)
@given(ratios=st.lists(st.integers(1, 6), min_size=1, max_size=12), skips=st.lists(st.integers(0, 11), max_size=30))
def test_property_exact_shares_per_period_after_any_skips(ratios: list[int], skips: list[int]) -> None:
    everyone = tuple(C(i, f"m{i}", ratio) for i, ratio in enumerate(ratios))
    b = balancer()
    for skip in skips:  # retries and members at their limit shuffle the phases, never the shares
        everyone[skip % len(everyone)].available = False
        b.pick(everyone, None, {f"m{skip * 7 % len(everyone)}"}, 0.0)
        everyone[skip % len(everyone)].available = True
    period = sum(ratios)
    for _ in range(period):  # let a member left behind by a skip settle
        b.pick(everyone, None, (), 0.0)
    counts = [0] * len(everyone)
    for _ in range(3 * period):
        chosen = b.pick(everyone, None, (), 0.0)
        assert chosen is not None
        counts[chosen.slot] += 1
    assert counts == [3 * ratio for ratio in ratios]
