"""From the admin API's JSON to table cells: pure functions, no Textual.

A cell is `(text, style)`: plain data, cheap to compare, so the app updates a
table cell only when its text or style changed. Text always says what colour
says (`down`, `disabled (api)`), for colour-blind operators and for diffs.
"""

from __future__ import annotations

import datetime
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Literal

from appliance.humanize import duration

Json = dict[str, Any]
Cell = tuple[str, str]  # text, Rich style
Justify = Literal["left", "right"]

HEALTH_STYLE = {"up": "bold green", "down": "bold red", "unknown": "yellow", "unchecked": "dim"}
ADMIN_STYLE = {"enabled": "", "disabled": "yellow", "forced_offline": "bold red"}
VS_STATE_STYLE = {"listening": "green", "stopped": "red"}
HA_STYLE = {"master": "bold green", "backup": "cyan", "standalone": "", "init": "yellow", "fault": "bold red"}


@dataclass(frozen=True, slots=True)
class Column:
    key: str
    label: str
    width: int | None = None  # None: as wide as its widest cell so far (grows, never shrinks)
    justify: Justify = "left"


MEMBER_COLUMNS = (
    Column("pool", "pool"),
    Column("member", "member"),
    Column("address", "address"),
    Column("health", "health"),
    Column("admin", "admin"),
    Column("ratio", "ratio", justify="right"),
    Column("priority", "prio", justify="right"),
    Column("active", "active", justify="right"),
    Column("total", "total", justify="right"),
    Column("rate", "req/s", justify="right"),
    Column("ramp", "ramp", justify="right"),
    Column("since", "in state", justify="right"),
    Column("check", "last check"),
)

SNAT_COLUMNS = (
    Column("snat", "SNAT pool"),
    Column("address", "address"),
    Column("state", "state"),
    Column("active", "active", justify="right"),
    Column("total", "total", justify="right"),
    Column("failures", "failures", justify="right"),
    Column("exhausted", "exhausted", justify="right"),
    Column("pools", "LB pools (open connections)"),
)

VS_COLUMNS = (
    Column("name", "virtual server"),
    Column("mode", "mode"),
    Column("listen", "listen"),
    Column("pool", "pool"),
    Column("features", "tls / persistence"),
    Column("state", "state"),
)

DASH: Cell = ("-", "dim")


def latency(seconds: float) -> str:
    ms = seconds * 1000
    if ms < 10:
        return f"{ms:.1f}ms"
    if ms < 10_000:
        return f"{ms:.0f}ms"
    return f"{seconds:.0f}s"


def rate(value: float | None) -> Cell:
    if value is None:
        return DASH
    if value == 0:
        return ("0", "dim")
    return (f"{value:.1f}" if value < 100 else f"{value:.0f}", "")


def health_cell(member: Json) -> Cell:
    health = str(member.get("health", "unknown"))
    return (health, HEALTH_STYLE.get(health, "yellow"))


def admin_cell(member: Json) -> Cell:
    state = str(member.get("admin_state", "?"))
    source = member.get("admin_source")
    text = state if not source or source == "config" else f"{state} ({source})"
    return (text, ADMIN_STYLE.get(state, "yellow"))


def check_cell(member: Json) -> Cell:
    check = member.get("last_check")
    if not check:
        return ("never" if member.get("health") != "unchecked" else "no monitor", "dim")
    took = latency(float(check.get("latency") or 0.0))
    if check.get("ok"):
        return (f"ok {took}", "green")
    reason = check.get("reason") or "failed"
    return (f"{reason} {took}", "red")


def ramp_cell(member: Json) -> Cell:
    ramp = member.get("ramp")
    if ramp is None:
        return DASH
    pct = round(float(ramp) * 100)
    return (f"{pct}%", "dim" if pct >= 100 else "yellow")


def since_cell(member: Json, now: float | None) -> Cell:
    since = member.get("since")
    if since is None or now is None:
        return DASH
    return (duration(now - float(since)), "")


def count(value: Any) -> str:
    """An integer in at most 6 characters: 99999, 123k, 12.3M."""
    if not isinstance(value, int) or abs(value) < 100_000:
        return str(value)
    for divisor, suffix in ((10**3, "k"), (10**6, "M"), (10**9, "G")):
        scaled = value / divisor
        if round(abs(scaled)) < 1000:
            return f"{scaled:.1f}{suffix}" if abs(scaled) < 99.95 else f"{scaled:.0f}{suffix}"
    return f"{value / 10**12:.0f}T"


def number(value: Any) -> Cell:
    if value is None:
        return DASH
    return (count(value), "dim" if value == 0 else "")


def member_cells(
    pool: str, member: Json, now: float | None, req_rate: float | None, draining: bool = False
) -> tuple[Cell, ...]:
    """One row of the member table, in MEMBER_COLUMNS order."""
    admin = ("removed (draining)", "dim") if draining else admin_cell(member)
    return (
        (pool, "bold"),
        (str(member.get("name", "?")), "bold"),
        (str(member.get("address", "")), ""),
        health_cell(member),
        admin,
        number(member.get("ratio")),
        number(member.get("priority_group")),
        number(member.get("active_connections")),
        number(member.get("total_connections")),
        rate(req_rate),
        ramp_cell(member),
        since_cell(member, now),
        check_cell(member),
    )


def vs_cells(vs: Json) -> tuple[Cell, ...]:
    """One row of the virtual server table, in VS_COLUMNS order."""
    listen = [str(entry) for entry in vs.get("listen", [])]
    text = ", ".join(listen)
    endpoints = vs.get("endpoints")
    if isinstance(endpoints, int) and endpoints > len(listen):
        text += f" ({endpoints} sockets)"
    pool = str(vs.get("pool") or "-")
    routes = vs.get("routes") or []
    if routes:
        pool += f" +{len(routes)} route{'s' if len(routes) > 1 else ''}"
    features = ["tls" if vs.get("tls") else "plain"]
    if vs.get("persistence"):
        features.append(str(vs["persistence"]))
    state = str(vs.get("state", "?"))
    return (
        (str(vs.get("name", "?")), "bold"),
        (str(vs.get("mode", "?")), ""),
        (text, ""),
        (pool, ""),
        (" / ".join(features), ""),
        (state, VS_STATE_STYLE.get(state, "yellow")),
    )


def seconds(value: Any) -> str:
    """A configured interval: off, 250ms, 10s, 1m30s."""
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        return "?"
    if value <= 0:
        return "off"
    if value < 1:
        return f"{value * 1000:.0f}ms"
    if value < 60 and value != int(value):
        return f"{value:g}s"
    return duration(value)


def quarantines(address: Json, now: float | None) -> list[tuple[str, float]]:
    """The LB pools this SNAT address is quarantined for at `now`, with until when (Unix seconds)."""
    out = []
    for lane in address.get("pools") or []:
        until = lane.get("quarantined_until")
        if isinstance(until, (int, float)) and not isinstance(until, bool) and (now is None or until > now):
            out.append((str(lane.get("pool", "?")), float(until)))
    return out


def snat_state_cell(address: Json, now: float | None) -> Cell:
    """usable, draining, or quarantined for which LB pool until when (and for how long still)."""
    held = quarantines(address, now)
    parts = []
    for pool, until in held:
        left = f" ({duration(until - now)})" if now is not None else ""
        parts.append(f"{pool} until {clock(until)}{left}")
    quarantined = f"quarantined for {', '.join(parts)}" if parts else ""
    if address.get("draining"):
        return ("draining" + (f", {quarantined}" if quarantined else ""), "yellow")
    if quarantined:
        return (quarantined, "bold red")
    streaks = [
        f"{lane.get('pool', '?')}: {lane['streak']} failed in a row"
        for lane in address.get("pools") or []
        if isinstance(lane.get("streak"), int) and lane["streak"] > 0
    ]
    if streaks:
        return (f"usable ({', '.join(streaks)})", "yellow")
    return ("usable", "green")


def snat_pools_cell(snat: Json, address: Json) -> Cell:
    """The LB pools drawing from the SNAT pool, each with its open connections through this address."""
    lanes = {str(lane.get("pool", "?")): lane for lane in address.get("pools") or []}
    names = [str(name) for name in snat.get("used_by") or []]
    names += [name for name in lanes if name not in names]  # a lane of a pool that no longer uses it
    parts = []
    for name in names:
        active = (lanes.get(name) or {}).get("active_connections")
        parts.append(f"{name} ({count(active)})" if isinstance(active, int) and active > 0 else name)
    return (", ".join(parts), "") if parts else ("unused", "dim")


def _warn_if_positive(value: Any) -> Cell:
    text, style = number(value)
    return (text, "yellow") if isinstance(value, int) and value > 0 else (text, style)


def snat_cells(snat: Json, address: Json, now: float | None) -> tuple[Cell, ...]:
    """One row of the SNAT table, in SNAT_COLUMNS order."""
    return (
        (str(snat.get("name", "?")), "bold"),
        (str(address.get("address", "?")), "dim" if address.get("draining") else ""),
        snat_state_cell(address, now),
        number(address.get("active_connections")),
        number(address.get("total_connections")),
        _warn_if_positive(address.get("failures")),
        _warn_if_positive(address.get("exhausted")),
        snat_pools_cell(snat, address),
    )


def snat_summary(snat: Json, now: float | None = None) -> str:
    """One line per SNAT pool: addresses, min_interval, quarantine rule, users, refusals."""
    addresses = snat.get("addresses") or []
    draining = sum(1 for a in addresses if a.get("draining"))
    held = sum(1 for a in addresses if quarantines(a, now))
    current = len(addresses) - draining
    text = f"{snat.get('name', '?')}: {current} address{'' if current == 1 else 'es'}"
    if draining:
        text += f" (+{draining} draining)"
    if held:
        text += f", {held} quarantined"
    text += f" · min_interval {seconds(snat.get('min_interval'))}"
    rule = snat.get("quarantine") or {}
    if rule:
        text += f" · quarantine {rule.get('failures', '?')} failures, {seconds(rule.get('for'))}"
    used_by = [str(name) for name in snat.get("used_by") or []]
    text += f" · used by {', '.join(used_by) if used_by else 'no pool'}"
    refused = {str(pool): n for pool, n in (snat.get("refused") or {}).items() if isinstance(n, int) and n > 0}
    text += " · refused " + (", ".join(f"{pool} {count(n)}" for pool, n in refused.items()) or "0")
    if snat.get("mutable") is False:
        text += " · immutable"
    return text


def ha_text(ha: Json) -> str:
    state = str(ha.get("state", "?"))
    if state == "standalone":
        return "standalone"
    parts = []
    if ha.get("priority") is not None:
        parts.append(f"priority {ha['priority']}")
    peers = ha.get("peers") or []
    parts.append(f"{len(peers)} peer{'' if len(peers) == 1 else 's'}")
    return f"HA {state} ({', '.join(parts)})"


def pool_summary(pool: Json) -> str:
    members = pool.get("members") or []
    available = pool.get("available_members")
    if available is None:
        available = sum(1 for m in members if m.get("available"))
    text = f"{pool.get('name', '?')} {pool.get('method', '?')} {available}/{len(members)} available"
    if pool.get("mutable") is False:
        text += " (immutable)"
    draining = pool.get("draining") or []
    if draining:
        text += f", {len(draining)} draining"
    return text


def clock(at: Any) -> str:
    try:
        return datetime.datetime.fromtimestamp(float(at)).strftime("%H:%M:%S")
    except (TypeError, ValueError, OverflowError, OSError):
        return "--:--:--"


def event_key(event: Json) -> tuple[str, ...]:
    return tuple(str(event.get(k)) for k in ("at", "kind", "source", "message"))


def new_events(seen_last: tuple[str, ...] | None, events: Iterable[Json]) -> list[Json]:
    """The events after the last one already shown (all of them when it has rolled out of the list)."""
    events = list(events)
    if seen_last is not None:
        for i in range(len(events) - 1, -1, -1):
            if event_key(events[i]) == seen_last:
                return events[i + 1 :]
    return events


EVENT_STYLE = {"health": "magenta", "admin": "yellow", "ha": "cyan", "reload": "blue"}


def event_line(event: Json) -> tuple[str, list[Cell]]:
    """An event as (plain text, styled parts)."""
    kind = str(event.get("kind", "?"))
    source = str(event.get("source", ""))
    message = str(event.get("message", ""))
    parts: list[Cell] = [
        (clock(event.get("at")), "dim"),
        (" ", ""),
        (f"{kind:<7}", EVENT_STYLE.get(kind, "")),
        (" ", ""),
        (source, "bold"),
        (" " if source else "", ""),
        (message, ""),
    ]
    return "".join(text for text, _ in parts), parts
