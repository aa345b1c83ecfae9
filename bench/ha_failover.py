"""HA failover under load: `python -m bench.ha_failover` (`make bench-ha`).

    python -m bench.ha_failover [-c 20] [--fresh 2] [-d 6] [--kill-after 2] [--interval 0.2]
                                [--handback [--restart-after S]] [--json FILE] [--records FILE] [--no-pin]

Two ``appliance run`` processes form an HA pair on loopback (SPEC §3 "High
availability"): the same VIP ``127.0.0.1:VIPPORT`` in both configs, ``lb-a`` at
priority 150 and ``lb-b`` at 100, ``advert_interval`` 200 ms (``--interval``),
UDP adverts between them, one shared secret file. Only the master binds the VIP.
Each node's pool is one origin of its own (``web-a`` behind lb-a, ``web-b``
behind lb-b, nginx when installed, else ``bench.origin``), so the ``X-Origin``
header of every response says which node served it.

1. start the origins, lb-a; wait until lb-a is master; start lb-b; wait until
   it is backup and has heard lb-a, and the VIP answers through lb-a;
2. a steady closed-loop HTTP load on the VIP: ``-c`` keep-alive connections
   (a new connection after an error) and ``--fresh`` clients that open a new
   connection for every request (what a new client sees), each request bounded
   by ``--timeout`` (0.5 s), the whole run by ``-d`` and ``--max-requests``.
   Every request's start, end, outcome and serving node is recorded;
3. ``--kill-after`` seconds in, SIGKILL to lb-a by PID;
4. with ``--handback``: ``--restart-after`` seconds in (once the VIP has
   answered again), lb-a is started again; with ``preempt`` (the default) it
   takes the VIP back: lb-b stops accepting on the VIP and lb-a binds it (its
   bind is retried every 50 ms while lb-b still holds the port: on one host only
   one process can bind it). lb-b's keep-alive connections stay on lb-b until
   they close (connections outlive their listener);
5. report per phase: requests, failures by kind, the gap (from the kill to the
   first 2xx of a request started after it; at the handback from lb-b's step
   down to the first 2xx served by lb-a), the longest time without any 2xx (all
   clients, and new connections only) and the longest run of failures; the
   master-down interval of lb-b, ``3 × i + (256 − 100)/256 × i``, and whether
   the aim is met: gap ≤ master-down interval + 0.5 s.

Pinned as ``bench.run`` (taskset, 2+ CPUs): the appliances on CPU 1, the origins
and the load on CPU 0. Every process is started and stopped by PID (SIGTERM,
then SIGKILL), in ``finally``. Loopback only. Exit status: 0 aim met, 1 not met
(or the failover did not happen), 2 could not set up.
"""

from __future__ import annotations

import argparse
import csv
import errno
import itertools
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import trio

from bench._http import (
    MAX_HEAD,
    ChunkedSkipper,
    ProtocolError,
    RawConn,
    header_value,
    open_raw,
)
from bench.run import (
    FOREIGN_MAX,
    HOST,
    LOAD_CPU,
    PROXY_CPU,
    SBIN_DIRS,
    CpuMeter,
    Procs,
    StartError,
    _tail,
    appliance_argv,
    choose_origins,
    find_tool,
    free_port,
    start_origin,
)

PRIORITY = {"lb-a": 150, "lb-b": 100}
AIM_SLACK = 0.5  # the aim: gap <= master-down interval + 0.5 s
BIND_RETRY = 0.05  # the appliance retries binding the VIP this often after a takeover (supervisor.BIND_RETRY)
RETRY_PAUSE = 0.01  # after a refused connect: a refused connect returns at once, do not spin
FRESH_PAUSE = 0.005  # between the requests of a new-connection client: the resolution of its dark time
START_TIMEOUT = 15.0  # a node to come up and reach its HA state
TOKEN = "bench-ha-failover-token-0123456789abcdefghijk"  # the admin API's bearer token (loopback only)
OUTCOMES = ("ok", "refused", "reset", "closed", "timeout", "other")


def master_down_interval(priority: int, interval: float) -> float:
    """SPEC §3: a backup takes over after ``3 × advert_interval + (256 − priority)/256 × advert_interval``.

    Computed here from the SPEC, not taken from the appliance, so that the aim does not inherit a bug.
    """
    return 3 * interval + (256 - priority) / 256 * interval


def progress(msg: str) -> None:
    print(f"# {msg}", file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------
# the pair


def ha_config(
    name: str, priority: int, vip: int, origin: int, admin: int, udp: int, peer_udp: int, secret: Path,
    workdir: Path, interval: float,
) -> str:
    """One node's config: the VIP, a pool of its own origin, the admin API, and the `ha:` section."""
    return f"""\
appliance: {{name: {name}, state_file: {json.dumps(str(workdir / "state.json"))}, shutdown_grace: 1s, log: {{access: "off"}}}}
admin: {{listen: {HOST}:{admin}, token_file: {json.dumps(str(workdir / "admin.token"))}}}
pools:
  web:
    members: [{{address: {HOST}:{origin}, name: web-{name[-1]}}}]
virtual_servers:
  web: {{listen: [{HOST}:{vip}], pool: web}}
ha:
  priority: {priority}
  advert_interval: {interval * 1000:g}ms
  listen: {HOST}:{udp}
  peers: [{HOST}:{peer_udp}]
  secret_file: {json.dumps(str(secret))}
"""


@dataclass
class Node:
    name: str
    workdir: Path
    admin: int
    argv: list[str]
    proc: subprocess.Popen[bytes] | None = None
    pids: list[int] = field(default_factory=list)

    def start(self, procs: Procs, pin: bool) -> None:
        with open(self.workdir / "stderr.log", "ab") as log:
            self.proc = procs.start(self.argv, PROXY_CPU, pin, cwd=self.workdir, stdout=log, stderr=log)
        self.pids.append(self.proc.pid)

    def status(self) -> dict[str, Any] | None:
        request = urllib.request.Request(f"http://{HOST}:{self.admin}/api/v1/status")
        request.add_header("Authorization", f"Bearer {TOKEN}")
        try:
            with urllib.request.urlopen(request, timeout=1) as response:
                return dict(json.loads(response.read()))
        except (OSError, ValueError):
            return None

    def ha(self) -> dict[str, Any]:
        status = self.status()
        return dict(status.get("ha") or {}) if status else {}

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def log_tail(self) -> str:
        return _tail(self.workdir / "stderr.log")


def wait_until(check: Callable[[], bool], what: str, nodes: Iterable[Node], timeout: float = START_TIMEOUT) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        for node in nodes:
            if node.proc is not None and node.proc.poll() is not None:
                raise StartError(f"{node.name} exited with code {node.proc.returncode}{node.log_tail()}")
        if time.monotonic() > deadline:
            raise StartError(f"{what}: not within {timeout:g} s" + "".join(n.log_tail() for n in nodes))
        time.sleep(0.02)


def vip_served_by(port: int) -> str | None:
    """The X-Origin of a GET / on the VIP, or None when it does not answer 200."""
    try:
        with urllib.request.urlopen(f"http://{HOST}:{port}/", timeout=0.5) as response:
            return response.headers.get("X-Origin") if response.status == 200 else None
    except OSError:
        return None


# ---------------------------------------------------------------------------
# the load: closed loop, every request recorded


class _Closed(Exception):
    """The server closed the connection where a response (or its rest) was due."""


def error_kind(exc: BaseException) -> str:
    if isinstance(exc, _Closed):
        return "closed"
    code = getattr(exc, "errno", None)
    if code == errno.ECONNREFUSED:
        return "refused"
    if code in (errno.ECONNRESET, errno.EPIPE, errno.ECONNABORTED):
        return "reset"
    if code == errno.ETIMEDOUT:
        return "timeout"
    return "other"


async def read_response(conn: RawConn, buf: bytes) -> tuple[bytes, bytes, bool, bytes]:
    """(status, X-Origin, close, leftover) of one response; the body is read and dropped."""
    end = buf.find(b"\r\n\r\n")
    while end < 0:
        data = await conn.recv(65536)
        if not data:
            raise _Closed
        buf += data
        end = buf.find(b"\r\n\r\n")
        if end < 0 and len(buf) > MAX_HEAD:
            raise ProtocolError("response head too large")
    head = buf[:end]
    if not head.startswith(b"HTTP/1."):
        raise ProtocolError("not an HTTP/1 response")
    status, lower = head[9:12], head.lower()
    node = header_value(lower, head, b"x-origin:") or b""
    close = b"\r\nconnection: close" in lower
    i = lower.find(b"\r\ncontent-length:")
    if i >= 0:
        j = lower.find(b"\r\n", i + 17)
        total = end + 4 + int(head[i + 17 : j if j >= 0 else end])
        while len(buf) < total:
            data = await conn.recv(65536)
            if not data:
                raise _Closed
            buf += data
        return status, node, close, buf[total:]
    if b"\r\ntransfer-encoding:" in lower and b"chunked" in lower:
        skipper = ChunkedSkipper()
        pos = skipper.feed(buf, end + 4)
        while pos < 0:
            buf = await conn.recv(65536)
            if not buf:
                raise _Closed
            pos = skipper.feed(buf)
        return status, node, close, buf[pos:]
    if status[:1] == b"1" or status in (b"204", b"304"):
        return status, node, close, buf[end + 4 :]
    while await conn.recv(65536):  # no framing: the body runs to the close
        pass
    return status, node, True, b""


@dataclass
class Load:
    """``connections`` keep-alive clients and ``fresh`` new-connection-per-request clients on the VIP.

    ``records`` holds ``(start, end, client, outcome, node)`` for every request, times in
    ``time.perf_counter`` seconds: ``client`` is ``ka`` or ``new``; ``outcome`` one of ``OUTCOMES``
    (a failed connect is a request that failed); ``node`` the ``X-Origin`` of a response.
    """

    port: int
    connections: int
    fresh: int
    timeout: float
    max_requests: int
    records: list[tuple[float, float, str, str, str]] = field(default_factory=list)
    issued: int = 0
    deadline: float = 0.0

    def running(self) -> bool:
        return time.perf_counter() < self.deadline and self.issued < self.max_requests

    def add(self, start: float, client: str, outcome: str, node: str = "") -> None:
        self.records.append((start, time.perf_counter(), client, outcome, node))

    async def client(self, fresh: bool) -> None:
        label = "new" if fresh else "ka"
        request = (
            f"GET / HTTP/1.1\r\nHost: {HOST}:{self.port}\r\nUser-Agent: bench.ha_failover\r\n"
            + ("Connection: close\r\n" if fresh else "")
            + "\r\n"
        ).encode()
        while self.running():
            start = time.perf_counter()
            self.issued += 1
            conn = None
            with trio.move_on_after(self.timeout) as scope:
                try:
                    conn = await open_raw(HOST, self.port)
                except OSError as exc:
                    self.add(start, label, error_kind(exc))
            if conn is None:
                if scope.cancelled_caught:
                    self.add(start, label, "timeout")
                await trio.sleep(RETRY_PAUSE)
                continue
            buf = b""
            try:
                first = True
                while True:
                    if not first:
                        if not self.running():
                            break
                        start = time.perf_counter()
                        self.issued += 1
                    first = False
                    with trio.move_on_at(trio.current_time() + self.timeout - (time.perf_counter() - start)) as scope:
                        await conn.send_all(request)
                        status, node, close, buf = await read_response(conn, buf)
                    if scope.cancelled_caught:
                        self.add(start, label, "timeout")
                        break
                    self.add(start, label, "ok" if status[:1] == b"2" else "other", node.decode("latin-1"))
                    if fresh or close:
                        break
            except (OSError, _Closed, ProtocolError, ValueError) as exc:
                self.add(start, label, error_kind(exc))
            finally:
                conn.close()
            if fresh:
                await trio.sleep(FRESH_PAUSE)

    async def run(self, start: float, duration: float) -> None:
        """Until ``start + duration`` (or ``max_requests``); never longer than that plus one timeout."""
        self.deadline = start + duration
        with trio.move_on_after(duration + self.timeout + 1.0):
            async with trio.open_nursery() as nursery:
                for _ in range(self.connections):
                    nursery.start_soon(self.client, False)
                for _ in range(self.fresh):
                    nursery.start_soon(self.client, True)

    def first_ok(self, since: float, node: str | None = None) -> float | None:
        """End time of the first 2xx of a request started at ``since`` or later (served by ``node``)."""
        ends = [r[1] for r in self.records if r[3] == "ok" and r[0] >= since and (node is None or r[4] == node)]
        return min(ends) if ends else None


# ---------------------------------------------------------------------------
# analysis (pure: records and event times in seconds from the load's start)

Record = tuple[float, float, str, str, str]


def dark_time(records: list[Record], t0: float, t1: float, run_end: float) -> float:
    """The longest wait for a 2xx that ended within (t0, t1]: the time between two consecutive 2xx
    completions (the load's start before the first; the run's end after the last), counted in the
    phase where the wait ends, so a wait that began before a kill is the kill's."""
    marks = [0.0, *sorted(r[1] for r in records if r[3] == "ok"), run_end]
    return max((b - a for a, b in itertools.pairwise(marks) if t0 < b <= t1), default=0.0)


def failure_streak(records: list[Record]) -> int:
    """The longest run of consecutive failed requests, in order of their end."""
    best = run = 0
    for r in sorted(records, key=lambda r: r[1]):
        run = 0 if r[3] == "ok" else run + 1
        best = max(best, run)
    return best


@dataclass
class Phase:
    name: str
    t0: float
    t1: float
    anchor: float | None = None  # the event the gap is measured from
    anchor_what: str = ""
    node: str | None = None  # the gap ends at the first 2xx served by this node's origin
    requests: int = 0
    outcomes: dict[str, int] = field(default_factory=dict)
    served: dict[str, int] = field(default_factory=dict)
    gap: float | None = None
    dark: float = 0.0
    dark_new: float = 0.0
    streak: int = 0
    statuses: dict[str, int] = field(default_factory=dict)

    @property
    def failed(self) -> int:
        return self.requests - self.outcomes.get("ok", 0)

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name, "from": round(self.t0, 4), "to": round(self.t1, 4),
            "anchor": None if self.anchor is None else round(self.anchor, 4), "anchor_what": self.anchor_what,
            "gap_node": self.node, "requests": self.requests, "failed": self.failed,
            "outcomes": self.outcomes, "served_by": self.served,
            "gap_s": None if self.gap is None else round(self.gap, 4),
            "dark_s": round(self.dark, 4), "dark_new_connections_s": round(self.dark_new, 4),
            "failure_streak": self.streak,
        }


def analyse(records: list[Record], phase: Phase, run_end: float) -> Phase:
    """Fills ``phase`` from the requests that ended within [t0, t1) (a request in flight at a kill
    and failed by it is the kill's); the gap from every 2xx of a request started at the anchor or later."""
    mine = [r for r in records if phase.t0 <= r[1] < phase.t1]
    phase.requests = len(mine)
    counts = Counter(r[3] for r in mine)
    phase.outcomes = {k: counts.get(k, 0) for k in OUTCOMES}
    phase.served = dict(sorted(Counter(r[4] or "-" for r in mine if r[3] == "ok").items()))
    phase.dark = dark_time(records, phase.t0, phase.t1, run_end)
    phase.dark_new = dark_time([r for r in records if r[2] == "new"], phase.t0, phase.t1, run_end)
    phase.streak = failure_streak(mine)
    if phase.anchor is not None:
        ends = [r[1] for r in records if r[3] == "ok" and r[0] >= phase.anchor and (phase.node is None or r[4] == phase.node)]
        phase.gap = min(ends) - phase.anchor if ends else None
    return phase


# ---------------------------------------------------------------------------
# output


def _s(x: float | None, digits: int = 3) -> str:
    return "-" if x is None else f"{x:.{digits}f}"


def table(phases: list[Phase]) -> str:
    head = (f"{'phase':<22}{'window s':>12}{'requests':>10}{'2xx':>8}{'failed':>8}{'refused':>9}{'reset':>7}"
            f"{'closed':>8}{'timeout':>9}{'other':>7}{'gap s':>8}{'dark s':>8}{'dark new':>9}{'streak':>8}  served by")
    lines = [head, "-" * len(head)]
    for p in phases:
        o = p.outcomes
        served = " ".join(f"{k}={v}" for k, v in p.served.items()) or "-"
        lines.append(
            f"{p.name:<22}{f'{p.t0:.2f}-{p.t1:.2f}':>12}{p.requests:>10,}{o.get('ok', 0):>8,}{p.failed:>8,}"
            f"{o.get('refused', 0):>9,}{o.get('reset', 0):>7,}{o.get('closed', 0):>8,}{o.get('timeout', 0):>9,}"
            f"{o.get('other', 0):>7,}{_s(p.gap):>8}{_s(p.dark):>8}{_s(p.dark_new):>9}{p.streak:>8,}  {served}"
        )
    return "\n".join(lines)


def transitions(node: Node, wall0: float) -> list[dict[str, Any]]:
    """The node's HA transitions, ``at`` in seconds from the load's start (``wall0`` its wall time)."""
    out = []
    for t in node.ha().get("transitions", []):
        out.append({"node": node.name, "at": round(float(t["at"]) - wall0, 4), "from": t["from"], "to": t["to"],
                    "reason": t["reason"]})
    return out


def first_transition(events: list[dict[str, Any]], node: str, to: str, after: float) -> dict[str, Any] | None:
    found = [e for e in events if e["node"] == node and e["to"] == to and e["at"] >= after]
    return min(found, key=lambda e: e["at"]) if found else None


# ---------------------------------------------------------------------------
# the run


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="python -m bench.ha_failover", description=__doc__.split("\n\n")[0])
    ap.add_argument("-c", "--connections", type=int, default=20, help="keep-alive clients on the VIP (20)")
    ap.add_argument("--fresh", type=int, default=2, help="clients opening a new connection per request (2)")
    ap.add_argument("-d", "--duration", type=float, default=None, help="seconds of load (6; 8 with --handback)")
    ap.add_argument("--kill-after", type=float, default=2.0, help="SIGKILL to the master this many seconds in (2)")
    ap.add_argument("--kill-jitter", type=float, default=None,
                    help="add a random 0..S seconds to the kill time, so that it lands anywhere in the advert "
                    "cycle (default: one advert interval; 0 for exactly --kill-after)")
    ap.add_argument("--interval", type=float, default=0.2, help="ha.advert_interval, seconds (0.2)")
    ap.add_argument("--timeout", type=float, default=0.5, help="per-request timeout, seconds (0.5)")
    ap.add_argument("--max-requests", type=int, default=500_000, help="request bound, failed connects included")
    ap.add_argument("--handback", action="store_true", help="restart the old master: it preempts and takes the VIP back")
    ap.add_argument("--restart-after", type=float, default=None,
                    help="with --handback: restart the old master this many seconds in (kill + 1.5 s), "
                    "not before the VIP has answered again")
    ap.add_argument("--origins", choices=("python", "nginx"), default=None,
                    help="origin servers: nginx (default when installed) or python (bench.origin)")
    ap.add_argument("--appliance", default=None, help="appliance command (default: .venv/bin/appliance)")
    ap.add_argument("--no-pin", action="store_true", help="do not pin processes to CPUs")
    ap.add_argument("--json", metavar="FILE", default=None, help="write settings, events and figures as JSON")
    ap.add_argument("--records", metavar="FILE", default=None, help="write every request as CSV (start,end,client,outcome,node)")
    args = ap.parse_args(argv)
    if args.duration is None:
        args.duration = 8.0 if args.handback else 6.0
    if args.kill_jitter is None:
        args.kill_jitter = args.interval
    if args.restart_after is None:
        args.restart_after = args.kill_after + 1.5
    if args.connections < 0 or args.fresh < 0 or args.connections + args.fresh < 1:
        ap.error("-c and --fresh: at least one client")
    if args.interval <= 0 or args.timeout <= 0 or args.max_requests < 1:
        ap.error("--interval, --timeout and --max-requests must be positive")
    if args.kill_after <= 0 or args.kill_jitter < 0 or args.kill_after + args.kill_jitter >= args.duration:
        ap.error("--kill-after (+ --kill-jitter) must be within the run (0 < kill-after < -d)")
    if args.handback and not args.kill_after + args.kill_jitter < args.restart_after < args.duration:
        ap.error("--restart-after must be after the kill and within the run")
    nginx = find_tool("nginx")
    if args.origins == "nginx" and nginx is None:
        ap.error(f"--origins nginx: nginx is not on PATH nor in {', '.join(SBIN_DIRS)} (apt-get install nginx)")
    args.origins, args.origins_why = choose_origins(args.origins, nginx)
    return args


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


async def drive(args: argparse.Namespace, load: Load, a: Node, procs: Procs, pin: bool) -> dict[str, float]:
    """Runs the load; kills lb-a (and restarts it with --handback) on time. Times in perf_counter seconds."""
    marks: dict[str, float] = {}
    start = time.perf_counter()
    marks["start"], marks["wall0"] = start, time.time()
    # SIGTERM (make stopped, the smoke test's bound) ends the run cleanly; main's finally stops the processes.
    with trio.open_signal_receiver(signal.SIGTERM) as signals:
        async with trio.open_nursery() as nursery:

            async def on_signal() -> None:
                async for _ in signals:
                    marks["interrupted"] = 1.0
                    nursery.cancel_scope.cancel()

            nursery.start_soon(on_signal)
            async with trio.open_nursery() as run:
                run.start_soon(load.run, start, args.duration)
                kill_at = args.kill_after + random.uniform(0.0, args.kill_jitter)
                await trio.sleep(max(0.0, start + kill_at - time.perf_counter()))
                assert a.proc is not None
                marks["kill"] = time.perf_counter()
                os.kill(a.proc.pid, signal.SIGKILL)  # the master dies without a word: no priority-0 advert
                await trio.to_thread.run_sync(a.proc.wait, abandon_on_cancel=True)
                if args.handback:
                    await trio.sleep(max(0.0, start + args.restart_after - time.perf_counter()))
                    while load.first_ok(marks["kill"]) is None and load.running():
                        await trio.sleep(0.01)
                    if load.running():
                        marks["restart"] = time.perf_counter()
                        await trio.to_thread.run_sync(a.start, procs, pin)  # fork+exec off the event loop
            nursery.cancel_scope.cancel()
    if "interrupted" in marks:
        raise KeyboardInterrupt
    marks["end"] = time.perf_counter()
    return marks


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    cmd = appliance_argv(args.appliance)
    if cmd is None:
        print("cannot set up: no appliance command (.venv/bin/appliance missing; run `make test` or pass --appliance)",
              file=sys.stderr)
        return 2
    pin = (
        not args.no_pin
        and shutil.which("taskset") is not None
        and hasattr(os, "sched_setaffinity")
        and {LOAD_CPU, PROXY_CPU} <= os.sched_getaffinity(0)
    )
    md = master_down_interval(PRIORITY["lb-b"], args.interval)
    aim = md + AIM_SLACK
    procs = Procs()
    signal.signal(signal.SIGTERM, _interrupt)
    pids: dict[str, list[int]] = {}
    try:
        with tempfile.TemporaryDirectory(prefix="bench-ha-") as tmpname:
            tmp = Path(tmpname)
            try:
                setup = set_up(args, cmd, procs, pin, tmp, pids)
            except StartError as exc:
                print(f"cannot set up: {exc}", file=sys.stderr)
                return 2
            a, b, vip, origin_names = setup
            if pin:
                os.sched_setaffinity(0, {LOAD_CPU})  # the load shares CPU 0 with the origins
            print(f"# HA pair on {HOST}:{vip}: lb-a priority {PRIORITY['lb-a']}, lb-b priority {PRIORITY['lb-b']}, "
                  f"advert_interval {args.interval * 1000:g}ms, preempt on; {args.origins} origins "
                  f"{origin_names['lb-a']} (behind lb-a) and {origin_names['lb-b']} (behind lb-b)")
            print(f"# load: {args.connections} keep-alive + {args.fresh} new-connection clients, -d {args.duration:g} s, "
                  f"timeout {args.timeout:g} s, kill -9 lb-a at {args.kill_after:g} s"
                  + (f" + 0..{args.kill_jitter:g} s" if args.kill_jitter else "")
                  + (f", restart lb-a at {args.restart_after:g} s" if args.handback else "")
                  + (f"; pinned: appliances on CPU {PROXY_CPU}, origins + load on CPU {LOAD_CPU}" if pin else "; not pinned"))
            sys.stdout.flush()
            load = Load(vip, args.connections, args.fresh, args.timeout, args.max_requests)
            with CpuMeter(None) as meter:  # CPU used meanwhile by processes this run did not start
                marks = trio.run(drive, args, load, a, procs, pin)
            pids["lb-a"] = list(a.pids)
            if "restart" in marks:  # give the restarted node a moment to answer its API if it is still starting
                give_up = time.monotonic() + 5.0
                while a.alive() and a.status() is None and time.monotonic() < give_up:
                    time.sleep(0.05)
            events = sorted(transitions(b, marks["wall0"]) + transitions(a, marks["wall0"]), key=lambda e: e["at"])
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    finally:
        procs.stop_all()
    return report(args, load, marks, events, origin_names, md, aim, pin, pids, meter)


def set_up(
    args: argparse.Namespace, cmd: list[str], procs: Procs, pin: bool, tmp: Path, pids: dict[str, list[int]]
) -> tuple[Node, Node, int, dict[str, str]]:
    """Origins, lb-a (master), lb-b (backup); returns once the VIP answers through lb-a."""
    secret = tmp / "ha.key"
    secret.write_text(os.urandom(32).hex())
    secret.chmod(0o600)
    origin_names, origin_ports = {}, {}
    for node in ("lb-a", "lb-b"):
        name = f"web-{node[-1]}"
        proc, port = start_origin(procs, args.origins, name, pin, 3, tmp)
        pids[name] = [proc.pid]
        origin_names[node], origin_ports[node] = name, port
    vip = free_port()
    udp = {"lb-a": free_port(), "lb-b": free_port()}
    nodes: dict[str, Node] = {}
    for name, peer in (("lb-a", "lb-b"), ("lb-b", "lb-a")):
        workdir = tmp / name
        workdir.mkdir()
        token = workdir / "admin.token"
        token.write_text(TOKEN + "\n")
        token.chmod(0o600)
        admin = free_port()
        conf = workdir / "appliance.yaml"
        conf.write_text(ha_config(name, PRIORITY[name], vip, origin_ports[name], admin, udp[name], udp[peer], secret,
                                  workdir, args.interval))
        nodes[name] = Node(name, workdir, admin, [*cmd, "run", "-c", str(conf)])
    a, b = nodes["lb-a"], nodes["lb-b"]
    progress(f"starting lb-a (priority {PRIORITY['lb-a']}) and waiting until it is master")
    a.start(procs, pin)
    pids["lb-a"] = a.pids
    wait_until(lambda: a.ha().get("state") == "master", "lb-a master", [a])
    progress(f"starting lb-b (priority {PRIORITY['lb-b']}) and waiting until it is backup behind lb-a")
    b.start(procs, pin)
    pids["lb-b"] = b.pids
    wait_until(lambda: b.ha().get("state") == "backup" and b.ha().get("master") == "lb-a", "lb-b backup of lb-a", [a, b])
    wait_until(lambda: vip_served_by(vip) == origin_names["lb-a"], "the VIP answering through lb-a", [a, b])
    return a, b, vip, origin_names


def report(
    args: argparse.Namespace, load: Load, marks: dict[str, float], events: list[dict[str, Any]],
    origin_names: dict[str, str], md: float, aim: float, pin: bool, pids: dict[str, list[int]], meter: CpuMeter,
) -> int:
    start = marks["start"]
    records = [(s - start, e - start, c, o, n) for s, e, c, o, n in load.records]
    kill = marks["kill"] - start
    end = marks["end"] - start
    restart = marks["restart"] - start if "restart" in marks else None
    phases = [analyse(records, Phase("steady (lb-a master)", 0.0, kill), end)]
    killed = analyse(records, Phase("kill -9 lb-a", kill, restart if restart is not None else end, kill, "the kill",
                                    origin_names["lb-b"]), end)
    phases.append(killed)
    takeover = first_transition(events, "lb-b", "master", kill)
    handback: Phase | None = None
    a_master = b_down = None
    if restart is not None:
        a_master = first_transition(events, "lb-a", "master", restart)
        b_down = first_transition(events, "lb-b", "backup", restart)
        anchor, what = (b_down["at"], "lb-b's step-down") if b_down else (
            (a_master["at"], "lb-a's takeover") if a_master else (None, ""))
        handback = analyse(records, Phase("handback to lb-a", restart, end, anchor, what, origin_names["lb-a"]), end)
        phases.append(handback)
    print(table(phases))

    notes: list[str] = []
    ok = True
    notes.append(f"master-down interval of lb-b (priority {PRIORITY['lb-b']}): 3 x {args.interval:g} + "
                 f"{256 - PRIORITY['lb-b']}/256 x {args.interval:g} = {md:.3f} s; aim: gap <= {md:.3f} + {AIM_SLACK:g} "
                 f"= {aim:.3f} s")
    if takeover:
        heard = kill - (takeover["at"] - md)  # the master-down timer ran from the last advert lb-b heard
        notes.append(f"lb-b became master {takeover['at'] - kill:.3f} s after the kill ({takeover['reason']}): "
                     f"its timer ran from lb-a's last advert, ~{heard:.3f} s before the kill (0 to {args.interval:g} s)")
    else:
        notes.append("lb-b did not become master within the run")
    if killed.gap is None:
        ok = False
        notes.append(f"kill: no 2xx from {origin_names['lb-b']} after the kill within the run: aim NOT met")
    else:
        verdict = "met" if killed.gap <= aim else "NOT met"
        ok = killed.gap <= aim
        notes.append(f"kill: the VIP answered again {killed.gap:.3f} s after the kill ({killed.failed:,} requests failed, "
                     f"no 2xx for {killed.dark:.3f} s): aim {verdict} ({aim - killed.gap:+.3f} s margin)")
    if phases[0].failed:
        notes.append(f"{phases[0].failed} request(s) failed before the kill: the rig was not steady")
    if handback is not None:
        if a_master:
            notes.append(f"handback: lb-a restarted at {restart:.2f} s, master {a_master['at'] - restart:.3f} s later "
                         f"({a_master['reason']})"
                         + (f"; lb-b stepped down at {b_down['at']:.3f} s ({b_down['reason']})" if b_down else ""))
        else:
            notes.append(f"handback: lb-a restarted at {restart:.2f} s and was not master by the end of the run "
                         "(a longer -d or an earlier --restart-after)")
        if handback.gap is not None:
            notes.append(f"handback: the first 2xx through lb-a came {handback.gap:.3f} s after {handback.anchor_what}; "
                         f"new connections went without a 2xx for {handback.dark_new:.3f} s "
                         f"({handback.failed:,} requests failed); lb-a's bind is retried every {BIND_RETRY * 1000:g} ms "
                         "while lb-b holds the port")
        ka_b = sum(1 for r in records if r[0] >= (handback.anchor or end) and r[2] == "ka" and r[3] == "ok"
                   and r[4] == origin_names["lb-b"])
        if ka_b:
            notes.append(f"handback: {ka_b:,} responses on keep-alive connections still came through lb-b after it "
                         "stepped down (connections outlive the listener)")
    elif restart is None and args.handback:
        notes.append("handback: not done (the VIP did not answer again after the kill)")
    busy = " ".join(f"{cpu} {pct:.0f}%" for cpu, pct in sorted(meter.busy.items()))
    notes.append(f"cpu busy during the run: {busy}; other processes: {meter.foreign_pct or 0:.1f}% of one CPU")
    if meter.foreign_pct is not None and meter.foreign_pct > FOREIGN_MAX:
        notes.append(f"other processes used {meter.foreign_pct:.0f}% of one CPU during the run: the figures are "
                     "disturbed; rerun on a quiet machine")
    if not pin:
        notes.append("not pinned (taskset missing, fewer than 2 CPUs, or --no-pin)")
    for n in notes:
        print(f"note: {n}")
    print(f"result: aim {'met' if ok else 'NOT met'}")

    if args.records:
        with open(args.records, "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["start", "end", "client", "outcome", "node"])
            w.writerows((f"{s:.6f}", f"{e:.6f}", c, o, n) for s, e, c, o, n in records)
    if args.json:
        payload = {
            "when": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "settings": {
                "connections": args.connections, "fresh": args.fresh, "duration": args.duration,
                "kill_after": args.kill_after, "kill_jitter": args.kill_jitter, "restart_after": args.restart_after if args.handback else None,
                "advert_interval": args.interval, "timeout": args.timeout, "max_requests": args.max_requests,
                "origins": args.origins, "priorities": PRIORITY, "pinned": pin,
            },
            "pids": pids,
            "cpu_busy_pct": meter.busy,
            "foreign_cpu_pct": meter.foreign_pct,
            "master_down_interval_s": round(md, 4),
            "aim_s": round(aim, 4),
            "aim_met": ok,
            "kill_at": round(kill, 4),
            "restart_at": None if restart is None else round(restart, 4),
            "end_at": round(end, 4),
            "events": events,
            "phases": [p.to_dict() for p in phases],
            "requests": len(records),
            "notes": notes,
        }
        Path(args.json).write_text(json.dumps(payload, indent=2) + "\n")
        print(f"results written to {args.json}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
