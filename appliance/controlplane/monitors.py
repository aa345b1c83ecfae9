"""Health probes: one task per (member, monitor), feeding results to the runtime.

Probes: `tcp` connects; `http` and `https` send one request and judge the
status and body (`core.checks`); `https` uses the pool's TLS settings to its
members, or TLS without verification when the pool has none (as F5's https
monitor). The first probe of a target runs at once so members leave `unknown` quickly;
afterwards each waits `interval` shortened by a random jitter of up to
``JITTER`` so a thousand members are not probed in the same millisecond. A
target has at most one probe in flight. The set of tasks follows the config:
``sync()`` after a reload starts new targets and cancels vanished ones.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Awaitable, Callable

import h11
import trio

from appliance.controlplane.runtime import MonitorTarget, Runtime
from appliance.core.health import CheckResult
from appliance.core import checks
from appliance.core.model import MonitorType, UpstreamTls
from appliance.dataplane.tls import client_context
from appliance.dataplane.snat import SnatSources
from appliance.dataplane.upstream import MemberTls, UpstreamConnection, connect
from appliance.errors import UpstreamError

LOGGER = logging.getLogger("appliance.monitors")

JITTER = 0.1  # fraction of the interval; HAProxy's spread-checks suggests 2..5 %, we spread wider


Opener = Callable[[MonitorTarget, MemberTls | None], Awaitable[UpstreamConnection]]


async def _direct(target: MonitorTarget, tls: MemberTls | None) -> UpstreamConnection:
    return await connect(target.address, target.monitor.timeout, tls)


async def probe_tcp(target: MonitorTarget, tls: MemberTls | None, open_: Opener = _direct) -> tuple[bool, str]:
    """A TCP connect, as the data plane makes it; success is an accepted connection."""
    try:
        conn = await open_(target, None)
    except UpstreamError as exc:  # SNAT's refusals too
        return False, str(exc)
    await conn.aclose()
    return True, "connect ok"


async def probe_http(target: MonitorTarget, tls: MemberTls | None, open_: Opener = _direct) -> tuple[bool, str]:
    """One HTTP request (over TLS for `https`) judged by the monitor's `expect`."""
    monitor = target.monitor
    try:
        conn = await open_(target, tls)
    except UpstreamError as exc:  # SNAT's refusals too
        return False, str(exc)
    status = 0
    body = bytearray()
    try:
        http = conn.http
        method, path, headers = checks.request_for(monitor, target.address)
        await conn.stream.send_all(http.send(h11.Request(method=method, target=path, headers=headers)) + http.send(_END))
        while True:
            event = http.next_event()
            if event is h11.NEED_DATA:
                if status and len(body) >= checks.BODY_LIMIT:
                    break  # enough to judge
                http.receive_data(await conn.stream.receive_some(65536))
            elif type(event) is h11.Response:
                status = event.status_code
            elif type(event) is h11.Data:
                body += event.data
            elif type(event) is h11.InformationalResponse:
                continue
            else:
                break  # EndOfMessage or ConnectionClosed
    except h11.RemoteProtocolError as exc:
        if not status:
            return False, f"invalid response: {exc}"
    except (trio.BrokenResourceError, trio.ClosedResourceError):
        if not status:
            return False, "connection closed before a response"
    finally:
        await conn.aclose()
    if not status:
        return False, "connection closed before a response"
    return checks.verdict(monitor.expect, status, bytes(body))


PROBES = {MonitorType.TCP: probe_tcp, MonitorType.HTTP: probe_http, MonitorType.HTTPS: probe_http}
_END = h11.EndOfMessage()


class MonitorSupervisor:
    def __init__(
        self,
        runtime: Runtime,
        rng: random.Random | None = None,
        member_tls: Callable[[str], MemberTls | None] = lambda pool: None,
        snat: SnatSources | None = None,
    ) -> None:
        self._runtime = runtime
        self._snat = snat
        self._member_tls = member_tls
        self._unverified: MemberTls | None = None
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
        probe = PROBES[monitor.type]
        with scope:
            while True:
                started = trio.current_time()
                tls = self._tls_for(target) if monitor.type is MonitorType.HTTPS else None
                with trio.move_on_after(monitor.timeout) as timed:
                    ok, reason = await probe(target, tls, self._opener(target))
                if timed.cancelled_caught:
                    ok, reason = False, f"timeout after {monitor.timeout:g}s"
                now = trio.current_time()
                self._runtime.record_check(target, CheckResult(ok=ok, reason=reason, latency=now - started, at=now))
                pause = monitor.interval * (1 - JITTER * self._rng.random())
                await trio.sleep_until(started + pause)

    def _opener(self, target: MonitorTarget) -> Opener:
        """Direct, or from the pool's SNAT addresses for a monitor with `snat: true`."""
        snat = self._snat
        if not target.monitor.snat or snat is None or snat.for_pool(target.pool) is None:
            return _direct

        async def via_snat(target: MonitorTarget, tls: MemberTls | None) -> UpstreamConnection:
            now = trio.current_time()
            lane = f"{target.pool} (monitor {target.monitor.name})"
            return await snat.connect(target.pool, target.address, target.monitor.timeout, tls, now, lane)

        return via_snat

    def _tls_for(self, target: MonitorTarget) -> MemberTls:
        """The pool's TLS to its members, or (as F5's https monitor) TLS without verification."""
        tls = self._member_tls(target.pool)
        if tls is None:
            if self._unverified is None:
                context = client_context(UpstreamTls(verify=False), "https monitor")
                self._unverified = MemberTls(context=context, server_name=None)
            tls = self._unverified
        return tls
