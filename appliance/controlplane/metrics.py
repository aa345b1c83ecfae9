"""Prometheus metrics (SPEC §4), in the shape of HAProxy's built-in exporter.

One custom collector renders, at each scrape, what a callable returns: a
``MetricsInputs`` (the current snapshot, the virtual servers' counters and a
few process facts). Nothing is kept between scrapes and nothing runs in the
background; the registry is private (``CollectorRegistry(auto_describe=False)``,
never the global one), and the exposition format is negotiated from the
scraper's Accept header by prometheus_client's ``choose_encoder`` (OpenMetrics
when asked for, the classic text format otherwise).

Names follow prometheus.io's conventions and HAProxy's exporter
(``haproxy_server_*`` -> ``appliance_server_*``, ``haproxy_backend_*`` ->
``appliance_backend_*``, ``haproxy_frontend_*`` -> ``appliance_frontend_*``):
base units (seconds, bytes, ratios 0..1), counters end in ``_total``, states
are gauges with a ``state`` label that is 1 on the current state and 0 on the
others, responses are counted by ``code="1xx".."5xx"|"other"``. Label values
are names from the config, so cardinality is bounded by it.

Per member, labels ``pool``, ``member``:
  appliance_server_current_sessions        in-flight requests (http) or open connections (tcp)
  appliance_server_sessions_total          requests (http) or connections (tcp) sent to it
  appliance_server_requests_total          http requests it answered (a response head reached the client)
  appliance_server_http_responses_total    those, by ``code``
  appliance_server_bytes_in_total          bytes sent to it: requests (client -> server, as HAProxy)
  appliance_server_bytes_out_total         bytes received from it: responses (as HAProxy)
  appliance_server_connection_errors_total connect failures, broken and timed-out responses
  appliance_server_status                  ``state`` = up | down | unknown | unchecked
  appliance_server_admin_state             ``state`` = enabled | disabled | forced_offline
  appliance_server_weight                  its ratio
  appliance_server_current_throttle        slow-ramp factor, 0 < x <= 1 (1: full share)
  appliance_server_check_duration_seconds  latency of the last health check (absent before the first)
  appliance_server_check_last_change_seconds  seconds since its last health or admin change
Per pool, label ``pool``:
  appliance_backend_active_servers         members enabled and healthy
  appliance_backend_current_sessions       sum of its members' current sessions
  (no backend sessions_total: a sum over the current members would fall when one is removed,
  which rate() reads as a counter reset; sum the members' series instead)
Per virtual server, label ``virtual_server``:
  appliance_frontend_current_sessions      open client connections
  appliance_frontend_sessions_total        client connections accepted
  appliance_frontend_requests_total        http requests, those refused by the appliance too (mode http only)
  appliance_frontend_http_responses_total  answers by ``code``, the appliance's own 4xx/5xx too (mode http only)
  appliance_frontend_bytes_in_total        bytes from clients
  appliance_frontend_bytes_out_total       bytes to clients
  appliance_frontend_listeners             listening sockets
The process:
  appliance_build_info                     1, labels ``version``, ``node``
  appliance_ha_state                       ``state`` = standalone | init | backup | master | fault
  appliance_ha_effective_priority          priority after tracked pools (HA only, as the three below)
  appliance_ha_peer_state                  ``peer``, ``state``: 1 on the peer's state as last heard
  appliance_ha_peer_last_advert_seconds    ``peer``: seconds since its last accepted advert
  appliance_ha_rejected_total              ``kind``: heartbeat datagrams dropped (mac, replay, stale, ...)
  appliance_snat_addresses_in_use          SNAT source addresses with open connections
Per SNAT source address, labels ``snat_pool``, ``address`` (``pool`` too where per LB pool):
  appliance_snat_current_connections       open upstream connections from it
  appliance_snat_connections_total         upstream connections opened from it
  appliance_snat_connect_failures_total    connects from it that failed
  appliance_snat_exhausted_total           times it had no port left toward a member
  appliance_snat_quarantined               1 while quarantined for that LB pool
  appliance_snat_refused_total             per SNAT pool and LB pool: connections with no usable source
  appliance_uptime_seconds
  appliance_config_last_reload_success     1 or 0 (absent until the inputs carry a reload outcome)
  appliance_config_last_reload_timestamp_seconds  Unix time of that reload

Bytes in mode http are message bodies (heads are not counted; after a 101,
the tunnel's bytes toward the client are); in mode tcp, every relayed byte.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from prometheus_client.exposition import choose_encoder
from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily, InfoMetricFamily, Metric
from prometheus_client.registry import CollectorRegistry

from appliance import __version__
from appliance.core.health import Health
from appliance.core.model import AdminState, Mode
from appliance.core.snapshot import Snapshot
from appliance.core.snat import SnatSelector
from appliance.core.stats import RESPONSE_CLASSES, ServerStats

PREFIX = "appliance_"
HA_STATES = ("standalone", "init", "backup", "master", "fault")  # SPEC's HA roles; standalone: no `ha` section
_HEALTH_STATES = tuple(h.value for h in Health)
_ADMIN_STATES = tuple(a.value for a in AdminState)
_CODES = [(RESPONSE_CLASSES[i], i) for i in (1, 2, 3, 4, 5, 0)]  # HAProxy's order: 1xx..5xx, other
_MEMBER = ["pool", "member"]
_VS = ["virtual_server"]


@dataclass(frozen=True, slots=True, kw_only=True)
class MetricsInputs:
    """Everything one scrape renders; built afresh by the callable the collector is given.

    Times: `now`, `started` and the snapshot's times are the monotonic clock
    (trio.current_time); `reload_at` is wall-clock Unix seconds.
    """

    snapshot: Snapshot
    servers: ServerStats  # the dispatcher's `server_stats`
    now: float
    started: float  # when the appliance started, same clock as `now`
    node: str | None = None  # None: the config's appliance.name
    version: str = __version__
    ha_state: str = "standalone"  # one of HA_STATES
    listeners: Mapping[str, int] | None = None  # virtual server -> sockets listening; None: one per configured endpoint
    reload_ok: bool | None = None  # the outcome of the last load or reload; None: omit both reload series
    reload_at: float | None = None  # when it happened, Unix seconds
    snat: Mapping[str, SnatSelector] = field(default_factory=dict)  # SNAT pool -> its selector
    ha: Mapping[str, Any] | None = None  # the heartbeat's view (status.ha) when HA runs
    now_wall: float | None = None  # Unix seconds now, for the time since a peer's last advert


class ApplianceCollector:
    """A prometheus_client collector over ``inputs()``, called once per scrape."""

    def __init__(self, inputs: Callable[[], MetricsInputs]) -> None:
        self._inputs = inputs

    def collect(self) -> Iterator[Metric]:
        inputs = self._inputs()
        yield from _members(inputs)
        yield from _pools(inputs.snapshot)
        yield from _virtual_servers(inputs)
        yield from _snat(inputs)
        yield from _process(inputs)


class Metrics:
    """The appliance's metrics registry and its exposition.

    Args:
        inputs: returns the current ``MetricsInputs``; called on every scrape.
    """

    def __init__(self, inputs: Callable[[], MetricsInputs]) -> None:
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(ApplianceCollector(inputs))

    def exposition(self, accept_header: str | None = None) -> tuple[bytes, str]:
        """The body and Content-Type for a scrape that sent `accept_header`."""
        encoder, content_type = choose_encoder(accept_header or "")
        return encoder(self.registry), content_type


def _gauge(name: str, doc: str, labels: list[str] | None = None) -> GaugeMetricFamily:
    return GaugeMetricFamily(PREFIX + name, doc, labels=labels)


def _counter(name: str, doc: str, labels: list[str] | None = None) -> CounterMetricFamily:
    return CounterMetricFamily(PREFIX + name, doc, labels=labels)


def _members(inputs: MetricsInputs) -> Iterator[Metric]:
    now = inputs.now
    current = _gauge("server_current_sessions", "In-flight requests (http) or open connections (tcp) of the member.", _MEMBER)
    sessions = _counter("server_sessions_total", "Requests (http) or connections (tcp) sent to the member.", _MEMBER)
    requests = _counter("server_requests_total", "HTTP requests the member answered (its response head reached the client).", _MEMBER)
    responses = _counter(
        "server_http_responses_total", "HTTP responses of the member that reached the client, by status class.", [*_MEMBER, "code"]
    )
    bytes_in = _counter("server_bytes_in_total", "Bytes sent to the member (request direction, as HAProxy).", _MEMBER)
    bytes_out = _counter("server_bytes_out_total", "Bytes received from the member (response direction, as HAProxy).", _MEMBER)
    errors = _counter(
        "server_connection_errors_total", "Connect failures, broken and timed-out responses of the member.", _MEMBER
    )
    status = _gauge("server_status", "Health of the member: 1 on the current state.", [*_MEMBER, "state"])
    admin = _gauge("server_admin_state", "Admin state of the member: 1 on the current state.", [*_MEMBER, "state"])
    weight = _gauge("server_weight", "Ratio (weight) of the member.", _MEMBER)
    throttle = _gauge("server_current_throttle", "Slow-ramp factor of the member, 0 < x <= 1 (1: full share).", _MEMBER)
    check = _gauge("server_check_duration_seconds", "Latency of the member's last health check.", _MEMBER)
    change = _gauge("server_check_last_change_seconds", "Seconds since the member's last health or admin change.", _MEMBER)
    for pool in inputs.snapshot.pools.values():
        for member in pool.members:
            labels = [pool.name, member.name]
            stats = member.stats
            current.add_metric(labels, stats.active)
            sessions.add_metric(labels, stats.total)
            requests.add_metric(labels, stats.requests)
            for code, index in _CODES:
                responses.add_metric([*labels, code], stats.responses[index])
            bytes_in.add_metric(labels, stats.bytes_out)  # MemberStats counts from the member's side
            bytes_out.add_metric(labels, stats.bytes_in)
            errors.add_metric(labels, stats.failures)
            health, admin_state = member.health.value, member.admin_state.value
            for state in _HEALTH_STATES:
                status.add_metric([*labels, state], 1 if state == health else 0)
            for state in _ADMIN_STATES:
                admin.add_metric([*labels, state], 1 if state == admin_state else 0)
            weight.add_metric(labels, member.ratio)
            throttle.add_metric(labels, member.ramp(now))
            last = member.last_check
            if last is not None:
                check.add_metric(labels, last.latency)
            change.add_metric(labels, max(0.0, now - member.since))
    yield from (current, sessions, requests, responses, bytes_in, bytes_out, errors, status, admin, weight, throttle, check, change)


def _pools(snapshot: Snapshot) -> Iterator[Metric]:
    labels = ["pool"]
    active = _gauge("backend_active_servers", "Members of the pool enabled and healthy.", labels)
    current = _gauge("backend_current_sessions", "Sum of the current sessions of the pool's members.", labels)
    for pool in snapshot.pools.values():
        active.add_metric([pool.name], len(pool.ready))
        current.add_metric([pool.name], sum(m.stats.active for m in pool.members))
    yield from (active, current)


def _virtual_servers(inputs: MetricsInputs) -> Iterator[Metric]:
    current = _gauge("frontend_current_sessions", "Open client connections of the virtual server.", _VS)
    sessions = _counter("frontend_sessions_total", "Client connections the virtual server accepted.", _VS)
    requests = _counter("frontend_requests_total", "HTTP requests, including those the appliance answered itself.", _VS)
    responses = _counter(
        "frontend_http_responses_total", "HTTP responses to clients by status class, the appliance's own too.", [*_VS, "code"]
    )
    bytes_in = _counter("frontend_bytes_in_total", "Bytes received from clients.", _VS)
    bytes_out = _counter("frontend_bytes_out_total", "Bytes sent to clients.", _VS)
    listeners = _gauge("frontend_listeners", "Listening sockets of the virtual server.", _VS)
    bound = inputs.listeners
    for vs in inputs.snapshot.config.virtual_servers.values():
        labels = [vs.name]
        stats = inputs.servers.of(vs.name)
        current.add_metric(labels, stats.active)
        sessions.add_metric(labels, stats.total)
        if vs.mode is Mode.HTTP:
            requests.add_metric(labels, stats.requests)
            for code, index in _CODES:
                responses.add_metric([vs.name, code], stats.responses[index])
        bytes_in.add_metric(labels, stats.bytes_in)
        bytes_out.add_metric(labels, stats.bytes_out)
        listeners.add_metric(labels, len(vs.endpoints) if bound is None else bound.get(vs.name, 0))
    yield from (current, sessions, requests, responses, bytes_in, bytes_out, listeners)


def _snat(inputs: MetricsInputs) -> Iterator[Metric]:
    """Per SNAT source address (labels ``snat_pool``, ``address``), and per LB pool for quarantine and refusals."""
    labels = ["snat_pool", "address"]
    in_use = GaugeMetricFamily(PREFIX + "snat_addresses_in_use", "SNAT source addresses with open connections.")
    active = _gauge("snat_current_connections", "Open upstream connections from the address.", labels)
    total = _counter("snat_connections_total", "Upstream connections opened from the address.", labels)
    failures = _counter("snat_connect_failures_total", "Connects from the address that failed.", labels)
    exhausted = _counter("snat_exhausted_total", "Times the address had no port left toward a member.", labels)
    quarantined = _gauge(
        "snat_quarantined", "Whether the address is quarantined for the LB pool (1) or usable (0).", [*labels, "pool"]
    )
    refused = _counter("snat_refused_total", "Connections refused: no usable source address.", ["snat_pool", "pool"])
    used = 0
    for name, selector in inputs.snat.items():
        for row in selector.stats(inputs.now):
            key = [name, row.address]
            used += row.active > 0
            active.add_metric(key, row.active)
            total.add_metric(key, row.total)
            failures.add_metric(key, row.failures)
            exhausted.add_metric(key, row.exhausted)
            for lane in row.lanes:
                quarantined.add_metric([*key, lane.lb_pool], int(lane.quarantined_until is not None))
        for pool, count in selector.refusals().items():
            refused.add_metric([name, pool], count)
    in_use.add_metric([], used)
    yield from (in_use, active, total, failures, exhausted, quarantined, refused)


def _ha(view: Mapping[str, Any], now_wall: float) -> Iterator[Metric]:
    yield GaugeMetricFamily(PREFIX + "ha_effective_priority", "Priority after tracked pools.", value=view["effective_priority"])
    peer_state = _gauge("ha_peer_state", "A peer's HA state as last heard: 1 on it.", ["peer", "state"])
    silent = _gauge("ha_peer_last_advert_seconds", "Seconds since a peer's last accepted advert.", ["peer"])
    for peer in view["peers"]:
        for state in HA_STATES[1:]:
            peer_state.add_metric([peer["name"], state], 1 if peer["state"] == state else 0)
        silent.add_metric([peer["name"]], max(0.0, now_wall - peer["last_advert"]))
    rejected = _counter("ha_rejected_total", "Heartbeat datagrams dropped, by reason.", ["kind"])
    for kind, count in view["rejected"].items():
        rejected.add_metric([kind], count)
    yield from (peer_state, silent, rejected)


def _process(inputs: MetricsInputs) -> Iterator[Metric]:
    node = inputs.node if inputs.node is not None else inputs.snapshot.config.appliance.name
    info = InfoMetricFamily(PREFIX + "build", "Version of the appliance and name of this node.", labels=["version", "node"])
    info.add_metric([inputs.version, node], {})
    yield info
    ha = _gauge("ha_state", "HA state of this node: 1 on the current state.", ["state"])
    states = HA_STATES if inputs.ha_state in HA_STATES else (*HA_STATES, inputs.ha_state)
    for state in states:
        ha.add_metric([state], 1 if state == inputs.ha_state else 0)
    yield ha
    if inputs.ha is not None:
        yield from _ha(inputs.ha, inputs.now_wall if inputs.now_wall is not None else 0.0)
    yield GaugeMetricFamily(PREFIX + "uptime_seconds", "Seconds since the appliance started.", value=max(0.0, inputs.now - inputs.started))
    if inputs.reload_ok is not None:
        yield GaugeMetricFamily(
            PREFIX + "config_last_reload_success", "Whether the last configuration load or reload succeeded.", value=int(inputs.reload_ok)
        )
        if inputs.reload_at is not None:
            yield GaugeMetricFamily(
                PREFIX + "config_last_reload_timestamp_seconds", "Unix time of the last configuration load or reload.", value=inputs.reload_at
            )
