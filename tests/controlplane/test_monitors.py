"""Probe scheduling under trio's fake clock: first probe at once, then every interval with jitter."""

from __future__ import annotations

import random

import pytest
import trio

from appliance.controlplane import monitors
from appliance.controlplane.monitors import MonitorSupervisor
from appliance.controlplane.runtime import MonitorTarget, Runtime
from appliance.core.config import parse_config
from appliance.core.health import Health
from appliance.core.model import MonitorType

CONFIG = """\
monitors:
  port: {type: tcp, interval: 2s, timeout: 1s, rise: 1, fall: 2}
pools:
  web:
    monitors: [port]
    members: [{address: 127.0.0.1:9001, name: a}, {address: 127.0.0.1:9002, name: b}]
virtual_servers:
  web: {listen: [127.0.0.1:8080], pool: web}
"""


async def test_probes_start_at_once_then_follow_the_interval(autojump_clock: trio.testing.MockClock, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: dict[str, list[float]] = {"a": [], "b": []}
    in_flight = {"a": 0, "b": 0}

    async def probe(target: MonitorTarget, tls: object, open_: object = None) -> tuple[bool, str]:
        calls[target.member].append(trio.current_time())
        in_flight[target.member] += 1
        assert in_flight[target.member] == 1  # never two probes of one target at once
        try:
            await trio.sleep(0.1 if target.member == "a" else 5.0)  # b hangs past its timeout
        finally:
            in_flight[target.member] -= 1
        return True, "connect ok"

    monkeypatch.setitem(monitors.PROBES, MonitorType.TCP, probe)
    runtime = Runtime(parse_config(CONFIG, "t.yaml"), trio.current_time)
    supervisor = MonitorSupervisor(runtime, random.Random(7))
    async with trio.open_nursery() as nursery:
        await nursery.start(supervisor.run)
        await trio.sleep(9.5)
        nursery.cancel_scope.cancel()
    for member in ("a", "b"):
        times = calls[member]
        assert times[0] == 0.0
        gaps = [later - earlier for earlier, later in zip(times, times[1:])]
        assert len(gaps) >= 4
        assert all(2 * (1 - monitors.JITTER) <= gap <= 2.0 for gap in gaps), gaps
    pool = runtime.snapshot.pools["web"]
    assert pool.member("a").health is Health.UP
    assert pool.member("b").health is Health.DOWN
    assert pool.member("b").last_check is not None and pool.member("b").last_check.reason == "timeout after 1s"
