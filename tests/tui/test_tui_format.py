"""The TUI's cells from the API's JSON: plain functions, plain tests."""

from __future__ import annotations

import pytest
from tui_fakes import T0, demo_snat_pools, lane, member, snat_address

from tui import format as fmt


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (-3, "0s"),
        (0, "0s"),
        (42.9, "42s"),
        (60, "1m00s"),
        (725, "12m05s"),
        (3600, "1h00m"),
        (11_220, "3h07m"),
        (86_400, "1d00h"),
        (187_200, "2d04h"),
    ],
)
def test_duration(seconds: float, text: str) -> None:
    assert fmt.duration(seconds) == text


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (0, "0"),
        (99_999, "99999"),
        (100_000, "100k"),
        (123_456, "123k"),
        (999_999, "1.0M"),
        (1_234_567, "1.2M"),
        (123_456_789, "123M"),
        (12_345_678_901, "12.3G"),
    ],
)
def test_counts_fit_in_six_characters(value: int, text: str) -> None:
    assert fmt.count(value) == text
    assert len(text) <= 6


@pytest.mark.parametrize(
    ("fields", "cell"),
    [
        ({"health": "up"}, ("up", "bold green")),
        ({"health": "down"}, ("down", "bold red")),
        ({"health": "unknown"}, ("unknown", "yellow")),
        ({"health": "unchecked"}, ("unchecked", "dim")),
    ],
)
def test_health(fields: dict[str, str], cell: fmt.Cell) -> None:
    assert fmt.health_cell(member("m", "127.0.0.1:1", **fields)) == cell


@pytest.mark.parametrize(
    ("state", "source", "cell"),
    [
        ("enabled", "config", ("enabled", "")),
        ("enabled", "api", ("enabled (api)", "")),
        ("disabled", "api", ("disabled (api)", "yellow")),
        ("disabled", "config", ("disabled", "yellow")),
        ("forced_offline", "state-file", ("forced_offline (state-file)", "bold red")),
    ],
)
def test_admin_shows_its_source_unless_config(state: str, source: str, cell: fmt.Cell) -> None:
    assert fmt.admin_cell(member("m", "127.0.0.1:1", admin_state=state, admin_source=source)) == cell


@pytest.mark.parametrize(
    ("check", "health", "cell"),
    [
        ({"ok": True, "reason": "L7 status 200", "latency": 0.0004, "at": T0}, "up", ("ok 0.4ms", "green")),
        ({"ok": False, "reason": "L7 status 503", "latency": 0.012, "at": T0}, "down", ("L7 status 503 12ms", "red")),
        (
            {"ok": False, "reason": "connect timeout", "latency": 1.0, "at": T0},
            "down",
            ("connect timeout 1000ms", "red"),
        ),
        (None, "unchecked", ("no monitor", "dim")),
        (None, "unknown", ("never", "dim")),
    ],
)
def test_last_check(check: object, health: str, cell: fmt.Cell) -> None:
    assert fmt.check_cell(member("m", "127.0.0.1:1", last_check=check, health=health)) == cell


def test_a_member_row() -> None:
    m = member("web1", "127.0.0.1:9001", ramp=0.42, since=T0 - 725, active_connections=3, total_connections=123_456)
    cells = fmt.member_cells("web", m, T0, 12.345)
    texts = [text for text, _ in cells]
    assert texts == ["web", "web1", "127.0.0.1:9001", "up", "enabled", "1", "0", "3", "123k", "12.3", "42%", "12m05s",
                     "ok 0.4ms"]  # fmt: skip
    assert len(cells) == len(fmt.MEMBER_COLUMNS)
    assert fmt.member_cells("web", m, T0, 250.0)[9] == ("250", "")
    assert fmt.member_cells("web", m, None, None)[9:12] == (fmt.DASH, ("42%", "yellow"), fmt.DASH)
    assert fmt.member_cells("web", m, T0, 0.0, draining=True)[4] == ("removed (draining)", "dim")


def test_a_virtual_server_row() -> None:
    vs = {"name": "web", "mode": "http", "listen": ["127.0.0.2-127.0.0.9:8080"], "endpoints": 8, "pool": "web",
          "routes": ["api", "static"], "tls": True, "persistence": "cookie", "state": "stopped"}  # fmt: skip
    texts = [text for text, _ in fmt.vs_cells(vs)]
    assert texts == ["web", "http", "127.0.0.2-127.0.0.9:8080 (8 sockets)", "web +2 routes", "tls / cookie", "stopped"]
    assert fmt.vs_cells(vs)[-1] == ("stopped", "red")


def test_ha_and_pool_summaries() -> None:
    assert fmt.ha_text({"state": "standalone", "priority": None, "peers": []}) == "standalone"
    assert fmt.ha_text({"state": "backup", "priority": 100, "peers": ["a", "b"]}) == "HA backup (priority 100, 2 peers)"
    pool = {"name": "web", "method": "ratio", "mutable": False, "members": [member("a", "x"), member("b", "y")],
            "draining": [member("c", "z")]}  # fmt: skip
    assert fmt.pool_summary(pool) == "web ratio 2/2 available (immutable), 1 draining"


def test_new_events_are_those_after_the_last_shown() -> None:
    events = [{"at": T0 + i, "kind": "health", "source": "web/a", "message": str(i)} for i in range(5)]
    assert fmt.new_events(None, events) == events
    assert fmt.new_events(fmt.event_key(events[2]), events) == events[3:]
    assert fmt.new_events(fmt.event_key(events[4]), events) == []
    gone = {"at": 0, "kind": "x", "source": "", "message": "rolled out"}
    assert fmt.new_events(fmt.event_key(gone), events) == events  # the ring moved past it: show all
    plain, parts = fmt.event_line({"at": T0, "kind": "admin", "source": "web/a", "message": "-> disabled (api)"})
    assert plain.endswith("admin   web/a -> disabled (api)")
    assert plain == "".join(text for text, _ in parts)


@pytest.mark.parametrize(
    ("value", "text"), [(0, "off"), (0.0, "off"), (0.25, "250ms"), (1.5, "1.5s"), (10, "10s"), (30.0, "30s"),
                        (90, "1m30s"), (None, "?"), (True, "?")],
)  # fmt: skip
def test_seconds(value: object, text: str) -> None:
    assert fmt.seconds(value) == text


def test_snat_states() -> None:
    until = T0 + 42
    at = fmt.clock(until)
    assert fmt.snat_state_cell(snat_address("a", lane("web")), T0) == ("usable", "green")
    held = snat_address("a", lane("web", quarantined_until=until), lane("api"))
    assert fmt.snat_state_cell(held, T0) == (f"quarantined for web until {at} (42s)", "bold red")
    assert fmt.snat_state_cell(held, None) == (f"quarantined for web until {at}", "bold red")  # no server time
    assert fmt.snat_state_cell(held, until) == ("usable", "green")  # it has run out
    both = snat_address("a", lane("web", quarantined_until=until), lane("api", quarantined_until=T0 + 5))
    assert fmt.snat_state_cell(both, T0)[0] == f"quarantined for web until {at} (42s), api until {fmt.clock(T0 + 5)} (5s)"
    assert fmt.snat_state_cell(snat_address("a", draining=True), T0) == ("draining", "yellow")
    assert fmt.snat_state_cell(snat_address("a", lane("web", quarantined_until=until), draining=True), T0) == (
        f"draining, quarantined for web until {at} (42s)",
        "yellow",
    )
    streak = snat_address("a", lane("web", streak=2), lane("api"))
    assert fmt.snat_state_cell(streak, T0) == ("usable (web: 2 failed in a row)", "yellow")


def test_a_snat_row() -> None:
    out = demo_snat_pools()[0]
    cells = fmt.snat_cells(out, out["addresses"][0], T0)
    assert len(cells) == len(fmt.SNAT_COLUMNS)
    assert [text for text, _ in cells] == ["out", "10.9.0.1", "usable", "4", "120", "0", "0", "web (4)"]
    quarantined = fmt.snat_cells(out, out["addresses"][1], T0)
    assert quarantined[5] == ("3", "yellow")  # failures
    assert fmt.snat_cells(out, out["addresses"][2], T0)[1] == ("10.9.0.3", "dim")  # draining
    gone = dict(out, used_by=[])  # a lane of an LB pool that no longer uses it still shows its connections
    assert fmt.snat_pools_cell(gone, out["addresses"][0]) == ("web (4)", "")
    assert fmt.snat_pools_cell(gone, snat_address("b")) == ("unused", "dim")
    assert fmt.snat_cells(out, snat_address("b", exhausted=1_234_567), T0)[6] == ("1.2M", "yellow")


def test_snat_summaries() -> None:
    out, egress = demo_snat_pools()
    assert fmt.snat_summary(out, T0) == (
        "out: 2 addresses (+1 draining), 1 quarantined · min_interval off · quarantine 3 failures, 30s"
        " · used by web · refused web 2"
    )
    assert fmt.snat_summary(egress, T0) == (
        "egress: 1 address · min_interval 500ms · quarantine 5 failures, 1m00s · used by api · refused 0 · immutable"
    )
    assert fmt.snat_summary({"name": "x", "refused": {"a": 0, "b": 3}}) == (
        "x: 0 addresses · min_interval ? · used by no pool · refused b 3"
    )
