"""SNAT scale: how many connections to ONE member address and port one SNAT address holds, then four.

    python -m bench.snat [--addresses 1,4] [--target N] [--timeout 180] [--port-range auto|host|LO-HI]
                         [--json FILE] [--no-pin]

(`make bench-snat` runs it with the defaults.) For each SNAT address count it:

1. starts a sink (``python -m bench.snat sink``): one process that accepts on
   127.0.0.1:PORT, writes one byte (``!``) to every connection and holds it;
2. writes a temporary config: a ``mode: tcp`` virtual server whose pool has that
   one member and ``snat: out``, with ``snat_pools: {out: {addresses: [127.0.0.30]}}``
   (four addresses: ``[127.0.0.30-127.0.0.33]``), and starts
   ``.venv/bin/appliance run -c TMPCONF``;
3. opens connections to the virtual server from several client source addresses
   (127.0.0.2 up: one source has only about a port range's worth of ports toward
   the virtual server too), at most ``WINDOW`` in flight. A connection counts as
   held once the sink's byte came back through the appliance; one the appliance
   closes before that byte is an error (it could not connect to the member: no
   source port left). It stops at ``--target``, after ``--stop-errors`` errors,
   or at its share of ``--timeout``;
4. waits ``SETTLE`` seconds, counts the connections still held (at the client and
   at the sink, per source address the sink sees) and the appliance's RSS;
5. stops the appliance, then the sink, by PID (SIGTERM, SIGKILL after a bound).

One source address can reach one member address and port from about
``net.ipv4.ip_local_port_range`` ports (28,232 by default), so with one SNAT
address the appliance runs out there, and four should carry about four times as
many. Every held connection costs the appliance 2 file descriptors: the full
default range needs ~250k descriptors. When the hard ``RLIMIT_NOFILE`` is too low
(and the bench cannot raise it), ``--port-range auto`` runs everything in a
private network namespace (its own loopback; the host's range and ports are not
touched) with a port range small enough to reach four addresses' wall within the
limit, and says so. Loopback only; every wait is bounded.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import errno
import fcntl
import json
import math
import os
import platform
import resource
import select
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from bench.run import (
    REPO,
    Procs,
    StartError,
    _tail,
    appliance_argv,
    port_open,
    progress,
)

HOST = "127.0.0.1"
SNAT_FIRST = 30  # SNAT addresses 127.0.0.30, .31, ...
CLIENT_FIRST, CLIENT_LAST = 2, 29  # client source addresses 127.0.0.2 .. 127.0.0.29
LOAD_CPU, PROXY_CPU = 0, 1
PORT_RANGE_FILE = "/proc/sys/net/ipv4/ip_local_port_range"
NETNS_RANGE_LOW = 40000  # a private namespace's range starts here (the listeners sit below it)
FD_RESERVE = 256  # the appliance's own descriptors: listeners, logs, epoll, splice pipes
MARGIN = 1.1  # the default target: the largest address count x the port range x this
WINDOW = 128  # connections opened and not yet answered, at most (the appliance's backlog is 1024)
GREETING_TIMEOUT = 5.0  # a connection whose byte has not come back by then is an error
SETTLE = 1.0  # seconds after the last open before counting what is still held
STOP_GRACE = 10.0  # SIGTERM, then SIGKILL after this long
START_TIMEOUT = 10.0
RATIO_PER_ADDRESS = 0.875  # the goal: four addresses carry at least 3.5 x one
CLIENT_SHARE = 0.8  # a client source is given at most this share of the port range

IP_BIND_ADDRESS_NO_PORT = getattr(socket, "IP_BIND_ADDRESS_NO_PORT", 24)
_CLONE_NEWNET = 0x40000000
_CLONE_NEWUSER = 0x10000000
_SIOCGIFFLAGS, _SIOCSIFFLAGS, _IFF_UP = 0x8913, 0x8914, 0x1
_IFREQ = "16sh22x"  # struct ifreq: name, flags, rest of the union (40 bytes)
_EPOLL_CLOSED = select.EPOLLIN | select.EPOLLRDHUP | select.EPOLLERR | select.EPOLLHUP
_CLIENT_CLOSED = {errno.ECONNRESET, errno.EPIPE, errno.ECONNABORTED}


# ---------------------------------------------------------------------------
# file descriptors, port range, network namespace


def raise_nofile() -> tuple[int, int]:
    """Raises this process's soft RLIMIT_NOFILE to the hard limit (children inherit it); returns (soft, hard)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)


def read_port_range() -> tuple[int, int]:
    low, high = Path(PORT_RANGE_FILE).read_text().split()
    return int(low), int(high)


def range_size(rng: tuple[int, int]) -> int:
    return rng[1] - rng[0] + 1


def max_connections(nofile: int) -> int:
    """Connections the appliance can hold with ``nofile`` descriptors: 2 each (client and member side)."""
    return max(0, (nofile - FD_RESERVE) // 2)


def fitting_range(limit: int, addresses: int) -> tuple[int, int]:
    """The largest port range (a multiple of 100 ports) whose wall at ``addresses`` is reached within ``limit``."""
    size = int(limit / (addresses * MARGIN)) // 100 * 100
    size = max(size, 100)
    return NETNS_RANGE_LOW, NETNS_RANGE_LOW + size - 1


def enter_private_netns() -> str | None:
    """Moves this process (and the children it starts later) into a new network namespace, loopback up.

    Returns None when done, else why it could not. Needs CAP_SYS_ADMIN, or unprivileged user namespaces
    (then this process is root of a new user namespace, which owns the new network namespace's sysctls).
    """
    libc = ctypes.CDLL(None, use_errno=True)
    uid, gid = os.getuid(), os.getgid()
    if libc.unshare(_CLONE_NEWNET) != 0:
        first = ctypes.get_errno()
        if first != errno.EPERM or libc.unshare(_CLONE_NEWUSER | _CLONE_NEWNET) != 0:
            return f"unshare(CLONE_NEWNET): {os.strerror(first)}"
        try:
            Path("/proc/self/setgroups").write_text("deny")
            Path("/proc/self/uid_map").write_text(f"0 {uid} 1")
            Path("/proc/self/gid_map").write_text(f"0 {gid} 1")
        except OSError as exc:
            return f"user namespace mapping: {exc.strerror or exc}"
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            got = fcntl.ioctl(s, _SIOCGIFFLAGS, struct.pack(_IFREQ, b"lo", 0))
            flags = struct.unpack(_IFREQ, got)[1]
            fcntl.ioctl(s, _SIOCSIFFLAGS, struct.pack(_IFREQ, b"lo", flags | _IFF_UP))
    except OSError as exc:
        return f"loopback up in the new namespace: {exc.strerror or exc}"
    return None


def set_port_range(rng: tuple[int, int]) -> None:
    """Sets the (private namespace's) ephemeral port range; raises OSError when it did not take."""
    Path(PORT_RANGE_FILE).write_text(f"{rng[0]} {rng[1]}\n")
    if read_port_range() != rng:
        raise OSError(f"{PORT_RANGE_FILE} reads {read_port_range()} after writing {rng}")


def listen_port(rng: tuple[int, int]) -> int:
    """A free port on 127.0.0.1 outside the ephemeral range, so a listener takes none of its ports."""
    candidates = [p for p in range(10000, 32000) if not rng[0] <= p <= rng[1]]
    start = (os.getpid() * 7919 + int(time.monotonic() * 1000)) % len(candidates)
    for i in range(len(candidates)):
        port = candidates[(start + i * 97) % len(candidates)]
        with socket.socket() as s:
            try:
                s.bind((HOST, port))
            except OSError:
                continue
            return port
    raise StartError("no free port below the ephemeral range")


def addr(last: int) -> str:
    return f"127.0.0.{last}"


# ---------------------------------------------------------------------------
# the sink: the one member


def run_sink(port: int) -> int:
    """Accepts, writes ``!``, holds. SIGUSR1 prints one JSON status line. Exits on SIGTERM."""
    raise_nofile()
    status_wanted = False

    def want_status(signum: int, frame: object) -> None:
        nonlocal status_wanted
        status_wanted = True

    signal.signal(signal.SIGUSR1, want_status)
    listener = socket.socket()
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind((HOST, port))
    listener.listen(4096)
    listener.setblocking(False)
    print(f"listening on {HOST}:{listener.getsockname()[1]}", flush=True)
    ep = select.epoll()
    lfd = listener.fileno()
    ep.register(lfd, select.EPOLLIN)
    conns: dict[int, tuple[socket.socket, str]] = {}
    sources: Counter[str] = Counter()
    accepted = closed = emfile = 0
    paused_until = 0.0
    while True:
        if status_wanted:
            status_wanted = False
            line = {"held": len(conns), "accepted": accepted, "closed": closed, "emfile": emfile,
                    "sources": dict(sorted((k, v) for k, v in sources.items() if v))}
            print(json.dumps(line), flush=True)
        if paused_until and time.monotonic() >= paused_until:
            paused_until = 0.0
            ep.register(lfd, select.EPOLLIN)
        for fd, _ in ep.poll(0.1):
            if fd == lfd:
                for _ in range(256):
                    try:
                        conn, peer = listener.accept()
                    except BlockingIOError:
                        break
                    except OSError as exc:
                        if exc.errno in (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM):
                            emfile += 1
                            ep.unregister(lfd)
                            paused_until = time.monotonic() + 0.1
                            break
                        if exc.errno == errno.ECONNABORTED:
                            continue
                        raise
                    accepted += 1
                    conn.setblocking(False)
                    try:
                        conn.send(b"!")
                    except OSError:
                        conn.close()
                        closed += 1
                        continue
                    conns[conn.fileno()] = (conn, peer[0])
                    sources[peer[0]] += 1
                    ep.register(conn.fileno(), _EPOLL_CLOSED)
            else:  # the other side closed (or wrote, which nothing here does): let it go
                conn, source = conns.pop(fd)
                ep.unregister(fd)
                conn.close()
                sources[source] -= 1
                closed += 1


def start_sink(procs: Procs, port: int, pin: bool, log: Path) -> subprocess.Popen[bytes]:
    argv = [sys.executable, "-m", "bench.snat", "sink", "--port", str(port)]
    with open(log, "wb") as errf:
        proc = procs.start(argv, LOAD_CPU, pin, cwd=REPO, stdout=subprocess.PIPE, stderr=errf)
    assert proc.stdout is not None
    ready, _, _ = select.select([proc.stdout], [], [], START_TIMEOUT)
    line = proc.stdout.readline() if ready else b""
    if not line.startswith(b"listening on "):
        procs.stop(proc, grace=2.0)
        raise StartError(f"the sink did not start (got {line!r}){_tail(log)}")
    return proc


def sink_status(proc: subprocess.Popen[bytes], timeout: float = 3.0) -> dict[str, Any] | None:
    """Asks the sink (SIGUSR1) for its JSON status line."""
    if proc.poll() is not None or proc.stdout is None:
        return None
    proc.send_signal(signal.SIGUSR1)
    ready, _, _ = select.select([proc.stdout], [], [], timeout)
    if not ready:
        return None
    try:
        parsed: dict[str, Any] = json.loads(proc.stdout.readline())
    except ValueError:
        return None
    return parsed


# ---------------------------------------------------------------------------
# the appliance


def snat_config(vip_port: int, sink_port: int, addresses: int, access_log: Path) -> str:
    """The appliance's YAML (SPEC §2): one tcp-mode virtual server, one member, ``snat: out``.

    ``shutdown_grace: 0s``: at SIGTERM the held connections are cut at once (the bench does not wait for them).
    """
    if not 1 <= addresses <= 255 - SNAT_FIRST:
        raise ValueError(f"{addresses} SNAT addresses: 1 to {255 - SNAT_FIRST}")
    first = addr(SNAT_FIRST)
    listed = first if addresses == 1 else f"{first}-{addr(SNAT_FIRST + addresses - 1)}"
    return (
        f"appliance: {{name: bench-snat, shutdown_grace: 0s, log: {{access: {json.dumps(str(access_log))}, format: json}}}}\n"
        "snat_pools:\n"
        "  out:\n"
        f"    addresses: [{listed}]\n"
        "pools:\n"
        "  sink:\n"
        "    snat: out\n"
        "    members:\n"
        f"      - {{address: {HOST}:{sink_port}, name: sink}}\n"
        "virtual_servers:\n"
        "  snat:\n"
        f"    listen: [{HOST}:{vip_port}]\n"
        "    mode: tcp\n"
        "    pool: sink\n"
    )


def rss_bytes(pid: int) -> int | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def cpu_seconds(pid: int) -> float | None:
    """utime + stime of the process, from /proc/PID/stat."""
    try:
        data = Path(f"/proc/{pid}/stat").read_text()
        rest = data[data.rfind(")") + 2 :].split()
        return (int(rest[11]) + int(rest[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return None


def nofile_of(pid: int) -> int | None:
    """The process's soft 'Max open files' from /proc/PID/limits."""
    try:
        for line in Path(f"/proc/{pid}/limits").read_text().splitlines():
            if line.startswith("Max open files"):
                return int(line.split()[3])
    except (OSError, ValueError, IndexError):
        pass
    return None


def wait_vip(proc: subprocess.Popen[bytes], port: int, deadline: float, log: Path) -> None:
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise StartError(f"the appliance exited with code {proc.returncode}{_tail(log)}")
        if port_open(port):
            return
        time.sleep(0.05)
    raise StartError(f"the appliance did not listen on {HOST}:{port} in time{_tail(log)}")


def not_supported_lines(log: Path) -> list[str]:
    try:
        text = log.read_text(errors="replace")
    except OSError:
        return []
    return [line.strip() for line in text.splitlines() if "not yet supported" in line and "snat" in line.lower()]


def access_errors(log: Path, top: int = 4) -> dict[str, int]:
    """The access log's ``error`` values (one JSON line per connection), most frequent first."""
    counts: Counter[str] = Counter()
    try:
        with open(log, errors="replace") as f:
            for line in f:
                try:
                    err = json.loads(line).get("error")
                except ValueError:
                    continue
                if err:
                    counts[str(err)] += 1
    except OSError:
        pass
    return dict(counts.most_common(top))


# ---------------------------------------------------------------------------
# the client: open, hold, count


@dataclass
class Opened:
    """What the client side saw in one run."""

    attempted: int = 0
    held: int = 0  # the sink's byte came back and the connection is still open
    errors: dict[str, int] = field(default_factory=lambda: {"closed": 0, "dropped": 0, "connect": 0, "timeout": 0})
    connect_errnos: dict[str, int] = field(default_factory=dict)
    first_error_at: int | None = None  # connections opened before the first one that failed
    errors_before_limit: int = 0  # errors followed by more than WINDOW later successful opens
    open_seconds: float = 0.0  # first connect to the last byte back
    stopped_by: str = ""  # target | errors | time

    @property
    def total_errors(self) -> int:
        return sum(self.errors.values())


class _Conn:
    __slots__ = ("index", "sock", "started")

    def __init__(self, index: int, sock: socket.socket, started: float) -> None:
        self.index = index
        self.sock = sock
        self.started = started


class Client:
    """Non-blocking connections from ``sources`` to the virtual server, driven by one epoll."""

    def __init__(self, vip_port: int, sources: list[str]) -> None:
        self.vip_port = vip_port
        self.sources = sources
        self.ep = select.epoll()
        self.pending: dict[int, _Conn] = {}  # fd -> opened, no byte back yet (insertion = time order)
        self.held: dict[int, _Conn] = {}
        self.result = Opened()
        self._error_indices: list[int] = []
        self._last_ok_index = -1
        self._first: float | None = None
        self._last_ok = 0.0

    def _error(self, kind: str, index: int) -> None:
        r = self.result
        r.errors[kind] += 1
        if r.first_error_at is None or index < r.first_error_at:
            r.first_error_at = index
        self._error_indices.append(index)

    def _open_one(self) -> None:
        index = self.result.attempted
        self.result.attempted += 1
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.setblocking(False)
        now = time.monotonic()
        if self._first is None:
            self._first = now
        try:
            s.setsockopt(socket.IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, 1)  # the port is picked per destination
            s.bind((self.sources[index % len(self.sources)], 0))
            code = s.connect_ex((HOST, self.vip_port))
        except OSError as exc:
            code = exc.errno or errno.EIO
        if code not in (0, errno.EINPROGRESS):
            s.close()
            name = errno.errorcode.get(code, str(code))
            self.result.connect_errnos[name] = self.result.connect_errnos.get(name, 0) + 1
            self._error("connect", index)
            return
        self.pending[s.fileno()] = _Conn(index, s, now)
        self.ep.register(s.fileno(), _EPOLL_CLOSED)

    def _forget(self, fd: int, conn: _Conn) -> None:
        self.ep.unregister(fd)
        conn.sock.close()

    def _events(self, timeout: float) -> None:
        for fd, _ in self.ep.poll(timeout):
            conn = self.pending.pop(fd, None)
            was_held = conn is None
            if conn is None:
                conn = self.held.pop(fd, None)
                if conn is None:
                    continue
            try:
                data = conn.sock.recv(64)
            except BlockingIOError:
                (self.held if was_held else self.pending)[fd] = conn
                continue
            except OSError as exc:
                self._forget(fd, conn)
                if was_held:
                    self._error("dropped", conn.index)
                elif exc.errno in _CLIENT_CLOSED:
                    self._error("closed", conn.index)  # accepted, then closed: no way to the member
                else:
                    name = errno.errorcode.get(exc.errno or 0, str(exc.errno))
                    self.result.connect_errnos[name] = self.result.connect_errnos.get(name, 0) + 1
                    self._error("connect", conn.index)
                continue
            if data and not was_held:
                self.held[fd] = conn
                self._last_ok = time.monotonic()
                self._last_ok_index = max(self._last_ok_index, conn.index)
            elif data:
                self.held[fd] = conn  # more bytes from the member: nothing sends them, keep it anyway
            else:
                self._forget(fd, conn)
                self._error("dropped" if was_held else "closed", conn.index)

    def _expire(self, now: float) -> None:
        while self.pending:
            fd, conn = next(iter(self.pending.items()))
            if now - conn.started < GREETING_TIMEOUT:
                return
            del self.pending[fd]
            self._forget(fd, conn)
            self._error("timeout", conn.index)

    def run(
        self, target: int, stop_errors: int, deadline: float, label: str, opened: Callable[[], None] | None = None
    ) -> Opened:
        """Opens up to ``target`` connections, then lets the last ones settle; every wait ends by ``deadline``.

        ``opened`` is called when the last one has answered, before the settle.
        """
        r = self.result
        next_report = time.monotonic() + 2.0
        while True:
            now = time.monotonic()
            if r.attempted >= target:
                r.stopped_by = r.stopped_by or "target"
            elif r.total_errors >= stop_errors:
                r.stopped_by = r.stopped_by or "errors"
            elif now >= deadline:
                r.stopped_by = r.stopped_by or "time"
            while not r.stopped_by and len(self.pending) < WINDOW and r.attempted < target:
                self._open_one()
                if r.total_errors >= stop_errors:
                    break
            if r.stopped_by and (not self.pending or now >= deadline + GREETING_TIMEOUT):
                break
            self._events(0.02)
            self._expire(time.monotonic())
            if time.monotonic() >= next_report:
                next_report += 2.0
                progress(f"{label}: {len(self.held):,} held, {r.total_errors:,} errors, {r.attempted:,} opened")
        for fd, conn in list(self.pending.items()):  # unanswered past the bound
            del self.pending[fd]
            self._forget(fd, conn)
            self._error("timeout", conn.index)
        if self._first is not None and self._last_ok:
            r.open_seconds = self._last_ok - self._first
        if opened is not None:
            opened()
        settle_end = time.monotonic() + SETTLE
        while (left := settle_end - time.monotonic()) > 0:
            self._events(min(left, 0.1))
        r.held = len(self.held)
        r.errors_before_limit = sum(1 for i in self._error_indices if i < self._last_ok_index - WINDOW)
        return r

    def close(self) -> None:
        for table in (self.pending, self.held):
            for conn in table.values():
                conn.sock.close()
            table.clear()
        self.ep.close()


def client_sources(target: int, port_range: int) -> list[str]:
    """Enough client source addresses that none needs more than CLIENT_SHARE of the port range."""
    needed = math.ceil(target / max(1, int(port_range * CLIENT_SHARE))) + 1
    if needed > CLIENT_LAST - CLIENT_FIRST + 1:
        raise StartError(f"{target:,} connections need {needed} client source addresses; at most "
                         f"{CLIENT_LAST - CLIENT_FIRST + 1}: lower --target")
    return [addr(CLIENT_FIRST + i) for i in range(needed)]


# ---------------------------------------------------------------------------
# one run, all runs


@dataclass
class Run:
    addresses: int
    snat: str
    status: str = "ok"  # ok | failed
    reason: str = ""
    opened: Opened | None = None
    sink: dict[str, Any] | None = None
    rss_before: int | None = None
    rss_after: int | None = None
    cpu_pct: float | None = None  # the appliance's CPU while the connections were opened
    appliance_nofile: int | None = None
    log_errors: dict[str, int] = field(default_factory=dict)
    not_supported: list[str] = field(default_factory=list)

    @property
    def held(self) -> int:
        return self.opened.held if self.opened else 0

    @property
    def bytes_per_conn(self) -> float | None:
        if self.rss_before is None or self.rss_after is None or not self.held:
            return None
        return (self.rss_after - self.rss_before) / self.held

    @property
    def wall(self) -> bool:
        """The run reached the appliance's limit: it closed connections it could not take to the member.

        (That these came at the end, not before the limit, is ``errors_before_limit``.)
        """
        o = self.opened
        return o is not None and o.errors["closed"] > 0

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["held"] = self.held
        d["bytes_per_conn"] = self.bytes_per_conn
        d["wall"] = self.wall
        return d


def run_one(
    addresses: int, target: int, stop_errors: int, deadline: float, args: argparse.Namespace,
    procs: Procs, pin: bool, tmp: Path, rng: tuple[int, int], sources: list[str],
) -> Run:
    snat = addr(SNAT_FIRST) if addresses == 1 else f"{addr(SNAT_FIRST)}-{addr(SNAT_FIRST + addresses - 1)}"
    run = Run(addresses, snat)
    label = f"{addresses} SNAT address{'es' if addresses > 1 else ''}"
    sink_port, vip_port = listen_port(rng), listen_port(rng)
    while vip_port == sink_port:
        vip_port = listen_port(rng)
    stderr_log = tmp / f"appliance-{addresses}.log"
    access_log = tmp / f"access-{addresses}.log"
    conf = tmp / f"appliance-{addresses}.yaml"
    conf.write_text(snat_config(vip_port, sink_port, addresses, access_log))
    sink: subprocess.Popen[bytes] | None = None
    appliance: subprocess.Popen[bytes] | None = None
    client: Client | None = None
    try:
        sink = start_sink(procs, sink_port, pin, tmp / f"sink-{addresses}.log")
        with open(stderr_log, "wb") as errf:
            appliance = procs.start([*args.appliance_cmd, "run", "-c", str(conf)], PROXY_CPU, pin,
                                    cwd=tmp, stdout=subprocess.DEVNULL, stderr=errf)
        wait_vip(appliance, vip_port, min(deadline, time.monotonic() + START_TIMEOUT), stderr_log)
        time.sleep(0.3)
        run.not_supported = not_supported_lines(stderr_log)
        run.appliance_nofile = nofile_of(appliance.pid)
        run.rss_before = rss_bytes(appliance.pid)
        progress(f"{label} ({snat}): appliance PID {appliance.pid} on {HOST}:{vip_port}, member {HOST}:{sink_port}, "
                 f"fd limit {run.appliance_nofile}")
        client = Client(vip_port, sources)
        pid = appliance.pid
        cpu = [(time.monotonic(), cpu_seconds(pid))]
        run.opened = client.run(target, stop_errors, deadline, label, lambda: cpu.append((time.monotonic(), cpu_seconds(pid))))
        (t0, c0), (t1, c1) = cpu[0], cpu[-1]
        if c0 is not None and c1 is not None and t1 > t0:
            run.cpu_pct = 100 * (c1 - c0) / (t1 - t0)
        run.rss_after = rss_bytes(appliance.pid)
        run.sink = sink_status(sink)
        if appliance.poll() is not None:
            run.status, run.reason = "failed", f"the appliance exited with code {appliance.returncode}{_tail(stderr_log)}"
    except (StartError, OSError) as exc:
        run.status, run.reason = "failed", str(exc)
    finally:
        if appliance is not None:
            procs.stop(appliance, grace=STOP_GRACE)
        if client is not None:
            client.close()
        if sink is not None:
            procs.stop(sink, grace=STOP_GRACE)
    run.log_errors = access_errors(access_log)
    return run


def plan(args: argparse.Namespace) -> dict[str, Any]:
    """Port range, namespace and target from the fd limit; may move this process into a private netns."""
    before = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    soft, hard = raise_nofile()
    limit = max_connections(soft)
    host_rng = read_port_range()
    largest = max(args.addresses)
    p: dict[str, Any] = {"nofile_before": before, "nofile": soft, "nofile_hard": hard, "max_connections": limit, "host_range": host_rng,
                         "netns": False, "fd_capped": False, "notes": []}
    want = args.port_range
    rng = host_rng
    if want == "auto":
        if math.ceil(largest * range_size(host_rng) * MARGIN) <= limit:
            want = "host"
        else:
            rng = fitting_range(limit, largest)
            p["notes"].append(
                f"fd limit {soft:,} (hard {hard:,}; this process cannot raise it): the appliance holds at most "
                f"{limit:,} connections (2 descriptors each), and {largest} x the host's {range_size(host_rng):,} ports "
                f"need {math.ceil(largest * range_size(host_rng) * MARGIN):,}: running in a private network namespace with "
                f"ip_local_port_range {rng[0]}-{rng[1]} ({range_size(rng):,} ports); the host's range is not touched"
            )
            want = f"{rng[0]}-{rng[1]}"
    if want != "host":
        lo, _, hi = want.partition("-")
        rng = (int(lo), int(hi))
        why = enter_private_netns()
        if why is not None:
            if args.port_range != "auto":
                raise StartError(f"--port-range {args.port_range} needs a private network namespace: {why}")
            p["notes"].append(f"no private network namespace ({why}): the host's range, the fd limit caps the target, "
                              "and four addresses' wall is out of reach")
            rng = host_rng
        else:
            set_port_range(rng)
            p["netns"] = True
    p["range"] = rng
    default_target = math.ceil(largest * range_size(rng) * MARGIN)
    target = args.target or default_target
    if target > limit:
        p["notes"].append(f"target {target:,} is over what {soft:,} descriptors allow: reduced to {limit:,}")
        target = limit
        p["fd_capped"] = True
    p["target"] = target
    return p


def fmt_mb(n: int | None) -> str:
    return f"{n / 1e6:.1f}" if n is not None else "-"


def table(runs: list[Run], rng: tuple[int, int]) -> str:
    size = range_size(rng)
    hdr = (f"{'SNAT addresses':<27} {'held':>8} {'per addr':>8} {'/range':>6} {'1st failed #':>12} {'err<limit':>9} "
           f"{'errors c/d/n/t':>15} {'open s':>6} {'conn/s':>7} {'CPU':>4} {'RSS MB':>13} {'B/conn':>7} {'stopped':>7}  member sees")
    lines = [hdr, "-" * len(hdr)]
    for run in runs:
        name = f"{run.addresses} ({run.snat})"
        o = run.opened
        if run.status != "ok" or o is None:
            lines.append(f"{name:<27} FAILED: {run.reason}")
            continue
        e = o.errors
        errs = f"{e['closed']}/{e['dropped']}/{e['connect']}/{e['timeout']}"
        per = run.held / run.addresses
        rate = f"{run.held / o.open_seconds:,.0f}" if o.open_seconds > 0 else "-"
        first = f"{o.first_error_at:,}" if o.first_error_at is not None else "-"
        cpu = f"{run.cpu_pct:.0f}%" if run.cpu_pct is not None else "-"
        bpc = f"{run.bytes_per_conn:,.0f}" if run.bytes_per_conn is not None else "-"
        seen = " ".join(f"{k}={v:,}" for k, v in (run.sink or {}).get("sources", {}).items()) or "-"
        lines.append(
            f"{name:<27} {run.held:>8,} {per:>8,.0f} {per / size:>6.2f} {first:>12} {o.errors_before_limit:>9,} "
            f"{errs:>15} "
            f"{o.open_seconds:>6.1f} {rate:>7} {cpu:>4} {fmt_mb(run.rss_before) + '->' + fmt_mb(run.rss_after):>13} {bpc:>7} "
            f"{o.stopped_by:>7}  {seen}"
        )
    return "\n".join(lines)


def verdict(runs: list[Run], rng: tuple[int, int], fd_capped: bool = False) -> tuple[list[str], bool, float | None]:
    """The notes on the issue's goals, whether every goal was met, and the ratio of the most addresses to one."""
    notes: list[str] = []
    ok = True
    size = range_size(rng)
    done = [r for r in runs if r.status == "ok" and r.opened is not None]
    if len(done) != len(runs):
        ok = False
    for r in done:
        o = r.opened
        assert o is not None
        if o.errors_before_limit or o.errors["dropped"]:
            ok = False
            notes.append(f"{r.addresses} address(es): {o.errors_before_limit} error(s) before the limit and "
                         f"{o.errors['dropped']} held connection(s) dropped (goal: none): NOT met")
        if o.errors["connect"] or o.errors["timeout"]:
            notes.append(f"{r.addresses} address(es): client-side errors {o.connect_errnos or ''} and "
                         f"{o.errors['timeout']} timeout(s): the rig, not the SNAT wall, may have stopped this run")
        if r.sink is not None and r.sink.get("held") != r.held:
            notes.append(f"{r.addresses} address(es): the client holds {r.held:,}, the member {r.sink.get('held'):,}")
    one = next((r for r in done if r.addresses == 1), None)
    ratio: float | None = None
    if one is None:
        notes.append("no run with one address: no wall to compare with")
        return notes, False, None
    if not one.wall:
        ok = False
        how = one.opened.stopped_by if one.opened else "-"
        fix = "the fd limit capped the target: see --port-range" if fd_capped else "raise --target or --timeout"
        notes.append(f"one address did not reach its wall (stopped by {how}): {fix}")
    else:
        share = one.held / size
        good = 0.9 <= share <= 1.02
        ok = ok and good
        notes.append(f"one address ran out at {one.held:,} connections = {share:.2f} x the port range "
                     f"({size:,}): {'met' if good else 'NOT met'} (about the range)")
    for r in done:
        if r.addresses == 1 or not one.held:
            continue
        ratio = r.held / one.held
        goal = RATIO_PER_ADDRESS * r.addresses
        met = ratio >= goal
        ok = ok and met
        bound = "" if r.wall else " (a floor: this run did not reach its wall)"
        notes.append(f"{r.addresses} addresses vs 1: {ratio:.2f}x{bound} (goal >= {goal:g}x): {'met' if met else 'NOT met'}")
    for r in done:
        if r.not_supported:
            notes.append(f"{r.addresses} address(es): the appliance says {r.not_supported[0].split(': ', 1)[-1]!r}: it "
                         "connects from its default address, so more SNAT addresses cannot carry more")
    return notes, ok, ratio


# ---------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="python -m bench.snat", description=__doc__.split("\n\n")[0])
    ap.add_argument("--addresses", default="1,4", help="SNAT address counts, one run each (1,4); 1 is the reference")
    ap.add_argument("--target", type=int, default=None,
                    help="connections per run at most (default: the largest count x the port range x 1.1, within the fd limit)")
    ap.add_argument("--timeout", type=float, default=180.0,
                    help="seconds for all runs (180); each stop adds at most 10 s per process")
    ap.add_argument("--stop-errors", type=int, default=50, help="a run stops after this many errors (50)")
    ap.add_argument("--port-range", default="auto",
                    help="auto (default): the host's range when the fd limit allows, else a private network namespace "
                    "with a range that fits; host; or LO-HI: a private network namespace with that range")
    ap.add_argument("--appliance", default=None, help="appliance command (default: .venv/bin/appliance)")
    ap.add_argument("--no-pin", action="store_true", help="do not pin processes to CPUs")
    ap.add_argument("--json", metavar="FILE", default=None, help="write the results as JSON to FILE")
    args = ap.parse_args(argv)
    try:
        args.addresses = sorted({int(x) for x in args.addresses.split(",") if x.strip()})
    except ValueError:
        ap.error("--addresses: a comma list of numbers, such as 1,4")
    if not args.addresses or not all(1 <= a <= 255 - SNAT_FIRST for a in args.addresses):
        ap.error(f"--addresses: counts from 1 to {255 - SNAT_FIRST}")
    if args.port_range not in ("auto", "host"):
        lo, sep, hi = args.port_range.partition("-")
        if not (sep and lo.isdigit() and hi.isdigit() and 1024 < int(lo) < int(hi) <= 65535):
            ap.error("--port-range: auto, host or LO-HI (1024 < LO < HI <= 65535)")
    if args.target is not None and args.target < 1 or args.timeout <= 0 or args.stop_errors < 1:
        ap.error("--target, --timeout and --stop-errors must be positive")
    cmd = appliance_argv(args.appliance)
    if cmd is None:
        ap.error("no appliance command (.venv/bin/appliance missing; run `make test` or pass --appliance)")
    args.appliance_cmd = cmd
    return args


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["sink"]:
        sp = argparse.ArgumentParser(prog="python -m bench.snat sink")
        sp.add_argument("--port", type=int, default=0)
        return run_sink(sp.parse_args(argv[1:]).port)
    args = parse_args(argv)
    began = time.monotonic()
    deadline = began + args.timeout
    try:
        p = plan(args)
    except (StartError, OSError) as exc:
        print(f"cannot set up: {exc}", file=sys.stderr)
        return 2
    rng: tuple[int, int] = p["range"]
    target: int = p["target"]
    pin = (
        not args.no_pin
        and shutil.which("taskset") is not None
        and {LOAD_CPU, PROXY_CPU} <= os.sched_getaffinity(0)
    )
    if pin:
        os.sched_setaffinity(0, {LOAD_CPU})  # the client shares CPU 0 with the sink; the appliance has CPU 1
    try:
        sources = client_sources(target, range_size(rng))
    except StartError as exc:
        print(f"cannot set up: {exc}", file=sys.stderr)
        return 2
    size = range_size(rng)
    print(f"# ip_local_port_range {rng[0]} {rng[1]}: {size:,} ports: one source address reaches one member "
          f"address and port about {size:,} times; {' / '.join(f'{a} address(es): ~{a * size:,}' for a in args.addresses)}"
          + (" (private network namespace)" if p["netns"] else ""))
    raised = f" (raised from {p['nofile_before']:,})" if p["nofile_before"] < p["nofile"] else ""
    print(f"# fd limit {p['nofile']:,}{raised}, hard {p['nofile_hard']:,}: the appliance can hold ~{p['max_connections']:,}; "
          f"target {target:,} per run, stop after {args.stop_errors} errors, clients from {sources[0]}-{sources[-1]}, "
          f"timeout {args.timeout:g} s" + (f", pinned: appliance on CPU {PROXY_CPU}" if pin else ", not pinned"))
    for n in p["notes"]:
        print(f"# note: {n}")
    sys.stdout.flush()
    procs = Procs()
    runs: list[Run] = []
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        with tempfile.TemporaryDirectory(prefix="bench-snat-") as tmpname:
            tmp = Path(tmpname)
            weights = list(args.addresses)
            for i, count in enumerate(args.addresses):
                left = deadline - time.monotonic()
                share = left * count / sum(weights[i:])  # a run's time in proportion to its expected connections
                runs.append(run_one(count, target, args.stop_errors, time.monotonic() + share, args, procs, pin,
                                    tmp, rng, sources))
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    finally:
        procs.stop_all()
    print(table(runs, rng))
    notes, ok, ratio = verdict(runs, rng, p["fd_capped"])
    for n in notes:
        print(f"note: {n}")
    for r in runs:
        if r.log_errors:
            print(f"note: {r.addresses} address(es): the appliance's access log, error=: "
                  + ", ".join(f"{k!r} x{v:,}" for k, v in r.log_errors.items()))
    print(f"result: {'every goal met' if ok else 'NOT every goal met'} in {time.monotonic() - began:.1f} s")
    if args.json:
        payload = {
            "when": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "settings": {"addresses": args.addresses, "target": target, "timeout": args.timeout,
                         "stop_errors": args.stop_errors, "window": WINDOW, "pinned": pin,
                         "client_sources": sources},
            "plan": {**p, "range": list(rng), "host_range": list(p["host_range"])},
            "machine": {"cpus": os.cpu_count(), "kernel": platform.release()},
            "runs": [r.to_dict() for r in runs],
            "ratio": ratio,
            "notes": notes,
            "ok": ok,
        }
        Path(args.json).write_text(json.dumps(payload, indent=2) + "\n")
        print(f"results written to {args.json}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
