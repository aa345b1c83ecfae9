"""The TUI's cells from the API's JSON: plain functions, plain tests."""

from __future__ import annotations

import pytest
from tui_fakes import T0, member

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
