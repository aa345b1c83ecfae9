"""The tcp suite (``--suite tcp``): the appliance's ``mode tcp`` relay against direct and HAProxy ``mode tcp``.

Two sections, each with the rows ``direct``, ``appliance`` (``mode: tcp``, the
splice relay), ``haproxy`` (``mode tcp``) and ``haproxy-splice`` (``mode tcp`` +
``option splice-auto``):

* **bulk**: one stream, client -> server, through each relay to one sink:
  ``iperf3 -c 127.0.0.1 -p PORT -t D -J`` against ``iperf3 -s`` (both on the
  load CPU), as in research/perf-baseline.md; without iperf3, ``bench.bulk``'s
  sender/sink pair (at most ``--bulk-bytes`` and ``-d`` seconds).
* **small**: the keep-alive HTTP load (wrk -c50 when installed) relayed at L4
  to the three origins, round robin per connection.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

from bench.bulk import BulkResult, parse_iperf3
from bench.run import (
    HOST,
    INSTALL_HINT,
    IPERF3_HINT,
    LOAD_CPU,
    PROXY_CPU,
    REPO,
    START_TIMEOUT,
    CpuMeter,
    Procs,
    ProxySpec,
    Scenario,
    StartError,
    SuiteResult,
    appliance_config,
    appliance_row,
    failed_scenario,
    find_tool,
    free_port,
    haproxy_config,
    haproxy_spec,
    idle_cpu_notes,
    measure,
    progress,
    start_announcing,
    wait_listening,
    with_proxy,
    with_tool,
)
from bench.table import (
    Column,
    cpu_pair,
    fill_ratios,
    fmt_pct,
    fmt_ratio,
    format_table,
    members,
)

RATIO_REFS = {"direct": "direct", "haproxy": "haproxy", "splice": "haproxy-splice"}
BULK_GOAL = 1.0  # issue 3: bulk >= 1.0x HAProxy splice-auto
SMALL_GOAL = 0.6  # issue 3: small TCP messages >= 0.6x HAProxy mode tcp
BUSY_RETRIES = 3  # iperf3 "server is busy": the previous test is still being torn down


def l4_specs(
    args: argparse.Namespace, haproxy: str | None, member_ports: list[int]
) -> list[ProxySpec | Scenario]:
    """The selected relays to start in order (appliance, haproxy, haproxy-splice), or the row saying why not."""
    out: list[ProxySpec | Scenario] = []
    if "appliance" in args.scenarios:
        out.append(appliance_row(args, lambda port: appliance_config(port, member_ports, args.access_log, mode="tcp")))
    for name, splice in (("haproxy", False), ("haproxy-splice", True)):
        if name not in args.scenarios:
            continue
        if haproxy is None:
            out.append(Scenario(name, status="skipped", reason=f"haproxy is not installed ({INSTALL_HINT})"))
        else:
            port = free_port()
            out.append(haproxy_spec(haproxy, name, haproxy_config(port, member_ports, mode="tcp", splice=splice), port))
    return out


# ---------------------------------------------------------------------------
# bulk


def choose_bulk_tool(requested: str, iperf3: str | None) -> str:
    """iperf3 when asked for or installed (auto), else the bench.bulk pair."""
    if requested == "python" or iperf3 is None:
        return "python"
    return "iperf3"


def start_sink(procs: Procs, tool: str, pin: bool, workdir: Path) -> tuple[subprocess.Popen[bytes], int]:
    """The bulk receiver on the load CPU: ``iperf3 -s`` bound to loopback, or ``bench.bulk sink``."""
    workdir.mkdir(parents=True, exist_ok=True)
    if tool == "python":
        return start_announcing(procs, [sys.executable, "-m", "bench.bulk", "sink", "--port", "0"], LOAD_CPU, pin, "bulk sink")
    iperf3 = find_tool("iperf3")
    if iperf3 is None:
        raise StartError(f"iperf3 is not installed ({IPERF3_HINT})")
    port = free_port()
    log = workdir / "iperf3-server.log"
    with open(log, "wb") as logf:
        proc = procs.start([iperf3, "-s", "-B", HOST, "-p", str(port)], LOAD_CPU, pin, cwd=workdir, stdout=logf, stderr=logf)
    try:
        wait_listening(proc, port, START_TIMEOUT, "iperf3 server", log)
    except StartError:
        procs.stop(proc)
        raise
    return proc, port


def iperf3_argv(iperf3: str, port: int, seconds: int, omit: int = 0) -> list[str]:
    argv = [iperf3, "-c", HOST, "-p", str(port), "-t", str(seconds), "-J", "--connect-timeout", "5000"]
    if omit > 0:
        argv += ["-O", str(omit)]  # sent, not counted: the stream's first `omit` seconds
    return argv


def run_bulk_client(
    tool: str, port: int, args: argparse.Namespace, pin: bool, proxy_pid: int | None
) -> tuple[BulkResult, CpuMeter]:
    """One stream to ``port``, the sender on the load CPU; bounded by ``-d`` (and ``--bulk-bytes`` for Python).

    With iperf3 the first ``--bulk-omit`` seconds are sent but neither counted nor CPU-metered.
    """
    prefix = ["taskset", "-c", str(LOAD_CPU)] if pin else []
    if tool == "python":
        argv = [sys.executable, "-m", "bench.bulk", "send", "--port", str(port)]
        argv += ["--bytes", str(args.bulk_bytes), "-d", f"{args.duration:g}"]
        with CpuMeter(proxy_pid) as meter:
            p = subprocess.run([*prefix, *argv], capture_output=True, text=True, cwd=REPO, timeout=args.duration + 60)
        if p.returncode != 0:
            raise RuntimeError(f"bench.bulk send failed ({p.returncode}): {p.stderr.strip()[-300:]}")
        d = json.loads(p.stdout.strip().splitlines()[-1])
        return BulkResult(tool=d["tool"], bytes=d["bytes"], seconds=d["seconds"]), meter
    iperf3 = find_tool("iperf3")
    assert iperf3 is not None
    seconds = max(1, round(args.duration))
    omit = max(0, round(args.bulk_omit))
    for attempt in range(BUSY_RETRIES):
        with subprocess.Popen(
            [*prefix, *iperf3_argv(iperf3, port, seconds, omit)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        ) as proc:
            try:
                try:
                    proc.wait(timeout=omit + 0.2)  # the omitted seconds (+ connection setup): not metered
                except subprocess.TimeoutExpired:
                    pass
                with CpuMeter(proxy_pid) as meter:
                    out, _ = proc.communicate(timeout=seconds + 30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.communicate()
                raise RuntimeError(f"iperf3 did not finish within {omit + seconds + 30} s") from None
        try:
            return parse_iperf3(out), meter
        except RuntimeError as exc:
            if "busy" in str(exc) and attempt + 1 < BUSY_RETRIES:
                time.sleep(1.0)
                continue
            raise
    raise AssertionError("unreachable")


def measure_bulk(name: str, tool: str, port: int, proxy_pid: int | None, args: argparse.Namespace, pin: bool) -> Scenario:
    sc = Scenario(name)
    progress(f"{name}: one {tool} stream to {HOST}:{port}")
    sc.bulk, meter = run_bulk_client(tool, port, args, pin, proxy_pid)
    meter.fill(sc)
    if sc.bulk.bytes == 0:
        sc.status = "failed"
        sc.reason = "no byte reached the sink"
    return sc


def run_bulk(args: argparse.Namespace, procs: Procs, pin: bool, tmp: Path, haproxy: str | None, tool: str) -> list[Scenario]:
    workdir = tmp / "tcp-bulk"
    try:
        sink, sink_port = start_sink(procs, tool, pin, workdir)
    except (StartError, OSError) as exc:
        names = [n for n in ("direct", "appliance", "haproxy", "haproxy-splice") if n in args.scenarios]
        return [Scenario(n, status="failed", reason=f"bulk sink: {exc}") for n in names]
    rows: list[Scenario] = []
    try:
        if "direct" in args.scenarios:
            try:
                rows.append(measure_bulk("direct", tool, sink_port, None, args, pin))
            except Exception as exc:
                rows.append(Scenario("direct", status="failed", reason=f"{type(exc).__name__}: {exc}"))
        for item in l4_specs(args, haproxy, [sink_port]):
            if isinstance(item, Scenario):
                rows.append(item)
                continue
            spec = item

            def work(proc: subprocess.Popen[bytes], spec: ProxySpec = spec) -> Scenario:
                return measure_bulk(spec.name, tool, spec.port, proc.pid, args, pin)

            rows.append(with_proxy(spec, procs, pin, workdir, work, failed_scenario(spec.name)))
    finally:
        procs.stop(sink)
    fill_ratios(rows, RATIO_REFS, lambda sc: sc.bulk.gbps if sc.bulk else None)
    return rows


# ---------------------------------------------------------------------------
# small messages


def run_small(
    args: argparse.Namespace, procs: Procs, pin: bool, tmp: Path, ports: list[int], wrk_script: Path, haproxy: str | None
) -> list[Scenario]:
    workdir = tmp / "tcp-small"
    rows: list[Scenario] = []
    if "direct" in args.scenarios:
        progress(f"direct: {args.tool} load on {HOST}:{ports[0]}")
        try:
            rows.append(measure("direct", ports[0], None, args, pin, wrk_script))
        except Exception as exc:
            rows.append(Scenario("direct", status="failed", reason=f"{type(exc).__name__}: {exc}"))
    for item in l4_specs(args, haproxy, ports):
        if isinstance(item, Scenario):
            rows.append(item)
            continue
        spec = item

        def work(proc: subprocess.Popen[bytes], spec: ProxySpec = spec) -> Scenario:
            progress(f"{spec.name}: {args.tool} load on {HOST}:{spec.port}")
            return measure(spec.name, spec.port, proc.pid, args, pin, wrk_script)

        rows.append(with_proxy(spec, procs, pin, workdir, work, failed_scenario(spec.name)))
    fill_ratios(rows, RATIO_REFS, lambda sc: sc.load.rps if sc.load else None)
    return rows


# ---------------------------------------------------------------------------
# report


def _ratio_cols() -> list[Column]:
    return [
        Column("vs direct", 9, lambda sc: fmt_ratio(sc.ratios.get("direct"))),
        Column("vs haproxy", 10, lambda sc: fmt_ratio(sc.ratios.get("haproxy"))),
        Column("vs splice", 9, lambda sc: fmt_ratio(sc.ratios.get("splice"))),
        Column("proxy CPU", 9, lambda sc: fmt_pct(sc.proxy_cpu_pct)),
        Column("CPU0/CPU1", 9, cpu_pair),
    ]


def bulk_table(rows: list[Scenario]) -> str:
    def retrans(sc: Scenario) -> str:
        return str(sc.bulk.retransmits) if sc.bulk and sc.bulk.retransmits is not None else "-"

    cols = [
        Column("GB/s", 7, lambda sc: f"{sc.bulk.gbps:.3f}" if sc.bulk else "-"),
        Column("GB moved", 8, lambda sc: f"{sc.bulk.bytes / 1e9:.2f}" if sc.bulk else "-"),
        Column("retrans", 7, retrans),
        *_ratio_cols(),
    ]
    return format_table(rows, cols)


def small_table(rows: list[Scenario]) -> str:
    def lat(key: str, header: str) -> Column:
        return Column(header, 7, lambda sc: f"{sc.load.latency_ms.get(key, 0):.2f}" if sc.load else "-")

    cols = [
        Column("req/s", 9, lambda sc: f"{sc.load.rps:,.0f}" if sc.load else "-"),
        lat("p50", "p50"),
        lat("p99", "p99 ms"),
        Column("errors", 6, lambda sc: str(sc.load.total_errors) if sc.load else "-"),
        *_ratio_cols(),
        Column("members", 0, members, left=True),
    ]
    return format_table(rows, cols)


def held_back_notes(rows: list[Scenario], section: str) -> list[str]:
    """A proxy well under a full core while CPU 0 (load + origins) is saturated was held back by the rig."""
    notes = []
    for sc in rows:
        cpu0 = sc.cpu_busy_pct.get(f"cpu{LOAD_CPU}")
        if sc.name == "direct" or sc.status != "ok" or sc.proxy_cpu_pct is None or cpu0 is None:
            continue
        if sc.proxy_cpu_pct < 85 and cpu0 >= 95:
            notes.append(
                f"{section}: {sc.name} ran at {sc.proxy_cpu_pct:.0f}% proxy CPU with CPU {LOAD_CPU} at {cpu0:.0f}%: "
                "the load side was the limit, so its figure is a floor of what it can do"
            )
    return notes


def goal_note(rows: list[Scenario], label: str, goal: float, what: str) -> str | None:
    app = next((sc for sc in rows if sc.name == "appliance" and sc.status == "ok"), None)
    if app is None or label not in app.ratios:
        return None
    r = app.ratios[label]
    verdict = "met" if r >= goal else "NOT met"
    return f"issue 3 goal, {what} >= {goal:.1f}x: appliance {r:.2f}x ({verdict})"


def run_tcp_suite(
    args: argparse.Namespace, procs: Procs, pin: bool, tmp: Path, ports: list[int], wrk_script: Path, haproxy: str | None
) -> SuiteResult:
    args = with_tool(args, args.l4_tool)
    tool = choose_bulk_tool(args.bulk_tool, find_tool("iperf3"))
    seconds = max(1, round(args.duration)) if tool == "iperf3" else args.duration
    progress(f"tcp suite: bulk with {tool} ({seconds:g} s), small messages with {args.tool} -c {args.connections}")
    bulk = run_bulk(args, procs, pin, tmp, haproxy, tool)
    small = run_small(args, procs, pin, tmp, ports, wrk_script, haproxy)

    omit = max(0, round(args.bulk_omit))
    bulk_how = (
        f"iperf3 -t {seconds} -O {omit}, 1 stream" if tool == "iperf3" else f"bench.bulk, 1 stream, <= {args.bulk_bytes:,} bytes / {seconds:g} s"
    )
    notes: list[str] = []
    if tool == "python" and args.bulk_tool == "auto":
        notes.append(f"iperf3 is not installed, bulk measured with bench.bulk's Python sender/sink ({IPERF3_HINT})")
    if args.tool == "python":
        notes.append(f"small messages with the Python load generator, which caps the rate: install wrk ({INSTALL_HINT})")
    if haproxy is None:
        notes.append(f"haproxy skipped: {INSTALL_HINT}")
    for n in (
        goal_note(bulk, "splice", BULK_GOAL, "bulk vs haproxy-splice"),
        goal_note(small, "haproxy", SMALL_GOAL, "small messages vs haproxy mode tcp"),
    ):
        if n:
            notes.append(n)
    notes += held_back_notes(bulk, "bulk") + held_back_notes(small, "small")
    notes += idle_cpu_notes(bulk, pin, "bulk") + idle_cpu_notes(small, pin, "small")
    if pin:
        notes.append(f"pinned: relay on CPU {PROXY_CPU}; sender, sink, origins and load on CPU {LOAD_CPU}")
    return SuiteResult(
        "tcp",
        tables=[
            (f"tcp: bulk, one stream ({bulk_how}); ratios of GB/s", bulk_table(bulk)),
            (f"tcp: small messages (keep-alive HTTP relayed at L4, {args.tool} -c {args.connections}); ratios of req/s", small_table(small)),
        ],
        notes=notes,
        rows={"bulk": bulk, "small": small},
    )
