"""The immutable picture of the appliance that the data plane decides from.

The control plane builds a new ``Snapshot`` whenever config, admin state or
health changes, and swaps one reference; a handler takes the current snapshot
when it needs a decision and keeps it for that decision only. What changes per
request (connection counts, balancer cursors) lives in the ``MemberStats`` and
``Balancer`` objects a snapshot points to, which are carried over from one
snapshot to the next while the member or pool stays the same.
"""

from __future__ import annotations

from collections.abc import Container, Mapping
from dataclasses import dataclass, field

from appliance.core import ramp
from appliance.core.balancing import Balancer
from appliance.core.health import CheckResult, Health, LastCheck
from appliance.core.model import AdminState, Config, Endpoint, Member, Pool, VirtualServer
from appliance.core.priority import PriorityGroups
from appliance.core.routing import Router
from appliance.core.stats import MemberStats


@dataclass(frozen=True, slots=True, kw_only=True)
class MemberView:
    pool: str
    config: Member
    slot: int  # position in the pool, the round-robin order
    admin_state: AdminState
    admin_source: str = "config"  # who set the admin state: config | api | state-file
    health: Health
    since: float  # time of the last health or admin change
    checks: LastCheck
    stats: MemberStats
    ramp_start: float | None = None  # when it last became available; None: since start-up
    slow_ramp: float = 0.0  # the pool's

    @property
    def ratio(self) -> int:
        return self.config.ratio

    @property
    def priority_group(self) -> int:
        return self.config.priority_group

    def ramp(self, now: float) -> float:
        """The member's current slow-ramp factor, 0 < ramp <= 1 (1: full share)."""
        return ramp.factor(self.ramp_start, self.slow_ramp, now)

    @property
    def active(self) -> int:
        return self.stats.active

    @property
    def last_check(self) -> CheckResult | None:
        return self.checks.result

    @property
    def name(self) -> str:
        return self.config.name

    @property
    def address(self) -> Endpoint:
        return self.config.address

    @property
    def ready(self) -> bool:
        """Enabled and healthy: may take new traffic if below its connection limit."""
        return self.admin_state is AdminState.ENABLED and self.health.serves

    @property
    def available(self) -> bool:
        limit = self.config.connection_limit
        return self.ready and (limit == 0 or self.stats.active < limit)

    def __repr__(self) -> str:
        return (
            f"<Member {self.pool}/{self.name} {self.address} {self.admin_state.value}"
            f" {self.health.value} | {self.stats.active} active>"
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class PoolView:
    config: Pool
    members: tuple[MemberView, ...]
    balancer: Balancer
    ready: tuple[MemberView, ...] = field(init=False)  # enabled and healthy, in slot order
    groups: PriorityGroups[MemberView] = field(init=False)
    by_name: Mapping[str, MemberView] = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "by_name", {m.name: m for m in self.members})
        ready = tuple(m for m in self.members if m.ready)
        limited = any(m.config.connection_limit for m in ready)
        object.__setattr__(self, "ready", ready)
        object.__setattr__(self, "groups", PriorityGroups(ready, self.config.min_active_members, limited))

    @property
    def name(self) -> str:
        return self.config.name

    def member(self, name: str) -> MemberView | None:
        return self.by_name.get(name)

    def select(self, key: bytes | None, now: float, avoid: Container[str] = ()) -> MemberView | None:
        """The member for one new connection or request, or None (503)."""
        picked = self.balancer.pick(self.groups.candidates(), key, avoid, now)
        assert picked is None or isinstance(picked, MemberView)
        return picked

    def __repr__(self) -> str:
        down = sum(1 for m in self.members if m.health is Health.DOWN)
        active = sum(m.stats.active for m in self.members)
        return f"<Pool {self.name} [{len(self.ready)} available, {down} down | {active} active]>"


@dataclass(frozen=True, slots=True, kw_only=True)
class Snapshot:
    config: Config
    pools: Mapping[str, PoolView]
    generation: int
    routers: Mapping[str, Router] = field(default_factory=dict)  # virtual servers with `routes`, compiled per config

    def virtual_server(self, name: str) -> VirtualServer | None:
        return self.config.virtual_servers.get(name)
