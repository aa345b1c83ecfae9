"""Benchmark: the same load direct to an origin, through the appliance and through HAProxy.

    python -m bench.run [--suite http|tcp|tls|all] [--quick] [-c 50] [-d 10] [--tool python|wrk]
                        [--origins nginx|python] [--json FILE] ...

(`make bench` runs it with the defaults: the http suite.) It starts 3 origins on
free loopback ports -- nginx (1 process each, ``return 200 "ok\\n"``, as in the
baseline) when nginx is installed, else ``bench.origin`` -- then runs the suites:

* ``http`` (this module): one closed-loop keep-alive load per scenario:

  * ``direct``    -- to the first origin, no proxy in between;
  * ``appliance`` -- through ``.venv/bin/appliance run -c TMPCONF`` (round robin over the 3 origins);
  * ``haproxy``   -- through HAProxy with the equivalent config, when ``haproxy`` is installed;
  * ``ceiling``   -- (``--calibrate``) the load tool against a target that costs it
                     nothing (HAProxy answering by itself, else one origin on its own CPU):
                     what the load tool can do at most.

* ``tcp`` (``bench.scenarios_tcp``): ``mode tcp`` one-stream bulk (iperf3) and small
  messages (wrk through the L4 relay): direct, appliance, HAProxy ``mode tcp``, and
  HAProxy ``mode tcp`` + ``option splice-auto``.
* ``tls`` (``bench.scenarios_tls``): TLS termination with one certificate for both
  proxies: HTTPS keep-alive (wrk) and a new handshake per request (ab).

Pinning follows research/perf-baseline.md when ``taskset`` exists and there
are 2+ CPUs: the proxy on CPU 1, the origins and the load generators on CPU 0.
It installs nothing; every load is bounded in time (and by request count or bytes
where the tool has one). The helpers here (processes, configs, CPU accounting, wrk)
are shared by the suites.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import re
import select
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import trio

from bench.bulk import BulkResult
from bench.load import DEFAULT_MAX_REQUESTS, LoadResult, run_load

REPO = Path(__file__).resolve().parent.parent
LOAD_CPU = 0
PROXY_CPU = 1
HOST = "127.0.0.1"
INSTALL_HINT = "apt-get install haproxy nginx wrk"
NGINX_HINT = "apt-get install nginx"
SBIN_DIRS = ("/usr/sbin", "/usr/local/sbin", "/sbin")  # often missing from a non-root PATH


# ---------------------------------------------------------------------------
# results


@dataclass
class Scenario:
    name: str
    status: str = "ok"  # ok | failed | skipped
    reason: str = ""
    load: LoadResult | None = None
    proxy_cpu_pct: float | None = None  # utime+stime of the proxy process tree / elapsed
    foreign_cpu_pct: float | None = None  # CPU used by processes the bench did not start (CpuMeter.foreign_pct)
    cpu_busy_pct: dict[str, float] = field(default_factory=dict)  # per CPU, from /proc/stat
    ratio_direct: float | None = None
    ratio_haproxy: float | None = None
    bulk: BulkResult | None = None  # the tcp suite's one-stream transfer
    ratios: dict[str, float] = field(default_factory=dict)  # tcp and tls suites: "vs NAME" -> ratio
    extra: dict[str, Any] = field(default_factory=dict)  # e.g. the negotiated TLS version and cipher

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {
            "name": self.name,
            "status": self.status,
            "reason": self.reason,
            "load": self.load.to_dict() if self.load else None,
            "proxy_cpu_pct": self.proxy_cpu_pct,
            "foreign_cpu_pct": self.foreign_cpu_pct,
            "cpu_busy_pct": self.cpu_busy_pct,
            "ratio_direct": self.ratio_direct,
            "ratio_haproxy": self.ratio_haproxy,
        }
        if self.bulk is not None:
            d["bulk"] = self.bulk.to_dict()
        if self.ratios:
            d["ratios"] = self.ratios
        if self.extra:
            d["extra"] = self.extra
        return d


@dataclass
class SuiteResult:
    """What one suite (http, tcp, tls) measured: its tables, notes and rows."""

    name: str
    tables: list[tuple[str, str]] = field(default_factory=list)  # (title, text)
    notes: list[str] = field(default_factory=list)
    rows: dict[str, list[Scenario]] = field(default_factory=dict)  # section -> rows

    @property
    def failed(self) -> bool:
        return any(sc.status == "failed" for rows in self.rows.values() for sc in rows)

    def to_dict(self) -> dict[str, Any]:
        return {section: [sc.to_dict() for sc in rows] for section, rows in self.rows.items()}


class StartError(Exception):
    pass


# ---------------------------------------------------------------------------
# processes


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


def port_open(port: int) -> bool:
    try:
        with socket.create_connection((HOST, port), timeout=0.5):
            return True
    except OSError:
        return False


class Procs:
    """The processes this run started; stopped by PID (SIGTERM, then SIGKILL)."""

    def __init__(self) -> None:
        self.procs: list[subprocess.Popen[bytes]] = []

    def start(self, argv: list[str], cpu: int | None, pin: bool, **kw: Any) -> subprocess.Popen[bytes]:
        if pin and cpu is not None:
            argv = ["taskset", "-c", str(cpu), *argv]
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, start_new_session=True, **kw)
        self.procs.append(proc)
        return proc

    def stop(self, proc: subprocess.Popen[bytes], grace: float = 10.0) -> None:
        if proc.poll() is None:
            try:
                proc.send_signal(signal.SIGTERM)
                proc.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                # Its own session: only what this run started is in the group.
                try:
                    os.killpg(proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                proc.wait(timeout=5)
            except ProcessLookupError:
                pass
        if proc in self.procs:
            self.procs.remove(proc)
        for stream in (proc.stdout, proc.stderr):
            if stream is not None:
                stream.close()

    def stop_all(self) -> None:
        for proc in list(reversed(self.procs)):
            self.stop(proc, grace=5.0)


def find_tool(name: str) -> str | None:
    """``name`` on PATH, else in the sbin directories (where Debian puts nginx and haproxy)."""
    found = shutil.which(name)
    if found:
        return found
    for d in SBIN_DIRS:
        path = os.path.join(d, name)
        if os.path.isfile(path) and os.access(path, os.X_OK):
            return path
    return None


def choose_origins(requested: str | None, nginx: str | None) -> tuple[str, str]:
    """(origin kind, why): ``requested`` if given, else nginx when installed, else python."""
    if requested == "python":
        return "python", "chosen with --origins python"
    if requested == "nginx":
        return "nginx", f"chosen with --origins nginx; {nginx}"
    if nginx:
        return "nginx", f"default, nginx found at {nginx}; --origins python for the Python origins"
    return "python", (
        f"default, nginx is not installed ({NGINX_HINT} for the baseline's nginx origins); the Python origins "
        "saturate CPU 0 and hold HAProxy back, so 'vs haproxy' flatters the appliance"
    )


def start_announcing(
    procs: Procs, argv: list[str], cpu: int | None, pin: bool, what: str, timeout: float = 10.0
) -> tuple[subprocess.Popen[bytes], int]:
    """Start a child that prints ``listening on HOST:PORT`` once bound (``bench.origin``, ``bench.bulk sink``)."""
    proc = procs.start(argv, cpu, pin, cwd=REPO, stdout=subprocess.PIPE)
    assert proc.stdout is not None
    deadline = time.monotonic() + timeout
    line = b""
    while time.monotonic() < deadline:
        ready, _, _ = select.select([proc.stdout], [], [], 0.2)
        if ready:
            line = proc.stdout.readline()
            break
        if proc.poll() is not None:
            break
    m = re.match(rb"listening on [\d.]+:(\d+)", line)
    if not m:
        procs.stop(proc)
        raise StartError(f"{what} did not start (got {line!r})")
    return proc, int(m.group(1))


def start_python_origin(
    procs: Procs, name: str, pin: bool, body_size: int, cpu: int = LOAD_CPU
) -> tuple[subprocess.Popen[bytes], int]:
    argv = [sys.executable, "-m", "bench.origin", "--port", "0", "--name", name, "--body-size", str(body_size)]
    return start_announcing(procs, argv, cpu, pin, f"origin {name}")


# The body goes inline in `return 200 "..."` up to this size; nginx's config
# reader rejects a token much over 4 KiB, so larger bodies are served from a file.
NGINX_INLINE_BODY_MAX = 2048


def _nginx_quote(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def nginx_config(name: str, port: int, workdir: Path, body: bytes = b"ok\n") -> str:
    """A one-process nginx origin like the baseline's backends (``return 200 "ok\\n"``).

    Every path it writes (pid, error log, temp dirs) is inside ``workdir``. The
    body is inline when small, else read from ``workdir/body`` (the caller writes it).
    """
    if not re.fullmatch(r"[A-Za-z0-9_.-]+", name):
        raise ValueError(f"origin name {name!r}: letters, digits, _ . - only")
    d = workdir.resolve()

    def q(leaf: str) -> str:
        return _nginx_quote(str(d / leaf))

    if len(body) <= NGINX_INLINE_BODY_MAX:
        if b"$" in body or b"\r" in body:  # `return` text interpolates $variables
            raise ValueError("an inline nginx body must not contain '$' or CR")
        serve = f"return 200 {_nginx_quote(body.decode('latin-1'))};"
    else:
        serve = f"root {_nginx_quote(str(d))};\n            try_files /body =500;"
    return f"""# bench origin {name} (written by bench/run.py)
daemon off;
master_process off;  # one process serves: it is the PID the bench starts, pins and stops
worker_processes 1;
pid {q("nginx.pid")};
error_log {q("error.log")} warn;

events {{
    worker_connections 1024;
}}

http {{
    access_log off;
    server_tokens off;
    default_type text/plain;
    sendfile on;
    keepalive_requests 10000000;
    keepalive_timeout 75s;
    client_body_temp_path {q("client_body")};
    proxy_temp_path {q("proxy")};
    fastcgi_temp_path {q("fastcgi")};
    uwsgi_temp_path {q("uwsgi")};
    scgi_temp_path {q("scgi")};

    server {{
        listen {HOST}:{port};
        location / {{
            add_header X-Origin {name} always;
            {serve}
        }}
    }}
}}
"""


def start_nginx_origin(
    procs: Procs, nginx: str, name: str, pin: bool, body_size: int, tmp: Path, cpu: int = LOAD_CPU
) -> tuple[subprocess.Popen[bytes], int]:
    """Start nginx as origin ``name`` on a free port; returns once the port accepts."""
    from bench.origin import make_body

    workdir = tmp / f"origin-{name}"
    workdir.mkdir(exist_ok=True)
    body = make_body(body_size)
    if len(body) > NGINX_INLINE_BODY_MAX:
        (workdir / "body").write_bytes(body)
    conf = workdir / "nginx.conf"
    log = workdir / "stderr.log"
    last: StartError | None = None
    for _ in range(3):  # the free port can be taken before nginx binds it
        port = free_port()
        conf.write_text(nginx_config(name, port, workdir, body))
        # -p: prefix for relative paths; -e: the log used before the config is read
        argv = [nginx, "-p", f"{workdir}/", "-e", str(workdir / "error.log"), "-c", str(conf)]
        with open(log, "wb") as logf:
            try:
                proc = procs.start(argv, cpu, pin, cwd=workdir, stdout=logf, stderr=logf)
            except OSError as exc:
                raise StartError(f"cannot start nginx origin {name}: {exc}") from None
        try:
            wait_listening(proc, port, START_TIMEOUT, f"nginx origin {name}", log)
            return proc, port
        except StartError as exc:
            procs.stop(proc)
            last = exc
            if "Address already in use" not in str(exc):
                break
    assert last is not None
    raise last


def start_origin(
    procs: Procs, kind: str, name: str, pin: bool, body_size: int, tmp: Path, cpu: int = LOAD_CPU
) -> tuple[subprocess.Popen[bytes], int]:
    if kind == "nginx":
        nginx = find_tool("nginx")
        if nginx is None:
            raise StartError(f"nginx is not installed ({NGINX_HINT})")
        return start_nginx_origin(procs, nginx, name, pin, body_size, tmp, cpu)
    return start_python_origin(procs, name, pin, body_size, cpu)


def wait_listening(proc: subprocess.Popen[bytes], port: int, timeout: float, what: str, log: Path | None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise StartError(f"{what} exited with code {proc.returncode} before listening{_tail(log)}")
        if port_open(port):
            return
        time.sleep(0.05)
    raise StartError(f"{what} did not accept connections on {HOST}:{port} within {timeout:.0f}s{_tail(log)}")


def _tail(log: Path | None, lines: int = 8) -> str:
    if log is None or not log.exists():
        return ""
    text = log.read_text(errors="replace").strip().splitlines()[-lines:]
    return ("\n      | " + "\n      | ".join(text)) if text else ""


# ---------------------------------------------------------------------------
# proxy configs


def _yaml_str(text: str) -> str:
    return json.dumps(text)  # a JSON string is a YAML double-quoted scalar


def appliance_config(
    listen_port: int,
    origin_ports: list[int],
    access_log: bool,
    mode: str = "http",
    tls: tuple[Path, Path] | None = None,
    l7: Path | None = None,
) -> str:
    """The appliance's YAML (SPEC §2): one virtual server, round robin over ``origin_ports``.

    ``mode`` is ``http`` or ``tcp``; ``tls`` is ``(cert, key)`` to terminate TLS with. ``l7`` (a state
    directory) adds what an L7 setup costs per request: four routes that do not match the load (path
    prefix, host wildcard, header, path regex) before the default pool, and cookie insert persistence;
    the load sends no cookie, so every response issues a token (the worst case).
    """
    if mode not in ("http", "tcp"):
        raise ValueError(f"mode {mode!r}: http or tcp")
    members = "\n".join(f"      - {{address: {HOST}:{p}}}" for p in origin_ports)
    # Quoted: unquoted `off` is a YAML boolean, which the appliance's loader rejects.
    access = "stderr" if access_log else '"off"'
    text = (
        f"appliance: {{name: bench, log: {{access: {access}}}}}\n"
        "pools:\n"
        "  bench:\n"
        "    method: round_robin\n"
        "    members:\n"
        f"{members}\n"
        "virtual_servers:\n"
        "  bench:\n"
        f"    listen: [{HOST}:{listen_port}]\n"
        f"    mode: {mode}\n"
        "    pool: bench\n"
    )
    if l7 is not None:
        text = text.replace("appliance: {name: bench,", f"appliance: {{name: bench, state_file: {_yaml_str(str(l7 / 'state.json'))},")
        text += (
            "    routes:\n"
            "      - {path_prefix: /api/, pool: bench}\n"
            '      - {host: "*.static.test", pool: bench}\n'
            "      - {header: {name: X-Canary, equals: '1'}, pool: bench}\n"
            '      - {path_regex: "\\\\.(css|js)$", pool: bench}\n'
            "    persistence: {type: cookie}\n"
        )
    if tls is not None:
        cert, key = tls
        text += (
            "    tls:\n"
            "      certificates:\n"
            f"        - {{cert: {_yaml_str(str(cert))}, key: {_yaml_str(str(key))}}}\n"
        )
    return text


def haproxy_config(
    listen_port: int,
    origin_ports: list[int],
    mode: str = "http",
    splice: bool = False,
    tls_pem: Path | None = None,
) -> str:
    """HAProxy's equivalent: ``nbthread 1``, round robin; ``mode tcp`` optionally with ``option splice-auto``;
    ``tls_pem`` (certificate + key in one file) terminates TLS on the frontend."""
    if mode not in ("http", "tcp"):
        raise ValueError(f"mode {mode!r}: http or tcp")
    servers = "\n".join(f"    server web{i} {HOST}:{p}" for i, p in enumerate(origin_ports, 1))
    options = "    option http-keep-alive\n    http-reuse safe\n" if mode == "http" else ""
    if splice:
        options += "    option splice-auto\n"
    bind = f"{HOST}:{listen_port}"
    if tls_pem is not None:
        if '"' in str(tls_pem):
            raise ValueError(f"certificate path {tls_pem}: no double quotes")
        bind += f' ssl crt "{tls_pem}"' + (" alpn http/1.1" if mode == "http" else "")
    return f"""global
    nbthread 1
    maxconn 4096

defaults
    mode {mode}
{options}    timeout connect 5s
    timeout client 30s
    timeout server 30s

frontend bench
    bind {bind}
    default_backend bench

backend bench
    balance roundrobin
{servers}
"""


def haproxy_return_config(listen_port: int) -> str:
    """HAProxy answering by itself: a near-free target to measure the load tool."""
    return f"""global
    nbthread 1
    maxconn 4096

defaults
    mode http
    option http-keep-alive
    timeout client 30s

frontend ceiling
    bind {HOST}:{listen_port}
    http-request return status 200 content-type text/plain string "ok\\n" hdr X-Origin haproxy-return
"""


def appliance_argv(explicit: str | None) -> list[str] | None:
    if explicit:
        return explicit.split()
    exe = REPO / ".venv" / "bin" / "appliance"
    if exe.exists():
        return [str(exe)]
    found = shutil.which("appliance")
    return [found] if found else None


# ---------------------------------------------------------------------------
# CPU accounting


def _proc_stat_cpus() -> dict[str, tuple[int, int]]:
    """Per CPU: (busy jiffies, total jiffies)."""
    out = {}
    try:
        with open("/proc/stat") as f:
            for line in f:
                if line.startswith("cpu") and line[3].isdigit():
                    parts = line.split()
                    vals = [int(v) for v in parts[1:9]]
                    total = sum(vals)
                    idle = vals[3] + vals[4]
                    out[parts[0]] = (total - idle, total)
    except OSError:
        pass
    return out


_PF_KTHREAD = 0x00200000


@dataclass
class _ProcCpu:
    ppid: int
    ticks: int  # utime + stime
    reaped: int  # cutime + cstime: children that exited and were waited for


def _proc_snapshot() -> dict[int, _ProcCpu]:
    """CPU ticks of every user-space process (kernel threads left out)."""
    stats: dict[int, _ProcCpu] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                data = f.read()
        except OSError:
            continue
        rest = data[data.rfind(")") + 2 :].split()
        if int(rest[6]) & _PF_KTHREAD:
            continue
        stats[int(entry)] = _ProcCpu(int(rest[1]), int(rest[11]) + int(rest[12]), int(rest[13]) + int(rest[14]))
    return stats


def _tree(stats: dict[int, _ProcCpu], root: int) -> set[int]:
    """``root`` and its live descendants."""
    children: dict[int, list[int]] = {}
    for pid, st in stats.items():
        children.setdefault(st.ppid, []).append(pid)
    tree, todo = set(), [root]
    while todo:
        pid = todo.pop()
        if pid not in tree:
            tree.add(pid)
            todo.extend(children.get(pid, ()))
    return tree


def _tree_cpu_seconds(root: int) -> float:
    """utime+stime of ``root`` and all its descendants (live ones)."""
    stats = _proc_snapshot()
    return sum(stats[p].ticks for p in _tree(stats, root) if p in stats) / os.sysconf("SC_CLK_TCK")


class CpuMeter:
    """Over a ``with`` block: busy % per CPU, the proxy tree's CPU %, and ``foreign_pct``.

    ``foreign_pct`` is the CPU that processes this run did not start used
    meanwhile (in % of one CPU): every user-space process outside the bench's own
    process tree, with the children it reaped. Kernel threads are left out (the
    softirq work of loopback traffic is the bench's own). Above FOREIGN_MAX the
    run was disturbed, for example by a test suite running beside it.
    """

    def __init__(self, proxy_pid: int | None) -> None:
        self.proxy_pid = proxy_pid

    def _foreign_ticks(self, stats: dict[int, _ProcCpu]) -> dict[int, int]:
        ours = _tree(stats, os.getpid())
        return {pid: st.ticks + st.reaped for pid, st in stats.items() if pid not in ours}

    def __enter__(self) -> CpuMeter:
        self.cpus0 = _proc_stat_cpus()
        snap = _proc_snapshot()
        self.proxy0 = sum(snap[p].ticks for p in _tree(snap, self.proxy_pid) if p in snap) if self.proxy_pid else 0
        self.foreign0 = self._foreign_ticks(snap)
        self.t0 = time.monotonic()
        return self

    def __exit__(self, *exc: object) -> None:
        self.elapsed = time.monotonic() - self.t0
        snap = _proc_snapshot()
        cpus1 = _proc_stat_cpus()
        hz = os.sysconf("SC_CLK_TCK")
        self.busy: dict[str, float] = {}
        for cpu, (b1, t1) in cpus1.items():
            b0, t0 = self.cpus0.get(cpu, (0, 0))
            if t1 > t0:
                self.busy[cpu] = round(100.0 * (b1 - b0) / (t1 - t0), 1)
        self.proxy_pct: float | None = None
        self.foreign_pct: float | None = None
        if self.elapsed <= 0:
            return
        if self.proxy_pid:
            used = sum(snap[p].ticks for p in _tree(snap, self.proxy_pid) if p in snap) - self.proxy0
            self.proxy_pct = round(100.0 * used / hz / self.elapsed, 1)
        foreign = sum(max(0, t - self.foreign0.get(pid, 0)) for pid, t in self._foreign_ticks(snap).items())
        self.foreign_pct = round(100.0 * foreign / hz / self.elapsed, 1)

    def fill(self, sc: Scenario) -> None:
        sc.cpu_busy_pct = self.busy
        sc.proxy_cpu_pct = self.proxy_pct
        sc.foreign_cpu_pct = self.foreign_pct


# ---------------------------------------------------------------------------
# load tools


def run_python_load(port: int, args: argparse.Namespace, duration: float, pin: bool) -> LoadResult:
    old = os.sched_getaffinity(0) if pin else None
    if pin:
        os.sched_setaffinity(0, {LOAD_CPU})
    try:
        return trio.run(
            lambda: run_load(HOST, port, "/", args.connections, duration, args.max_requests, timeout=args.timeout)
        )
    finally:
        if old is not None:
            os.sched_setaffinity(0, old)


WRK_LUA = """
counts = {}
local threads = {}
function setup(thread) table.insert(threads, thread) end
function response(status, headers, body)
  local o = headers["X-Origin"] or headers["x-origin"] or "-"
  counts[o] = (counts[o] or 0) + 1
end
function done(summary, latency, requests)
  for _, t in ipairs(threads) do
    for k, v in pairs(t:get("counts")) do io.write(string.format("X-ORIGIN-COUNT %s %d\\n", k, v)) end
  end
end
"""

_UNIT_MS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0, "h": 3_600_000.0}


def _ms(text: str) -> float:
    m = re.fullmatch(r"([\d.]+)(us|ms|s|m|h)", text)
    if not m:
        raise ValueError(f"bad wrk duration {text!r}")
    return float(m.group(1)) * _UNIT_MS[m.group(2)]


def parse_wrk(out: str, url: str, connections: int, duration: float) -> LoadResult:
    """Parse ``wrk --latency`` output (plus the X-ORIGIN-COUNT lines of WRK_LUA)."""
    lat: dict[str, float] = {}
    for pct, value in re.findall(r"^\s+(50|90|99)%\s+(\S+)\s*$", out, re.M):
        lat[f"p{pct}"] = _ms(value)
    m = re.search(r"^\s+Latency\s+(\S+)\s+(\S+)\s+(\S+)", out, re.M)
    if m:
        lat["mean"] = _ms(m.group(1))
        lat["max"] = _ms(m.group(3))
    m = re.search(r"(\d+) requests in ([\d.]+)(us|ms|s|m|h)", out)
    if not m:
        raise ValueError("no request count in wrk output:\n" + out[-500:])
    requests = int(m.group(1))
    elapsed = _ms(m.group(2) + m.group(3)) / 1000.0
    errors = {"connect": 0, "read": 0, "timeout": 0, "status": 0}
    m = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    if m:
        errors["connect"] = int(m.group(1))
        errors["read"] = int(m.group(2)) + int(m.group(3))
        errors["timeout"] = int(m.group(4))
    m = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    if m:
        errors["status"] = int(m.group(1))
    members = {k: int(v) for k, v in re.findall(r"^X-ORIGIN-COUNT (\S+) (\d+)$", out, re.M)}
    ok = requests - errors["status"]
    return LoadResult(
        url=url,
        connections=connections,
        duration=duration,
        max_requests=0,
        elapsed=elapsed,
        requests=requests,
        ok=ok,
        rps=ok / elapsed if elapsed else 0.0,
        latency_ms=lat,
        errors=errors,
        members=members,
        tool="wrk",
    )


def run_wrk_load(
    port: int,
    args: argparse.Namespace,
    duration: float,
    pin: bool,
    script: Path,
    scheme: str = "http",
    connections: int | None = None,
    headers: tuple[str, ...] = (),
) -> LoadResult:
    """``wrk -t1 -cN -dS --latency`` on the load CPU (whole seconds, at least 1); ``scheme`` http or https."""
    url = f"{scheme}://{HOST}:{port}/"
    conns = connections or args.connections
    dur = max(1, round(duration))
    argv = ["wrk", "-t1", f"-c{conns}", f"-d{dur}s", "--latency", "-s", str(script)]
    for h in headers:
        argv += ["-H", h]
    argv.append(url)
    if pin:
        argv = ["taskset", "-c", str(LOAD_CPU), *argv]
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=dur + 30)
    if proc.returncode != 0:
        raise RuntimeError(f"wrk failed ({proc.returncode}): {proc.stderr.strip()[-300:]}")
    return parse_wrk(proc.stdout, url, conns, dur)


# ---------------------------------------------------------------------------
# scenarios


def measure(name: str, port: int, proxy_pid: int | None, args: argparse.Namespace, pin: bool, wrk_script: Path) -> Scenario:
    sc = Scenario(name)
    if args.warmup > 0:  # fills pools and caches; not measured
        trio.run(lambda: run_load(HOST, port, "/", args.connections, args.warmup, 200_000, timeout=args.timeout))
    with CpuMeter(proxy_pid) as meter:
        if args.tool == "wrk":
            sc.load = run_wrk_load(port, args, args.duration, pin, wrk_script)
        else:
            sc.load = run_python_load(port, args, args.duration, pin)
    meter.fill(sc)
    if sc.load.ok == 0:
        sc.status = "failed"
        sc.reason = f"no successful response ({sc.load.total_errors} errors: {sc.load.errors})"
    return sc


START_TIMEOUT = 10.0  # seconds for a proxy to accept connections


def start_proxy(
    procs: Procs, argv: list[str], port: int, what: str, pin: bool, cwd: Path, log: Path, quiet: bool
) -> subprocess.Popen[bytes]:
    """Start a proxy on the proxy CPU; its output goes to ``log`` (or /dev/null when quiet)."""
    logf = None if quiet else open(log, "wb")
    out: Any = subprocess.DEVNULL if logf is None else logf
    try:
        proc = procs.start(argv, PROXY_CPU, pin, cwd=cwd, stdout=out, stderr=out)
    except OSError as exc:
        raise StartError(f"cannot start {what}: {exc}") from None
    finally:
        if logf is not None:
            logf.close()
    try:
        wait_listening(proc, port, START_TIMEOUT, what, None if quiet else log)
    except StartError:
        procs.stop(proc)
        raise
    return proc


@dataclass
class ProxySpec:
    """A proxy to start for one scenario: ``argv`` with ``{CONF}`` for the config file written first."""

    name: str
    argv: list[str]
    config_text: str
    config_name: str
    port: int
    quiet: bool = False  # output to /dev/null (e.g. an access log on stderr)


def haproxy_spec(haproxy: str, name: str, config_text: str, port: int) -> ProxySpec:
    return ProxySpec(name, [haproxy, "-db", "-f", "{CONF}"], config_text, "haproxy.cfg", port)


def appliance_spec(cmd: list[str], name: str, config_text: str, port: int, quiet: bool = False) -> ProxySpec:
    return ProxySpec(name, [*cmd, "run", "-c", "{CONF}"], config_text, "appliance.yaml", port, quiet)


def appliance_row(args: argparse.Namespace, config_for: Callable[[int], str]) -> ProxySpec | Scenario:
    """The appliance's spec on a free port (its config from `config_for(port)`), or the failed row."""
    cmd = appliance_argv(args.appliance)
    if cmd is None:
        return Scenario("appliance", status="failed", reason=NO_APPLIANCE)
    port = free_port()
    return appliance_spec(cmd, "appliance", config_for(port), port, quiet=args.access_log)


@contextlib.contextmanager
def proxy_process(spec: ProxySpec, procs: Procs, pin: bool, tmp: Path) -> Iterator[subprocess.Popen[bytes]]:
    """Writes the config into ``tmp/NAME/``, starts the proxy on the proxy CPU, waits until its port
    accepts (else StartError), and stops it by PID on the way out."""
    workdir = tmp / spec.name
    workdir.mkdir(parents=True, exist_ok=True)
    conf = workdir / spec.config_name
    conf.write_text(spec.config_text)
    log = workdir / "stderr.log"
    full = [a.replace("{CONF}", str(conf)) for a in spec.argv]
    progress(f"{spec.name}: starting {' '.join(full)}")
    proc = start_proxy(procs, full, spec.port, spec.name, pin, workdir, log, spec.quiet)
    try:
        yield proc
    finally:
        procs.stop(proc)
        if proc.returncode not in (0, -signal.SIGTERM, 143) and not spec.quiet:
            progress(f"{spec.name}: exited with code {proc.returncode}{_tail(log, 4)}")


T = TypeVar("T")


def with_proxy(
    spec: ProxySpec,
    procs: Procs,
    pin: bool,
    tmp: Path,
    work: Callable[[subprocess.Popen[bytes]], T],
    failed: Callable[[str], T],
) -> T:
    """``work(proc)`` while the proxy runs; ``failed(reason)`` when it does not start or ``work`` raises,
    so a broken scenario never hides the others."""
    try:
        with proxy_process(spec, procs, pin, tmp) as proc:
            try:
                return work(proc)
            except Exception as exc:
                return failed(f"{type(exc).__name__}: {exc}")
    except StartError as exc:
        return failed(str(exc))


def failed_scenario(name: str) -> Callable[[str], Scenario]:
    return lambda reason: Scenario(name, status="failed", reason=reason)


def run_proxy_scenario(
    name: str,
    argv: list[str],
    config_text: str,
    config_name: str,
    port: int,
    procs: Procs,
    args: argparse.Namespace,
    pin: bool,
    tmp: Path,
    wrk_script: Path,
    quiet: bool = False,
) -> Scenario:
    spec = ProxySpec(name, argv, config_text, config_name, port, quiet)

    def work(proc: subprocess.Popen[bytes]) -> Scenario:
        progress(f"{name}: load on {HOST}:{port}")
        return measure(name, port, proc.pid, args, pin, wrk_script)

    return with_proxy(spec, procs, pin, tmp, work, failed_scenario(name))


def progress(msg: str) -> None:
    print(f"# {msg}", file=sys.stderr, flush=True)


def calibrate_with_origin(procs: Procs, args: argparse.Namespace, pin: bool, tmp: Path, wrk_script: Path) -> Scenario:
    try:
        proc, port = start_origin(procs, args.origins, "ceiling", pin, args.body_size, tmp, cpu=PROXY_CPU)
    except (StartError, OSError) as exc:
        return Scenario("ceiling", status="failed", reason=str(exc))
    try:
        sc = measure("ceiling", port, proc.pid, args, pin, wrk_script)
        sc.reason = f"target: a {args.origins} origin alone on the proxy CPU (a lower bound of the ceiling)"
        return sc
    except Exception as exc:
        return Scenario("ceiling", status="failed", reason=f"{type(exc).__name__}: {exc}")
    finally:
        procs.stop(proc)


# ---------------------------------------------------------------------------
# report


def _fmt_ratio(x: float | None) -> str:
    return f"{x:.2f}" if x is not None else "-"


def report(results: list[Scenario]) -> str:
    hdr = (
        f"{'scenario':<10} {'req/s':>9} {'p50':>7} {'p90':>7} {'p99 ms':>7} {'errors':>7}  "
        f"{'vs direct':>9} {'vs haproxy':>10} {'proxy CPU':>9} {'CPU0/CPU1':>11}  members"
    )
    lines = [hdr, "-" * len(hdr)]
    for sc in results:
        if sc.status != "ok" or sc.load is None:
            reason = sc.reason.replace("\n", "\n" + " " * 11)
            lines.append(f"{sc.name:<10} {sc.status.upper()}: {reason}")
            continue
        ld = sc.load
        lat = ld.latency_ms
        members = " ".join(f"{k}={v}" for k, v in sorted(ld.members.items())) or "-"
        busy = "/".join(f"{sc.cpu_busy_pct[c]:.0f}" for c in ("cpu0", "cpu1") if c in sc.cpu_busy_pct) or "-"
        pcpu = f"{sc.proxy_cpu_pct:.0f}%" if sc.proxy_cpu_pct is not None else "-"
        lines.append(
            f"{sc.name:<10} {ld.rps:>9,.0f} {lat.get('p50', 0):>7.2f} {lat.get('p90', 0):>7.2f} "
            f"{lat.get('p99', 0):>7.2f} {ld.total_errors:>7}  {_fmt_ratio(sc.ratio_direct):>9} "
            f"{_fmt_ratio(sc.ratio_haproxy):>10} {pcpu:>9} {busy:>11}  {members}"
        )
    return "\n".join(lines)


def fill_ratios(results: list[Scenario]) -> None:
    by = {sc.name: sc for sc in results if sc.status == "ok" and sc.load and sc.load.rps > 0}
    for sc in results:
        if sc.name not in by or sc.load is None or sc.name == "ceiling":
            continue
        if "direct" in by and by["direct"].load is not None:
            sc.ratio_direct = sc.load.rps / by["direct"].load.rps
        if "haproxy" in by and by["haproxy"].load is not None:
            sc.ratio_haproxy = sc.load.rps / by["haproxy"].load.rps


def versions() -> dict[str, str]:
    out = {"python": platform.python_version(), "trio": trio.__version__}
    for tool, flag in (("haproxy", "-v"), ("nginx", "-v"), ("wrk", "-v"), ("iperf3", "--version"), ("ab", "-V"), ("openssl", "version")):
        exe = find_tool(tool)
        if exe:
            try:
                p = subprocess.run([exe, flag], capture_output=True, text=True, timeout=5)
                out[tool] = (p.stdout or p.stderr).strip().splitlines()[0]
            except (OSError, subprocess.SubprocessError, IndexError):
                pass
    return out


def wrk_installed() -> bool:
    """wrk is run by name, so it must be on PATH."""
    return shutil.which("wrk") is not None


def with_tool(args: argparse.Namespace, tool: str) -> argparse.Namespace:
    """A copy of ``args`` whose load generator (read by ``measure``) is ``tool``."""
    return argparse.Namespace(**{**vars(args), "tool": tool})


FOREIGN_MAX = 10.0  # % of one CPU that other processes may use before a run counts as disturbed


def idle_cpu_notes(rows: list[Scenario], pin: bool, what: str) -> list[str]:
    """Rows during which other processes used the machine (CpuMeter.foreign_pct): their figures are disturbed.

    Pinned or not; a direct run with its proxy CPU busy is flagged too.
    """
    bad = []
    for sc in rows:
        if sc.status != "ok":
            continue
        foreign = sc.foreign_cpu_pct or 0.0
        idle = sc.cpu_busy_pct.get(f"cpu{PROXY_CPU}", 0.0) if pin and sc.name == "direct" else 0.0
        if foreign > FOREIGN_MAX or idle > 15:
            bad.append(f"{sc.name} {max(foreign, idle):.0f}%")
    if not bad:
        return []
    return [
        f"{what}: other processes used the CPUs (% of one CPU) during: {', '.join(bad)}: those figures are disturbed; "
        "rerun on a quiet machine"
    ]


# ---------------------------------------------------------------------------
# the http suite


def run_http_suite(
    args: argparse.Namespace,
    procs: Procs,
    pin: bool,
    tmp: Path,
    ports: list[int],
    wrk_script: Path,
    haproxy: str | None,
) -> SuiteResult:
    """Keep-alive HTTP: direct, appliance (mode http), HAProxy (mode http), and the optional ceiling."""
    args = with_tool(args, args.http_tool)
    results: list[Scenario] = []
    progress(
        f"http suite: {args.tool} load, -c {args.connections} -d {args.duration:g}, warm-up {args.warmup:g}s"
    )
    if "direct" in args.scenarios:
        progress(f"direct: load on {HOST}:{ports[0]}")
        try:
            results.append(measure("direct", ports[0], None, args, pin, wrk_script))
        except Exception as exc:
            results.append(Scenario("direct", status="failed", reason=f"{type(exc).__name__}: {exc}"))

    if "appliance" in args.scenarios:
        cmd = appliance_argv(args.appliance)
        if cmd is None:
            results.append(Scenario("appliance", status="failed", reason=NO_APPLIANCE))
        else:
            port = free_port()
            results.append(
                run_proxy_scenario(
                    "appliance",
                    [*cmd, "run", "-c", "{CONF}"],
                    appliance_config(port, ports, args.access_log, l7=tmp if args.l7 else None),
                    "appliance.yaml",
                    port,
                    procs,
                    args,
                    pin,
                    tmp,
                    wrk_script,
                    quiet=args.access_log,
                )
            )

    if "haproxy" in args.scenarios:
        if haproxy is not None:
            port = free_port()
            results.append(
                run_proxy_scenario(
                    "haproxy", [haproxy, "-db", "-f", "{CONF}"], haproxy_config(port, ports),
                    "haproxy.cfg", port, procs, args, pin, tmp, wrk_script,
                )
            )
        else:
            results.append(
                Scenario("haproxy", status="skipped", reason=f"haproxy is not installed; to compare, install it: {INSTALL_HINT}")
            )

    if args.calibrate:
        if haproxy is not None:
            port = free_port()
            sc = run_proxy_scenario(
                "ceiling", [haproxy, "-db", "-f", "{CONF}"], haproxy_return_config(port),
                "haproxy-return.cfg", port, procs, args, pin, tmp, wrk_script,
            )
        else:  # a lower bound: a Python origin alone on the proxy CPU
            sc = calibrate_with_origin(procs, args, pin, tmp, wrk_script)
        results.append(sc)

    fill_ratios(results)
    notes = []
    if args.origins == "python" and "haproxy" in args.scenarios:
        notes.append(
            "Python origins: they and the load tool saturate CPU 0, so HAProxy is held back and 'vs haproxy' "
            "flatters the appliance"
            + ("; use --origins nginx" if find_tool("nginx") else f" ({NGINX_HINT}, then --origins nginx)")
        )
    if args.tool == "python":
        notes.append("the Python load generator caps throughput (see --calibrate): 'vs direct' is a floor")
    notes += idle_cpu_notes(results, pin, "http")
    if haproxy is None and "haproxy" in args.scenarios:
        notes.append(f"haproxy skipped: {INSTALL_HINT}")
    return SuiteResult(
        "http",
        tables=[(f"http: keep-alive HTTP ({args.tool} -c {args.connections})", report(results))],
        notes=notes,
        rows={"results": results},
    )


# ---------------------------------------------------------------------------


SUITES = ("http", "tcp", "tls")
SCENARIOS = ("direct", "appliance", "haproxy", "haproxy-splice")
NO_APPLIANCE = "no appliance command (.venv/bin/appliance missing; run `make test` or pass --appliance)"
IPERF3_HINT = "apt-get install iperf3"
AB_HINT = "apt-get install apache2-utils"
WRK_HINT = "apt-get install wrk"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__.split("\n\n")[0])
    ap.add_argument(
        "--suite",
        choices=(*SUITES, "all"),
        default="http",
        help="http: keep-alive HTTP (the default); tcp: mode tcp bulk + small messages; "
        "tls: HTTPS keep-alive + new handshakes; all: the three in turn",
    )
    ap.add_argument("-c", "--connections", type=int, default=50, help="concurrent keep-alive connections (50)")
    ap.add_argument("-d", "--duration", type=float, default=None, help="seconds per scenario (10; 3 with --quick)")
    ap.add_argument("--quick", action="store_true", help="short run: -d 3, 0.5 s warm-up")
    ap.add_argument("--max-requests", type=int, default=DEFAULT_MAX_REQUESTS, help="request bound per scenario (python tool)")
    ap.add_argument("--warmup", type=float, default=None, help="unmeasured warm-up seconds per scenario (1; 0.5 with --quick)")
    ap.add_argument("--timeout", type=float, default=5.0, help="per-request timeout, seconds")
    ap.add_argument(
        "--tool",
        choices=("python", "wrk"),
        default=None,
        help="load generator; default: python for the http suite, wrk (when installed) for the tcp and tls suites",
    )
    ap.add_argument("--scenarios", default=",".join(SCENARIOS), help="comma list of: " + ", ".join(SCENARIOS))
    ap.add_argument("--calibrate", action="store_true", help="also measure the load tool's own ceiling (http suite)")
    ap.add_argument("--access-log", action="store_true", help="appliance logs access to stderr (sent to /dev/null)")
    ap.add_argument("--l7", action="store_true", help="http suite: the appliance also evaluates 4 routes and inserts a cookie")
    ap.add_argument("--appliance", default=None, help="appliance command (default: .venv/bin/appliance)")
    ap.add_argument("--body-size", type=int, default=3, help="origin response body bytes (3 = 'ok\\n')")
    ap.add_argument(
        "--origins",
        choices=("python", "nginx"),
        default=None,
        help="origin servers: nginx (default when installed; as in the baseline) or python (bench.origin)",
    )
    ap.add_argument(
        "--bulk-tool",
        choices=("auto", "iperf3", "python"),
        default="auto",
        help="tcp suite, bulk: iperf3 (auto: when installed) or python (bench.bulk sender/sink)",
    )
    ap.add_argument(
        "--bulk-bytes", type=int, default=1 << 30, help="tcp suite, bulk with bench.bulk: bytes per run (1 GiB; -d bounds it too)"
    )
    ap.add_argument(
        "--bulk-omit",
        type=float,
        default=6.0,
        help="tcp suite, bulk with iperf3: seconds sent first and not counted (-O; 6). HAProxy's splice-auto "
        "starts splicing only ~5 s into a stream",
    )
    ap.add_argument("--cert", choices=("rsa", "ec"), default="rsa", help="tls suite: RSA-2048 or ECDSA P-256 certificate")
    ap.add_argument(
        "--handshake-tool",
        choices=("auto", "ab", "wrk"),
        default="auto",
        help="tls suite, handshakes: ab (auto: when installed) or wrk with 'Connection: close'",
    )
    ap.add_argument("--handshake-connections", type=int, default=20, help="tls suite: concurrent new connections (20)")
    ap.add_argument("--no-pin", action="store_true", help="do not pin processes to CPUs")
    ap.add_argument("--json", metavar="FILE", default=None, help="write the results as JSON to FILE")
    args = ap.parse_args(argv)
    if args.duration is None:
        args.duration = 3.0 if args.quick else 10.0
    if args.warmup is None:
        args.warmup = 0.5 if args.quick else 1.0
    args.scenarios = [s.strip() for s in args.scenarios.split(",") if s.strip()]
    unknown = set(args.scenarios) - set(SCENARIOS)
    if unknown:
        ap.error(f"unknown scenario(s): {', '.join(sorted(unknown))}")
    args.suites = list(SUITES) if args.suite == "all" else [args.suite]
    have_wrk = wrk_installed()
    if args.tool == "wrk" and not have_wrk:
        ap.error(f"--tool wrk: wrk is not on PATH ({INSTALL_HINT})")
    args.http_tool = args.tool or "python"
    args.l4_tool = args.tool or ("wrk" if have_wrk else "python")
    if args.bulk_tool == "iperf3" and find_tool("iperf3") is None:
        ap.error(f"--bulk-tool iperf3: iperf3 is not installed ({IPERF3_HINT})")
    if args.handshake_tool == "ab" and find_tool("ab") is None:
        ap.error(f"--handshake-tool ab: ab is not installed ({AB_HINT})")
    if args.handshake_tool == "wrk" and not have_wrk:
        ap.error(f"--handshake-tool wrk: wrk is not on PATH ({WRK_HINT})")
    if args.connections < 1 or args.duration <= 0 or args.max_requests < 1:
        ap.error("-c, -d and --max-requests must be positive")
    if args.bulk_bytes < 1 or args.handshake_connections < 1 or args.bulk_omit < 0:
        ap.error("--bulk-bytes and --handshake-connections must be positive, --bulk-omit not negative")
    nginx = find_tool("nginx")
    if args.origins == "nginx" and nginx is None:
        ap.error(f"--origins nginx: nginx is not on PATH nor in {', '.join(SBIN_DIRS)} ({NGINX_HINT})")
    args.origins, args.origins_why = choose_origins(args.origins, nginx)
    return args


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def print_suite(suite: SuiteResult, heading: bool) -> None:
    for title, text in suite.tables:
        if heading:
            print(f"\n== {title} ==")
        print(text)
    for n in suite.notes:
        print(f"note: {n}")
    sys.stdout.flush()


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    pin = (
        not args.no_pin
        and shutil.which("taskset") is not None
        and hasattr(os, "sched_setaffinity")
        and len(os.sched_getaffinity(0)) >= 2
        and {LOAD_CPU, PROXY_CPU} <= os.sched_getaffinity(0)
    )
    haproxy = find_tool("haproxy")
    progress(f"origins: {args.origins}: {args.origins_why}")
    progress(
        f"suite {args.suite}: -c {args.connections} -d {args.duration:g}, warm-up {args.warmup:g}s; "
        + (f"pinned: proxy on CPU {PROXY_CPU}, origins + load on CPU {LOAD_CPU}" if pin else "not pinned")
    )
    procs = Procs()
    done: list[SuiteResult] = []
    heading = args.suites != ["http"]  # an http-only run prints as it always did
    # SIGTERM (e.g. from make being stopped) unwinds like Ctrl-C so the finally below runs.
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        with tempfile.TemporaryDirectory(prefix="bench-") as tmpname:
            tmp = Path(tmpname)
            wrk_script = tmp / "members.lua"
            wrk_script.write_text(WRK_LUA)
            try:
                origins = [start_origin(procs, args.origins, f"web{i}", pin, args.body_size, tmp) for i in (1, 2, 3)]
            except StartError as exc:
                print(f"cannot start the origins: {exc}", file=sys.stderr)
                return 2
            ports = [p for _, p in origins]
            progress(f"{args.origins} origins web1..3 on {', '.join(f'{HOST}:{p}' for p in ports)}")
            for name in args.suites:
                if name == "http":
                    suite = run_http_suite(args, procs, pin, tmp, ports, wrk_script, haproxy)
                elif name == "tcp":
                    from bench.scenarios_tcp import (
                        run_tcp_suite,  # imports this module: not at the top
                    )

                    suite = run_tcp_suite(args, procs, pin, tmp, ports, wrk_script, haproxy)
                else:
                    from bench.scenarios_tls import run_tls_suite

                    suite = run_tls_suite(args, procs, pin, tmp, ports, wrk_script, haproxy)
                done.append(suite)
                print_suite(suite, heading)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    finally:
        procs.stop_all()

    if not pin:
        print("note: not pinned (taskset missing, fewer than 2 CPUs, or --no-pin)")
    if args.json:
        http = next((s for s in done if s.name == "http"), None)
        payload = {
            "when": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "settings": {
                "suite": args.suite,
                "tool": args.http_tool,
                "l4_tool": args.l4_tool,
                "connections": args.connections,
                "duration": args.duration,
                "warmup": args.warmup,
                "max_requests": args.max_requests,
                "body_size": args.body_size,
                "origins": args.origins,
                "access_log": args.access_log,
                "bulk_tool": args.bulk_tool,
                "bulk_omit": args.bulk_omit,
                "cert": args.cert,
                "handshake_tool": args.handshake_tool,
                "handshake_connections": args.handshake_connections,
                "pinned": pin,
                "load_cpu": LOAD_CPU if pin else None,
                "proxy_cpu": PROXY_CPU if pin else None,
            },
            "machine": {"cpus": os.cpu_count(), "kernel": platform.release(), **versions()},
            "results": [sc.to_dict() for sc in http.rows["results"]] if http else [],
            "suites": {s.name: s.to_dict() for s in done if s.name != "http"},
        }
        Path(args.json).write_text(json.dumps(payload, indent=2) + "\n")
        print(f"results written to {args.json}")
    # Non-zero when a requested scenario failed (a skipped one is not a failure).
    return 1 if any(s.failed for s in done) else 0


if __name__ == "__main__":
    sys.exit(main())
