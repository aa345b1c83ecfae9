"""The admin API's operations over one running appliance (the ``Operations`` protocol).

A change is applied to the runtime (a new snapshot), then saved to the state
file before the API answers, so a 200 means "running and kept"; a state file
that cannot be written is a 500 that says the change runs but is not kept.
"""

from __future__ import annotations

import ipaddress
import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import trio

from appliance.controlplane.operations import Conflict, Invalid, Json, NotFound, NotKept
from appliance.controlplane.runtime import Runtime
from appliance.controlplane.views import member_json, pool_json, status_json
from appliance.core.config import parse_member
from appliance.core.model import AdminState, Pool
from appliance.core.snat import SnatSelector
from appliance.errors import ConfigError

LOGGER = logging.getLogger("appliance.admin")
_KIND = {"snat_pools": "SNAT pool", "address_sets": "address set"}


def _ip(value: object) -> str:
    """An IP address literal in its normal spelling (the API's path or body)."""
    try:
        return str(ipaddress.ip_address(str(value).strip("[]")))
    except ValueError:
        raise Invalid(f"expected an IP address such as 127.0.0.34 or ::1, got {value!r}") from None

SOURCE = "api"
_STATES = ", ".join(state.value for state in AdminState)


class ApplianceOperations:
    """Implements ``operations.Operations`` for the supervisor's runtime."""

    def __init__(
        self,
        runtime: Runtime,
        *,
        reload: Callable[[], Awaitable[list[str]]],
        save: Callable[[], Awaitable[str | None]],
        changed: Callable[[], None],
        listening: Callable[[str], bool],
        metrics: Callable[[str], tuple[bytes, str]],
        started: float,
        snat: Callable[[], Mapping[str, SnatSelector]] = dict,
        ha: Callable[[], Json | None] = lambda: None,
    ) -> None:
        self.runtime = runtime
        self._reload = reload
        self._save = save
        self._changed = changed  # after every change: monitors, SNAT and the HA peer follow
        self._listening = listening
        self._metrics = metrics
        self._snat = snat
        self._ha = ha
        self._started = started  # the appliance's start (trio clock): uptime

    # ------------------------------------------------------------ reads

    def status(self) -> Json:
        runtime = self.runtime
        return status_json(
            runtime.snapshot,
            now=trio.current_time(),
            wall=runtime.wall_time,
            started=self._started,
            listening=self._listening,
            draining=runtime.draining,
            snat=self._snat(),
            ha_view=self._ha(),
        )

    def pool(self, pool: str) -> Json:
        view = self.runtime.snapshot.pools.get(pool)
        if view is None:
            raise NotFound(f"no pool '{pool}'")
        return pool_json(view, trio.current_time(), self.runtime.wall_time, self.runtime.draining(pool))

    def events(self) -> list[Json]:
        return [
            {"at": round(event.at, 3), "kind": event.kind, "source": event.source, "message": event.message}
            for event in self.runtime.events
        ]

    def metrics(self, accept: str) -> tuple[bytes, str]:
        return self._metrics(accept)

    # ------------------------------------------------------------ changes

    async def set_member_state(self, pool: str, member: str, body: Mapping[str, Any]) -> Json:
        self._mutable(pool)
        if set(body) != {"state"}:
            extra = sorted(set(body) - {"state"})
            raise Invalid(f"unknown field(s) {', '.join(extra)}; the body is {{\"state\": ...}}" if extra else "missing field 'state'")
        try:
            state = AdminState(body["state"])
        except (ValueError, TypeError):
            raise Invalid(f"state must be one of {_STATES}, got {body['state']!r}") from None
        try:
            view = self.runtime.set_admin_state(pool, member, state, SOURCE)
        except KeyError:
            raise NotFound(f"pool {pool} has no member '{member}'") from None
        self._changed()
        await self._keep()
        return member_json(view, trio.current_time(), self.runtime.wall_time)

    async def add_member(self, pool: str, body: Mapping[str, Any]) -> Json:
        self._mutable(pool)
        try:
            member = parse_member(dict(body), "body")
        except ConfigError as exc:
            raise Invalid("; ".join(f"{issue.path or 'body'}: {issue.message}" for issue in exc.issues)) from None
        try:
            view = self.runtime.add_member(pool, member, SOURCE)
        except ValueError as exc:
            raise Conflict(str(exc)) from None
        self._changed()
        await self._keep()
        return member_json(view, trio.current_time(), self.runtime.wall_time)

    async def remove_member(self, pool: str, member: str) -> Json:
        self._mutable(pool)
        try:
            view = self.runtime.remove_member(pool, member, SOURCE)
        except KeyError:
            raise NotFound(f"pool {pool} has no member '{member}'") from None
        self._changed()
        await self._keep()
        return member_json(view, trio.current_time(), self.runtime.wall_time)

    async def add_address(self, kind: str, name: str, body: Mapping[str, Any]) -> Json:
        self._snat_mutable(kind, name)
        if set(body) != {"address"}:
            raise Invalid('the body is {"address": "IP"}')
        address = _ip(body["address"])
        try:
            addresses = self.runtime.add_address(kind, name, address, SOURCE)
        except KeyError:
            raise NotFound(f"no {_KIND[kind]} '{name}'") from None
        except ValueError as exc:
            raise Conflict(str(exc)) from None
        self._changed()
        await self._keep()
        return {"kind": kind, "name": name, "address": address, "addresses": list(addresses)}

    async def remove_address(self, kind: str, name: str, address: str) -> Json:
        self._snat_mutable(kind, name)
        address = _ip(address)
        try:
            addresses = self.runtime.remove_address(kind, name, address, SOURCE)
        except KeyError:
            raise NotFound(f"{_KIND[kind]} '{name}' has no address {address}") from None
        self._changed()
        await self._keep()
        return {"kind": kind, "name": name, "address": address, "addresses": list(addresses)}

    async def reload(self) -> list[str]:
        errors = await self._reload()
        if not errors:
            self._changed()
            await self._keep()  # the reload may have superseded runtime changes
        return errors

    # ------------------------------------------------------------ internals

    def _snat_mutable(self, kind: str, name: str) -> None:
        """SNAT pools can be `mutable: false`; an address set is as mutable as every SNAT pool drawing from it."""
        config = self.runtime.config
        table = config.snat_pools if kind == "snat_pools" else config.address_sets
        if name not in table:
            raise NotFound(f"no {_KIND[kind]} '{name}'")
        users = [config.snat_pools[name]] if kind == "snat_pools" else [
            p for p in config.snat_pools.values() if any(d.source == name for d in p.draw)
        ]  # fmt: skip
        frozen = [p.name for p in users if not p.mutable]
        if frozen:
            raise Conflict(f"SNAT pool {', '.join(frozen)} is not mutable (mutable: false in the config)")

    def _mutable(self, pool: str) -> Pool:
        config = self.runtime.config.pools.get(pool)
        if config is None:
            raise NotFound(f"no pool '{pool}'")
        if not config.mutable:
            raise Conflict(f"pool {pool} is not mutable (mutable: false in the config)")
        return config

    async def _keep(self) -> None:
        """Saves the state file; the change stays running either way, but a 200 means it was kept."""
        problem = await self._save()
        if problem is not None:
            raise NotKept(f"the change is running but will not survive a restart: {problem}")
