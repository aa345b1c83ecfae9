"""The runtime at explicit times: checks flip health, snapshots follow, reload keeps state."""

from __future__ import annotations

from appliance.controlplane.runtime import Runtime
from appliance.core.config import parse_config
from appliance.core.health import CheckResult, Health

CONFIG = """\
monitors:
  port: {type: tcp, interval: 1s, timeout: 500ms, rise: 2, fall: 2}
pools:
  web:
    monitors: [port]
    members:
      - {address: 127.0.0.1:9001, name: a}
      - {address: 127.0.0.1:9002, name: b}
virtual_servers:
  web: {listen: [127.0.0.1:8080], pool: web}
"""


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def check(runtime: Runtime, member: str, ok: bool, at: float) -> None:
    target = next(t for t in runtime.monitor_targets() if t.member == member)
    runtime.record_check(target, CheckResult(ok=ok, reason="ok" if ok else "connect refused", latency=0.001, at=at))


def test_unknown_until_first_verdict_then_fall_takes_member_out() -> None:
    clock = FakeClock()
    runtime = Runtime(parse_config(CONFIG, "t.yaml"), clock)
    pool = runtime.snapshot.pools["web"]
    assert [m.health for m in pool.members] == [Health.UNKNOWN, Health.UNKNOWN]
    assert pool.select(None, 200.0) is None  # unknown members get no traffic
    check(runtime, "a", True, 101.0)
    check(runtime, "b", True, 101.0)
    pool = runtime.snapshot.pools["web"]
    assert [pool.select(None, 200.0).name for _ in range(4)] == ["a", "b", "a", "b"]
    check(runtime, "b", False, 102.0)
    assert runtime.snapshot.pools["web"].member("b").health is Health.UP
    check(runtime, "b", False, 103.0)
    pool = runtime.snapshot.pools["web"]
    assert pool.member("b").health is Health.DOWN
    assert pool.member("b").since == 103.0
    assert {pool.select(None, 200.0).name for _ in range(4)} == {"a"}
    assert "member web/b health up -> down (port: 2/2 failed: connect refused" in runtime.events[-1].message


def test_reload_keeps_health_of_members_that_stay_and_applies_admin_state() -> None:
    clock = FakeClock()
    runtime = Runtime(parse_config(CONFIG, "t.yaml"), clock)
    check(runtime, "a", True, 101.0)
    old_stats = runtime.snapshot.pools["web"].member("a").stats
    changed = CONFIG.replace("name: b}", "name: b, state: disabled}").replace("9001", "9001").replace(
        "      - {address: 127.0.0.1:9002", "      - {address: 127.0.0.1:9003, name: c}\n      - {address: 127.0.0.1:9002"
    )
    clock.now = 110.0
    runtime.reload(parse_config(changed, "t.yaml"))
    pool = runtime.snapshot.pools["web"]
    assert pool.member("a").health is Health.UP and pool.member("a").stats is old_stats
    assert pool.member("c").health is Health.UNKNOWN
    assert pool.member("b").admin_state.value == "disabled" and pool.member("b").since == 110.0
    assert [e.kind for e in runtime.events][-2:] == ["admin", "reload"]


RAMPED = CONFIG.replace("    monitors: [port]\n", "    monitors: [port]\n    slow_ramp: 10s\n")


def test_slow_ramp_starts_when_a_member_comes_back_not_at_start() -> None:
    clock = FakeClock()
    runtime = Runtime(parse_config(RAMPED, "t.yaml"), clock)
    check(runtime, "a", True, 101.0)
    check(runtime, "b", True, 101.0)
    b = runtime.snapshot.pools["web"].member("b")
    assert b.ramp_start is None and b.ramp(101.0) == 1.0  # start-up members take full traffic at once
    check(runtime, "b", False, 102.0)
    check(runtime, "b", False, 103.0)  # down
    check(runtime, "b", True, 104.0)
    check(runtime, "b", True, 105.0)  # up again: the ramp starts here
    b = runtime.snapshot.pools["web"].member("b")
    assert b.ramp_start == 105.0
    assert [round(b.ramp(105.0 + step), 2) for step in (0, 1, 5, 9, 10, 30)] == [0.05, 0.1, 0.5, 0.9, 1.0, 1.0]


def test_slow_ramp_after_admin_enable_and_for_members_added_by_reload() -> None:
    clock = FakeClock()
    runtime = Runtime(parse_config(RAMPED.replace("name: b}", "name: b, state: disabled}"), "t.yaml"), clock)
    check(runtime, "a", True, 101.0)
    check(runtime, "b", True, 101.0)
    assert runtime.snapshot.pools["web"].member("b").ramp_start is None  # disabled: not serving
    clock.now = 120.0
    added = RAMPED.replace("      - {address: 127.0.0.1:9002, name: b}", "      - {address: 127.0.0.1:9002, name: b}\n      - {address: 127.0.0.1:9003, name: c}")
    runtime.reload(parse_config(added, "t.yaml"))
    assert runtime.snapshot.pools["web"].member("b").ramp_start == 120.0  # enabled again
    check(runtime, "c", True, 121.0)  # added at runtime: ramps from its first verdict
    assert runtime.snapshot.pools["web"].member("c").ramp_start == 121.0


def test_passive_down_then_back_by_monitor_or_after_down_for() -> None:
    clock = FakeClock()
    text = CONFIG.replace("    monitors: [port]\n", "    monitors: [port]\n    passive: {failures: 3, down_for: 5s}\n")
    runtime = Runtime(parse_config(text, "t.yaml"), clock)
    check(runtime, "a", True, 101.0)
    clock.now = 102.0
    assert runtime.passive_down("web", "a", "connect refused") is None  # monitored: the monitor brings it back
    assert runtime.snapshot.pools["web"].member("a").health is Health.DOWN
    assert "passive:" in runtime.events[-1].message and "connect refused" in runtime.events[-1].message
    check(runtime, "a", True, 103.0)
    check(runtime, "a", True, 104.0)  # rise 2
    assert runtime.snapshot.pools["web"].member("a").health is Health.UP

    unmonitored = text.replace("    monitors: [port]\n", "")
    runtime = Runtime(parse_config(unmonitored, "t.yaml"), clock)
    clock.now = 110.0
    assert runtime.passive_down("web", "b", "connection reset") == 115.0
    assert runtime.passive_down("web", "b", "again") is None  # already down: nothing new
    assert runtime.snapshot.pools["web"].member("b").health is Health.DOWN
    clock.now = 115.0
    runtime.passive_recover("web", "b")
    b = runtime.snapshot.pools["web"].member("b")
    assert b.health is Health.UNCHECKED and b.ramp_start == 115.0
    assert b.ramp(115.0) == 1.0  # no slow_ramp configured: full share at once
