"""Health probes: one task per (member, monitor), feeding results to the runtime.

The first probe of a target runs at once so members leave `unknown` quickly;
afterwards each waits `interval` shortened by a random jitter of up to
``JITTER`` so a thousand members are not probed in the same millisecond. A
target has at most one probe in flight. The set of tasks follows the config:
``sync()`` after a reload starts new targets and cancels vanished ones.
"""

from __future__ import annotations

import logging
import random

import trio

from appliance.controlplane.runtime import MonitorTarget, Runtime
from appliance.core.health import CheckResult
from appliance.core.model import MonitorType
from appliance.dataplane.upstream import connect
from appliance.errors import UpstreamConnectError

LOGGER = logging.getLogger("appliance.monitors")

JITTER = 0.1  # fraction of the interval; HAProxy's spread-checks suggests 2..5 %, we spread wider


async def probe_tcp(target: MonitorTarget) -> tuple[bool, str]:
    """A TCP connect, as the data plane makes it; success is an accepted connection."""
    try:
        conn = await connect(target.address, target.monitor.timeout)
    except UpstreamConnectError as exc:
        return False, str(exc)
    await conn.aclose()
    return True, "connect ok"


PROBES = {MonitorType.TCP: probe_tcp}


class MonitorSupervisor:
    def __init__(self, runtime: Runtime, rng: random.Random | None = None) -> None:
        self._runtime = runtime
        self._rng = rng or random.Random()
        self._tasks: dict[MonitorTarget, trio.CancelScope] = {}
        self._nursery: trio.Nursery | None = None

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            self.sync()
            task_status.started()
            await trio.sleep_forever()

    def sync(self) -> None:
        """Aligns the probe tasks with the runtime's current targets."""
        assert self._nursery is not None
        wanted = set(self._runtime.monitor_targets())
        for target in [t for t in self._tasks if t not in wanted]:
            self._tasks.pop(target).cancel()
        for target in wanted - set(self._tasks):
            scope = trio.CancelScope()
            self._tasks[target] = scope
            self._nursery.start_soon(self._loop, target, scope)

    async def _loop(self, target: MonitorTarget, scope: trio.CancelScope) -> None:
        monitor = target.monitor
        probe = PROBES.get(monitor.type, probe_tcp)  # http/https monitors arrive later; probe the port meanwhile
        with scope:
            while True:
                started = trio.current_time()
                with trio.move_on_after(monitor.timeout) as timed:
                    ok, reason = await probe(target)
                if timed.cancelled_caught:
                    ok, reason = False, f"timeout after {monitor.timeout:g}s"
                now = trio.current_time()
                self._runtime.record_check(target, CheckResult(ok=ok, reason=reason, latency=now - started, at=now))
                pause = monitor.interval * (1 - JITTER * self._rng.random())
                await trio.sleep_until(started + pause)
