"""A fast, minimal trio HTTP/1.1 origin server for benchmarks and tests.

    python -m bench.origin --port 9001 [--name web1] [--body-size 3] [--delay 0]

Every request gets ``200 OK`` with a fixed body (``ok\\n`` by default, or N
bytes) and ``X-Origin: NAME``. Request bodies (Content-Length or chunked) are
read and discarded; HEAD gets the head only; keep-alive and pipelining work.
The request head is parsed by hand with bytes operations, not h11: this is a
test fixture and must not be the bottleneck.

Prints ``listening on 127.0.0.1:PORT`` (flushed) once bound; ``--port 0`` picks
a free port.
"""

from __future__ import annotations

import argparse
import socket
import sys

import trio

from bench._http import MAX_HEAD, ChunkedSkipper, ProtocolError, RawConn, accept_raw, set_nodelay

__all__ = ["serve_origin", "make_body", "main"]


def make_body(size: int) -> bytes:
    """``ok\\n`` for size 3 (the default), else ``size`` bytes ending in a newline."""
    if size == 3:
        return b"ok\n"
    if size <= 0:
        return b""
    return b"x" * (size - 1) + b"\n"


def _responses(name: str, body: bytes) -> dict[tuple[bool, int], bytes]:
    """Pre-built responses keyed by (is_head, connection mode).

    Connection mode: 0 = HTTP/1.1 keep-alive (no header), 1 = HTTP/1.0
    keep-alive (``Connection: keep-alive``), 2 = close.
    """
    base = (
        b"HTTP/1.1 200 OK\r\n"
        b"Content-Type: text/plain\r\n"
        b"Content-Length: " + str(len(body)).encode() + b"\r\n"
        b"X-Origin: " + name.encode("latin-1") + b"\r\n"
    )
    conn = {0: b"", 1: b"Connection: keep-alive\r\n", 2: b"Connection: close\r\n"}
    out = {}
    for mode, extra in conn.items():
        head = base + extra + b"\r\n"
        out[(False, mode)] = head + body
        out[(True, mode)] = head
    return out


async def _handle(
    sock: socket.socket,
    responses: dict[tuple[bool, int], bytes],
    delay: float,
) -> None:
    conn = RawConn(sock)
    recv = conn.recv
    get_ka = responses[(False, 0)]
    buf = b""
    body_left = 0  # Content-Length bytes still to discard
    chunked: ChunkedSkipper | None = None
    pending = None  # response owed once the current request body is consumed
    close_after = False
    try:
        while True:
            data = await recv(65536)
            if not data:
                return
            buf = buf + data if buf else data
            out: list[bytes] = []
            while True:
                # 1. finish discarding the body of the current request
                if body_left:
                    if len(buf) >= body_left:
                        buf = buf[body_left:]
                        body_left = 0
                    else:
                        body_left -= len(buf)
                        buf = b""
                        break
                if chunked is not None:
                    end = chunked.feed(buf)
                    if end < 0:
                        buf = b""
                        break
                    buf = buf[end:]
                    chunked = None
                if pending is not None:
                    out.append(pending)
                    pending = None
                    if close_after:
                        break
                # 2. next request head
                end = buf.find(b"\r\n\r\n")
                if end < 0:
                    if len(buf) > MAX_HEAD:
                        return
                    break
                head = buf[:end]
                buf = buf[end + 4 :]
                le = head.find(b"\r\n")
                if le < 0:
                    # request line only: the fastest, most common bench case
                    if head.endswith(b"HTTP/1.1"):
                        pending = get_ka if not head.startswith(b"HEAD ") else responses[(True, 0)]
                        continue
                    close_after = True
                    pending = responses[(head.startswith(b"HEAD "), 2)]
                    continue
                line = head[:le]
                is_head = line.startswith(b"HEAD ")
                lower = head[le:].lower()
                http10 = line.endswith(b"HTTP/1.0")
                connhdr = b""
                i = lower.find(b"\r\nconnection:")
                if i >= 0:
                    j = lower.find(b"\r\n", i + 13)
                    connhdr = lower[i + 13 : j if j >= 0 else len(lower)]
                if b"close" in connhdr:
                    mode = 2
                elif http10:
                    mode = 1 if b"keep-alive" in connhdr else 2
                else:
                    mode = 0
                close_after = mode == 2
                pending = responses[(is_head, mode)]
                i = lower.find(b"\r\ntransfer-encoding:")
                te = b""
                if i >= 0:
                    j = lower.find(b"\r\n", i + 20)
                    te = lower[i + 20 : j if j >= 0 else len(lower)]
                if b"chunked" in te:
                    chunked = ChunkedSkipper()
                else:
                    i = lower.find(b"\r\ncontent-length:")
                    if i >= 0:
                        j = lower.find(b"\r\n", i + 17)
                        body_left = int(lower[i + 17 : j if j >= 0 else len(lower)])
                        if body_left < 0:
                            return
                if (chunked is not None or body_left) and b"\r\nexpect: 100-continue" in lower:
                    out.append(b"HTTP/1.1 100 Continue\r\n\r\n")
            if out:
                if delay:
                    await trio.sleep(delay)
                await conn.send_all(out[0] if len(out) == 1 else b"".join(out))
            if close_after and pending is None:
                return
    except (OSError, ProtocolError, ValueError, trio.BrokenResourceError, trio.ClosedResourceError):
        return
    finally:
        sock.close()


async def serve_origin(
    port: int = 0,
    name: str | None = "origin",
    body: bytes = b"ok\n",
    task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED,
    *,
    host: str = "127.0.0.1",
    delay: float = 0.0,
    backlog: int = 1024,
) -> None:
    """Serve forever on ``host:port``; ``nursery.start`` returns the bound port.

    ``name`` is the ``X-Origin`` value; None means ``origin-PORT`` (bound port).
    """
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        listener.bind((host, port))
        listener.listen(backlog)
        listener.setblocking(False)
    except BaseException:
        listener.close()
        raise
    bound = listener.getsockname()[1]
    responses = _responses(name if name is not None else f"origin-{bound}", body)
    async with trio.open_nursery() as nursery:
        task_status.started(bound)
        try:
            while True:
                try:
                    sock = await accept_raw(listener)
                except OSError as exc:  # EMFILE and friends: back off, keep serving
                    print(f"origin {name}: accept failed: {exc}", file=sys.stderr)
                    await trio.sleep(0.1)
                    continue
                set_nodelay(sock)
                nursery.start_soon(_handle, sock, responses, delay)
        finally:
            listener.close()


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m bench.origin", description=__doc__.split("\n\n")[0])
    ap.add_argument("--port", type=int, default=9001, help="port to bind (0 = any free port)")
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--name", default=None, help="X-Origin value (default: origin-PORT)")
    ap.add_argument("--body-size", type=int, default=3, help="body bytes (3 = 'ok\\n')")
    ap.add_argument("--delay", type=float, default=0.0, help="seconds to wait before each answer")
    args = ap.parse_args(argv)

    async def run() -> None:
        async with trio.open_nursery() as nursery:
            port = await nursery.start(
                lambda task_status: serve_origin(
                    args.port,
                    args.name,
                    make_body(args.body_size),
                    task_status,
                    host=args.host,
                    delay=args.delay,
                )
            )
            print(f"listening on {args.host}:{port}", flush=True)

    try:
        trio.run(run)
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
