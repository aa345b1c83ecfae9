"""The Prometheus exposition: a real config and runtime, counters bumped, the output parsed back."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import prometheus_client
from prometheus_client.metrics_core import Metric
from prometheus_client.openmetrics.parser import text_string_to_metric_families as parse_openmetrics
from prometheus_client.parser import text_string_to_metric_families

from appliance import __version__
from appliance.controlplane.metrics import HA_STATES, Metrics, MetricsInputs
from appliance.controlplane.runtime import Runtime
from appliance.core.config import parse_config
from appliance.core.health import CheckResult
from appliance.core.stats import RESPONSE_CLASSES, MemberStats, ServerStats, VirtualServerStats, response_class

CONFIG = """\
appliance: {name: lb-a}
monitors:
  port: {type: tcp, interval: 1s, timeout: 500ms, rise: 2, fall: 2}
pools:
  web:
    monitors: [port]
    slow_ramp: 10s
    members:
      - {address: 127.0.0.1:9001, name: a, ratio: 3}
      - {address: 127.0.0.1:9002, name: b, state: disabled}
  db:
    members:
      - {address: 127.0.0.1:9003, name: d}
virtual_servers:
  web: {listen: [127.0.0.1:8080], pool: web}
  db: {listen: [127.0.0.1:5432, 127.0.0.1:5433], mode: tcp, pool: db}
"""

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def check(runtime: Runtime, member: str, ok: bool, at: float, latency: float = 0.002) -> None:
    target = next(t for t in runtime.monitor_targets() if t.member == member)
    runtime.record_check(target, CheckResult(ok=ok, reason="ok" if ok else "connect refused", latency=latency, at=at))


def stats_of(runtime: Runtime, member: str) -> MemberStats:
    view = runtime.snapshot.pools["web"].member(member)
    assert view is not None
    return view.stats


def samples(text: str, parse: Callable[[str], Iterable[Metric]] = text_string_to_metric_families) -> tuple[Samples, dict[str, str]]:
    """(sample name, labels) -> value, and family name -> type."""
    values: Samples = {}
    types: dict[str, str] = {}
    for family in parse(text):
        types[family.name] = family.type
        for sample in family.samples:
            key = (sample.name, frozenset(sample.labels.items()))
            assert key not in values, f"duplicate series {key}"
            values[key] = sample.value
    return values, types


def value(values: Samples, name: str, **labels: str) -> float:
    return values[(name, frozenset(labels.items()))]


def series(values: Samples, name: str) -> list[dict[str, str]]:
    return [dict(labels) for sample, labels in values if sample == name]


def build() -> tuple[FakeClock, Runtime, ServerStats, Metrics, dict[str, Any]]:
    """A runtime on CONFIG and metrics over it; the dict holds MetricsInputs' optional fields, to change between scrapes."""
    clock = FakeClock()
    runtime = Runtime(parse_config(CONFIG, "t.yaml"), clock)
    servers = ServerStats()
    extra: dict[str, Any] = {"reload_ok": True, "reload_at": 1_700_000_000.5}

    def inputs() -> MetricsInputs:
        return MetricsInputs(snapshot=runtime.snapshot, servers=servers, now=clock.now, started=90.0, **extra)

    return clock, runtime, servers, Metrics(inputs), extra


def test_member_pool_virtual_server_and_process_series() -> None:
    clock, runtime, servers, metrics, _ = build()
    check(runtime, "a", True, 101.0, latency=0.0042)
    a = stats_of(runtime, "a")
    for _ in range(3):
        a.opened()
    a.closed()  # 2 in flight, 3 in all
    for status, size in [(200, 100), (204, 0), (302, 5), (404, 7), (503, 9), (101, 11), (999, 1)]:
        a.answered(status, size)
    a.bytes_out += 40  # request bodies sent to it
    a.failed()
    web, db = servers.of("web"), servers.of("db")
    web.opened()
    web.opened()
    web.closed()
    for status, size in [(200, 10), (200, 10), (503, 0), (400, 0), (0, 0)]:
        web.answered(status, size)
    web.bytes_in += 6
    db.opened()
    db.bytes_in, db.bytes_out = 1000, 2000
    clock.now = 120.0

    body, content_type = metrics.exposition(None)
    assert content_type.startswith("text/plain")
    values, types = samples(body.decode())

    member = {"pool": "web", "member": "a"}
    assert value(values, "appliance_server_current_sessions", **member) == 2
    assert value(values, "appliance_server_sessions_total", **member) == 3
    assert value(values, "appliance_server_requests_total", **member) == 7
    codes = {code: value(values, "appliance_server_http_responses_total", code=code, **member) for code in ("1xx", "2xx", "3xx", "4xx", "5xx", "other")}
    assert codes == {"1xx": 1, "2xx": 2, "3xx": 1, "4xx": 1, "5xx": 1, "other": 1}
    assert value(values, "appliance_server_bytes_in_total", **member) == 40  # request direction, as HAProxy
    assert value(values, "appliance_server_bytes_out_total", **member) == 100 + 5 + 7 + 9 + 11 + 1
    assert value(values, "appliance_server_connection_errors_total", **member) == 1
    assert {s: value(values, "appliance_server_status", state=s, **member) for s in ("up", "down", "unknown", "unchecked")} == {
        "up": 1, "down": 0, "unknown": 0, "unchecked": 0,
    }  # fmt: skip
    assert value(values, "appliance_server_status", pool="web", member="b", state="unknown") == 1
    assert value(values, "appliance_server_status", pool="db", member="d", state="unchecked") == 1
    assert value(values, "appliance_server_admin_state", pool="web", member="b", state="disabled") == 1
    assert value(values, "appliance_server_admin_state", pool="web", member="b", state="enabled") == 0
    assert value(values, "appliance_server_admin_state", state="enabled", **member) == 1
    assert value(values, "appliance_server_weight", **member) == 3
    assert value(values, "appliance_server_current_throttle", **member) == 1.0  # start-up members do not ramp
    assert value(values, "appliance_server_check_duration_seconds", **member) == 0.0042
    assert {"pool": "web", "member": "b"} not in series(values, "appliance_server_check_duration_seconds")  # never checked
    assert value(values, "appliance_server_check_last_change_seconds", **member) == 19.0

    assert value(values, "appliance_backend_active_servers", pool="web") == 1  # b is disabled
    assert value(values, "appliance_backend_active_servers", pool="db") == 1  # unchecked serves
    assert value(values, "appliance_backend_current_sessions", pool="web") == 2
    assert series(values, "appliance_backend_sessions_total") == []  # would fall when a member goes: not a counter

    assert value(values, "appliance_frontend_current_sessions", virtual_server="web") == 1
    assert value(values, "appliance_frontend_sessions_total", virtual_server="web") == 2
    assert value(values, "appliance_frontend_requests_total", virtual_server="web") == 5
    assert value(values, "appliance_frontend_http_responses_total", virtual_server="web", code="2xx") == 2
    assert value(values, "appliance_frontend_http_responses_total", virtual_server="web", code="4xx") == 1
    assert value(values, "appliance_frontend_http_responses_total", virtual_server="web", code="5xx") == 1
    assert value(values, "appliance_frontend_bytes_in_total", virtual_server="web") == 6
    assert value(values, "appliance_frontend_bytes_out_total", virtual_server="web") == 20
    assert value(values, "appliance_frontend_bytes_in_total", virtual_server="db") == 1000
    assert value(values, "appliance_frontend_bytes_out_total", virtual_server="db") == 2000
    assert value(values, "appliance_frontend_current_sessions", virtual_server="db") == 1
    assert series(values, "appliance_frontend_requests_total") == [{"virtual_server": "web"}]  # http series: mode http only
    assert value(values, "appliance_frontend_listeners", virtual_server="db") == 2  # no mapping given: as configured

    assert value(values, "appliance_build_info", version=__version__, node="lb-a") == 1
    assert {s: value(values, "appliance_ha_state", state=s) for s in HA_STATES} == {
        "standalone": 1, "init": 0, "backup": 0, "master": 0, "fault": 0,
    }  # fmt: skip
    assert value(values, "appliance_snat_addresses_in_use") == 0
    assert value(values, "appliance_uptime_seconds") == 30.0
    assert value(values, "appliance_config_last_reload_success") == 1
    assert value(values, "appliance_config_last_reload_timestamp_seconds") == 1_700_000_000.5

    assert types["appliance_server_sessions"] == "counter"  # the parser names a counter's family without _total
    assert types["appliance_server_status"] == types["appliance_frontend_listeners"] == "gauge"
    assert all(name.startswith("appliance_") for name, _ in values)
    member_labels = {frozenset(labels) for labels in series(values, "appliance_server_weight")}
    assert member_labels == {frozenset({"pool", "member"})}  # bounded: names from the config only


def test_every_scrape_reads_the_current_state_and_inputs() -> None:
    clock, runtime, servers, metrics, extra = build()
    extra.update(listeners={"web": 1}, ha_state="master", node="lb-b", reload_ok=False)
    check(runtime, "a", True, 101.0)
    first, _ = samples(metrics.exposition("text/plain")[0].decode())
    assert value(first, "appliance_server_sessions_total", pool="web", member="a") == 0
    stats_of(runtime, "a").opened()
    servers.of("web").answered(200, 1)
    check(runtime, "a", False, 102.0)
    check(runtime, "a", False, 103.0)  # fall 2: down
    check(runtime, "a", True, 104.0)
    check(runtime, "a", True, 105.0)  # rise 2: up again, and ramping (slow_ramp 10s)
    clock.now = 110.0
    values, _ = samples(metrics.exposition(None)[0].decode())
    assert value(values, "appliance_server_sessions_total", pool="web", member="a") == 1
    assert value(values, "appliance_frontend_requests_total", virtual_server="web") == 1
    assert value(values, "appliance_server_current_throttle", pool="web", member="a") == 0.5
    assert value(values, "appliance_server_check_last_change_seconds", pool="web", member="a") == 5.0
    assert value(values, "appliance_frontend_listeners", virtual_server="web") == 1
    assert value(values, "appliance_frontend_listeners", virtual_server="db") == 0  # not in the mapping: none bound
    assert value(values, "appliance_ha_state", state="master") == 1
    assert value(values, "appliance_ha_state", state="standalone") == 0
    assert value(values, "appliance_build_info", version=__version__, node="lb-b") == 1
    assert value(values, "appliance_config_last_reload_success") == 0


def test_reload_series_are_absent_until_the_inputs_carry_them() -> None:
    _, _, _, metrics, extra = build()
    extra.clear()
    values, _ = samples(metrics.exposition(None)[0].decode())
    names = {name for name, _ in values}
    assert "appliance_uptime_seconds" in names
    assert not {"appliance_config_last_reload_success", "appliance_config_last_reload_timestamp_seconds"} & names


def test_openmetrics_is_negotiated_by_the_accept_header() -> None:
    _, _, servers, metrics, _ = build()
    servers.of("web").answered(200, 3)
    accept = "application/openmetrics-text; version=1.0.0; charset=utf-8,text/plain;version=0.0.4;q=0.5,*/*;q=0.1"
    body, content_type = metrics.exposition(accept)
    assert content_type.startswith("application/openmetrics-text")
    assert body.endswith(b"# EOF\n")
    values, types = samples(body.decode(), parse_openmetrics)
    assert value(values, "appliance_frontend_http_responses_total", virtual_server="web", code="2xx") == 1
    assert types["appliance_frontend_http_responses"] == "counter"
    assert types["appliance_build"] == "info"
    assert value(values, "appliance_build_info", version=__version__, node="lb-a") == 1
    plain, plain_type = metrics.exposition("text/plain;version=0.0.4")
    assert plain_type.startswith("text/plain") and not plain.endswith(b"# EOF\n")


def test_the_registry_is_private() -> None:
    _, _, _, metrics, _ = build()
    assert metrics.registry is not prometheus_client.REGISTRY
    assert metrics.registry.get_sample_value("appliance_uptime_seconds") == 10.0
    assert prometheus_client.REGISTRY.get_sample_value("appliance_uptime_seconds") is None


def test_status_classes_at_their_edges() -> None:
    edges = {99: "other", 100: "1xx", 199: "1xx", 200: "2xx", 399: "3xx", 404: "4xx", 500: "5xx", 599: "5xx", 600: "other"}
    assert {status: RESPONSE_CLASSES[response_class(status)] for status in edges} == edges
    member, vs = MemberStats(), VirtualServerStats()
    for status in edges:
        member.answered(status, 1)
        vs.answered(status, 1)
    expected = [sum(1 for s in edges if response_class(s) == index) for index in range(len(RESPONSE_CLASSES))]
    assert member.responses == vs.responses == expected == [2, 2, 1, 1, 1, 2]
    vs.answered(0, 0)  # a request no response reached the client for
    assert (vs.requests, sum(vs.responses)) == (len(edges) + 1, len(edges))
