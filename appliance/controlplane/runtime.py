"""The one mutable object of the appliance: config, admin states, health, counters.

Everything that changes goes through a method here, which then publishes a new
immutable ``Snapshot`` by swapping one reference. The data plane only ever
reads ``runtime.snapshot``. Member state (health machines, admin state, counters)
is keyed by pool and member name and survives reloads while the member keeps
its address; the balancer of a pool survives while its member list is the same.
"""

from __future__ import annotations

import collections
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from appliance.core.balancing import Balancer, make_balancer
from appliance.core.health import CheckResult, Flip, Health, HealthMachine, LastCheck, combine
from appliance.core.model import AdminState, Config, Endpoint, Member, Monitor, Pool
from appliance.core.overrides import Overrides
from appliance.core.routing import Router
from appliance.core.snapshot import MemberView, PoolView, Snapshot
from appliance.core.stats import MemberStats

LOGGER = logging.getLogger("appliance.runtime")

EVENTS_KEPT = 1000  # recent state changes kept for the API (HAProxy keeps no history; F5 logs them)


@dataclass(frozen=True, slots=True, kw_only=True)
class Event:
    at: float  # wall-clock seconds
    kind: str  # "health" | "admin" | "reload" | ...
    source: str  # "monitor" | "config" | "api" | ...
    message: str


@dataclass(frozen=True, slots=True)
class MonitorTarget:
    """One monitor probing one member; the key the monitor tasks are kept by."""

    pool: str
    member: str
    address: Endpoint
    monitor: Monitor


class _MemberState:
    __slots__ = (
        "config", "admin_state", "admin_source", "machines", "checks", "since", "stats", "ramp_start", "passive_until",
        "_served", "_ramps",
    )  # fmt: skip

    def __init__(self, config: Member, monitors: list[Monitor], now: float, *, at_start: bool) -> None:
        self.config = config
        self.admin_state = config.state
        self.admin_source = "config"
        self.machines = {m.name: HealthMachine(rise=m.rise, fall=m.fall, now=now) for m in monitors}
        self.checks = LastCheck()
        self.since = now
        self.stats = MemberStats()
        self.ramp_start: float | None = None
        self.passive_until: float | None = None  # unmonitored member taken down by live traffic's failures
        self._served = False
        self._ramps = not at_start  # members of the start-up config take full traffic at their first verdict

    @property
    def health(self) -> Health:
        if self.passive_until is not None:
            return Health.DOWN
        return combine([m.state for m in self.machines.values()])

    def note_readiness(self, now: float) -> None:
        """Starts the slow ramp when the member becomes ready to serve (not at start-up)."""
        ready = self.admin_state is AdminState.ENABLED and self.health.serves
        if ready and not self._served and self._ramps:
            self.ramp_start = now
        if self.health is not Health.UNKNOWN:
            self._ramps = True  # start-up grace ends with the first verdict
        self._served = ready


class Runtime:
    """Holds the live state and publishes snapshots of it.

    Args:
        config: the validated configuration to start from.
        clock: monotonic seconds (trio.current_time in the shell, a fake in tests).
    """

    def __init__(self, config: Config, clock: Callable[[], float]) -> None:
        self._clock = clock
        self.file_config = config  # as loaded; `config` is it with the runtime changes applied
        self.overrides = Overrides()
        self._draining: dict[str, list[_MemberState]] = {}  # removed members still finishing connections
        self._wall_offset = time.time() - clock()
        self.events: collections.deque[Event] = collections.deque(maxlen=EVENTS_KEPT)
        self._members: dict[tuple[str, str], _MemberState] = {}
        self._balancers: dict[str, tuple[tuple[Member, ...], Balancer]] = {}
        self._routers: dict[str, Router] = {}
        self._generation = 0
        self.subscribers: list[Callable[[Snapshot], None]] = []  # told of every new snapshot, in order
        self.config = config
        self._adopt(config, source="config", at_start=True)
        self.snapshot = self._build()

    # ------------------------------------------------------------ changes

    def reload(self, config: Config) -> None:
        """Applies a new, already validated config; members that stay keep their state.

        Runtime changes stay, except where the new file decides the same thing anew.
        """
        for message in self.overrides.superseded_by(self.file_config, config):
            self._record("admin", "config", message)
        self.file_config = config
        self.config = self.overrides.effective(config)
        self._adopt(self.config, source="config")
        self._record("reload", "config", f"configuration reloaded from {config.source}")
        self._publish()

    def restore(self, overrides: Overrides, source: str = "state-file") -> list[str]:
        """Re-applies runtime changes kept from an earlier run (at start, before any traffic).

        Returns what was dropped because it names pools or members the config no longer has.
        """
        return self._take_overrides(overrides, source, at_start=True)

    def adopt_overrides(self, overrides: Overrides, source: str) -> None:
        """Takes the runtime changes a peer sent (HA state sync): they replace ours, as the master's are the truth."""
        self._take_overrides(overrides, source, at_start=False)
        self._record("sync", source, "runtime changes taken from the peer")

    def _take_overrides(self, overrides: Overrides, source: str, *, at_start: bool) -> list[str]:
        """Runs `overrides` in place of ours, every change credited to `source`; returns what was stale."""
        stale = overrides.drop_stale(self.file_config)
        for key, (state, _) in overrides.admin.items():
            overrides.admin[key] = (state, source)
        before = set(self._members)
        self.overrides = overrides
        self.config = overrides.effective(self.file_config)
        self._adopt(self.config, source=source, at_start=at_start)
        for key in self._members.keys() - before:  # the added members
            self._members[key].admin_source = source
        self._publish()
        return stale

    def set_admin_state(self, pool: str, member: str, state: AdminState, source: str) -> MemberView:
        """An operator's admin state for one member (enabled, disabled, forced_offline).

        Raises:
            KeyError: no such pool or member.
        """
        if (pool, member) not in self._members:
            raise KeyError(member if pool in self.config.pools else pool)
        self.overrides.admin[(pool, member)] = (state, source)
        self._apply_admin(pool, member, self._members[(pool, member)], source)
        self._publish()
        return self.member_view(pool, member)

    def add_member(self, pool: str, member: Member, source: str) -> MemberView:
        """Adds a member at runtime; it takes traffic at its first verdict, slow ramp included.

        Raises:
            KeyError: no such pool.
            ValueError: the pool already has a member of that name or address.
        """
        current = self.config.pools[pool]
        for other in current.members:
            if other.name == member.name or other.address == member.address:
                raise ValueError(f"pool {pool} already has member {other.name} ({other.address})")
            if member.cookie_value is not None and other.cookie_value == member.cookie_value:
                raise ValueError(f"pool {pool}: cookie_value '{member.cookie_value}' is member {other.name}'s already")
        self.overrides.added.setdefault(pool, {})[member.name] = member
        self.config = self.overrides.effective(self.file_config)
        self._adopt(self.config, source=source)
        self._members[(pool, member.name)].admin_source = source
        self._record("member", source, f"member {pool}/{member.name} ({member.address}) added")
        self._publish()
        return self.member_view(pool, member.name)

    def remove_member(self, pool: str, member: str, source: str) -> MemberView:
        """Removes a member: no new traffic at once, its open connections finish (it is listed as draining).

        Raises:
            KeyError: no such pool or member.
        """
        if (pool, member) not in self._members:
            raise KeyError(member if pool in self.config.pools else pool)
        view = self.member_view(pool, member)
        added = self.overrides.added.get(pool, {})
        if member in added:
            del added[member]
        else:
            self.overrides.removed.setdefault(pool, set()).add(member)
        self.overrides.admin.pop((pool, member), None)
        state = self._members[(pool, member)]
        if state.stats.active:
            self._draining.setdefault(pool, []).append(state)
        self.config = self.overrides.effective(self.file_config)
        self._adopt(self.config, source=source)
        self._record("member", source, f"member {pool}/{member} removed ({state.stats.active} connection(s) left to finish)")
        self._publish()
        return view

    def record_check(self, target: MonitorTarget, result: CheckResult) -> Flip | None:
        """Feeds one probe result; publishes a snapshot when the member's health flips."""
        state = self._members.get((target.pool, target.member))
        if state is None or state.config.address != target.address:
            return None  # the member went away while the probe ran
        machine = state.machines.get(target.monitor.name)
        if machine is None:
            return None
        before = state.health
        flip = machine.observe(result.ok, result.at, result.reason)
        state.checks.result = result
        after = state.health
        if after is not before:
            state.since = result.at
            state.note_readiness(result.at)
            if after.serves:
                state.stats.succeeded()  # back by its monitor: live traffic's count starts afresh
            reason = flip.reason if flip else result.reason
            self._record(
                "health",
                "monitor",
                f"member {target.pool}/{target.member} health {before.value} -> {after.value}"
                f" ({target.monitor.name}: {reason}, check {result.latency * 1000:.1f}ms)",
            )
            self._publish()
        return flip

    def passive_down(self, pool: str, member: str, reason: str) -> float | None:
        """Live traffic failed `failures` times in a row: the member goes down now.

        A monitored member stays down until its monitors see `rise` successes;
        one without a monitor comes back after the pool's `passive.down_for`,
        whose end is returned for the caller to schedule (`passive_recover`).
        """
        state = self._members.get((pool, member))
        if state is None or state.health is Health.DOWN:
            return None
        now = self._clock()
        before = state.health
        why = f"passive: {state.stats.streak} failures in a row, last: {reason}"
        until = None
        if state.machines:
            for machine in state.machines.values():
                machine.force_down(now, why)
        else:
            until = state.passive_until = now + self.config.pools[pool].passive.down_for
        state.since = now
        state.note_readiness(now)
        self._record("health", "traffic", f"member {pool}/{member} health {before.value} -> down ({why})")
        self._publish()
        return until

    def passive_recover(self, pool: str, member: str) -> None:
        """The `down_for` of an unmonitored member taken down by live traffic has passed."""
        state = self._members.get((pool, member))
        if state is None or state.passive_until is None:
            return
        now = self._clock()
        state.passive_until = None
        state.stats.succeeded()
        state.since = now
        state.note_readiness(now)
        self._record("health", "traffic", f"member {pool}/{member} health down -> {state.health.value} (passive: back after down_for)")
        self._publish()

    # ------------------------------------------------------------ reads

    def monitor_targets(self) -> list[MonitorTarget]:
        config = self.config
        return [
            MonitorTarget(pool.name, member.name, member.address, config.monitors[name])
            for pool in config.pools.values()
            for member in pool.members
            for name in pool.monitors
        ]

    def add_address(self, kind: str, name: str, address: str, source: str) -> tuple[str, ...]:
        """Adds a source address to a SNAT pool or address set; the pools drawing from it follow.

        Returns the object's addresses now. Raises KeyError (no such object), ValueError (already there).
        """
        current = self._addresses(kind, name)
        if current is None:
            raise KeyError(name)
        if address in current:
            raise ValueError(f"{address} is already in {kind}.{name}")
        removed = self.overrides.addresses_removed.get((kind, name), set())
        if address in removed:
            removed.discard(address)  # the file's own address, back
        else:
            self.overrides.addresses_added.setdefault((kind, name), []).append(address)
        return self._addresses_changed(kind, name, f"address {address} added", source)

    def remove_address(self, kind: str, name: str, address: str, source: str) -> tuple[str, ...]:
        """Takes a source address out: no new connections from it; open ones finish.

        Raises KeyError (no such object or address).
        """
        current = self._addresses(kind, name)
        if current is None or address not in current:
            raise KeyError(address if current is not None else name)
        added = self.overrides.addresses_added.get((kind, name), [])
        if address in added:
            added.remove(address)
        else:
            self.overrides.addresses_removed.setdefault((kind, name), set()).add(address)
        return self._addresses_changed(kind, name, f"address {address} removed (its connections finish)", source)

    def _addresses(self, kind: str, name: str) -> tuple[str, ...] | None:
        """A SNAT pool's or address set's addresses as running (None: no such object)."""
        entry = (self.config.snat_pools if kind == "snat_pools" else self.config.address_sets).get(name)
        return None if entry is None else entry.addresses

    def _addresses_changed(self, kind: str, name: str, what: str, source: str) -> tuple[str, ...]:
        self.config = self.overrides.effective(self.file_config)
        self._record("snat", source, f"{kind}.{name}: {what}")
        self._publish()
        addresses = self._addresses(kind, name)
        assert addresses is not None
        return addresses

    def member_view(self, pool: str, member: str) -> MemberView:
        """The member as the current snapshot shows it (every change publishes before it answers)."""
        return self.snapshot.pools[pool].by_name[member]

    def draining(self, pool: str) -> list[MemberView]:
        """Members removed at runtime that still have connections open (gone once idle)."""
        states = [state for state in self._draining.get(pool, []) if state.stats.active > 0]
        self._draining[pool] = states
        config = self.config.pools.get(pool)
        if config is None:
            return []
        return [self._state_view(config, -1, state) for state in states]

    def wall_time(self, now: float) -> float:
        """Converts the monotonic clock to wall-clock seconds for operators."""
        return now + self._wall_offset

    # ------------------------------------------------------------ internals

    def _adopt(self, config: Config, source: str, at_start: bool = False) -> None:
        now = self._clock()
        kept: dict[tuple[str, str], _MemberState] = {}
        for pool in config.pools.values():
            monitors = [config.monitors[name] for name in pool.monitors]
            for member in pool.members:
                key = (pool.name, member.name)
                old = self._members.get(key)
                if old is None or old.config.address != member.address or _monitors_changed(old, monitors):
                    fresh = _MemberState(member, monitors, now, at_start=at_start)
                    fresh.admin_state, fresh.admin_source = self._desired_admin(pool.name, member)
                    fresh.note_readiness(now)
                    kept[key] = fresh
                    continue
                old.config = member
                self._apply_admin(pool.name, member.name, old, source)
                for monitor in monitors:  # a changed rise/fall applies from the next probe on
                    machine = old.machines[monitor.name]
                    machine.rise, machine.fall = monitor.rise, monitor.fall
                kept[key] = old
        self._members = kept
        self._balancers = {
            pool.name: self._balancer_for(pool) for pool in config.pools.values()
        }
        self._routers = {vs.name: Router(vs) for vs in config.virtual_servers.values() if vs.routes}

    def _desired_admin(self, pool: str, member: Member) -> tuple[AdminState, str]:
        """The admin state a member should have, and who decided it: a runtime change, else the file."""
        return self.overrides.admin.get((pool, member.name), (member.state, "config"))

    def _apply_admin(self, pool: str, member: str, state: _MemberState, source: str) -> None:
        desired, decided_by = self._desired_admin(pool, state.config)
        state.admin_source = decided_by
        if state.admin_state is desired:
            return
        before, state.admin_state = state.admin_state, desired
        now = self._clock()
        state.since = now
        state.note_readiness(now)
        who = source if decided_by == "config" else decided_by
        self._record("admin", who, f"member {pool}/{member} admin state {before.value} -> {desired.value}")

    def _balancer_for(self, pool: Pool) -> tuple[tuple[Member, ...], Balancer]:
        old = self._balancers.get(pool.name)
        if old is not None and old[0] == pool.members:
            return old
        return pool.members, make_balancer(pool)

    def _build(self) -> Snapshot:
        self._generation += 1
        pools: dict[str, PoolView] = {}
        for pool in self.config.pools.values():
            members = tuple(
                self._view(pool, slot, member) for slot, member in enumerate(pool.members)
            )
            pools[pool.name] = PoolView(config=pool, members=members, balancer=self._balancers[pool.name][1])
        return Snapshot(config=self.config, pools=pools, generation=self._generation, routers=self._routers)

    def _view(self, pool: Pool, slot: int, member: Member) -> MemberView:
        return self._state_view(pool, slot, self._members[(pool.name, member.name)])

    def _state_view(self, pool: Pool, slot: int, state: _MemberState) -> MemberView:
        return MemberView(
            pool=pool.name,
            config=state.config,
            slot=slot,
            admin_state=state.admin_state,
            admin_source=state.admin_source,
            health=state.health,
            since=state.since,
            checks=state.checks,
            stats=state.stats,
            ramp_start=state.ramp_start,
            slow_ramp=pool.slow_ramp,
        )

    def _publish(self) -> None:
        self.snapshot = self._build()
        for subscriber in self.subscribers:
            subscriber(self.snapshot)

    def record(self, kind: str, source: str, message: str) -> None:
        """An event from elsewhere in the control plane (HA transitions)."""
        self._record(kind, source, message)

    def _record(self, kind: str, source: str, message: str) -> None:
        LOGGER.info("%s", message)
        self.events.append(Event(at=self.wall_time(self._clock()), kind=kind, source=source, message=message))


def _monitors_changed(state: _MemberState, monitors: list[Monitor]) -> bool:
    return set(state.machines) != {m.name for m in monitors}
