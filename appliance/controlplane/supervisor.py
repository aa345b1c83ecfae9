"""The process: start order, signals, reload and graceful drain.

Start: load and validate the config (nothing is bound if it fails), build the
runtime, start the access log, load every certificate and key, bind every
listener (a bind or certificate failure stops the start), start the monitors,
then wait for signals. SIGHUP reloads: a config that fails validation, a
certificate that cannot be loaded, or new listeners that cannot be bound leave
everything as it was and are reported; a good one is applied without touching connections in
flight. SIGTERM/SIGINT drain: listeners close, idle keep-alive connections end,
busy ones get until `shutdown_grace` to finish, then are cancelled.
"""

from __future__ import annotations

import logging
import os
import signal
import time
from collections.abc import Mapping

import trio

from appliance import __version__
from appliance.controlplane import state_file
from appliance.controlplane.actions import ApplianceOperations
from appliance.controlplane.admin import AdminServer
from appliance.controlplane.heartbeat import Heartbeat, vip_addresses
from appliance.controlplane.keys import persistence_key
from appliance.controlplane.metrics import Metrics, MetricsInputs
from appliance.controlplane.monitors import MonitorSupervisor
from appliance.controlplane.runtime import Runtime
from appliance.core.config import load_config
from appliance.core.health import Health
from appliance.core.model import AdminState, Config, Endpoint
from appliance.core.overrides import Overrides
from appliance.core.persistence import Persistences
from appliance.core.snapshot import Snapshot
from appliance.dataplane.access_log import AccessLog, open_target
from appliance.dataplane.dispatch import Dispatcher
from appliance.dataplane.http_proxy import HttpProxy
from appliance.dataplane.listen import Listeners
from appliance.dataplane.passive import PassiveDetector
from appliance.dataplane.queue import PoolQueues
from appliance.dataplane.service_down import ActiveConnections
from appliance.dataplane.snat import SnatSources
from appliance.dataplane.tcp_relay import TcpRelay
from appliance.dataplane.tls import contexts_for
from appliance.dataplane.tracker import ConnectionTracker
from appliance.dataplane.upstream import UpstreamPools
from appliance.errors import ConfigError, StartError

LOGGER = logging.getLogger("appliance.supervisor")
BIND_RETRY = 0.05  # seconds between tries to bind the governed listeners after a takeover


def wanted_listeners(config: Config, master: bool = True) -> Mapping[Endpoint, str]:
    """Endpoint -> virtual server name; without the HA-governed ones unless this node is master."""
    skip = set() if master else governed(config)
    return {
        endpoint: vs.name for vs in config.virtual_servers.values() if vs.name not in skip for endpoint in vs.endpoints
    }


def governed(config: Config) -> set[str]:
    """The virtual servers bound only while this node is HA master (`ha.virtual_servers`)."""
    if config.ha is None:
        return set()
    names = config.ha.virtual_servers
    return set(config.virtual_servers) if names is None else set(names)


class Appliance:
    """One running appliance; `run` is its whole lifetime."""

    def __init__(self, config_path: str, config: Config) -> None:
        self.config_path = config_path
        self.runtime = Runtime(config, trio.current_time)
        self.tracker = ConnectionTracker()
        self.snat = SnatSources()
        self.snat.configure(config)
        self.upstreams = UpstreamPools(self.snat.connect)
        self.access_log = AccessLog(config.appliance.log)
        self.runtime.subscribers.append(self._close_idle_to_members_out_of_service)
        self.queues = PoolQueues()
        self.active = ActiveConnections()
        self.passive = PassiveDetector(self._passive_failure)
        self.persistences = Persistences()
        self._previous = self.runtime.snapshot
        self.runtime.subscribers.append(self._act_on_service_down)
        snapshot = lambda: self.runtime.snapshot  # noqa: E731 - handlers read the current snapshot
        self.relay = TcpRelay(
            snapshot,
            self.access_log,
            self.tracker,
            member_tls=lambda pool: self.upstreams.member_tls.get(pool),
            queues=self.queues,
            active=self.active,
            passive=self.passive,
            persistences=self.persistences,
            snat=self.snat,
        )
        self.dispatcher = Dispatcher(
            snapshot,
            self.tracker,
            self.access_log,
            HttpProxy(
                snapshot,
                self.upstreams,
                self.access_log,
                self.tracker,
                self.queues,
                self.active,
                self.passive,
                self.persistences,
            ),
            self.relay,
        )
        self.started = trio.current_time()
        self._reload_ok, self._reload_at = True, self.runtime.wall_time(self.started)  # the start counts as a load
        self.metrics = Metrics(self._metrics_inputs)
        self._reloading = trio.Lock()
        self._saving = trio.Lock()
        self.monitors = MonitorSupervisor(
            self.runtime, member_tls=lambda pool: self.upstreams.member_tls.get(pool), snat=self.snat
        )
        self.listeners: Listeners | None = None
        self.is_master = config.ha is None  # HA: governed virtual servers listen only while master
        self.operations: ApplianceOperations | None = None
        self.ha: Heartbeat | None = None
        self.admin: AdminServer | None = None
        self._service_nursery: trio.Nursery | None = None
        self._stop = trio.Event()

    async def run(self, *, task_status: trio.TaskStatus[Appliance] = trio.TASK_STATUS_IGNORED) -> None:
        """Runs until `stop()` or a terminating signal; then drains.

        Raises:
            StartError: a listener could not be bound (nothing stays bound).
        """
        config = self.runtime.config
        _log_not_yet_supported(config)
        for line in self.runtime.restore(state_file.load(config.appliance.state_file, config)):
            LOGGER.warning("state file: %s", line)
        self.snat.configure(self.runtime.config)
        async with trio.open_nursery() as connections:
            async with trio.open_nursery() as services:
                self._service_nursery = services
                await services.start(self.access_log.run)
                self.dispatcher.server_tls, self.upstreams.member_tls = contexts_for(config)
                self.persistences.configure(config.virtual_servers, persistence_key(config))
                self.listeners = Listeners(connections, self.dispatcher.serve)
                await self.listeners.apply(wanted_listeners(config, self.is_master), services)
                await services.start(self.monitors.run)
                if config.ha is not None:
                    self.ha = Heartbeat(
                        config,
                        self.runtime,
                        set_master=self.set_master,
                        vips=lambda: vip_addresses(self.runtime.file_config, governed(self.runtime.file_config)),
                        synced=self._peer_changes_applied,
                    )
                    await services.start(self.ha.run)
                if config.admin.enabled:
                    self.operations = ApplianceOperations(
                        self.runtime,
                        reload=self.reload,
                        save=self.save_state,
                        changed=self._runtime_changed,
                        listening=lambda vs: self.listeners is not None and self.listeners.open_for(vs) > 0,
                        metrics=self._metrics,
                        started=self.started,
                        snat=lambda: self.snat.selectors,
                        ha=lambda: self.ha.view() if self.ha is not None else None,
                    )
                    self.admin = await services.start(AdminServer(config.admin, self.operations).run)
                LOGGER.info(
                    "appliance %s %s started: %d listening address(es), %d pool(s)",
                    config.appliance.name,
                    __version__,
                    len(self.listeners.endpoints),
                    len(config.pools),
                )
                task_status.started(self)
                await self._stop.wait()
                await self._drain(connections)
                services.cancel_scope.cancel()
            self.upstreams.retain()
            self.relay.close()

    def _close_idle_to_members_out_of_service(self, snapshot: Snapshot) -> None:
        member_tls = self.upstreams.member_tls
        self.upstreams.retain(
            (member.address, member_tls.get(pool.name)) for pool in snapshot.pools.values() for member in pool.ready
        )

    def _act_on_service_down(self, snapshot: Snapshot) -> None:
        """Members that just went down (health) or were forced offline: their pool's action."""
        previous, self._previous = self._previous, snapshot
        for pool in snapshot.pools.values():
            before = previous.pools.get(pool.name)
            if before is None:
                continue
            for member in pool.members:
                old = before.member(member.name)
                if old is None:
                    continue
                went_down = old.health is not Health.DOWN and member.health is Health.DOWN
                forced = old.admin_state is not AdminState.FORCED_OFFLINE and member.admin_state is AdminState.FORCED_OFFLINE
                if went_down or forced:
                    action = pool.config.action_on_service_down
                    count = self.active.act(pool.name, member.name, action)
                    if count:
                        LOGGER.info("member %s/%s out of service: %s on %d connection(s)", pool.name, member.name, action.value, count)

    def _passive_failure(self, pool: str, member: str, reason: str) -> None:
        """Live traffic gave up on a member: down now; back by monitor, or after `down_for`."""
        until = self.runtime.passive_down(pool, member, reason)
        if until is not None and self._service_nursery is not None:
            self._service_nursery.start_soon(self._passive_recover_at, until, pool, member)

    async def _passive_recover_at(self, until: float, pool: str, member: str) -> None:
        await trio.sleep_until(until)
        self.runtime.passive_recover(pool, member)

    async def set_master(self, master: bool) -> None:
        """HA: binds the governed listeners, or closes them (their connections finish).

        Binding is retried while it fails: at a takeover the old master may still
        hold the addresses for a moment (on one host), or they are being added.
        """
        self.is_master = master
        assert self.listeners is not None and self._service_nursery is not None
        warned = False
        while self.is_master is master:
            try:
                await self.listeners.apply(wanted_listeners(self.runtime.file_config, master), self._service_nursery)
                return
            except StartError as exc:
                if not warned:
                    LOGGER.warning("ha: cannot listen on every governed address yet (%s); retrying", exc)
                    warned = True
                await trio.sleep(BIND_RETRY)

    def _runtime_changed(self) -> None:
        """Members or addresses changed at runtime: monitors and SNAT rotations follow; an HA master tells its peer."""
        self.monitors.sync()
        self.snat.configure(self.runtime.config)
        if self.ha is not None:
            self.ha.changed()

    async def _peer_changes_applied(self) -> None:
        """The HA master's runtime changes were taken: monitors and SNAT follow, and the state file keeps them."""
        self.monitors.sync()
        self.snat.configure(self.runtime.config)
        await self.save_state()

    async def save_state(self) -> str | None:
        """Writes the runtime changes to the state file; None, or why it could not.

        Serialised, in a worker thread (fsync must not stall the data plane). Nothing is
        written while there were never runtime changes and no state file exists.
        """
        runtime = self.runtime
        path = runtime.file_config.appliance.state_file
        async with self._saving:
            changes = runtime.overrides.to_json()  # taken under the lock: the latest wins
            if changes == Overrides().to_json() and not os.path.exists(path):
                return None
            try:
                await trio.to_thread.run_sync(state_file.save_json, path, changes, runtime.config.appliance.name)
            except OSError as exc:
                LOGGER.error("state file %s not written: %s; runtime changes will not survive a restart", path, exc)
                return f"state file {path}: {exc.strerror or exc}"
        return None

    def _metrics(self, accept: str) -> tuple[bytes, str]:
        return self.metrics.exposition(accept)

    def _metrics_inputs(self) -> MetricsInputs:
        listeners, snapshot = self.listeners, self.runtime.snapshot
        return MetricsInputs(
            snapshot=snapshot,
            servers=self.dispatcher.server_stats,
            now=trio.current_time(),
            started=self.started,
            listeners=None if listeners is None else {vs: listeners.open_for(vs) for vs in snapshot.config.virtual_servers},
            reload_ok=self._reload_ok,
            reload_at=self._reload_at,
            snat=self.snat.selectors,
            ha_state=self.ha.election.state.value if self.ha is not None else "standalone",
            ha=self.ha.view() if self.ha is not None else None,
            now_wall=time.time(),
        )

    def stop(self) -> None:
        self._stop.set()

    async def handle_signals(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        with trio.open_signal_receiver(signal.SIGHUP, signal.SIGTERM, signal.SIGINT) as signals:
            task_status.started()
            async for signum in signals:
                if signum == signal.SIGHUP:
                    await self.reload()
                else:
                    LOGGER.info("%s received: draining", signal.Signals(signum).name)
                    self.stop()
                    return

    async def reload(self) -> list[str]:
        """Re-reads the config file; returns the errors (empty on success)."""
        async with self._reloading:  # SIGHUP and the API: one reload at a time, each on the file as it is then
            errors = await self._reload()
        if not errors:
            await self.save_state()  # the new file may have superseded runtime changes
        self._reload_ok, self._reload_at = not errors, self.runtime.wall_time(trio.current_time())
        return errors

    async def _reload(self) -> list[str]:
        try:
            config = load_config(self.config_path)
        except ConfigError as exc:
            errors = [str(issue) for issue in exc.issues]
            for line in errors:
                LOGGER.error("reload rejected: %s", line)
            LOGGER.error("reload rejected: keeping the running configuration")
            return errors
        assert self.listeners is not None and self._service_nursery is not None
        log_spec = config.appliance.log
        log_fd = None
        try:
            server_tls, member_tls = contexts_for(config)
            key = persistence_key(config)
            if log_spec != self.access_log.spec:
                log_fd = open_target(log_spec)
            await self.listeners.apply(wanted_listeners(config, self.is_master), self._service_nursery)
        except StartError as exc:
            if log_fd is not None and log_spec.access not in ("stderr", "off"):
                os.close(log_fd)
            LOGGER.error("reload rejected: %s; keeping the running configuration", exc)
            return str(exc).splitlines()
        _log_not_yet_supported(config)
        if config.ha != self.runtime.file_config.ha:
            LOGGER.warning("reload: ha section changed; HA keeps its settings until a restart")
        if config.admin != self.runtime.file_config.admin:
            LOGGER.warning("reload: admin section changed; the admin API keeps its address and token until a restart")
        self.dispatcher.server_tls, self.upstreams.member_tls = server_tls, member_tls
        self.persistences.configure(config.virtual_servers, key)
        self.runtime.reload(config)
        self.snat.configure(self.runtime.config)  # the file's SNAT with the runtime changes that stay  # its new snapshot closes idle connections to members gone or changed
        if log_fd is not None:
            self.access_log.reconfigure(log_spec, log_fd)
        self.monitors.sync()
        return []

    async def _drain(self, connections: trio.Nursery) -> None:
        assert self.listeners is not None
        if self.ha is not None:
            await self.ha.leave()  # priority 0 first: the peer takes over while we drain
        self.listeners.close_all()
        self.tracker.drain()
        grace = self.runtime.config.appliance.shutdown_grace
        with trio.move_on_after(grace) as waited:
            await self.tracker.wait_all_closed()
        if waited.cancelled_caught:
            LOGGER.warning("drain: %d connection(s) still open after %gs; closing them", self.tracker.active, grace)
            connections.cancel_scope.cancel()
        else:
            LOGGER.info("drain: all connections finished")

def leaf_exceptions(error: BaseException) -> list[BaseException]:
    """The exceptions inside (possibly nested) exception groups, in order."""
    if isinstance(error, BaseExceptionGroup):
        return [leaf for inner in error.exceptions for leaf in leaf_exceptions(inner)]
    return [error]


def _log_not_yet_supported(config: Config) -> None:
    for path in config.not_yet_supported:
        LOGGER.warning("%s: accepted but not yet supported in this release; ignored", path)


async def run_from_file(config_path: str) -> int:
    """`appliance run`: exit status 0 after a clean stop, 1 when the start failed."""
    try:
        config = load_config(config_path)
    except ConfigError as exc:
        for issue in exc.issues:
            LOGGER.error("%s", issue)
        LOGGER.error("configuration invalid: nothing started")
        return 1
    appliance = Appliance(config_path, config)
    failures: list[str] = []
    try:
        async with trio.open_nursery() as nursery:
            await nursery.start(appliance.handle_signals)
            await appliance.run()
            nursery.cancel_scope.cancel()
    except* StartError as group:
        failures = [line for exc in leaf_exceptions(group) for line in str(exc).splitlines()]
    if failures:
        for line in failures:
            LOGGER.error("%s", line)
        LOGGER.error("start failed: nothing is listening")
        return 1
    LOGGER.info("stopped")
    return 0
