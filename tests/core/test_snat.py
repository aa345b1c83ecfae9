"""SNAT source selection: composition, per-LB-pool rotation, quarantine, exhaustion, pacing, runtime changes."""

from __future__ import annotations

import pytest

from appliance.core.model import AddressSet, Quarantine, SnatDraw, SnatPool
from appliance.core.snat import AddressStats, Chosen, LaneStats, Refused, SnatSelector, Wait, compose

A, B, C, D = "10.0.0.1", "10.0.0.2", "10.0.0.3", "10.0.0.4"


def spec(failures: int = 3, duration: float = 30.0, min_interval: float = 0.0) -> SnatPool:
    return SnatPool(name="out", quarantine=Quarantine(failures=failures, duration=duration), min_interval=min_interval)


def selector(*addresses: str, failures: int = 3, duration: float = 30.0, min_interval: float = 0.0) -> SnatSelector:
    return SnatSelector(spec(failures, duration, min_interval), addresses or (A, B, C))


def chosen(s: SnatSelector, lb: str, n: int, now: float = 0.0, avoid: tuple[str, ...] = ()) -> list[str]:
    out = []
    for _ in range(n):
        pick = s.pick(lb, now, avoid)
        assert isinstance(pick, Chosen), pick
        out.append(pick.address)
    return out


def by_address(s: SnatSelector, now: float = 0.0) -> dict[str, AddressStats]:
    return {row.address: row for row in s.stats(now)}


def lane(s: SnatSelector, address: str, lb: str, now: float = 0.0) -> LaneStats:
    return next(x for x in by_address(s, now)[address].lanes if x.lb_pool == lb)


# ---------------------------------------------------------------- compose

SETS = {
    "dc1": AddressSet(name="dc1", addresses=("10.1.0.3", "10.1.0.1", "10.1.0.2")),
    "dc2": AddressSet(name="dc2", addresses=("10.2.0.1", "10.1.0.1")),
}


@pytest.mark.parametrize(
    ("addresses", "draw", "expected"),
    [
        ((A, B), (), (A, B)),
        ((), (("dc1", 2),), ("10.1.0.3", "10.1.0.1")),  # first N in declared order, not sorted
        ((A,), (("dc1", 1),), (A, "10.1.0.3")),  # direct addresses first
        ((), (("dc1", 10),), ("10.1.0.3", "10.1.0.1", "10.1.0.2")),  # fewer than count is fine
        ((), (("dc1", 2), ("dc2", 2)), ("10.1.0.3", "10.1.0.1", "10.2.0.1")),  # a repeat keeps its first place
        (("10.2.0.1",), (("dc2", 1),), ("10.2.0.1",)),  # a drawn address already listed directly
        ((B, A, B), (), (B, A)),
        ((), (), ()),
    ],
)
def test_compose(addresses: tuple[str, ...], draw: tuple[tuple[str, int], ...], expected: tuple[str, ...]) -> None:
    pool = SnatPool(name="out", addresses=addresses, draw=tuple(SnatDraw(source=s, count=n) for s, n in draw))
    assert compose(pool, SETS) == expected


def test_compose_refuses_an_unknown_set() -> None:
    with pytest.raises(ValueError, match="'out' draws from unknown address set 'nope'"):
        compose(SnatPool(name="out", draw=(SnatDraw(source="nope", count=1),)), SETS)


# ---------------------------------------------------------------- rotation


def test_rotation_in_composed_order() -> None:
    assert chosen(selector(C, A, B), "web", 7) == [C, A, B, C, A, B, C]


def test_each_lb_pool_keeps_its_own_rotation() -> None:
    s = selector()
    assert chosen(s, "web", 2) == [A, B]
    assert chosen(s, "api", 1) == [A]
    assert chosen(s, "web", 2) == [C, A]
    assert chosen(s, "api", 2) == [B, C]


def test_the_cursor_moves_past_the_chosen_address_when_others_are_skipped() -> None:
    s = selector(A, B, C, D)
    assert chosen(s, "web", 1, avoid=(A, B)) == [C]
    assert chosen(s, "web", 2) == [D, A]


# ---------------------------------------------------------------- quarantine


def test_quarantine_after_exactly_failures_in_a_row_and_release_at_until() -> None:
    s = selector(failures=3, duration=30.0)
    assert [s.failed("web", A, 10.0) for _ in range(3)] == [False, False, True]
    assert lane(s, A, "web", 10.0) == LaneStats(lb_pool="web", quarantined_until=40.0, streak=3, active=0)
    assert chosen(s, "web", 4, now=39.999) == [B, C, B, C]
    assert chosen(s, "web", 3, now=40.0) == [A, B, C]  # released at now == until
    assert lane(s, A, "web", 40.0).quarantined_until is None


def test_after_release_the_streak_starts_from_zero() -> None:
    s = selector(failures=2, duration=5.0)
    assert [s.failed("web", A, 0.0) for _ in range(2)] == [False, True]
    assert lane(s, A, "web", 5.0).streak == 0
    assert s.failed("web", A, 5.0) is False  # one failure after release is not enough
    assert s.failed("web", A, 6.0) is True
    assert lane(s, A, "web", 6.0).quarantined_until == 11.0


def test_a_success_resets_the_streak() -> None:
    s = selector(failures=3)
    s.failed("web", A, 0.0)
    s.failed("web", A, 0.0)
    s.opened("web", A, 0.0)
    assert lane(s, A, "web").streak == 0
    assert [s.failed("web", A, 1.0) for _ in range(3)] == [False, False, True]


def test_failures_during_a_quarantine_are_counted_but_do_not_extend_it() -> None:
    s = selector(failures=1, duration=10.0)
    assert s.failed("web", A, 0.0) is True
    assert s.failed("web", A, 5.0) is False
    assert lane(s, A, "web", 5.0).quarantined_until == 10.0
    assert by_address(s)[A].failures == 2


def test_quarantine_is_per_lb_pool() -> None:
    s = selector(failures=1)
    assert s.failed("web", A, 0.0) is True
    assert chosen(s, "web", 2) == [B, C]
    assert chosen(s, "api", 2) == [A, B]
    assert lane(s, A, "api").quarantined_until is None


# ---------------------------------------------------------------- exhaustion and refusal


def test_exhaustion_moves_on_to_the_next_address_within_one_connection() -> None:
    s = selector()
    avoid: list[str] = []
    first = s.pick("web", 0.0, avoid)
    assert first == Chosen(A)
    s.exhausted("web", A, 0.0)
    avoid.append(A)
    assert s.pick("web", 0.0, avoid) == Chosen(B)
    row = by_address(s)[A]
    assert (row.exhausted, row.failures, lane(s, A, "web").streak) == (1, 0, 0)  # not a step toward quarantine


@pytest.mark.parametrize(
    ("avoid", "quarantined", "cause"),
    [
        ((A, B, C), (), "3 out of ports or failed on this connection"),
        ((), (A, B, C), "3 quarantined"),
        ((A,), (B, C), "2 quarantined, 1 out of ports or failed on this connection"),
    ],
)
def test_refused_names_the_cause_and_is_counted(
    avoid: tuple[str, ...], quarantined: tuple[str, ...], cause: str
) -> None:
    s = selector(failures=1)
    for address in quarantined:
        s.failed("web", address, 0.0)
    pick = s.pick("web", 1.0, avoid)
    assert pick == Refused(f"SNAT pool 'out' has no source address for pool 'web': {cause}")
    s.pick("web", 1.0, avoid)
    assert s.refusals() == {"web": 2}
    assert chosen(s, "api", 1, now=1.0) == [A]
    assert s.refusals() == {"web": 2, "api": 0}


def test_refused_when_every_address_is_draining() -> None:
    s = selector(A)
    s.pick("web", 0.0)
    s.opened("web", A, 0.0)
    s.update(spec(), ())
    reason = "SNAT pool 'out' has no source address for pool 'web': it has no addresses (1 draining)"
    assert s.pick("web", 1.0) == Refused(reason)
    assert s.refusals() == {"web": 1}


# ---------------------------------------------------------------- min_interval pacing


PACED = [  # two addresses, min_interval 1 s, one LB pool: (now, pick)
    (0.0, Chosen(A)),
    (0.0, Chosen(B)),
    (0.5, Wait(1.0)),  # both inside the interval: A, picked first, frees up first
    (1.0, Chosen(A)),
    (1.5, Chosen(B)),
    (1.5, Wait(2.0)),
    (2.0, Chosen(A)),
    (2.4, Wait(2.5)),  # B, picked at 1.5, frees up before A, picked at 2.0
    (2.5, Chosen(B)),
    (2.9, Wait(3.0)),
    (3.0, Chosen(A)),
]


def test_min_interval_spaces_picks_per_address() -> None:
    s = selector(A, B, min_interval=1.0)
    assert [(now, s.pick("web", now)) for now, _ in PACED] == PACED


def test_min_interval_is_per_lb_pool_and_a_wait_is_not_a_refusal() -> None:
    s = selector(A, min_interval=2.0)
    assert s.pick("web", 0.0) == Chosen(A)
    assert s.pick("web", 1.0) == Wait(2.0)
    assert s.pick("api", 1.0) == Chosen(A)
    assert s.pick("api", 2.0) == Wait(3.0)
    assert s.pick("web", 2.0) == Chosen(A)
    assert s.refusals() == {"web": 0, "api": 0}


def test_paced_quarantined_and_avoided_together() -> None:
    s = selector(A, B, C, failures=1, min_interval=10.0)
    s.failed("web", A, 0.0)
    assert s.pick("web", 0.0) == Chosen(B)
    assert s.pick("web", 1.0, avoid=(C,)) == Wait(10.0)  # B paced; A quarantined and C avoided do not count
    assert isinstance(s.pick("web", 11.0, avoid=(B, C)), Refused)  # B free but avoided, A quarantined until 30


# ---------------------------------------------------------------- runtime changes


def test_an_added_address_joins_every_rotation_at_once() -> None:
    s = selector(A, B)
    assert chosen(s, "web", 2) == [A, B]
    assert chosen(s, "api", 1) == [A]
    s.update(spec(), (A, B, C))
    assert chosen(s, "web", 2) == [C, A]
    assert chosen(s, "api", 3) == [B, C, A]


def test_a_removed_address_drains_and_disappears_with_its_last_connection() -> None:
    s = selector(A, B, C)
    assert chosen(s, "web", 1) == [A]
    s.opened("web", A, 0.0)
    s.update(spec(), (B, C))
    assert s.addresses == (B, C) and s.draining == (A,)
    assert chosen(s, "web", 4) == [B, C, B, C]
    row = by_address(s)[A]
    assert (row.draining, row.active, row.total) == (True, 1, 1)
    assert [r.address for r in s.stats(0.0)] == [B, C, A]
    s.closed("web", A)
    assert A not in by_address(s) and not s.draining


def test_a_removed_address_without_connections_is_gone_at_once() -> None:
    s = selector(A, B, C)
    s.failed("web", B, 0.0)
    s.update(spec(), (A, C))
    assert [r.address for r in s.stats(0.0)] == [A, C]
    s.update(spec(), (A, B, C))
    assert by_address(s)[B].failures == 0  # it came back as new


def test_the_cursor_keeps_its_place_by_address() -> None:
    s = selector(A, B, C, D)
    assert chosen(s, "web", 2) == [A, B]
    s.update(spec(), (D, B, C))  # A gone, order changed: continue after B
    assert chosen(s, "web", 2) == [C, D]
    s.update(spec(), (A, D, C))  # A back, order changed again: continue after D
    assert chosen(s, "web", 3) == [C, A, D]
    s.update(spec(), (A, C))  # D (the cursor) gone: resume where it stood, after A, its nearest earlier survivor
    assert chosen(s, "web", 2) == [C, A]


def test_readding_a_draining_address_keeps_its_counters() -> None:
    s = selector(A, B)
    s.opened("web", A, 0.0)
    s.update(spec(), (B,))
    s.update(spec(), (A, B))
    row = by_address(s)[A]
    assert (row.draining, row.active, row.total) == (False, 1, 1)
    assert s.draining == ()


def test_a_connect_racing_a_removal_is_recorded_as_draining() -> None:
    s = selector(A, B)
    assert chosen(s, "web", 1) == [A]
    s.update(spec(), (B,))
    assert s.failed("web", A, 0.0) is False  # gone: nothing to quarantine
    s.opened("web", A, 0.0)
    row = by_address(s)[A]
    assert s.draining == (A,) and (row.active, row.total, row.failures) == (1, 1, 0)
    s.closed("web", A)
    assert not s.draining


def test_update_applies_the_new_spec() -> None:
    s = selector(A, failures=3)
    s.update(spec(failures=1, duration=7.0), (A,))
    assert s.failed("web", A, 1.0) is True
    assert lane(s, A, "web", 1.0).quarantined_until == 8.0


def test_closed_without_an_open_connection_raises_and_changes_nothing() -> None:
    s = selector(A)
    s.opened("web", A, 0.0)
    s.closed("web", A)
    before = s.stats(0.0)
    with pytest.raises(ValueError, match="no open connection of pool 'web' from 10.0.0.1"):
        s.closed("web", A)
    with pytest.raises(ValueError):
        s.closed("api", A)
    assert s.stats(0.0) == before


# ---------------------------------------------------------------- stats


def test_stats_per_address_and_per_lb_pool() -> None:
    s = selector(A, B, failures=2, duration=10.0)
    chosen(s, "web", 1)
    chosen(s, "api", 1)
    s.opened("web", A, 0.0)
    s.opened("web", A, 0.0)
    s.opened("api", A, 0.0)
    s.closed("web", A)
    s.failed("api", B, 1.0)
    s.failed("api", B, 2.0)
    s.failed("web", B, 2.0)
    s.exhausted("web", B, 2.0)
    assert s.stats(3.0) == [
        AddressStats(
            address=A, draining=False, active=2, total=3, failures=0, exhausted=0,
            lanes=(
                LaneStats(lb_pool="web", quarantined_until=None, streak=0, active=1),
                LaneStats(lb_pool="api", quarantined_until=None, streak=0, active=1),
            ),
        ),
        AddressStats(
            address=B, draining=False, active=0, total=0, failures=3, exhausted=1,
            lanes=(
                LaneStats(lb_pool="web", quarantined_until=None, streak=1, active=0),
                LaneStats(lb_pool="api", quarantined_until=12.0, streak=2, active=0),
            ),
        ),
    ]
    assert lane(s, B, "api", 12.0) == LaneStats(lb_pool="api", quarantined_until=None, streak=0, active=0)  # released
    assert repr(s) == "<SnatSelector out [2 addresses, 0 draining | 2 active]>"
