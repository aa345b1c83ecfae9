"""Test fixtures shared by the loopback tests: a scriptable origin and a proxy runner."""

from __future__ import annotations

import hashlib
import json
import signal
import socket
import subprocess
import struct
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from urllib.parse import unquote

import h11
import trio

from appliance.controlplane.supervisor import Appliance
from appliance.core.config import parse_config


def pattern(n: int) -> bytes:
    """n deterministic bytes, so both ends can checksum without sharing the data."""
    block = bytes(range(256)) * 256
    return (block * (n // len(block) + 1))[:n]


@dataclass
class Origin:
    """A member for tests. Behaviour by path:

    /health     `health_status` with `health_body`
    /upgrade    101 to a raw echo (what a WebSocket server does after its handshake)
    /echo       JSON: method, target, headers, body length and sha256, connection number
    /big/N      N pattern bytes with Content-Length; /chunked/N the same, chunked
    /slow       never answers
    /delay/MS   /echo after MS milliseconds
    /reset      resets the connection (SO_LINGER 0)
    /garbage    sends bytes with no line end, then waits
    /partial-head  a plausible status line and a header without their line end, then waits
    /trailing   a complete response followed by a forged second one
    /close      answers with Connection: close
    /set-cookie/NAME=VALUE  /echo, with `Set-Cookie: NAME=VALUE; Path=/` (what an application does at login)
    """

    name: str
    port: int = 0
    health_status: int = 200  # what /health answers, with health_body
    health_body: bytes = b"ok"
    reset_next: int = 0  # /flaky resets this many requests, then answers like /echo
    connections: int = 0
    requests: list[dict[str, object]] = field(default_factory=list)

    async def serve(self, *, task_status: trio.TaskStatus[Origin] = trio.TASK_STATUS_IGNORED) -> None:
        listeners = await trio.open_tcp_listeners(self.port, host="127.0.0.1")  # 0: any free port
        self.port = listeners[0].socket.getsockname()[1]
        task_status.started(self)
        await trio.serve_listeners(self._handle, listeners)

    async def _handle(self, stream: trio.SocketStream) -> None:
        self.connections += 1
        number = self.connections
        conn = h11.Connection(h11.SERVER)
        try:
            while True:
                request = await _next(conn, stream)
                if not isinstance(request, h11.Request):
                    return
                digest, length = hashlib.sha256(), 0
                while True:
                    event = await _next(conn, stream)
                    if isinstance(event, h11.Data):
                        digest.update(event.data)
                        length += len(event.data)
                    else:
                        break
                path = request.target.decode()
                info = {
                    "origin": self.name,
                    "method": request.method.decode(),
                    "target": path,
                    "headers": [[k.decode(), v.decode()] for k, v in request.headers.raw_items()],
                    "body_len": length,
                    "body_sha256": digest.hexdigest(),
                    "connection": number,
                }
                self.requests.append(info)
                if not await self._answer(conn, stream, path, info):
                    return
                if conn.our_state is not h11.DONE or conn.their_state is not h11.DONE:
                    return
                conn.start_next_cycle()
        except (h11.ProtocolError, trio.BrokenResourceError, trio.ClosedResourceError):
            return
        finally:
            await trio.aclose_forcefully(stream)

    async def _answer(self, conn: h11.Connection, stream: trio.SocketStream, path: str, info: dict[str, object]) -> bool:
        if path == "/slow":
            await trio.sleep_forever()
        if path.startswith("/delay/"):
            await trio.sleep(int(path.rsplit("/", 1)[1]) / 1000)
        if path == "/reset":
            stream.socket.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            stream.socket.close()
            return False
        if path == "/upgrade":  # a protocol switch to a raw echo, like a WebSocket server
            await stream.send_all(conn.send(h11.InformationalResponse(status_code=101, headers=[("Upgrade", "echo"), ("Connection", "Upgrade")])))
            data = conn.trailing_data[0]
            while True:
                if data:
                    await stream.send_all(data)
                data = await stream.receive_some(65536)
                if not data:
                    await stream.send_eof()
                    return False
        if path == "/health":
            await stream.send_all(
                conn.send(h11.Response(status_code=self.health_status, headers=[("content-length", str(len(self.health_body)))]))
                + conn.send(h11.Data(data=self.health_body))
                + conn.send(h11.EndOfMessage())
            )
            return True
        if path == "/partial-head":
            await stream.send_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2")  # never finishes the line
            await trio.sleep_forever()
        if path == "/garbage":
            await stream.send_all(b"\x00garbage without any line end")
            await trio.sleep_forever()
        if path == "/trailing":
            await stream.send_all(
                b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nfirstHTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\nforged"
            )
            return True
        headers = [("x-origin", self.name)]
        if path.startswith("/set-cookie/"):
            headers.append(("set-cookie", unquote(path.removeprefix("/set-cookie/")) + "; Path=/"))
        if path.startswith("/big/") or path.startswith("/chunked/"):
            n = int(path.rsplit("/", 1)[1])
            if path.startswith("/big/"):
                headers.append(("content-length", str(n)))
            else:
                headers.append(("transfer-encoding", "chunked"))
            await stream.send_all(conn.send(h11.Response(status_code=200, headers=headers)))
            data = pattern(n)
            for i in range(0, n, 65536):
                await stream.send_all(conn.send(h11.Data(data=data[i : i + 65536])))
            await stream.send_all(conn.send(h11.EndOfMessage()))
            return True
        if self.reset_next > 0 and path == "/flaky":
            self.reset_next -= 1
            stream.socket.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            stream.socket.close()
            return False
        body = json.dumps(info).encode()
        headers += [("content-type", "application/json"), ("content-length", str(len(body)))]
        if path == "/close":
            headers.append(("connection", "close"))
        await stream.send_all(conn.send(h11.Response(status_code=200, headers=headers)) + conn.send(h11.Data(data=body)) + conn.send(h11.EndOfMessage()))
        return True


async def _next(conn: h11.Connection, stream: trio.SocketStream) -> h11.Event | type[h11.NEED_DATA]:
    while True:
        event = conn.next_event()
        if event is h11.NEED_DATA:
            conn.receive_data(await stream.receive_some(65536))
            continue
        return event


async def read_response(conn: h11.Connection, stream: trio.abc.Stream) -> tuple[int, list[tuple[str, str]], bytes]:
    """A client's view of one response: status, headers and body (bounded by 5 s)."""
    status, headers, body = 0, [], b""
    with trio.fail_after(5):
        while True:
            event = conn.next_event()
            if event is h11.NEED_DATA:
                conn.receive_data(await stream.receive_some(65536))
            elif isinstance(event, h11.Response):
                status = event.status_code
                headers = [(k.decode(), v.decode()) for k, v in event.headers.raw_items()]
            elif isinstance(event, h11.Data):
                body += event.data
            elif isinstance(event, h11.EndOfMessage):
                return status, headers, body
            else:
                raise AssertionError(f"connection ended before the response did: {event}")


def stop_process(process: subprocess.Popen[bytes] | None, sig: int = signal.SIGTERM) -> None:
    """Stops a process this test started, by PID: `sig`, then SIGKILL if it is not gone within 10 s."""
    if process is None or process.poll() is not None:
        return
    process.send_signal(sig)
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=10)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def config_text(port: int, members: list[int], *, extra_pool: str = "", extra_vs: str = "", monitors: str = "") -> str:
    member_lines = "\n".join(f"      - {{address: 127.0.0.1:{p}, name: m{i}}}" for i, p in enumerate(members, 1))
    return f"""\
appliance: {{name: test, shutdown_grace: 2s, log: {{access: off}}}}
{monitors}
pools:
  web:
{extra_pool}
    members:
{member_lines}
virtual_servers:
  web:
    listen: [127.0.0.1:{port}]
    pool: web
{extra_vs}
"""


@asynccontextmanager
async def running_appliance(text: str, path: str = "test.yaml") -> AsyncIterator[Appliance]:
    """An in-process appliance on `text`, stopped and drained on exit."""
    appliance = Appliance(path, parse_config(text, path))
    async with trio.open_nursery() as nursery:
        await nursery.start(appliance.run)
        try:
            yield appliance
        finally:
            appliance.stop()
