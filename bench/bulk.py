"""One-stream bulk TCP transfer: the result type, iperf3's parser, and a sender/sink pair for when iperf3 is absent.

    python -m bench.bulk sink [--port 0]                      # prints "listening on 127.0.0.1:PORT"
    python -m bench.bulk send --port PORT [--bytes N] [-d S]  # prints one JSON line (a BulkResult)

The sink accepts one connection at a time, reads it to EOF into a 1 MiB
buffer, then answers with the byte count (8 bytes, big-endian) and closes. The
sender writes 1 MiB chunks of a pre-built buffer until ``--bytes`` are sent or
``-d`` seconds have passed, whichever comes first, half-closes
(``shutdown(SHUT_WR)``: a relay must carry the FIN and the answer back), and
waits for the count. The rate is the count the sink received over the time
from the first byte sent to the count coming back.

Both are plain blocking sockets, not trio: one syscall per MiB keeps the
pair's own CPU cost low (the fixture must not be what is measured). iperf3 is
still the reference tool; this is the fallback.
"""

from __future__ import annotations

import argparse
import json
import socket
import struct
import time
from dataclasses import asdict, dataclass
from typing import Any

__all__ = ["BulkResult", "parse_iperf3", "serve_sink", "send_bulk", "main"]

HOST = "127.0.0.1"
CHUNK = 1 << 20


@dataclass
class BulkResult:
    tool: str  # iperf3 | bench.bulk
    bytes: int  # received by the sink
    seconds: float
    retransmits: int | None = None  # iperf3 only (the sender's TCP_INFO)

    @property
    def gbps(self) -> float:
        """GB/s (10^9 bytes per second), as in research/perf-baseline.md."""
        return self.bytes / self.seconds / 1e9 if self.seconds > 0 else 0.0

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["gbps"] = self.gbps
        return d


def parse_iperf3(text: str) -> BulkResult:
    """``iperf3 -c ... -J`` output: what the server received, and the sender's retransmits."""
    try:
        data = json.loads(text)
    except ValueError:
        raise ValueError("iperf3 did not print JSON: " + text.strip()[-300:]) from None
    if data.get("error"):
        raise RuntimeError(f"iperf3: {data['error']}")
    end = data.get("end") or {}
    received = end.get("sum_received") or {}
    sent = end.get("sum_sent") or {}
    if "bytes" not in received or "seconds" not in received:
        raise ValueError("iperf3 JSON without end.sum_received")
    retrans = sent.get("retransmits")
    return BulkResult(
        tool="iperf3",
        bytes=int(received["bytes"]),
        seconds=float(received["seconds"]),
        retransmits=int(retrans) if retrans is not None else None,
    )


def _recv_exact(sock: socket.socket, n: int) -> bytes:
    buf = b""
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            break
        buf += chunk
    return buf


def serve_sink(listener: socket.socket, stop_after: int | None = None) -> None:
    """Serves connections one after another: read to EOF, answer the count; ``stop_after`` bounds them (tests)."""
    buf = bytearray(CHUNK)
    view = memoryview(buf)
    served = 0
    while stop_after is None or served < stop_after:
        conn, _ = listener.accept()
        served += 1
        with conn:
            total = 0
            try:
                while True:
                    n = conn.recv_into(view)
                    if not n:
                        break
                    total += n
                conn.sendall(struct.pack("!Q", total))
            except OSError:  # a probe that connects and resets, or a relay giving up
                continue


def send_bulk(host: str, port: int, nbytes: int, duration: float, timeout: float = 30.0) -> BulkResult:
    """Sends up to ``nbytes`` for at most ``duration`` seconds; returns what the sink counted."""
    payload = memoryview(bytes(CHUNK))
    with socket.create_connection((host, port), timeout=timeout) as sock:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        t0 = time.perf_counter()
        deadline = t0 + duration
        sent = 0
        while sent < nbytes and time.perf_counter() < deadline:
            n = min(CHUNK, nbytes - sent)
            sock.sendall(payload[:n])
            sent += n
        sock.shutdown(socket.SHUT_WR)
        answer = _recv_exact(sock, 8)
        elapsed = time.perf_counter() - t0
    if len(answer) != 8:
        raise RuntimeError(f"the sink closed without its count after {sent} bytes sent")
    (received,) = struct.unpack("!Q", answer)
    if received != sent:
        raise RuntimeError(f"sent {sent} bytes, the sink received {received}")
    return BulkResult(tool="bench.bulk", bytes=received, seconds=elapsed)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m bench.bulk", description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    sk = sub.add_parser("sink", help="read connections to EOF and answer the byte count")
    sk.add_argument("--port", type=int, default=0)
    sd = sub.add_parser("send", help="send one bounded stream and print the result as JSON")
    sd.add_argument("--port", type=int, required=True)
    sd.add_argument("--bytes", type=int, default=1 << 30)
    sd.add_argument("-d", "--duration", type=float, default=10.0)
    args = ap.parse_args(argv)
    if args.cmd == "sink":
        with socket.socket() as listener:
            listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            listener.bind((HOST, args.port))
            listener.listen(16)
            print(f"listening on {HOST}:{listener.getsockname()[1]}", flush=True)
            try:
                serve_sink(listener)
            except KeyboardInterrupt:
                pass
    else:
        result = send_bulk(HOST, args.port, args.bytes, args.duration)
        print(json.dumps(result.to_dict()))


if __name__ == "__main__":
    main()
