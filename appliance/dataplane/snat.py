"""Upstream connections from SNAT source addresses: the thin trio shell over ``core.snat``.

For an LB pool with `snat`, every new member connection asks its SNAT pool's
selector for a source address, binds it (``IP_BIND_ADDRESS_NO_PORT``) and
connects. An address out of ports toward that member is skipped for this
connection and the next one is tried; a failed connect counts toward the
address's quarantine in that LB pool and is raised like any connect failure
(the member's retry rules apply); when every address is inside `min_interval`
the connection waits, until the pool's `queue` timeout at most; when none is
usable at all the connection is refused with ``SnatRefused`` (503: no other
member would fare better, and the member is not to blame).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

import trio

from appliance.core import snat
from appliance.core.model import AddressSet, Config, Endpoint, SnatPool
from appliance.dataplane.upstream import MemberTls, SourceExhausted, UpstreamConnection, connect
from appliance.errors import UpstreamConnectError, UpstreamError

LOGGER = logging.getLogger("appliance.snat")


class SnatRefused(UpstreamError):
    """No source address could be used for this connection (all quarantined, exhausted or paced too long)."""

    status_hint = 503


class SnatSources:
    """The selectors of every SNAT pool, and which LB pool uses which."""

    def __init__(self) -> None:
        self.selectors: dict[str, snat.SnatSelector] = {}
        self.of_pool: dict[str, str] = {}  # LB pool -> its SNAT pool

    def configure(self, config: Config) -> None:
        """Applies a (re)loaded config or a runtime change: live rotations keep their state."""
        self.apply(config.snat_pools, config.address_sets, {p.name: p.snat for p in config.pools.values() if p.snat})

    def apply(self, pools: Mapping[str, SnatPool], sets: Mapping[str, AddressSet], of_pool: Mapping[str, str]) -> None:
        selectors: dict[str, snat.SnatSelector] = {}
        for name, spec in pools.items():
            addresses = snat.compose(spec, sets)
            selector = self.selectors.get(name)
            if selector is None:
                selector = snat.SnatSelector(spec, addresses)
                LOGGER.info("SNAT pool %s: %d address(es): %s", name, len(addresses), ", ".join(addresses) or "none")
            elif selector.addresses != addresses or selector.spec != spec:
                selector.update(spec, addresses)
                LOGGER.info("SNAT pool %s now: %d address(es): %s", name, len(addresses), ", ".join(addresses) or "none")
            selectors[name] = selector
        self.selectors = selectors
        self.of_pool = dict(of_pool)

    def for_pool(self, lb_pool: str) -> snat.SnatSelector | None:
        name = self.of_pool.get(lb_pool)
        return self.selectors.get(name) if name is not None else None

    async def connect(
        self,
        lb_pool: str,
        endpoint: Endpoint,
        timeout: float,
        tls: MemberTls | None,
        wait_until: float,
        lane: str | None = None,
    ) -> UpstreamConnection:
        """A new connection to `endpoint`, from a source of `lb_pool`'s SNAT pool when it has one.

        `lane` names the rotation, quarantine and pacing state (default: the LB pool's);
        monitors use one of their own so probes never take traffic's pacing slots.

        Raises:
            SnatRefused: no source address can be used (counted by the selector).
            UpstreamConnectError: the connect itself failed (counted toward the source's quarantine).
        """
        selector = self.for_pool(lb_pool)
        if selector is None:
            return await connect(endpoint, timeout, tls)
        lb_pool = lane or lb_pool
        avoid: set[str] = set()
        while True:
            now = trio.current_time()
            pick = selector.pick(lb_pool, now, avoid)
            if isinstance(pick, snat.Wait):
                if pick.until > wait_until:
                    raise SnatRefused(
                        f"every source address of SNAT pool {selector.spec.name} is inside its"
                        f" min_interval ({selector.spec.min_interval:g}s) beyond the queue timeout"
                    )
                await trio.sleep_until(pick.until)
                continue
            if isinstance(pick, snat.Refused):
                raise SnatRefused(pick.reason)
            source = pick.address
            try:
                conn = await connect(endpoint, timeout, tls, source)
            except SourceExhausted as exc:
                selector.exhausted(lb_pool, source, trio.current_time())
                LOGGER.debug("%s toward %s; trying the next address", exc, endpoint)
                avoid.add(source)
                continue
            except UpstreamConnectError:
                if selector.failed(lb_pool, source, trio.current_time()):
                    spec = selector.spec
                    LOGGER.warning(
                        "SNAT %s: source %s quarantined for pool %s for %gs (%d failed connects in a row)",
                        spec.name, source, lb_pool, spec.quarantine.duration, spec.quarantine.failures,
                    )  # fmt: skip
                raise
            selector.opened(lb_pool, source, trio.current_time())
            conn.on_close = lambda: selector.closed(lb_pool, source)
            return conn
