"""The JSON shapes of the admin API (SPEC §4), built from a snapshot.

Times are wall-clock Unix seconds (floats) so a client on another host can
show "time in state" against the `time` of the same answer; durations are
seconds. Lists keep config order. Every field here is in the OpenAPI document.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

from appliance import __version__
from appliance.core.model import VirtualServer
from appliance.core.snapshot import MemberView, PoolView, Snapshot
from appliance.core.snat import SnatSelector

Json = dict[str, Any]
WallTime = Callable[[float], float]  # monotonic -> wall-clock seconds


def member_json(member: MemberView, now: float, wall: WallTime) -> Json:
    check = member.last_check
    stats = member.stats
    return {
        "name": member.name,
        "address": str(member.address),
        "admin_state": member.admin_state.value,
        "admin_source": member.admin_source,
        "health": member.health.value,
        "available": member.available,
        "ratio": member.ratio,
        "priority_group": member.priority_group,
        "connection_limit": member.config.connection_limit,
        "active_connections": stats.active,
        "total_connections": stats.total,
        "requests": stats.requests,
        "failures": stats.failures,
        "bytes_in": stats.bytes_in,
        "bytes_out": stats.bytes_out,
        "ramp": round(member.ramp(now), 4),
        "since": round(wall(member.since), 3),
        "last_check": None
        if check is None
        else {
            "ok": check.ok,
            "reason": check.reason,
            "latency": round(check.latency, 6),
            "at": round(wall(check.at), 3),
        },
    }


def pool_json(pool: PoolView, now: float, wall: WallTime, draining: Iterable[MemberView] = ()) -> Json:
    config = pool.config
    return {
        "name": pool.name,
        "method": config.method.value,
        "min_active_members": config.min_active_members,
        "static": config.static,
        "mutable": config.mutable,
        "available_members": sum(1 for m in pool.members if m.available),
        "members": [member_json(m, now, wall) for m in pool.members],
        # removed by the API, still finishing their connections; gone once idle
        "draining": [member_json(m, now, wall) for m in draining],
    }


def snat_json(name: str, selector: SnatSelector, used_by: list[str], now: float, wall: WallTime) -> Json:
    spec = selector.spec
    return {
        "name": name,
        "min_interval": spec.min_interval,
        "quarantine": {"failures": spec.quarantine.failures, "for": spec.quarantine.duration},
        "static": spec.static,
        "mutable": spec.mutable,
        "used_by": used_by,
        "refused": selector.refusals(),
        "addresses": [
            {
                "address": row.address,
                "draining": row.draining,
                "active_connections": row.active,
                "total_connections": row.total,
                "failures": row.failures,
                "exhausted": row.exhausted,
                "pools": [
                    {
                        "pool": lane.lb_pool,
                        "active_connections": lane.active,
                        "streak": lane.streak,
                        "quarantined_until": None
                        if lane.quarantined_until is None
                        else round(wall(lane.quarantined_until), 3),
                    }
                    for lane in row.lanes
                ],
            }
            for row in selector.stats(now)
        ],
    }


def virtual_server_json(vs: VirtualServer, listening: bool) -> Json:
    return {
        "name": vs.name,
        "mode": vs.mode.value,
        "listen": [entry.spec for entry in vs.listen],
        "endpoints": len(vs.endpoints),
        "pool": vs.pool,
        "routes": [route.pool for route in vs.routes],
        "tls": vs.tls is not None,
        "persistence": vs.persistence.type.value if vs.persistence is not None else None,
        "state": "listening" if listening else "stopped",
    }


def status_json(
    snapshot: Snapshot,
    *,
    now: float,
    wall: WallTime,
    started: float,
    listening: Callable[[str], bool],
    draining: Callable[[str], Iterable[MemberView]],
    snat: Mapping[str, SnatSelector] | None = None,
    ha_view: Json | None = None,
) -> Json:
    config = snapshot.config
    ha = config.ha
    return {
        "node": config.appliance.name,
        "version": __version__,
        "time": round(wall(now), 3),
        "uptime": round(now - started, 3),
        "config": config.source,
        "ha": ha_view
        if ha_view is not None
        else {"state": "standalone", "priority": None if ha is None else ha.priority, "peers": []},
        "virtual_servers": [virtual_server_json(vs, listening(vs.name)) for vs in config.virtual_servers.values()],
        "pools": [pool_json(pool, now, wall, draining(pool.name)) for pool in snapshot.pools.values()],
        "snat_pools": [
            snat_json(name, selector, [p.name for p in config.pools.values() if p.snat == name], now, wall)
            for name, selector in (snat or {}).items()
        ],
    }
