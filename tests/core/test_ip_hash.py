"""ip_hash: weighted Maglev with exact consistency, hash_mask, avoid, connection limits and slow ramp."""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Sequence
from dataclasses import replace

import pytest
from candidates import FrozenC as C
from hypothesis import given, settings
from hypothesis import strategies as st

from appliance.core.balancing.ip_hash import (
    MIN_TABLE_SIZE,
    IpHash,
    maglev_table,
    masked_key,
    table_size,
)
from appliance.core.model import Endpoint, Member, Method, Pool


def make(ratios: Sequence[int], hash_mask: int = 32, slow_ramp: float = 0.0) -> tuple[IpHash, tuple[C, ...]]:
    members = tuple(
        Member(address=Endpoint(host="10.0.0.1", port=9000 + i), name=f"m{i}", ratio=r) for i, r in enumerate(ratios)
    )
    pool = Pool(name="p", method=Method.IP_HASH, members=members, hash_mask=hash_mask, slow_ramp=slow_ramp)
    return IpHash(pool), tuple(C(i, f"m{i}", ratio=r) for i, r in enumerate(ratios))


def ipv4_keys(count: int, seed: int = 4) -> list[bytes]:
    rng = random.Random(seed)
    return [b"%d.%d.%d.%d" % tuple(rng.randrange(256) for _ in range(4)) for _ in range(count)]


def ipv6_keys(count: int, seed: int = 6) -> list[bytes]:
    rng = random.Random(seed)
    return [f"2001:db8:{rng.randrange(65536):x}:{rng.randrange(65536):x}::{rng.randrange(1, 65536):x}".encode()
            for _ in range(count)]  # fmt: skip


def served(b: IpHash, candidates: Sequence[C], keys: Sequence[bytes], avoid: frozenset[str] = frozenset(),
           now: float = 0.0) -> list[str]:  # fmt: skip
    out = []
    for k in keys:
        m = b.pick(candidates, k, avoid, now)
        assert m is not None
        out.append(m.name)
    return out


KEYS = ipv4_keys(100_000)


# ---------------------------------------------------------------- keys and hash_mask


@pytest.mark.parametrize(
    ("key", "mask", "expected"),
    [
        (b"203.0.113.7", 32, b"203.0.113.7"),
        (b"203.0.113.7", 24, b"203.0.113.0"),
        (b"203.0.113.7", 16, b"203.0.0.0"),
        (b"203.0.113.7", 31, b"203.0.113.6"),
        (b"203.0.113.7", 0, b"0.0.0.0"),
        (b"::ffff:203.0.113.7", 32, b"203.0.113.7"),  # dual-stack listener: the IPv4 client it carries
        (b"::FFFF:203.0.113.7", 24, b"203.0.113.0"),
        (b"2001:db8::1", 24, b"2001:db8::1"),  # IPv6: hashed whole
        (b"2001:db8::1", 32, b"2001:db8::1"),
        (b"not-an-address", 24, b"not-an-address"),  # hashed as given, never an error on the data path
        (b"1.2.3", 24, b"1.2.3"),
        (b"1.2.3.999", 24, b"1.2.3.999"),
    ],
)
def test_masked_key(key: bytes, mask: int, expected: bytes) -> None:
    assert masked_key(key, mask) == expected


def test_hash_mask_24_keeps_a_slash_24_together_and_32_does_not() -> None:
    subnet = [b"198.51.100.%d" % i for i in range(256)]
    b24, members = make([1] * 10, hash_mask=24)
    assert len(set(served(b24, members, subnet))) == 1
    b32, members = make([1] * 10, hash_mask=32)
    assert len(set(served(b32, members, subnet))) == 10
    other = [b"198.51.101.%d" % i for i in range(256)]  # the next /24 is its own group
    assert len(set(served(b24, members, other))) == 1


def test_ipv6_clients_are_hashed_whole_stably_and_by_ratio() -> None:
    keys = ipv6_keys(40_000)
    b, members = make([1, 3], hash_mask=24)
    first = served(b, members, keys)
    assert served(b, members, keys) == first
    assert abs(first.count("m1") / len(keys) - 0.75) < 0.01
    same_64 = [b"2001:db8:1:2::%x" % i for i in range(1, 200)]  # a /24 mask does not group IPv6 clients
    assert len(set(served(b, members, same_64))) == 2


def test_an_ipv4_mapped_client_reaches_the_same_member_as_its_ipv4_address() -> None:
    b, members = make([1] * 10)
    keys = KEYS[:2000]
    assert served(b, members, [b"::ffff:" + k for k in keys]) == served(b, members, keys)


def test_no_key_is_hashed_as_empty() -> None:
    b, members = make([1] * 5)
    assert b.pick(members, None, (), 0.0) == b.pick(members, b"", (), 0.0)


# ---------------------------------------------------------------- the table


def test_table_size_is_a_prime_of_at_least_100_entries_per_member() -> None:
    assert table_size(2) == table_size(655) == MIN_TABLE_SIZE == 65537
    assert table_size(1024) == 102407  # the first prime >= 102400


@pytest.mark.parametrize("ratios", [[1, 2, 3, 4], [1] * 10, [1, 100], [5, 1, 1, 7, 2]])
def test_each_member_owns_its_ratio_of_the_table_to_within_one_entry(ratios: list[int]) -> None:
    size = 65537
    table = maglev_table(tuple((f"m{i}", r) for i, r in enumerate(ratios)), size)
    owned = Counter(table)
    for i, r in enumerate(ratios):
        assert abs(owned[i] - size * r / sum(ratios)) <= 1


def test_weight_proportions_within_2_percent_of_ratio() -> None:
    b, members = make([1, 2, 3, 4])
    counts = Counter(served(b, members, KEYS))
    for i, ratio in enumerate([1, 2, 3, 4]):
        expected = ratio / 10
        assert abs(counts[f"m{i}"] / len(KEYS) - expected) < 0.02 * expected


def test_adding_a_member_to_the_config_moves_about_its_share() -> None:
    """A rebuilt table (a new pool member) is Maglev's: near 1/N moves, not exactly."""
    keys = KEYS[:20_000]
    before = served(*make([1] * 10), keys)
    after = served(*make([1] * 11), keys)
    moved = sum(a != b for a, b in zip(before, after))
    to_new = after.count("m10")
    assert moved >= to_new
    assert moved / len(keys) < 1 / 11 + 0.03  # Maglev's extra disruption stays small


# ---------------------------------------------------------------- consistency


def test_removing_one_of_ten_moves_only_its_keys_and_adding_it_back_returns_exactly_them() -> None:
    b, members = make([1] * 10)
    before = served(b, members, KEYS)
    without = tuple(m for m in members if m.name != "m3")
    after = served(b, without, KEYS)
    theirs = [i for i, name in enumerate(before) if name == "m3"]
    assert 0.09 < len(theirs) / len(KEYS) < 0.11
    for i, (old, new) in enumerate(zip(before, after)):
        if old == "m3":
            assert new != "m3"
        else:
            assert new == old, f"key {KEYS[i]!r} moved from {old} to {new}"
    spread = Counter(after[i] for i in theirs)  # m3's keys spread over the nine others by ratio
    assert len(spread) == 9
    assert all(abs(n / len(theirs) - 1 / 9) < 0.02 for n in spread.values())
    assert served(b, members, KEYS) == before


def test_a_second_member_leaving_moves_only_its_keys_too() -> None:
    b, members = make([1, 2, 3, 4, 1, 2])
    keys = KEYS[:30_000]
    one_out = tuple(m for m in members if m.name != "m1")
    two_out = tuple(m for m in one_out if m.name != "m3")
    first, second = served(b, one_out, keys), served(b, two_out, keys)
    assert all(new == old for old, new in zip(first, second) if old != "m3")


def test_an_unavailable_or_avoided_member_spills_its_keys_exactly_as_if_it_had_left() -> None:
    b, members = make([1] * 10)
    keys = KEYS[:20_000]
    without = served(b, tuple(m for m in members if m.name != "m4"), keys)
    at_limit = tuple(replace(m, available=m.name != "m4") for m in members)
    assert served(b, at_limit, keys) == without
    assert served(b, at_limit, keys) == without  # deterministic: the same again
    assert served(b, members, keys, avoid=frozenset({"m4"})) == without


def test_a_member_is_returned_for_every_key_while_any_candidate_can_take_it() -> None:
    b, members = make([1] * 64)
    keys = KEYS[:3000]
    lone = tuple(replace(m, available=m.name == "m37") for m in members)
    assert set(served(b, lone, keys)) == {"m37"}
    avoid_all_but = frozenset(m.name for m in members if m.name != "m5")
    assert set(served(b, members, keys, avoid=avoid_all_but)) == {"m5"}
    assert set(served(b, (members[9],), keys)) == {"m9"}
    nobody = tuple(replace(m, available=False) for m in members)
    assert b.pick(nobody, keys[0], (), 0.0) is None
    assert b.pick(members, keys[0], frozenset(m.name for m in members), 0.0) is None
    assert b.pick((), keys[0], (), 0.0) is None


def test_a_candidate_the_pool_does_not_know_is_still_reachable() -> None:
    b, _ = make([1] * 4)
    stranger = C(7, "elsewhere")
    assert b.pick((stranger,), b"192.0.2.1", (), 0.0) is stranger


# ---------------------------------------------------------------- slow ramp


def test_a_ramping_member_serves_its_ramp_share_of_its_keys_and_keeps_them_as_it_grows() -> None:
    b, members = make([1] * 10, slow_ramp=10.0)
    keys = KEYS[:50_000]
    full = served(b, members, keys)
    away = served(b, members[:9], keys)
    ramping = members[:9] + (replace(members[9], ramp_start=100.0),)
    theirs = {i for i, name in enumerate(full) if name == "m9"}
    kept: set[int] = set()
    for step in range(1, 11):
        now = 100.0 + step  # factor 0.1, 0.2 ... 1.0
        got = served(b, ramping, keys, now=now)
        mine = {i for i, name in enumerate(got) if name == "m9"}
        assert mine <= theirs  # only its own keys
        assert abs(len(mine) / len(theirs) - step / 10) < 0.02
        assert kept <= mine  # a key it took stays with it as the ramp grows
        kept = mine
        for i, name in enumerate(got):
            if i not in mine:  # everybody else's keys, and those it has not taken yet, are where they were without it
                assert name == away[i]
    assert kept == theirs


def test_the_ramp_floor_gives_a_returning_member_some_keys_at_once() -> None:
    b, members = make([1] * 10, slow_ramp=10.0)
    keys = KEYS[:50_000]
    ramping = members[:9] + (replace(members[9], ramp_start=100.0),)
    theirs = served(b, members, keys).count("m9")
    got = served(b, ramping, keys, now=100.0).count("m9")
    assert abs(got / theirs - 0.05) < 0.01


def test_a_whole_pool_ramping_together_is_served_as_if_none_ramped() -> None:
    b, members = make([1] * 10, slow_ramp=10.0)
    keys = KEYS[:20_000]
    together = tuple(replace(m, ramp_start=50.0) for m in members)
    assert served(b, together, keys, now=51.0) == served(b, members, keys)


def test_a_ramping_member_that_refused_a_key_takes_it_when_nobody_else_can() -> None:
    b, members = make([1, 1], slow_ramp=10.0)
    pair = (replace(members[0], available=False), replace(members[1], ramp_start=100.0))
    assert set(served(b, pair, KEYS[:2000], now=100.5)) == {"m1"}


# ---------------------------------------------------------------- properties


RATIO_PATTERNS = [[1], [1, 1], [2, 1], [1, 2, 3, 4], [1] * 7, [3, 1, 4, 1, 5], [1, 2] * 6]  # a table each: kept few


@st.composite
def situations(draw: st.DrawFn) -> tuple[list[int], tuple[C, ...], frozenset[str], list[bytes]]:
    ratios = RATIO_PATTERNS[draw(st.integers(0, len(RATIO_PATTERNS) - 1))]
    members = [C(i, f"m{i}", ratio=r) for i, r in enumerate(ratios)]
    chosen = draw(st.lists(st.booleans(), min_size=len(ratios), max_size=len(ratios)))
    up = draw(st.lists(st.booleans(), min_size=len(ratios), max_size=len(ratios)))
    candidates = tuple(replace(m, available=a) for m, c, a in zip(members, chosen, up) if c)
    avoid = frozenset(draw(st.sets(st.sampled_from([m.name for m in members]), max_size=3)))
    keys = draw(st.lists(st.binary(min_size=0, max_size=16) | st.sampled_from(KEYS[:50]), min_size=1, max_size=20))
    return ratios, candidates, avoid, keys


_BALANCERS: dict[tuple[int, ...], IpHash] = {}


def _balancer(ratios: list[int]) -> IpHash:
    if tuple(ratios) not in _BALANCERS:
        _BALANCERS[tuple(ratios)] = make(ratios)[0]
    return _BALANCERS[tuple(ratios)]


@settings(max_examples=300, deadline=None)
@given(situations())
def test_never_an_unavailable_or_avoided_member_and_always_one_when_any_can(
    situation: tuple[list[int], tuple[C, ...], frozenset[str], list[bytes]],
) -> None:
    ratios, candidates, avoid, keys = situation
    b = _balancer(ratios)
    able = {c.name for c in candidates if c.available and c.name not in avoid}
    for key in keys:
        got = b.pick(candidates, key, avoid, 0.0)
        if able:
            assert got is not None and got.name in able
            assert b.pick(candidates, key, avoid, 0.0) is got  # deterministic
        else:
            assert got is None


@settings(max_examples=300, deadline=None)
@given(situations(), st.integers(0, 11))
def test_only_the_keys_of_a_member_that_leaves_move(
    situation: tuple[list[int], tuple[C, ...], frozenset[str], list[bytes]], leaver: int
) -> None:
    ratios, candidates, avoid, keys = situation
    b = _balancer(ratios)
    name = f"m{leaver}"
    fewer = tuple(c for c in candidates if c.name != name)
    for key in keys:
        before = b.pick(candidates, key, avoid, 0.0)
        after = b.pick(fewer, key, avoid, 0.0)
        if before is not None and before.name != name:
            assert after is not None and after.name == before.name
        assert b.pick(candidates, key, avoid, 0.0) is before  # and back again


@settings(max_examples=200, deadline=None)
@given(st.integers(0, 2**32 - 1), st.integers(0, 32), st.booleans())
def test_masking_is_idempotent_so_a_caller_may_mask_first(address: int, mask: int, mapped: bool) -> None:
    text = b"%d.%d.%d.%d" % (address >> 24, (address >> 16) & 255, (address >> 8) & 255, address & 255)
    key = b"::ffff:" + text if mapped else text
    once = masked_key(key, mask)
    assert masked_key(once, mask) == once
    assert once == masked_key(text, mask)
