"""A lean trio HTTP/1.1 load generator (closed loop, keep-alive).

    python -m bench.load http://127.0.0.1:8080/ -c 50 -d 10 [--max-requests N] [--json]

``-c`` connections each send GET requests one after another (one in flight per
connection, like wrk), until ``-d`` seconds have passed OR ``--max-requests``
requests have been sent, whichever comes first. Requests are pre-built bytes;
responses are framed by hand (Content-Length, chunked, or read-to-close), not
with h11, to keep the generator's own CPU cost low.

Reported: req/s (2xx responses per second), p50/p90/p99/max latency in ms,
errors by kind (connect, read = broken/garbled connection, timeout, status =
non-2xx; a broken connection is reopened), and the number of responses per
``X-Origin`` header value.

It is still Python: on one core it tops out around 10-20k req/s, so anything
it measures above that is a measure of the generator, not the target.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from dataclasses import asdict, dataclass, field
from time import perf_counter
from typing import Any
from urllib.parse import urlsplit

import trio

from bench._http import MAX_HEAD, ChunkedSkipper, ProtocolError, RawConn, open_raw

__all__ = ["LoadResult", "run_load", "main"]

DEFAULT_MAX_REQUESTS = 5_000_000
NO_ORIGIN = "-"  # member key for responses without X-Origin


@dataclass
class LoadResult:
    url: str
    connections: int
    duration: float  # requested bound, seconds
    max_requests: int  # requested bound
    elapsed: float = 0.0  # measured, seconds
    requests: int = 0  # complete responses, any status
    ok: int = 0  # 2xx responses
    rps: float = 0.0  # ok / elapsed
    latency_ms: dict[str, float] = field(default_factory=dict)  # p50 p90 p99 max mean
    errors: dict[str, int] = field(default_factory=dict)  # connect read timeout status
    statuses: dict[str, int] = field(default_factory=dict)
    members: dict[str, int] = field(default_factory=dict)  # X-Origin value -> responses
    tool: str = "bench.load"

    @property
    def total_errors(self) -> int:
        return sum(self.errors.values())

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["total_errors"] = self.total_errors
        return d

    def summary(self) -> str:
        lat = self.latency_ms
        members = " ".join(f"{k}={v}" for k, v in sorted(self.members.items())) or "-"
        errs = ", ".join(f"{k} {v}" for k, v in self.errors.items())
        return (
            f"{self.url}  c={self.connections}  {self.elapsed:.2f}s\n"
            f"  requests {self.requests} (2xx {self.ok})  {self.rps:,.0f} req/s\n"
            f"  latency ms  p50 {lat.get('p50', 0):.3f}  p90 {lat.get('p90', 0):.3f}  "
            f"p99 {lat.get('p99', 0):.3f}  max {lat.get('max', 0):.3f}\n"
            f"  errors {self.total_errors} ({errs})\n"
            f"  members {members}"
        )


def percentile(sorted_values: list[float], p: float) -> float:
    """Nearest-rank percentile of an ascending list (0 when empty)."""
    if not sorted_values:
        return 0.0
    k = max(0, min(len(sorted_values) - 1, math.ceil(p / 100.0 * len(sorted_values)) - 1))
    return sorted_values[k]


class _Closed(Exception):
    """The server closed the connection where a response (or its rest) was due."""


class _Slot:
    """Per-connection state the watchdog looks at."""

    __slots__ = ("t0", "scope")

    def __init__(self) -> None:
        self.t0 = 0.0  # start of the request in flight, 0 when idle
        self.scope: trio.CancelScope | None = None


class _State:
    __slots__ = (
        "host", "port", "request", "deadline", "max_requests", "timeout",
        "issued", "lat", "members", "statuses", "ok",
        "err_connect", "err_read", "err_timeout", "err_status", "stopping",
    )

    def __init__(self, host: str, port: int, request: bytes, max_requests: int, timeout: float) -> None:
        self.host = host
        self.port = port
        self.request = request
        self.deadline = 0.0
        self.max_requests = max_requests
        self.timeout = timeout
        self.issued = 0
        self.lat: list[float] = []
        self.members: dict[bytes, int] = {}
        self.statuses: dict[bytes, int] = {}
        self.ok = 0
        self.err_connect = 0
        self.err_read = 0
        self.err_timeout = 0
        self.err_status = 0
        self.stopping = False


async def _run_connection(st: _State, conn: RawConn, slot: _Slot) -> None:
    """Closed loop on one connection; returns when done or the server closes."""
    recv = conn.recv
    send_all = conn.send_all
    request = st.request
    append = st.lat.append
    members = st.members
    statuses = st.statuses
    buf = b""
    while True:
        t0 = perf_counter()
        if t0 >= st.deadline or st.issued >= st.max_requests or st.stopping:
            return
        st.issued += 1
        slot.t0 = t0
        await send_all(request)
        # --- response head
        end = buf.find(b"\r\n\r\n")
        while end < 0:
            data = await recv(65536)
            if not data:
                raise _Closed
            buf = buf + data if buf else data
            end = buf.find(b"\r\n\r\n")
            if end < 0 and len(buf) > MAX_HEAD:
                raise ProtocolError("response head too large")
        head = buf[:end]
        if not head.startswith(b"HTTP/1."):
            raise ProtocolError("not an HTTP/1 response")
        status = head[9:12]
        lower = head.lower()
        close = False
        # --- body
        i = lower.find(b"\r\ncontent-length:")
        if i >= 0:
            j = lower.find(b"\r\n", i + 17)
            total = end + 4 + int(head[i + 17 : j if j >= 0 else end])
            if len(buf) >= total:
                buf = buf[total:]
            else:  # discard the rest of the body as it arrives, without keeping it
                need = total - len(buf)
                data = b""
                while need > 0:
                    data = await recv(65536)
                    if not data:
                        raise _Closed
                    need -= len(data)
                buf = data[len(data) + need :] if need < 0 else b""
        elif b"\r\ntransfer-encoding:" in lower and b"chunked" in lower:
            sk = ChunkedSkipper()
            pos = sk.feed(buf, end + 4)
            while pos < 0:
                data = await recv(65536)
                if not data:
                    raise _Closed
                buf = data
                pos = sk.feed(buf)
            buf = buf[pos:]
        elif status[:1] == b"1" or status in (b"204", b"304"):
            buf = buf[end + 4 :]
        else:  # no framing: the body runs to the close of the connection
            while await recv(65536):
                pass
            buf = b""
            close = True
        t1 = perf_counter()
        slot.t0 = 0.0
        append(t1 - t0)
        # --- bookkeeping
        if status[:1] == b"2":
            st.ok += 1
        else:
            st.err_status += 1
        statuses[status] = statuses.get(status, 0) + 1
        i = lower.find(b"\r\nx-origin:")
        if i >= 0:
            j = lower.find(b"\r\n", i + 11)
            name = head[i + 11 : j if j >= 0 else end].strip()
        else:
            name = b""
        members[name] = members.get(name, 0) + 1
        if close or b"\r\nconnection: close" in lower:
            return


async def _worker(st: _State, slot: _Slot) -> None:
    while not st.stopping and perf_counter() < st.deadline and st.issued < st.max_requests:
        conn = None
        try:
            with trio.CancelScope() as scope:
                slot.scope = scope
                slot.t0 = perf_counter()  # the watchdog also bounds the connect
                try:
                    conn = await open_raw(st.host, st.port)
                except OSError:
                    slot.t0 = 0.0
                    st.err_connect += 1
                    await trio.sleep(0.01)  # a refused connect returns at once: do not spin
                    continue
                slot.t0 = 0.0
                await _run_connection(st, conn, slot)
        except (OSError, _Closed, ProtocolError, ValueError):
            slot.t0 = 0.0
            st.err_read += 1
        finally:
            if slot.t0:  # cancelled (watchdog or hard stop) with a request in flight
                st.err_timeout += 1
                slot.t0 = 0.0
            slot.scope = None
            if conn is not None:
                conn.close()


async def _watchdog(st: _State, slots: list[_Slot]) -> None:
    """Cancels a connection whose request has been in flight longer than the timeout."""
    while True:
        await trio.sleep(min(0.25, st.timeout / 4))
        now = perf_counter()
        for slot in slots:
            if slot.t0 and now - slot.t0 > st.timeout and slot.scope is not None:
                slot.scope.cancel()


async def run_load(
    host: str,
    port: int,
    path: str = "/",
    connections: int = 50,
    duration: float = 10.0,
    max_requests: int = DEFAULT_MAX_REQUESTS,
    *,
    timeout: float = 5.0,
    headers: dict[str, str] | None = None,
) -> LoadResult:
    """Run a bounded closed-loop load and return what was measured.

    Bounded by ``duration`` seconds and ``max_requests`` requests sent,
    whichever comes first; a request still in flight after ``timeout`` seconds
    counts as a timeout (its connection is reopened). The whole run never
    takes longer than ``duration + timeout`` (plus a little).
    """
    if connections < 1:
        raise ValueError("connections must be >= 1")
    hdrs = {"Host": f"{host}:{port}", "User-Agent": "bench.load"}
    if headers:
        hdrs.update(headers)
    request = (
        f"GET {path} HTTP/1.1\r\n" + "".join(f"{k}: {v}\r\n" for k, v in hdrs.items()) + "\r\n"
    ).encode("latin-1")
    st = _State(host, port, request, max_requests, timeout)
    slots = [_Slot() for _ in range(connections)]
    start = perf_counter()
    st.deadline = start + duration
    async with trio.open_nursery() as outer:
        outer.start_soon(_watchdog, st, slots)
        with trio.move_on_at(trio.current_time() + duration + timeout + 0.5):
            async with trio.open_nursery() as nursery:
                for slot in slots:
                    nursery.start_soon(_worker, st, slot)
        st.stopping = True
        outer.cancel_scope.cancel()
    elapsed = perf_counter() - start
    lat = sorted(st.lat)
    ms = 1000.0
    result = LoadResult(
        url=f"http://{host}:{port}{path}",
        connections=connections,
        duration=duration,
        max_requests=max_requests,
        elapsed=elapsed,
        requests=len(lat),
        ok=st.ok,
        rps=st.ok / elapsed if elapsed > 0 else 0.0,
        latency_ms={
            "p50": percentile(lat, 50) * ms,
            "p90": percentile(lat, 90) * ms,
            "p99": percentile(lat, 99) * ms,
            "max": (lat[-1] if lat else 0.0) * ms,
            "mean": (sum(lat) / len(lat) if lat else 0.0) * ms,
        },
        errors={
            "connect": st.err_connect,
            "read": st.err_read,
            "timeout": st.err_timeout,
            "status": st.err_status,
        },
        statuses={k.decode("latin-1"): v for k, v in sorted(st.statuses.items())},
        members={(k.decode("latin-1") or NO_ORIGIN): v for k, v in sorted(st.members.items())},
    )
    return result


def parse_url(url: str) -> tuple[str, int, str]:
    parts = urlsplit(url if "://" in url else "http://" + url)
    if parts.scheme != "http":
        raise ValueError(f"only http:// URLs are supported, not {parts.scheme}://")
    host = parts.hostname or "127.0.0.1"
    port = parts.port or 80
    path = parts.path or "/"
    if parts.query:
        path += "?" + parts.query
    return host, port, path


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.load", description=__doc__.split("\n\n")[0])
    ap.add_argument("url", help="http://HOST:PORT/PATH")
    ap.add_argument("-c", "--connections", type=int, default=50)
    ap.add_argument("-d", "--duration", type=float, default=10.0, help="seconds (upper bound)")
    ap.add_argument("--max-requests", type=int, default=DEFAULT_MAX_REQUESTS, help="upper bound on requests sent")
    ap.add_argument("--timeout", type=float, default=5.0, help="per-request timeout, seconds")
    ap.add_argument("--json", action="store_true", help="print the result as JSON")
    args = ap.parse_args(argv)
    try:
        host, port, path = parse_url(args.url)
    except ValueError as exc:
        ap.error(str(exc))
    result = trio.run(
        lambda: run_load(
            host, port, path, args.connections, args.duration, args.max_requests, timeout=args.timeout
        )
    )
    if args.json:
        json.dump(result.to_dict(), sys.stdout, indent=2)
        print()
    else:
        print(result.summary())
    return 0 if result.ok else 1


if __name__ == "__main__":
    sys.exit(main())
