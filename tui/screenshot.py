"""Render the TUI over realistic demo data and save it as an SVG (the README's picture).

    python -m tui.screenshot [OUT]                  # default docs/tui.svg
    python -m tui.screenshot --snat [OUT]           # the SNAT view (`s`); default docs/tui-snat.svg

No appliance is needed: `DemoAdmin` answers like the admin API of a node with
a few pools, one member down, one ramping up, one disabled and one forced
offline, and its request counters grow between polls so req/s shows. Its two
SNAT pools have an address quarantined for one LB pool, one draining and one
that ran out of local ports.
"""

from __future__ import annotations

import argparse
import asyncio
import copy
import os
import sys
import time
from pathlib import Path
from typing import Any

from tui.app import make_app

Json = dict[str, Any]
T0 = 1_767_258_000.0  # a fixed wall clock: the picture does not change from run to run
SIZE = (150, 32)


def _member(name: str, address: str, **fields: Any) -> Json:
    member: Json = {
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
        "since": T0 - 86_000,
        "last_check": {"ok": True, "reason": "L7 status 200", "latency": 0.0007, "at": T0 - 1.2},
    }
    member.update(fields)
    return member


def _snat_address(address: str, *lanes: Json, **fields: Any) -> Json:
    row: Json = {
        "address": address,
        "draining": False,
        "active_connections": 0,
        "total_connections": 0,
        "failures": 0,
        "exhausted": 0,
        "pools": list(lanes),
    }
    row.update(fields)
    row["active_connections"] = sum(lane["active_connections"] for lane in lanes)
    return row


def _lane(pool: str, active: int = 0, streak: int = 0, quarantined_until: float | None = None) -> Json:
    return {"pool": pool, "active_connections": active, "streak": streak, "quarantined_until": quarantined_until}


def demo_snat_pools() -> list[Json]:
    return [
        {
            "name": "egress",
            "min_interval": 0.0,
            "quarantine": {"failures": 3, "for": 30.0},
            "static": True,
            "mutable": True,
            "used_by": ["web", "api"],
            "refused": {"web": 0, "api": 7},
            "addresses": [
                _snat_address(
                    "10.0.9.1", _lane("web", 22), _lane("api", 5), total_connections=612_004, failures=2
                ),
                _snat_address(
                    "10.0.9.2",
                    _lane("web", 19),
                    _lane("api", 0, quarantined_until=T0 + 21.4),
                    total_connections=598_311,
                    failures=9,
                ),
                _snat_address(
                    "10.0.9.3", _lane("web", 18), _lane("api", 4, streak=2), total_connections=603_870, failures=4
                ),
                _snat_address("10.0.9.9", _lane("web", 2), draining=True, total_connections=88_140),
            ],
        },
        {
            "name": "db-out",
            "min_interval": 0.25,
            "quarantine": {"failures": 5, "for": 60.0},
            "static": True,
            "mutable": False,
            "used_by": ["db"],
            "refused": {"db": 0},
            "addresses": [
                _snat_address("10.0.9.31", _lane("db", 18), total_connections=4_410, exhausted=3),
            ],
        },
    ]


def demo_status() -> Json:
    down = {"ok": False, "reason": "L7 status 503", "latency": 0.0121, "at": T0 - 0.8}
    refused = {"ok": False, "reason": "connect refused", "latency": 0.0002, "at": T0 - 1.6}
    return {
        "node": "lb-a",
        "version": "0.9.0",
        "time": T0,
        "uptime": 3 * 86_400 + 4 * 3600 + 17 * 60,
        "config": "conf/appliance.yaml",
        "ha": {"state": "master", "priority": 150, "peers": ["10.0.0.12:9911"]},
        "virtual_servers": [
            {
                "name": "web",
                "mode": "http",
                "listen": ["0.0.0.0:443", "[::]:443"],
                "endpoints": 2,
                "pool": "web",
                "routes": ["api", "static"],
                "tls": True,
                "persistence": "cookie",
                "state": "listening",
            },
            {
                "name": "web-plain",
                "mode": "http",
                "listen": ["0.0.0.0:80"],
                "endpoints": 1,
                "pool": "web",
                "routes": [],
                "tls": False,
                "persistence": None,
                "state": "listening",
            },
            {
                "name": "postgres",
                "mode": "tcp",
                "listen": ["10.0.0.10-10.0.0.13:5432"],
                "endpoints": 4,
                "pool": "db",
                "routes": [],
                "tls": False,
                "persistence": "source_address",
                "state": "listening",
            },
        ],
        "pools": [
            {
                "name": "web",
                "method": "least_connections",
                "min_active_members": 0,
                "static": True,
                "mutable": True,
                "available_members": 2,
                "draining": [],
                "members": [
                    _member(
                        "web1",
                        "10.0.1.11:8080",
                        ratio=2,
                        active_connections=41,
                        total_connections=1_284_113,
                        requests=9_412_877,
                    ),
                    _member(
                        "web2",
                        "10.0.1.12:8080",
                        ratio=2,
                        active_connections=12,
                        total_connections=3_207,
                        requests=20_118,
                        ramp=0.42,
                        since=T0 - 4.2,
                    ),
                    _member(
                        "web3",
                        "10.0.1.13:8080",
                        health="down",
                        available=False,
                        total_connections=881_902,
                        requests=6_001_245,
                        since=T0 - 312,
                        last_check=down,
                    ),
                    _member(
                        "web4",
                        "10.0.1.14:8080",
                        admin_state="disabled",
                        admin_source="api",
                        available=False,
                        active_connections=3,
                        total_connections=902_114,
                        requests=6_310_870,
                        since=T0 - 1_260,
                    ),
                ],
            },
            {
                "name": "api",
                "method": "ratio",
                "min_active_members": 1,
                "static": True,
                "mutable": True,
                "available_members": 2,
                "draining": [],
                "members": [
                    _member(
                        "api1",
                        "10.0.2.21:9000",
                        ratio=3,
                        priority_group=10,
                        active_connections=7,
                        total_connections=310_554,
                        requests=2_455_012,
                    ),
                    _member(
                        "api2",
                        "10.0.2.22:9000",
                        priority_group=10,
                        active_connections=2,
                        total_connections=99_871,
                        requests=801_337,
                    ),
                    _member("api-standby", "10.0.2.29:9000", priority_group=0, total_connections=12, requests=40),
                ],
            },
            {
                "name": "db",
                "method": "round_robin",
                "min_active_members": 0,
                "static": True,
                "mutable": False,
                "available_members": 1,
                "draining": [],
                "members": [
                    _member(
                        "pg1",
                        "10.0.3.31:5432",
                        health="unchecked",
                        last_check=None,
                        active_connections=18,
                        total_connections=4_410,
                    ),
                    _member(
                        "pg2",
                        "10.0.3.32:5432",
                        health="unknown",
                        admin_state="forced_offline",
                        admin_source="api",
                        available=False,
                        since=T0 - 95,
                        last_check=refused,
                    ),
                ],
            },
        ],
        "snat_pools": demo_snat_pools(),
    }


DEMO_EVENTS: list[Json] = [
    {"at": T0 - 1_260, "kind": "admin", "source": "api", "message": "member web/web4 admin state enabled -> disabled"},
    {"at": T0 - 312, "kind": "health", "source": "monitor", "message": "member web/web3 health up -> down (http: 3/3 failed: L7 status 503, check 12.0ms)"},
    {"at": T0 - 95, "kind": "admin", "source": "api", "message": "member db/pg2 admin state enabled -> forced_offline"},
    {"at": T0 - 60, "kind": "reload", "source": "config", "message": "configuration reloaded from conf/appliance.yaml"},
    {"at": T0 - 4.2, "kind": "health", "source": "monitor", "message": "member web/web2 health down -> up (http: 2/2 passed, check 0.7ms)"},
]

RATES = {"web1": 412, "web2": 96, "web4": 3, "api1": 230, "api2": 77, "api-standby": 0}  # requests per second


class DemoAdmin:
    """An `AdminApi` that answers with the demo node; one second passes per status()."""

    def __init__(self) -> None:
        self.data = demo_status()
        self.events_list = list(DEMO_EVENTS)

    async def status(self) -> Json:
        self.data["time"] += 1.0
        self.data["uptime"] += 1.0
        for pool in self.data["pools"]:
            for member in pool["members"]:
                member["requests"] += RATES.get(member["name"], 0)
                if member["name"] == "web2":
                    member["ramp"] = min(1.0, member["ramp"] + 0.1)
        for snat in self.data["snat_pools"]:
            for row in snat["addresses"]:
                if not row["draining"]:
                    row["total_connections"] += row["active_connections"] // 2
        return copy.deepcopy(self.data)

    async def events(self) -> list[Json]:
        return copy.deepcopy(self.events_list)

    async def set_state(self, pool: str, member: str, state: str) -> Json:
        for p in self.data["pools"]:
            for m in p["members"]:
                if p["name"] == pool and m["name"] == member:
                    m.update(admin_state=state, admin_source="api", since=self.data["time"])
                    return copy.deepcopy(m)
        raise LookupError(f"no member {member} in pool {pool}")


async def screenshot(out: Path, size: tuple[int, int] = SIZE, *, snat: bool = False) -> Path:
    """Save the members view (or, with `snat`, the SNAT view) of the demo node as an SVG at `out`."""
    app = make_app(DemoAdmin(), interval=0.05)
    async with app.run_test(size=size) as pilot:
        for _ in range(200):  # two answers, so req/s has a previous one to differ from
            if app.polls >= 2:
                break
            await pilot.pause(0.02)
        app.poll_now = lambda: None  # type: ignore[method-assign]  # freeze the picture
        if snat:
            await pilot.press("s")
        await pilot.press("down")
        await pilot.pause(0.1)
        out.parent.mkdir(parents=True, exist_ok=True)
        app.save_screenshot(out.name, str(out.parent))
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tui.screenshot", description=__doc__.splitlines()[0])
    parser.add_argument("--snat", action="store_true", help="show the SNAT view (s) instead of the members")
    parser.add_argument("out", nargs="?", help="SVG to write (default docs/tui.svg, with --snat docs/tui-snat.svg)")
    args = parser.parse_args(argv)
    out = args.out or ("docs/tui-snat.svg" if args.snat else "docs/tui.svg")
    os.environ.setdefault("TZ", "UTC")  # the events' clock times do not depend on where it runs
    if hasattr(time, "tzset"):
        time.tzset()
    path = asyncio.run(screenshot(Path(out), snat=args.snat))
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
