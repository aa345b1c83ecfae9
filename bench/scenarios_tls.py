"""The tls suite (``--suite tls``): the appliance terminating TLS against HAProxy, the same certificate for both.

One certificate per run (``--cert rsa``: RSA-2048, ``--cert ec``: ECDSA P-256),
self-signed for ``localhost`` and ``127.0.0.1``, made with ``openssl req`` (or
trustme when openssl is absent) in the run's temporary directory. Rows:
``appliance`` (``mode: http`` with ``tls.certificates``) and ``haproxy``
(``mode http``, ``bind ... ssl crt FILE alpn http/1.1``), both round robin over
the three origins. While each proxy runs:

* **keep-alive**: ``wrk -t1 -c50 --latency https://...`` (after a short wrk warm-up);
* **handshakes**: a full TLS handshake per request:
  ``ab -q -r -t D -n 100000000 -c 20 https://...`` (no ``-k``: HTTP/1.0, a new
  connection each time, and ab does not resume sessions), else wrk with
  ``Connection: close``; then **one connection at a time** (``ab -c 1``, at most
  ``SEQ_SECONDS`` s / ``SEQ_REQUESTS`` requests): its per-connection latency is
  free of queueing, so a fixed stall (the ~40 ms delayed-ACK stall of the
  baseline prototype) shows there directly.
"""

from __future__ import annotations

import argparse
import re
import socket
import ssl
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from bench.load import LoadResult
from bench.run import (
    AB_HINT,
    HOST,
    INSTALL_HINT,
    LOAD_CPU,
    WRK_HINT,
    CpuMeter,
    Procs,
    ProxySpec,
    Scenario,
    SuiteResult,
    appliance_config,
    appliance_row,
    find_tool,
    free_port,
    haproxy_config,
    haproxy_spec,
    idle_cpu_notes,
    progress,
    run_wrk_load,
    with_proxy,
    wrk_installed,
)
from bench.scenarios_tcp import held_back_notes
from bench.table import (
    Column,
    cpu_pair,
    fill_ratios,
    fmt_pct,
    fmt_ratio,
    format_table,
    members,
)

AB_MAX_REQUESTS = 100_000_000  # as in the baseline: -t bounds the run, not -n
SEQ_SECONDS = 3  # one-connection-at-a-time probe: at most this long...
SEQ_REQUESTS = 300  # ...or this many connections
STALL_MS = 20.0  # a per-connection mean at or above this, one at a time, is a stall (the baseline's was ~44 ms)
HANDSHAKE_GOAL = 0.5  # issue 3: full handshakes >= 0.5x HAProxy


# ---------------------------------------------------------------------------
# certificate


@dataclass
class CertFiles:
    cert: Path  # PEM certificate (the appliance's `cert`)
    key: Path  # PEM private key (the appliance's `key`)
    pem: Path  # both in one file (HAProxy's `crt`)
    kind: str  # rsa | ec
    made_by: str  # openssl | trustme

    @property
    def label(self) -> str:
        return "RSA-2048" if self.kind == "rsa" else "ECDSA P-256"


def openssl_req_argv(openssl: str, kind: str, cert: Path, key: Path) -> list[str]:
    if kind == "rsa":
        newkey = ["-newkey", "rsa:2048"]
    elif kind == "ec":
        newkey = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1"]
    else:
        raise ValueError(f"certificate kind {kind!r}: rsa or ec")
    return [
        openssl, "req", "-x509", *newkey, "-nodes", "-sha256", "-days", "2",
        "-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1",
        "-keyout", str(key), "-out", str(cert),
    ]  # fmt: skip


def make_certificate(directory: Path, kind: str, openssl: str | None = None) -> CertFiles:
    """A self-signed certificate and unencrypted key in ``directory`` (openssl when given, else trustme)."""
    directory.mkdir(parents=True, exist_ok=True)
    cert, key, pem = directory / "cert.pem", directory / "key.pem", directory / "haproxy.pem"
    if openssl is not None:
        p = subprocess.run(openssl_req_argv(openssl, kind, cert, key), capture_output=True, text=True, timeout=60)
        if p.returncode != 0:
            raise RuntimeError(f"openssl req failed ({p.returncode}): {p.stderr.strip()[-300:]}")
        made_by = "openssl"
    else:
        import trustme

        key_type = trustme.KeyType.RSA if kind == "rsa" else trustme.KeyType.ECDSA
        ca = trustme.CA(key_type=key_type)
        leaf = ca.issue_cert("localhost", "127.0.0.1", key_type=key_type)
        leaf.cert_chain_pems[0].write_to_path(str(cert))
        leaf.private_key_pem.write_to_path(str(key))
        made_by = "trustme"
    key.chmod(0o600)
    pem.write_text(cert.read_text() + key.read_text())
    pem.chmod(0o600)
    return CertFiles(cert, key, pem, kind, made_by)


def tls_probe(port: int, timeout: float = 5.0) -> str:
    """One HTTPS request: checks the proxy answers 200 over TLS; returns "VERSION CIPHER"."""
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    with socket.create_connection((HOST, port), timeout=timeout) as raw:
        with ctx.wrap_socket(raw, server_hostname="localhost") as s:
            s.sendall(b"GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
            head = s.recv(4096)
            version, cipher = s.version(), s.cipher()
    if not head.startswith((b"HTTP/1.1 200", b"HTTP/1.0 200")):
        raise RuntimeError(f"HTTPS probe: unexpected answer {head[:60]!r}")
    return f"{version} {cipher[0] if cipher else '?'}"


# ---------------------------------------------------------------------------
# ab


def ab_argv(ab: str, port: int, connections: int, seconds: int, max_requests: int = AB_MAX_REQUESTS) -> list[str]:
    # -t before -n: -t alone would cap the run at 50,000 requests. -r: a receive error is counted, not fatal.
    return [ab, "-q", "-r", "-t", str(seconds), "-n", str(max_requests), "-c", str(connections), f"https://{HOST}:{port}/"]


def _num(pattern: str, text: str, default: float | None = None) -> float:
    m = re.search(pattern, text, re.M)
    if m is None:
        if default is None:
            raise ValueError(f"ab output without {pattern!r}:\n" + text[-500:])
        return default
    return float(m.group(1))


def parse_ab(out: str, url: str, connections: int, duration: float) -> tuple[LoadResult, str]:
    """``ab`` output -> (a LoadResult where a request is a connection, the "SSL/TLS Protocol" line)."""
    complete = int(_num(r"^Complete requests:\s+(\d+)", out))
    elapsed = _num(r"^Time taken for tests:\s+([\d.]+) seconds", out)
    non2xx = int(_num(r"^Non-2xx responses:\s+(\d+)", out, 0))
    fails = {"connect": 0, "receive": 0, "length": 0, "exceptions": 0}
    m = re.search(r"\(Connect: (\d+), Receive: (\d+), Length: (\d+), Exceptions: (\d+)\)", out)
    if m:
        fails = dict(zip(fails, (int(v) for v in m.groups()), strict=True))
    lat: dict[str, float] = {}
    for pct, value in re.findall(r"^\s+(50|90|99|100)%\s+(\d+)", out, re.M):
        lat["max" if pct == "100" else f"p{pct}"] = float(value)
    mean = re.search(r"^Time per request:\s+([\d.]+) \[ms\] \(mean\)\s*$", out, re.M)
    if mean:
        lat["mean"] = float(mean.group(1))
    ok = max(0, complete - non2xx - fails["length"])
    tls = re.search(r"^SSL/TLS Protocol:\s+(\S+)", out, re.M)
    result = LoadResult(
        url=url,
        connections=connections,
        duration=duration,
        max_requests=0,
        elapsed=elapsed,
        requests=complete,
        ok=ok,
        rps=ok / elapsed if elapsed else 0.0,
        latency_ms=lat,
        errors={
            "connect": fails["connect"],
            "read": fails["receive"] + fails["exceptions"],
            "length": fails["length"],
            "status": non2xx,
        },
        tool="ab",
    )
    return result, tls.group(1) if tls else ""


def run_ab(port: int, connections: int, seconds: int, pin: bool, max_requests: int = AB_MAX_REQUESTS) -> tuple[LoadResult, str]:
    ab = find_tool("ab")
    assert ab is not None
    argv = ab_argv(ab, port, connections, seconds, max_requests)
    if pin:
        argv = ["taskset", "-c", str(LOAD_CPU), *argv]
    p = subprocess.run(argv, capture_output=True, text=True, timeout=seconds + 40)
    if p.returncode != 0:
        raise RuntimeError(f"ab failed ({p.returncode}): {(p.stderr or p.stdout).strip()[-300:]}")
    return parse_ab(p.stdout, argv[-1], connections, seconds)


# ---------------------------------------------------------------------------
# measurements


def choose_handshake_tool(requested: str, ab: str | None, have_wrk: bool) -> str | None:
    if requested != "auto":
        return requested
    if ab is not None:
        return "ab"
    return "wrk" if have_wrk else None


def measure_keepalive(name: str, port: int, pid: int, args: argparse.Namespace, pin: bool, script: Path) -> Scenario:
    sc = Scenario(name)
    if args.warmup > 0:  # TLS sessions, pools and caches; not measured (wrk runs whole seconds)
        run_wrk_load(port, args, args.warmup, pin, script, scheme="https")
    progress(f"{name}: wrk -c{args.connections} https://{HOST}:{port}/")
    with CpuMeter(pid) as meter:
        sc.load = run_wrk_load(port, args, args.duration, pin, script, scheme="https")
    meter.fill(sc)
    if sc.load.ok == 0:
        sc.status, sc.reason = "failed", f"no successful response ({sc.load.errors})"
    return sc


def measure_handshakes(
    name: str, port: int, pid: int, args: argparse.Namespace, pin: bool, script: Path, tool: str
) -> Scenario:
    sc = Scenario(name)
    seconds = max(1, round(args.duration))
    conns = args.handshake_connections
    progress(f"{name}: {tool} -c{conns}, a new TLS connection per request, {seconds} s")
    close = ("Connection: close",)
    with CpuMeter(pid) as meter:
        if tool == "ab":
            sc.load, sc.extra["ab_tls"] = run_ab(port, conns, seconds, pin)
        else:
            sc.load = run_wrk_load(port, args, seconds, pin, script, scheme="https", connections=conns, headers=close)
    meter.fill(sc)
    if sc.load.ok == 0:
        sc.status, sc.reason = "failed", f"no successful response ({sc.load.errors})"
        return sc
    if sc.proxy_cpu_pct:
        sc.extra["per_core"] = sc.load.rps / (sc.proxy_cpu_pct / 100.0)
    # One connection at a time: no queueing, so the latency is the cost of one connection.
    if tool == "ab":
        seq, _ = run_ab(port, 1, SEQ_SECONDS, pin, max_requests=SEQ_REQUESTS)
    else:
        seq = run_wrk_load(port, args, SEQ_SECONDS, pin, script, scheme="https", connections=1, headers=close)
    sc.extra["seq_p50_ms"] = seq.latency_ms.get("p50")
    sc.extra["seq_mean_ms"] = seq.latency_ms.get("mean")
    sc.extra["seq_connections"] = seq.ok
    return sc


def tls_specs(
    args: argparse.Namespace, haproxy: str | None, ports: list[int], cert: CertFiles
) -> list[ProxySpec | Scenario]:
    out: list[ProxySpec | Scenario] = []
    if "appliance" in args.scenarios:
        out.append(
            appliance_row(
                args, lambda port: appliance_config(port, ports, args.access_log, mode="http", tls=(cert.cert, cert.key))
            )
        )
    if "haproxy" in args.scenarios:
        if haproxy is None:
            out.append(Scenario("haproxy", status="skipped", reason=f"haproxy is not installed ({INSTALL_HINT})"))
        else:
            port = free_port()
            out.append(haproxy_spec(haproxy, "haproxy", haproxy_config(port, ports, mode="http", tls_pem=cert.pem), port))
    return out


def _attempt(name: str, fn: Callable[[], Scenario]) -> Scenario:
    try:
        return fn()
    except Exception as exc:  # one failed measurement must not hide the other
        return Scenario(name, status="failed", reason=f"{type(exc).__name__}: {exc}")


# ---------------------------------------------------------------------------
# report


def keepalive_table(rows: list[Scenario]) -> str:
    cols = [
        Column("req/s", 9, lambda sc: f"{sc.load.rps:,.0f}" if sc.load else "-"),
        Column("p50", 7, lambda sc: f"{sc.load.latency_ms.get('p50', 0):.2f}" if sc.load else "-"),
        Column("p99 ms", 7, lambda sc: f"{sc.load.latency_ms.get('p99', 0):.2f}" if sc.load else "-"),
        Column("errors", 6, lambda sc: str(sc.load.total_errors) if sc.load else "-"),
        Column("vs haproxy", 10, lambda sc: fmt_ratio(sc.ratios.get("haproxy"))),
        Column("proxy CPU", 9, lambda sc: fmt_pct(sc.proxy_cpu_pct)),
        Column("CPU0/CPU1", 9, cpu_pair),
        Column("tls", 30, lambda sc: str(sc.extra.get("tls", "-")), left=True),
        Column("members", 0, members, left=True),
    ]
    return format_table(rows, cols)


def _ms(x: object, digits: int = 1) -> str:
    return f"{x:.{digits}f}" if isinstance(x, (int, float)) else "-"


def handshake_table(rows: list[Scenario]) -> str:
    cols = [
        Column("conn/s", 8, lambda sc: f"{sc.load.rps:,.0f}" if sc.load else "-"),
        Column("p50", 5, lambda sc: _ms(sc.load.latency_ms.get("p50"), 0) if sc.load else "-"),
        Column("p99 ms", 6, lambda sc: _ms(sc.load.latency_ms.get("p99"), 0) if sc.load else "-"),
        Column("errors", 6, lambda sc: str(sc.load.total_errors) if sc.load else "-"),
        Column("vs haproxy", 10, lambda sc: fmt_ratio(sc.ratios.get("haproxy"))),
        Column("proxy CPU", 9, lambda sc: fmt_pct(sc.proxy_cpu_pct)),
        Column("conn/s/core", 11, lambda sc: _ms(sc.extra.get("per_core"), 0)),
        Column("CPU0/CPU1", 9, cpu_pair),
        Column("1-conn p50", 10, lambda sc: _ms(sc.extra.get("seq_p50_ms"), 0)),
        Column("mean ms", 7, lambda sc: _ms(sc.extra.get("seq_mean_ms"), 2)),
        Column("tls", 0, lambda sc: str(sc.extra.get("ab_tls") or sc.extra.get("tls", "-")), left=True),
    ]
    return format_table(rows, cols)


def stall_notes(rows: list[Scenario], tool: str) -> list[str]:
    """One note on the one-connection-at-a-time probe: a mean at or above STALL_MS is a stall."""
    parts, stalled = [], []
    for sc in rows:
        mean = sc.extra.get("seq_mean_ms") if sc.status == "ok" else None
        if not isinstance(mean, (int, float)):
            continue
        parts.append(f"{sc.name} {mean:.2f} ms ({sc.extra.get('seq_connections')} connections)")
        if mean >= STALL_MS:
            stalled.append(sc.name)
    if not parts:
        return []
    what = f"one connection at a time ({tool} -c 1), mean per connection: " + ", ".join(parts)
    if tool != "ab":
        what += "; wrk's latency leaves the handshake out"
    if stalled:
        return [f"STALL: {what}: {', '.join(stalled)} at or above {STALL_MS:.0f} ms, a fixed wait per connection, not CPU"]
    return [f"no stall: {what} (baseline: trio prototype 44.6 ms, HAProxy 1.29 ms)"]


def run_tls_suite(
    args: argparse.Namespace, procs: Procs, pin: bool, tmp: Path, ports: list[int], wrk_script: Path, haproxy: str | None
) -> SuiteResult:
    workdir = tmp / "tls"
    have_wrk = wrk_installed()
    hs_tool = choose_handshake_tool(args.handshake_tool, find_tool("ab"), have_wrk)
    keepalive: list[Scenario] = []
    handshakes: list[Scenario] = []
    notes: list[str] = []
    try:
        cert = make_certificate(workdir / "cert", args.cert, find_tool("openssl"))
    except Exception as exc:
        reason = f"cannot make the certificate: {type(exc).__name__}: {exc}"
        rows = [Scenario(n, status="failed", reason=reason) for n in ("appliance", "haproxy") if n in args.scenarios]
        return SuiteResult("tls", tables=[("tls", format_table(rows, []))], rows={"keepalive": rows, "handshakes": []})
    progress(f"tls suite: {cert.label} certificate ({cert.made_by}) in {cert.pem.parent}; handshakes with {hs_tool}")

    for item in tls_specs(args, haproxy, ports, cert):
        if isinstance(item, Scenario):
            keepalive.append(item)
            handshakes.append(Scenario(item.name, status=item.status, reason=item.reason))
            continue
        spec = item

        def work(proc: subprocess.Popen[bytes], spec: ProxySpec = spec) -> tuple[Scenario, Scenario]:
            info = tls_probe(spec.port)
            if have_wrk:
                ka = _attempt(spec.name, lambda: measure_keepalive(spec.name, spec.port, proc.pid, args, pin, wrk_script))
            else:
                ka = Scenario(spec.name, status="skipped", reason=f"wrk is not installed ({WRK_HINT})")
            if hs_tool is not None:
                hs = _attempt(
                    spec.name, lambda: measure_handshakes(spec.name, spec.port, proc.pid, args, pin, wrk_script, hs_tool)
                )
            else:
                hs = Scenario(spec.name, status="skipped", reason=f"neither ab nor wrk is installed ({AB_HINT})")
            ka.extra["tls"] = hs.extra["tls"] = info
            return ka, hs

        def failed(reason: str, name: str = spec.name) -> tuple[Scenario, Scenario]:
            return Scenario(name, status="failed", reason=reason), Scenario(name, status="failed", reason=reason)

        ka, hs = with_proxy(spec, procs, pin, workdir, work, failed)
        keepalive.append(ka)
        handshakes.append(hs)

    fill_ratios(keepalive, {"haproxy": "haproxy"}, lambda sc: sc.load.rps if sc.load else None)
    fill_ratios(handshakes, {"haproxy": "haproxy"}, lambda sc: sc.load.rps if sc.load else None)

    notes.append(f"certificate: {cert.label}, self-signed ({cert.made_by}), the same files for both proxies")
    if not have_wrk:
        notes.append(f"keep-alive skipped: wrk is not installed ({WRK_HINT})")
    if hs_tool == "wrk":
        why = "--handshake-tool wrk" if find_tool("ab") else f"ab is not installed: {AB_HINT}"
        notes.append(
            f"handshakes with wrk 'Connection: close' ({why}); wrk may resume TLS sessions, "
            "so these may not all be full handshakes"
        )
    if haproxy is None:
        notes.append(f"haproxy skipped: {INSTALL_HINT}")
    app = next((sc for sc in handshakes if sc.name == "appliance" and sc.status == "ok"), None)
    if app is not None and "haproxy" in app.ratios:
        r = app.ratios["haproxy"]
        verdict = "met" if r >= HANDSHAKE_GOAL else "NOT met"
        if hs_tool != "ab":
            verdict += "; measured with wrk, not only full handshakes: use ab to judge"
        notes.append(f"issue 3 goal, full handshakes >= {HANDSHAKE_GOAL:.1f}x HAProxy: appliance {r:.2f}x ({verdict})")
    if hs_tool is not None:
        notes += stall_notes(handshakes, hs_tool)
    notes += held_back_notes(keepalive, "keep-alive") + held_back_notes(handshakes, "handshakes")
    notes += idle_cpu_notes(keepalive, pin, "keep-alive") + idle_cpu_notes(handshakes, pin, "handshakes")
    return SuiteResult(
        "tls",
        tables=[
            (f"tls: HTTPS keep-alive ({cert.label}, wrk -c {args.connections}); ratio of req/s", keepalive_table(keepalive)),
            (
                f"tls: new TLS connection per request ({cert.label}, {hs_tool} -c {args.handshake_connections}, no keep-alive); "
                "ratio of conn/s; 1-conn = one connection at a time",
                handshake_table(handshakes),
            ),
        ],
        notes=notes,
        rows={"keepalive": keepalive, "handshakes": handshakes},
    )
