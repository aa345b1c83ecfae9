"""A fake admin API for the TUI tests: the shapes of appliance/controlplane/views.py, in memory."""

from __future__ import annotations

import asyncio
import copy
from collections.abc import Awaitable, Callable
from typing import Any

from tui.client import ApiError, Unreachable

Json = dict[str, Any]
T0 = 1_760_000_000.0  # a fixed wall clock: the fake's `time` starts here


def member(name: str, address: str, **fields: Any) -> Json:
    base: Json = {
        "name": name,
        "address": address,
        "admin_state": "enabled",
        "admin_source": "config",
        "health": "up",
        "available": True,
        "ratio": 1,
        "priority_group": 0,
        "connection_limit": 0,
        "active_connections": 0,
        "total_connections": 0,
        "requests": 0,
        "failures": 0,
        "bytes_in": 0,
        "bytes_out": 0,
        "ramp": 1.0,
        "since": T0 - 120,
        "last_check": {"ok": True, "reason": "L4 connect ok", "latency": 0.0004, "at": T0 - 1},
    }
    base.update(fields)
    return base


def snat_address(address: str, *lanes: Json, **fields: Any) -> Json:
    base: Json = {
        "address": address,
        "draining": False,
        "active_connections": 0,
        "total_connections": 0,
        "failures": 0,
        "exhausted": 0,
        "pools": list(lanes),
    }
    base.update(fields)
    return base


def lane(pool: str, active: int = 0, streak: int = 0, quarantined_until: float | None = None) -> Json:
    return {"pool": pool, "active_connections": active, "streak": streak, "quarantined_until": quarantined_until}


QUARANTINED_UNTIL = T0 + 60  # 10.9.0.2 is quarantined for pool web until then


def demo_snat_pools() -> list[Json]:
    return [
        {
            "name": "out",
            "min_interval": 0.0,
            "quarantine": {"failures": 3, "for": 30.0},
            "static": True,
            "mutable": True,
            "used_by": ["web"],
            "refused": {"web": 2},
            "addresses": [
                snat_address("10.9.0.1", lane("web", active=4), active_connections=4, total_connections=120),
                snat_address(
                    "10.9.0.2",
                    lane("web", streak=0, quarantined_until=QUARANTINED_UNTIL),
                    total_connections=30,
                    failures=3,
                ),
                snat_address("10.9.0.3", lane("web", active=1), draining=True, active_connections=1, total_connections=9),
            ],
        },
        {
            "name": "egress",
            "min_interval": 0.5,
            "quarantine": {"failures": 5, "for": 60.0},
            "static": True,
            "mutable": False,
            "used_by": ["api"],
            "refused": {},
            "addresses": [snat_address("10.9.1.1", exhausted=2)],
        },
    ]


def demo_status() -> Json:
    return {
        "node": "lb-a",
        "version": "0.9.0",
        "time": T0,
        "uptime": 3725.0,
        "config": "conf/appliance.yaml",
        "ha": {"state": "master", "priority": 150, "peers": ["127.0.0.1:9912"]},
        "virtual_servers": [
            {
                "name": "web",
                "mode": "http",
                "listen": ["127.0.0.1:8080"],
                "endpoints": 1,
                "pool": "web",
                "routes": ["api"],
                "tls": False,
                "persistence": "cookie",
                "state": "listening",
            },
            {
                "name": "db",
                "mode": "tcp",
                "listen": ["127.0.0.1:5432"],
                "endpoints": 1,
                "pool": "api",
                "routes": [],
                "tls": False,
                "persistence": None,
                "state": "listening",
            },
        ],
        "pools": [
            {
                "name": "web",
                "method": "round_robin",
                "min_active_members": 0,
                "static": True,
                "mutable": True,
                "available_members": 2,
                "members": [
                    member("web1", "127.0.0.1:9001", requests=100, total_connections=40, active_connections=3),
                    member("web2", "127.0.0.1:9002", requests=50, total_connections=20),
                    member(
                        "web3",
                        "127.0.0.1:9003",
                        health="down",
                        available=False,
                        last_check={"ok": False, "reason": "L7 status 503", "latency": 0.012, "at": T0 - 2},
                    ),
                ],
                "draining": [],
            },
            {
                "name": "api",
                "method": "least_connections",
                "min_active_members": 0,
                "static": True,
                "mutable": False,
                "available_members": 1,
                "members": [member("api1", "127.0.0.1:9101", health="unchecked", last_check=None)],
                "draining": [],
            },
        ],
        "snat_pools": demo_snat_pools(),
    }


class FakeAdmin:
    """`tui.client.AdminApi` over a dict; every call advances the clock by `tick` seconds.

    Set `unreachable = True` to make every call raise `Unreachable`, or
    `refuse = ApiError(...)` to make `set_state` refuse with that error.
    """

    def __init__(self, status: Json | None = None, *, tick: float = 1.0) -> None:
        self.data = status if status is not None else demo_status()
        self.tick = tick
        self.events_list: list[Json] = [
            {"at": T0 - 60, "kind": "health", "source": "web/web3", "message": "up -> down (L7 status 503)"},
        ]
        self.calls: list[tuple[Any, ...]] = []
        self.status_calls = 0
        self.unreachable = False
        self.refuse: BaseException | None = None
        self.in_flight = 0
        self.max_in_flight = 0
        self.before_status: Callable[[], Awaitable[None]] | None = None

    def find(self, pool: str, name: str) -> Json:
        for p in self.data["pools"]:
            if p["name"] == pool:
                for m in p["members"]:
                    if m["name"] == name:
                        return m
        raise ApiError(f"no member {name} in pool {pool}", 404)

    def bump(self, pool: str, name: str, **fields: Any) -> None:
        self.find(pool, name).update(fields)

    def snat(self, snat_pool: str, address: str) -> Json:
        for p in self.data.get("snat_pools") or []:
            if p["name"] == snat_pool:
                for a in p["addresses"]:
                    if a["address"] == address:
                        return a  # type: ignore[no-any-return]
        raise KeyError(f"no address {address} in SNAT pool {snat_pool}")

    async def _enter(self) -> None:
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            await asyncio.sleep(0)
            if self.unreachable:
                raise Unreachable("connection refused")
        finally:
            self.in_flight -= 1

    async def status(self) -> Json:
        self.status_calls += 1
        if self.before_status is not None:
            await self.before_status()
        await self._enter()
        self.data["time"] += self.tick
        self.data["uptime"] += self.tick
        return copy.deepcopy(self.data)

    async def events(self) -> list[Json]:
        await self._enter()
        return copy.deepcopy(self.events_list)

    async def set_state(self, pool: str, name: str, state: str) -> Json:
        self.calls.append(("set_state", pool, name, state))
        await self._enter()
        if self.refuse is not None:
            raise self.refuse
        m = self.find(pool, name)
        m.update(admin_state=state, admin_source="api", since=self.data["time"])
        self.events_list.append(
            {"at": self.data["time"], "kind": "admin", "source": f"{pool}/{name}", "message": f"-> {state} (api)"}
        )
        return copy.deepcopy(m)


async def wait_for(pilot: Any, predicate: Callable[[], bool], timeout: float = 5.0, what: str = "condition") -> None:
    """Let the app run until `predicate()` holds; fail after `timeout` seconds."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not predicate():
        if loop.time() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        await pilot.pause(0.02)


def cell_text(app: Any, key: str, column: str) -> str:
    """The plain text of one member-table cell."""
    return str(app.members_table.get_cell(key, column).plain)


def snat_text(app: Any, key: str, column: str) -> str:
    """The plain text of one SNAT-table cell (rows keyed `snat/address`)."""
    return str(app.snat_table.get_cell(key, column).plain)


def snat_keys(app: Any) -> list[str]:
    return list(app.snat_table.shown)


def cell_style(app: Any, key: str, column: str) -> str:
    return str(app.members_table.get_cell(key, column).style)


def row_keys(app: Any) -> list[str]:
    return list(app.members_table.shown)


def notifications(app: Any) -> list[tuple[str, str]]:
    return [(n.message, n.severity) for n in app._notifications]
