"""TCP mode through real loopback sockets: client -> TcpRelay -> member.

The relay is driven by a small harness of its own (a listening socket whose
accepted connections go to ``TcpRelay.serve``), with the snapshot of a real
``Runtime`` and a JSON access log in a temporary file.
"""

from __future__ import annotations

import hashlib
import json
import socket
import ssl
import struct
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import pytest
import trio
import trustme

from appliance.controlplane.runtime import Runtime
from appliance.core.config import parse_config
from appliance.core.model import LogFormat, LogSpec
from appliance.core.snapshot import MemberView
from appliance.dataplane import tcp_relay
from appliance.dataplane.access_log import AccessLog
from appliance.dataplane.sockio import SocketIO
from appliance.dataplane.tcp_relay import TcpRelay
from appliance.dataplane.tracker import ConnectionTracker

MIB = 1024 * 1024
PATHS = ["splice", "copy"]


def pattern(n: int, seed: int = 0) -> bytes:
    block = bytes((i * 7 + seed) % 256 for i in range(256)) * 256
    return (block * (n // len(block) + 1))[:n]


def dead_port() -> int:
    """A loopback port nothing listens on: connecting is refused."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def tcp_config(members: list[int], *, member_extra: str = "", pool_extra: str = "", timeouts: str = "") -> str:
    lines = "\n".join(
        f"      - {{address: 127.0.0.1:{port}, name: m{i}{member_extra}}}" for i, port in enumerate(members, 1)
    )
    return f"""\
appliance: {{name: test, log: {{access: off}}}}
pools:
  web:
{pool_extra}
    members:
{lines}
virtual_servers:
  web:
    listen: [127.0.0.1:9]
    mode: tcp
    pool: web
    timeouts: {{connect: 2s{timeouts}}}
"""


@dataclass
class Harness:
    port: int
    relay: TcpRelay
    runtime: Runtime
    tracker: ConnectionTracker
    log_path: Path
    wrap: Callable[[socket.socket], Any] | None = None

    def members(self) -> tuple[MemberView, ...]:
        return self.runtime.snapshot.pools["web"].members

    def active(self) -> list[int]:
        return [m.stats.active for m in self.members()]

    async def lines(self, count: int) -> list[dict[str, Any]]:
        """The first `count` access-log lines, once they are flushed."""
        with trio.fail_after(5):
            while True:
                text = self.log_path.read_text() if self.log_path.exists() else ""
                lines = [json.loads(line) for line in text.splitlines()]
                if len(lines) >= count:
                    return lines
                await trio.sleep(0.05)


@asynccontextmanager
async def relay_for(
    text: str, tmp_path: Path, wrap: Callable[[socket.socket], Any] | None = None, member_tls: Any = None
) -> AsyncIterator[Harness]:
    runtime = Runtime(parse_config(text, "t.yaml"), trio.current_time)
    log_path = tmp_path / "access.log"
    access = AccessLog(LogSpec(access=str(log_path), format=LogFormat.JSON))
    tracker = ConnectionTracker()
    relay = TcpRelay(lambda: runtime.snapshot, access, tracker, member_tls=member_tls)
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(128)
    listener.setblocking(False)
    port = listener.getsockname()[1]
    harness = Harness(port, relay, runtime, tracker, log_path, wrap)
    try:
        async with trio.open_nursery() as services:  # as in the supervisor: the log outlives connections
            await services.start(access.run)
            async with trio.open_nursery() as connections:
                connections.start_soon(_accept_loop, listener, harness, connections)
                try:
                    yield harness
                finally:
                    connections.cancel_scope.cancel()
            services.cancel_scope.cancel()
    finally:
        listener.close()
        relay.close()


async def _accept_loop(listener: socket.socket, harness: Harness, nursery: trio.Nursery) -> None:
    vip = f"127.0.0.1:{harness.port}"
    while True:
        await trio.lowlevel.wait_readable(listener)
        try:
            sock, peer = listener.accept()
        except BlockingIOError:
            continue
        stream = harness.wrap(sock) if harness.wrap else SocketIO(sock)
        nursery.start_soon(_served, harness, stream, vip, peer)


async def _served(harness: Harness, stream: Any, vip: str, peer: Any) -> None:
    harness.tracker.opened()
    try:
        await harness.relay.serve(stream, "web", vip, (peer[0], peer[1]))
    finally:
        harness.tracker.closed()


# ---------------------------------------------------------------- members


@dataclass
class Member:
    """A scriptable member: `handler(stream, self)` per connection."""

    handler: Callable[[trio.SocketStream, Member], Awaitable[None]]
    port: int = 0
    connections: int = 0
    errors: list[str] = field(default_factory=list)
    received: list[tuple[int, str]] = field(default_factory=list)  # (length, sha256) read to EOF

    async def serve(self, *, task_status: trio.TaskStatus[Member] = trio.TASK_STATUS_IGNORED) -> None:
        listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
        self.port = listeners[0].socket.getsockname()[1]
        task_status.started(self)
        await trio.serve_listeners(self._handle, listeners)

    async def _handle(self, stream: trio.SocketStream) -> None:
        self.connections += 1
        try:
            await self.handler(stream, self)
        except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
            self.errors.append(repr(exc.__cause__ or exc))
        finally:
            await trio.aclose_forcefully(stream)


async def echo(stream: trio.SocketStream, member: Member) -> None:
    """Echoes until EOF, then half-closes."""
    while data := await stream.receive_some(256 * 1024):
        await stream.send_all(data)
    await stream.send_eof()


async def answer_after_eof(stream: trio.SocketStream, member: Member) -> None:
    """Reads the whole request to EOF, then sends a 2 MiB answer and closes."""
    digest, length = hashlib.sha256(), 0
    while data := await stream.receive_some(256 * 1024):
        digest.update(data)
        length += len(data)
    member.received.append((length, digest.hexdigest()))
    head = f"{length} {digest.hexdigest()}\n".encode()
    await stream.send_all(head + pattern(2 * MIB, seed=5))


async def start(nursery: trio.Nursery, handler: Callable[[trio.SocketStream, Member], Awaitable[None]]) -> Member:
    member: Member = await nursery.start(Member(handler).serve)
    return member


async def read_all(stream: trio.abc.ReceiveStream) -> bytes:
    chunks = []
    while data := await stream.receive_some(256 * 1024):
        chunks.append(data)
    return b"".join(chunks)


@pytest.fixture(params=PATHS)
def path(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    if request.param == "splice" and not tcp_relay.SPLICE_AVAILABLE:
        pytest.skip("os.splice is not available here")
    monkeypatch.setattr(tcp_relay, "FORCE_COPY", request.param == "copy")
    return str(request.param)


# ---------------------------------------------------------------- tests


async def test_16_mib_both_ways_through_an_echo_member(nursery: trio.Nursery, tmp_path: Path, path: str) -> None:
    member = await start(nursery, echo)
    size = 16 * MIB
    data = pattern(size)
    async with relay_for(tcp_config([member.port]), tmp_path) as harness:
        with trio.fail_after(30):
            client = await trio.open_tcp_stream("127.0.0.1", harness.port)
            async with client:
                received: list[bytes] = []

                async def upload() -> None:
                    for i in range(0, size, MIB):
                        await client.send_all(data[i : i + MIB])
                    await client.send_eof()

                async def download() -> None:
                    received.append(await read_all(client))

                async with trio.open_nursery() as both:
                    both.start_soon(upload)
                    both.start_soon(download)
        echoed = received[0]
        assert len(echoed) == size
        assert hashlib.sha256(echoed).digest() == hashlib.sha256(data).digest()
        (line,) = await harness.lines(1)
        assert harness.active() == [0]
        assert harness.members()[0].stats.total == 1
    assert line["path"] == path
    assert (line["bytes_in"], line["bytes_out"]) == (size, size)
    assert (line["vs"], line["pool"], line["member"]) == ("web", "web", "m1")
    assert line["vip"] == f"127.0.0.1:{harness.port}" and line["client"].startswith("127.0.0.1:")
    assert "error" not in line and line["ms"] > 0


async def test_half_close_the_answer_still_flows_back(nursery: trio.Nursery, tmp_path: Path, path: str) -> None:
    member = await start(nursery, answer_after_eof)
    request = pattern(3 * MIB, seed=1)
    async with relay_for(tcp_config([member.port]), tmp_path) as harness:
        with trio.fail_after(20):
            client = await trio.open_tcp_stream("127.0.0.1", harness.port)
            async with client:
                await client.send_all(request)
                await client.send_eof()  # our FIN must reach the member ...
                answer = await read_all(client)  # ... and its whole answer come back, then its FIN
        (line,) = await harness.lines(1)
        assert harness.active() == [0]
    head, _, body = answer.partition(b"\n")
    assert head.decode() == f"{len(request)} {hashlib.sha256(request).hexdigest()}"
    assert body == pattern(2 * MIB, seed=5)
    assert member.received == [(len(request), hashlib.sha256(request).hexdigest())]
    assert (line["bytes_in"], line["bytes_out"]) == (len(request), len(answer))
    assert line["path"] == path and "error" not in line


async def test_a_refused_member_is_retried_on_the_next(nursery: trio.Nursery, tmp_path: Path) -> None:
    member = await start(nursery, echo)
    async with relay_for(tcp_config([dead_port(), member.port]), tmp_path) as harness:
        with trio.fail_after(5):
            client = await trio.open_tcp_stream("127.0.0.1", harness.port)
            async with client:
                await client.send_all(b"hello")
                await client.send_eof()
                assert await read_all(client) == b"hello"
        (line,) = await harness.lines(1)
        m1, m2 = harness.members()
        assert (m1.stats.failures, m1.stats.active, m2.stats.total, m2.stats.active) == (1, 0, 1, 0)
    assert (line["member"], line["retries"], line["bytes_in"], line["bytes_out"]) == ("m2", 1, 5, 5)
    assert "error" not in line


async def test_every_member_refusing_closes_the_client(tmp_path: Path) -> None:
    async with relay_for(tcp_config([dead_port(), dead_port()]), tmp_path) as harness:
        with trio.fail_after(5):
            client = await trio.open_tcp_stream("127.0.0.1", harness.port)
            async with client:
                assert await read_all(client) == b""
        (line,) = await harness.lines(1)
        assert [m.stats.failures for m in harness.members()] == [1, 1]
        assert harness.active() == [0, 0]
    assert line["error"] == "connect refused"
    assert line["member"] == "m2" and "path" not in line


async def test_no_available_member_closes_the_client(nursery: trio.Nursery, tmp_path: Path) -> None:
    member = await start(nursery, echo)
    text = tcp_config([member.port], member_extra=", state: disabled")
    async with relay_for(text, tmp_path) as harness:
        with trio.fail_after(5):
            client = await trio.open_tcp_stream("127.0.0.1", harness.port)
            async with client:
                assert await read_all(client) == b""
        (line,) = await harness.lines(1)
    assert member.connections == 0
    assert (line["error"], line["member"], line["pool"]) == ("no member available", "-", "web")


async def test_connection_limit_counts_tunnels_for_their_lifetime(nursery: trio.Nursery, tmp_path: Path) -> None:
    members = [await start(nursery, echo) for _ in range(2)]
    text = tcp_config([m.port for m in members], member_extra=", connection_limit: 1")
    async with relay_for(text, tmp_path) as harness:
        with trio.fail_after(5):
            first = await trio.open_tcp_stream("127.0.0.1", harness.port)
            second = await trio.open_tcp_stream("127.0.0.1", harness.port)
            for client in (first, second):  # a round trip: each tunnel is connected
                await client.send_all(b"ping")
                assert await client.receive_some(10) == b"ping"
            assert harness.active() == [1, 1]
            third = await trio.open_tcp_stream("127.0.0.1", harness.port)
            async with third:
                assert await read_all(third) == b""  # both members at their limit
            for client in (first, second):
                await client.send_eof()
                assert await read_all(client) == b""
                await client.aclose()
        lines = await harness.lines(3)
        assert harness.active() == [0, 0]
        assert [m.stats.total for m in harness.members()] == [1, 1]
    assert sorted(line.get("error", "") for line in lines) == ["", "", "every member at its connection limit"]


async def test_idle_tunnel_timeout_closes_an_idle_tunnel_only(nursery: trio.Nursery, tmp_path: Path, path: str) -> None:
    member = await start(nursery, echo)
    async with relay_for(tcp_config([member.port], timeouts=", tunnel: 300ms"), tmp_path) as harness:
        with trio.fail_after(5):
            client = await trio.open_tcp_stream("127.0.0.1", harness.port)
            async with client:
                for i in range(8):  # 0.7 s of traffic every 0.1 s: never idle for 0.3 s
                    if i:
                        await trio.sleep(0.1)
                    await client.send_all(b"x")
                    assert await client.receive_some(10) == b"x"
                idle_from = trio.current_time()
                assert await read_all(client) == b""  # then idle: closed by the appliance
                idle = trio.current_time() - idle_from
        (line,) = await harness.lines(1)
        assert harness.active() == [0]
    assert 0.25 <= idle < 1.5
    assert line["error"] == "idle timeout 0.3s"
    assert (line["bytes_in"], line["bytes_out"]) == (8, 8)
    assert line["path"] == path


async def _reset_after(stream: trio.SocketStream, member: Member) -> None:
    await stream.send_all(await stream.receive_some(10))
    stream.socket.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    stream.socket.close()


async def test_a_member_reset_ends_the_tunnel(nursery: trio.Nursery, tmp_path: Path, path: str) -> None:
    member = await start(nursery, _reset_after)
    async with relay_for(tcp_config([member.port]), tmp_path) as harness:
        with trio.fail_after(5):
            client = await trio.open_tcp_stream("127.0.0.1", harness.port)
            async with client:
                await client.send_all(b"hi")
                with pytest.raises(trio.BrokenResourceError):  # the reset is passed on
                    while await client.receive_some(10):
                        pass
        (line,) = await harness.lines(1)
        assert harness.active() == [0]
    assert line["error"] == "member reset"


async def test_a_client_reset_ends_the_tunnel(nursery: trio.Nursery, tmp_path: Path, path: str) -> None:
    member = await start(nursery, echo)
    async with relay_for(tcp_config([member.port]), tmp_path) as harness:
        with trio.fail_after(5):
            client = await trio.open_tcp_stream("127.0.0.1", harness.port)
            await client.send_all(b"hi")
            assert await client.receive_some(10) == b"hi"
            client.socket.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            client.socket.close()
            (line,) = await harness.lines(1)
            while member.connections and not member.errors:
                await trio.sleep(0.01)
        assert harness.active() == [0]
    assert line["error"] == "client reset"
    assert "ConnectionResetError" in member.errors[0]  # the member was reset too


async def test_many_tunnels_share_few_pipes(nursery: trio.Nursery, tmp_path: Path) -> None:
    if not tcp_relay.SPLICE_AVAILABLE:
        pytest.skip("os.splice is not available here")
    member = await start(nursery, echo)
    data = pattern(256 * 1024, seed=3)
    async with relay_for(tcp_config([member.port]), tmp_path) as harness:

        async def one() -> None:
            client = await trio.open_tcp_stream("127.0.0.1", harness.port)
            async with client:
                for _ in range(4):
                    await client.send_all(data)
                    got = b""
                    while len(got) < len(data):
                        got += await client.receive_some(len(data) - len(got))
                    assert got == data
                    await trio.sleep(0.01)  # idle in between: the pipes go back to the pool

        with trio.fail_after(20):
            async with trio.open_nursery() as clients:
                for _ in range(40):
                    clients.start_soon(one)
        lines = await harness.lines(40)
        pipes = harness.relay.pipes
        assert harness.active() == [0]
    assert {line["path"] for line in lines} == {"splice"}
    assert {(line["bytes_in"], line["bytes_out"]) for line in lines} == {(4 * len(data), 4 * len(data))}
    assert len(pipes) <= tcp_relay.PIPES_KEPT
    assert pipes.created < 80  # fewer than one pipe per direction per tunnel


async def test_without_pipes_a_splice_tunnel_copies(
    nursery: trio.Nursery, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    if not tcp_relay.SPLICE_AVAILABLE:
        pytest.skip("os.splice is not available here")
    monkeypatch.setattr(tcp_relay, "MIN_PIPE_SIZE", 1 << 40)  # every pipe is "too small"
    member = await start(nursery, echo)
    data = pattern(4 * MIB, seed=2)
    async with relay_for(tcp_config([member.port]), tmp_path) as harness:
        with trio.fail_after(20):
            client = await trio.open_tcp_stream("127.0.0.1", harness.port)
            async with client:
                async with trio.open_nursery() as both:
                    both.start_soon(client.send_all, data)
                    got = b""
                    while len(got) < len(data):
                        got += await client.receive_some(MIB)
                await client.send_eof()
                assert await read_all(client) == b""
        (line,) = await harness.lines(1)
    assert got == data
    assert line["path"] == "mixed" and "error" not in line


async def test_a_drain_does_not_cut_a_tunnel(nursery: trio.Nursery, tmp_path: Path) -> None:
    member = await start(nursery, echo)
    async with relay_for(tcp_config([member.port]), tmp_path) as harness:
        with trio.fail_after(5):
            client = await trio.open_tcp_stream("127.0.0.1", harness.port)
            async with client:
                await client.send_all(b"before")
                assert await client.receive_some(10) == b"before"
                harness.tracker.drain()
                await trio.sleep(0.1)
                await client.send_all(b"after")
                assert await client.receive_some(10) == b"after"
                await client.send_eof()
                assert await read_all(client) == b""
        (line,) = await harness.lines(1)
    assert "error" not in line


async def test_shutdown_ends_a_tunnel_and_logs_it(nursery: trio.Nursery, tmp_path: Path) -> None:
    member = await start(nursery, echo)
    async with relay_for(tcp_config([member.port]), tmp_path) as harness:
        client = await trio.open_tcp_stream("127.0.0.1", harness.port)
        await client.send_all(b"ping")
        assert await client.receive_some(10) == b"ping"
    # shutdown_grace ran out: the connection nursery was cancelled
    with trio.fail_after(5):
        async with client:
            assert await read_all(client) == b""
    (line,) = [json.loads(text) for text in harness.log_path.read_text().splitlines()]
    assert line["error"] == "shutdown" and (line["bytes_in"], line["bytes_out"]) == (4, 4)
    assert harness.active() == [0]


class _ServerTls:
    """A minimal TLS client stream over SocketIO, shaped like dataplane.tls's (no send_eof)."""

    def __init__(self, sock: socket.socket, context: ssl.SSLContext) -> None:
        self.transport = SocketIO(sock)
        self._ssl = trio.SSLStream(self.transport, context, server_side=True)

    async def receive_some(self, max_bytes: int | None = None) -> bytes:
        return await self._ssl.receive_some(max_bytes)

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        await self._ssl.send_all(data)

    async def aclose(self) -> None:
        await self._ssl.aclose()

    def close(self) -> None:
        self.transport.close()


async def test_a_tls_client_stream_takes_the_copy_path(nursery: trio.Nursery, tmp_path: Path) -> None:
    ca = trustme.CA()
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("relay.test").configure_cert(server)
    client_context = ssl.create_default_context()
    ca.configure_trust(client_context)
    member = await start(nursery, echo)
    data = pattern(MIB, seed=4)
    async with relay_for(tcp_config([member.port]), tmp_path, wrap=lambda sock: _ServerTls(sock, server)) as harness:
        with trio.fail_after(10):
            raw = await trio.open_tcp_stream("127.0.0.1", harness.port)
            client = trio.SSLStream(raw, client_context, server_hostname="relay.test")
            async with client, trio.open_nursery() as both:
                both.start_soon(client.send_all, data)
                got = b""
                while len(got) < len(data):
                    got += await client.receive_some(MIB)
        (line,) = await harness.lines(1)
        assert harness.active() == [0]
    assert got == data
    assert line["path"] == "copy" and "error" not in line
    assert (line["bytes_in"], line["bytes_out"]) == (len(data), len(data))


async def test_tls_to_the_member_takes_the_copy_path_with_half_close(nursery: trio.Nursery, tmp_path: Path) -> None:
    from appliance.dataplane.upstream import MemberTls

    ca = trustme.CA()
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("member.test").configure_cert(server)
    to_member = ssl.create_default_context()
    ca.configure_trust(to_member)
    received: list[bytes] = []

    async def tls_answer_after_eof(stream: trio.SSLStream[trio.SocketStream]) -> None:
        async with stream:
            request = await read_all(stream)  # ends at the relay's close_notify (its half-close)
            received.append(request)
            await stream.send_all(b"got %d" % len(request))

    listeners = await nursery.start(
        partial(trio.serve_ssl_over_tcp, tls_answer_after_eof, 0, server, host="127.0.0.1", https_compatible=False)
    )
    port = listeners[0].transport_listener.socket.getsockname()[1]
    tls = MemberTls(context=to_member, server_name="member.test")
    data = pattern(MIB, seed=8)
    async with relay_for(tcp_config([port]), tmp_path, member_tls=lambda pool: tls) as harness:
        with trio.fail_after(10):
            client = await trio.open_tcp_stream("127.0.0.1", harness.port)
            async with client:
                await client.send_all(data)
                await client.send_eof()
                assert await read_all(client) == b"got %d" % len(data)
        (line,) = await harness.lines(1)
        assert harness.active() == [0]
    assert received == [data]
    assert line["path"] == "copy" and "error" not in line
    assert (line["bytes_in"], line["bytes_out"]) == (len(data), len(b"got %d" % len(data)))


# ---------------------------------------------------------------- through the whole appliance


def appliance_config(port: int, member: int, log: Path, tls: str = "") -> str:
    return f"""\
appliance: {{name: test, shutdown_grace: 2s, log: {{access: {log}, format: json}}}}
pools:
  web:
    members: [{{address: 127.0.0.1:{member}, name: m1}}]
virtual_servers:
  web:
    listen: [127.0.0.1:{port}]
    mode: tcp
    pool: web
{tls}
"""


async def echo_round_trip(stream: trio.abc.Stream, data: bytes) -> bytes:
    got = bytearray()
    async with trio.open_nursery() as both:
        both.start_soon(stream.send_all, data)
        while len(got) < len(data):
            chunk = await stream.receive_some(MIB)
            assert chunk
            got += chunk
    return bytes(got)


async def test_tcp_mode_through_the_appliance(nursery: trio.Nursery, tmp_path: Path) -> None:
    from helpers import free_port, running_appliance

    member = await start(nursery, echo)
    port, log = free_port(), tmp_path / "access.log"
    data = pattern(4 * MIB, seed=6)
    async with running_appliance(appliance_config(port, member.port, log)) as appliance:
        with trio.fail_after(20):
            client = await trio.open_tcp_stream("127.0.0.1", port)
            async with client:
                assert await echo_round_trip(client, data) == data
                await client.send_eof()
                assert await read_all(client) == b""
        with trio.fail_after(5):
            while not log.exists() or not log.read_text():
                await trio.sleep(0.05)
        assert [m.stats.active for m in appliance.runtime.snapshot.pools["web"].members] == [0]
    (line,) = [json.loads(text) for text in log.read_text().splitlines()]
    expected_path = "splice" if tcp_relay.SPLICE_AVAILABLE else "copy"
    assert (line["vip"], line["member"], line["path"]) == (f"127.0.0.1:{port}", "m1", expected_path)
    assert (line["bytes_in"], line["bytes_out"]) == (len(data), len(data)) and "error" not in line


async def test_tls_terminated_tcp_mode(nursery: trio.Nursery, tmp_path: Path) -> None:
    from helpers import free_port, running_appliance

    ca = trustme.CA()
    cert = ca.issue_cert("db.test")
    cert_path, key_path = tmp_path / "db.pem", tmp_path / "db.key"
    cert.cert_chain_pems[0].write_to_path(str(cert_path))
    cert.private_key_pem.write_to_path(str(key_path))
    client_context = ssl.create_default_context()
    ca.configure_trust(client_context)
    member = await start(nursery, echo)
    port, log = free_port(), tmp_path / "access.log"
    tls = f"    tls:\n      certificates:\n        - {{cert: {cert_path}, key: {key_path}}}\n"
    data = pattern(2 * MIB, seed=7)
    async with running_appliance(appliance_config(port, member.port, log, tls)):
        with trio.fail_after(20):
            raw = await trio.open_tcp_stream("127.0.0.1", port)
            client = trio.SSLStream(raw, client_context, server_hostname="db.test")
            async with client:
                assert await echo_round_trip(client, data) == data
        with trio.fail_after(5):
            while not log.exists() or not log.read_text():
                await trio.sleep(0.05)
    (line,) = [json.loads(text) for text in log.read_text().splitlines()]
    assert line["path"] == "copy" and "error" not in line  # TLS: no zero-copy path
    assert (line["bytes_in"], line["bytes_out"]) == (len(data), len(data))
