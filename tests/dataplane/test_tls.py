"""TLS termination and re-encryption (`appliance.dataplane.tls`) over real loopback sockets.

A trustme CA issues every certificate. The server side is a stdlib listening
socket whose accepted sockets are wrapped in `SocketIO` and handed to
`accept_tls`; clients are trio `SSLStream`s (or raw sockets for the broken
ones), so everything runs in the test's trio loop. Each test is bounded by
`trio.fail_after`.
"""

from __future__ import annotations

import contextlib
import socket
import ssl
import subprocess
import sys
import textwrap
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import trio
import trustme
from cryptography.hazmat.primitives import serialization

from appliance.core.config import parse_config
from appliance.core.model import Certificate, ServerTls, UpstreamTls
from appliance.dataplane.sockio import SocketIO
from appliance.dataplane.tls import (
    CLOSE_NOTIFY_TIMEOUT,
    TlsConfigError,
    TlsHandshakeError,
    TlsStream,
    accept_tls,
    check_tls,
    client_context,
    connect_tls,
    server_context,
)
from appliance.errors import StartError, UpstreamConnectError

Handler = Callable[[TlsStream], Awaitable[None]]


# ---------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@dataclass
class Pair:
    cert: Path
    key: Path

    def entry(self, **extra: str) -> Certificate:
        return Certificate(cert=str(self.cert), key=str(self.key), **extra)


def issue(ca: trustme.CA, folder: Path, stem: str, *names: str) -> Pair:
    leaf = ca.issue_cert(*names)
    pair = Pair(folder / f"{stem}.pem", folder / f"{stem}.key")
    leaf.cert_chain_pems[0].write_to_path(str(pair.cert))
    leaf.private_key_pem.write_to_path(str(pair.key))
    return pair


def encrypt_key(pair: Pair, passphrase: bytes) -> None:
    key = serialization.load_pem_private_key(pair.key.read_bytes(), None)
    pair.key.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(passphrase),
        )
    )


def client_ctx(ca: trustme.CA, *, alpn: tuple[str, ...] = ("http/1.1",)) -> ssl.SSLContext:
    """A verifying client that does not insist on the name: tests look at which certificate came."""
    ctx = ssl.create_default_context()
    ca.configure_trust(ctx)
    ctx.check_hostname = False
    if alpn:
        ctx.set_alpn_protocols(list(alpn))
    return ctx


@dataclass
class Server:
    port: int
    outcomes: list[TlsStream | TlsHandshakeError] = field(default_factory=list)
    done: trio.Event = field(default_factory=trio.Event)

    async def next_outcome(self, count: int = 1) -> list[TlsStream | TlsHandshakeError]:
        while len(self.outcomes) < count:
            self.done = trio.Event()
            await self.done.wait()
        return self.outcomes[:count]


async def echo(stream: TlsStream) -> None:
    while data := await stream.receive_some():
        await stream.send_all(data)


@asynccontextmanager
async def tls_server(
    ctx: ssl.SSLContext, handler: Handler = echo, *, timeout: float = 5.0
) -> AsyncIterator[Server]:
    """A loopback TLS server built from `accept_tls`; records each handshake's outcome in order."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    listener.setblocking(False)
    server = Server(port=listener.getsockname()[1])

    async def handle(sock: socket.socket) -> None:
        transport = SocketIO(sock)
        try:
            stream = await accept_tls(transport, ctx, timeout)
        except TlsHandshakeError as exc:
            server.outcomes.append(exc)
            server.done.set()
            return
        server.outcomes.append(stream)
        server.done.set()
        try:
            await handler(stream)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass
        finally:
            await stream.aclose()

    async def accept_loop() -> None:
        async with trio.open_nursery() as connections:
            while True:
                await trio.lowlevel.wait_readable(listener)
                try:
                    sock, _ = listener.accept()
                except BlockingIOError:
                    continue
                connections.start_soon(handle, sock)

    try:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(accept_loop)
            yield server
            nursery.cancel_scope.cancel()
    finally:
        listener.close()


async def tls_client(
    port: int, ctx: ssl.SSLContext, server_name: str | None = None
) -> trio.SSLStream[trio.SocketStream]:
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    client = trio.SSLStream(stream, ctx, server_hostname=server_name)
    await client.do_handshake()
    return client


def san(client: trio.SSLStream[trio.SocketStream]) -> list[str]:
    cert = client.getpeercert()
    assert cert is not None
    return [value for kind, value in cert["subjectAltName"] if kind == "DNS"]


# ---------------------------------------------------------------- SNI, versions, ciphers, ALPN


async def test_sni_picks_each_certificate_and_no_sni_gets_the_first(ca: trustme.CA, tmp_path: Path) -> None:
    first = issue(ca, tmp_path, "web", "web.example.test")
    wild = issue(ca, tmp_path, "wild", "*.example.test")
    api = issue(ca, tmp_path, "api", "api.example.test")  # exact beats the wildcard listed before it
    tls = ServerTls(certificates=(first.entry(), wild.entry(), api.entry()))
    cases = [
        ("web.example.test", ["web.example.test"]),
        ("shop.example.test", ["*.example.test"]),
        ("SHOP.Example.TEST", ["*.example.test"]),  # names are case-insensitive
        ("api.example.test", ["api.example.test"]),
        ("a.b.example.test", ["web.example.test"]),  # a wildcard covers one label only
        ("example.test", ["web.example.test"]),
        ("other.test", ["web.example.test"]),
        (None, ["web.example.test"]),
    ]
    with trio.fail_after(5):
        async with tls_server(server_context("web", tls)) as server:
            for index, (name, expected) in enumerate(cases):
                client = await tls_client(server.port, client_ctx(ca), name)
                assert san(client) == expected, name
                (*_, outcome) = await server.next_outcome(index + 1)
                assert isinstance(outcome, TlsStream)
                assert outcome.server_name == name
                await client.aclose()


async def test_min_version_13_refuses_a_tls12_only_client(ca: trustme.CA, tmp_path: Path) -> None:
    pair = issue(ca, tmp_path, "web", "web.example.test")
    ctx = server_context("web", ServerTls(certificates=(pair.entry(),), min_version="1.3"))
    old = client_ctx(ca)
    old.maximum_version = ssl.TLSVersion.TLSv1_2
    with trio.fail_after(5):
        async with tls_server(ctx) as server:
            with pytest.raises(trio.BrokenResourceError):
                await tls_client(server.port, old, "web.example.test")
            (outcome,) = await server.next_outcome()
            assert isinstance(outcome, TlsHandshakeError)
            assert str(outcome).startswith("no shared protocol version")
            modern = await tls_client(server.port, client_ctx(ca), "web.example.test")
            assert modern.version() == "TLSv1.3"
            await modern.aclose()


@pytest.mark.filterwarnings("ignore:ssl.TLSVersion.TLSv1_1 is deprecated:DeprecationWarning")
async def test_default_min_version_is_12_and_lowering_it_lets_tls11_in(ca: trustme.CA, tmp_path: Path) -> None:
    pair = issue(ca, tmp_path, "web", "web.example.test")
    legacy = client_ctx(ca)
    legacy.minimum_version = legacy.maximum_version = ssl.TLSVersion.TLSv1_1
    legacy.set_ciphers("DEFAULT:@SECLEVEL=0")
    with trio.fail_after(5):
        async with tls_server(server_context("web", ServerTls(certificates=(pair.entry(),)))) as server:
            with pytest.raises(trio.BrokenResourceError):
                await tls_client(server.port, legacy, "web.example.test")
            (outcome,) = await server.next_outcome()
            assert isinstance(outcome, TlsHandshakeError)
        lowered = server_context("web", ServerTls(certificates=(pair.entry(),), min_version="1.1"))
        async with tls_server(lowered) as server:
            client = await tls_client(server.port, legacy, "web.example.test")
            assert client.version() == "TLSv1.1"
            await client.aclose()


def test_cipher_lists_follow_mozilla(ca: trustme.CA, tmp_path: Path) -> None:
    pair = issue(ca, tmp_path, "web", "web.example.test")
    modern = server_context("web", ServerTls(certificates=(pair.entry(),)))
    tls12 = [c for c in modern.get_ciphers() if c["protocol"] == "TLSv1.2"]
    assert tls12 and all(c["aead"] and c["kea"] in ("kx-ecdhe", "kx-dhe") for c in tls12)
    assert not [c["name"] for c in modern.get_ciphers() if "CBC" in c["description"] or c["name"].endswith("-SHA")]
    assert {c["name"] for c in modern.get_ciphers() if c["protocol"] == "TLSv1.3"} >= {"TLS_AES_128_GCM_SHA256"}
    assert not modern.options & ssl.OP_CIPHER_SERVER_PREFERENCE
    assert modern.options & ssl.OP_NO_COMPRESSION
    assert modern.minimum_version is ssl.TLSVersion.TLSv1_2
    old = server_context("web", ServerTls(certificates=(pair.entry(),), min_version="1.0"))
    assert old.minimum_version is ssl.TLSVersion.TLSv1
    assert "ECDHE-RSA-AES128-SHA" in {c["name"] for c in old.get_ciphers()}  # Mozilla "old" has CBC suites


async def test_alpn_http11_is_negotiated(ca: trustme.CA, tmp_path: Path) -> None:
    pair = issue(ca, tmp_path, "web", "web.example.test")
    with trio.fail_after(5):
        async with tls_server(server_context("web", ServerTls(certificates=(pair.entry(),)))) as server:
            client = await tls_client(server.port, client_ctx(ca, alpn=("h2", "http/1.1")), "web.example.test")
            assert client.selected_alpn_protocol() == "http/1.1"
            (outcome,) = await server.next_outcome()
            assert isinstance(outcome, TlsStream)
            assert (outcome.alpn, outcome.version) == ("http/1.1", "TLSv1.3")
            await client.aclose()


# ---------------------------------------------------------------- clients that are not TLS, or stall


async def test_plain_http_on_the_tls_port_costs_only_its_own_connection(ca: trustme.CA, tmp_path: Path) -> None:
    pair = issue(ca, tmp_path, "web", "web.example.test")
    with trio.fail_after(5):
        async with tls_server(server_context("web", ServerTls(certificates=(pair.entry(),)))) as server:
            good = await tls_client(server.port, client_ctx(ca), "web.example.test")
            plain = await trio.open_tcp_stream("127.0.0.1", server.port)
            await plain.send_all(b"GET / HTTP/1.1\r\nHost: web.example.test\r\n\r\n")
            with trio.move_on_after(2) as stuck:  # closed by the server: a FIN, or an RST for unread bytes
                with contextlib.suppress(trio.BrokenResourceError):
                    assert await plain.receive_some() == b""
            assert not stuck.cancelled_caught
            outcomes = await server.next_outcome(2)
            assert [str(o) for o in outcomes if isinstance(o, TlsHandshakeError)] == ["not TLS (plain HTTP?)"]
            await good.send_all(b"still here")
            assert await good.receive_some() == b"still here"
            await good.aclose()
            await plain.aclose()


async def test_a_truncated_client_hello_times_out(ca: trustme.CA, tmp_path: Path) -> None:
    pair = issue(ca, tmp_path, "web", "web.example.test")
    ctx = server_context("web", ServerTls(certificates=(pair.entry(),)))
    with trio.fail_after(3):
        async with tls_server(ctx, timeout=0.3) as server:
            stalled = await trio.open_tcp_stream("127.0.0.1", server.port)
            await stalled.send_all(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03")  # 11 bytes of a 512-byte hello
            started = trio.current_time()
            (outcome,) = await server.next_outcome()
            assert str(outcome) == "handshake timeout after 0.3s"
            assert 0.25 < trio.current_time() - started < 2
            assert await stalled.receive_some() == b""  # closed by the server
            await stalled.aclose()


async def test_a_client_closing_mid_handshake_is_named(ca: trustme.CA, tmp_path: Path) -> None:
    pair = issue(ca, tmp_path, "web", "web.example.test")
    with trio.fail_after(3):
        async with tls_server(server_context("web", ServerTls(certificates=(pair.entry(),)))) as server:
            quitter = await trio.open_tcp_stream("127.0.0.1", server.port)
            await quitter.send_all(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03")
            await quitter.aclose()
            (outcome,) = await server.next_outcome()
            assert str(outcome) == "client closed during handshake"


# ---------------------------------------------------------------- the stream: close, half-close, EOF


async def test_send_eof_sends_close_notify_and_keeps_reading(ca: trustme.CA, tmp_path: Path) -> None:
    pair = issue(ca, tmp_path, "web", "web.example.test")
    received: list[bytes] = []

    async def half_close_then_read(stream: TlsStream) -> None:
        await stream.send_all(b"answer")
        await stream.send_eof()
        await stream.send_eof()  # idempotent
        while data := await stream.receive_some():
            received.append(data)

    with trio.fail_after(5):
        async with tls_server(server_context("web", ServerTls(certificates=(pair.entry(),))), half_close_then_read) as server:
            client = await tls_client(server.port, client_ctx(ca), "web.example.test")
            assert await client.receive_some() == b"answer"
            assert await client.receive_some() == b""  # the close_notify
            await client.send_all(b"more after the server's EOF")
            await client.aclose()
            while not received:
                await trio.sleep(0.01)
    assert b"".join(received) == b"more after the server's EOF"


async def test_the_peers_close_notify_reads_as_eof_and_the_answer_still_flows(ca: trustme.CA, tmp_path: Path) -> None:
    pair = issue(ca, tmp_path, "web", "web.example.test")

    async def read_all_then_answer(stream: TlsStream) -> None:
        request = b""
        while data := await stream.receive_some():
            request += data
        await stream.send_all(b"got " + request)

    with trio.fail_after(5):
        async with tls_server(server_context("web", ServerTls(certificates=(pair.entry(),))), read_all_then_answer) as server:
            transport = SocketIO(socket.create_connection(("127.0.0.1", server.port)))
            client = await connect_tls(transport, client_context(UpstreamTls(ca=ca_file(ca, tmp_path)), "t"), "web.example.test", 2)
            await client.send_all(b"question")
            await client.send_eof()
            answer = b""
            while data := await client.receive_some():
                answer += data
            assert answer == b"got question"
            await client.aclose()


async def test_a_ragged_eof_reads_as_eof(ca: trustme.CA, tmp_path: Path) -> None:
    pair = issue(ca, tmp_path, "web", "web.example.test")
    reads: list[bytes] = []

    async def read_twice(stream: TlsStream) -> None:
        reads.append(await stream.receive_some())
        reads.append(await stream.receive_some())

    with trio.fail_after(5):
        async with tls_server(server_context("web", ServerTls(certificates=(pair.entry(),))), read_twice) as server:
            transport = SocketIO(socket.create_connection(("127.0.0.1", server.port)))
            client = await connect_tls(transport, client_context(UpstreamTls(verify=False), "t"), None, 2)
            await client.send_all(b"x")
            client.close()  # no close_notify: a bare FIN
            while len(reads) < 2:
                await trio.sleep(0.01)
    assert reads == [b"x", b""]


async def test_aclose_is_bounded_when_the_peer_does_not_read(ca: trustme.CA, tmp_path: Path) -> None:
    pair = issue(ca, tmp_path, "web", "web.example.test")
    closed_in: list[float] = []

    async def fill_then_close(stream: TlsStream) -> None:
        sock = stream.transport.sock
        try:  # fill the socket to the brim (raw bytes: the peer never reads them anyway)
            while True:
                sock.send(b"x" * 65536)
        except BlockingIOError:
            pass
        started = trio.current_time()
        await stream.aclose()  # the close_notify cannot be sent
        closed_in.append(trio.current_time() - started)

    with trio.fail_after(5):
        async with tls_server(server_context("web", ServerTls(certificates=(pair.entry(),))), fill_then_close) as server:
            client = await tls_client(server.port, client_ctx(ca), "web.example.test")
            while not closed_in:  # and never read
                await trio.sleep(0.01)
            await client.aclose()
    assert CLOSE_NOTIFY_TIMEOUT - 0.05 < closed_in[0] < CLOSE_NOTIFY_TIMEOUT + 0.3


async def test_a_client_with_nagle_on_does_not_stall_after_the_handshake(ca: trustme.CA, tmp_path: Path) -> None:
    """TLS 1.3: the ACK of the client's Finished must not wait for the delayed-ACK timer (40 ms)."""
    pair = issue(ca, tmp_path, "web", "web.example.test")
    ctx = client_ctx(ca)
    timings: list[float] = []
    with trio.fail_after(5):
        async with tls_server(server_context("web", ServerTls(certificates=(pair.entry(),)))) as server:
            for _ in range(5):
                started = trio.current_time()
                tcp = await trio.open_tcp_stream("127.0.0.1", server.port)
                tcp.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 0)  # as ab and Python's ssl do
                client = trio.SSLStream(tcp, ctx, server_hostname="web.example.test")
                await client.do_handshake()
                await client.send_all(b"ping")
                assert await client.receive_some() == b"ping"
                timings.append(trio.current_time() - started)
                await client.aclose()
    assert sorted(timings)[2] < 0.030, timings


# ---------------------------------------------------------------- keys, passphrases and the check


def test_an_encrypted_key_without_passphrase_file_is_a_start_error(ca: trustme.CA, tmp_path: Path) -> None:
    pair = issue(ca, tmp_path, "web", "web.example.test")
    encrypt_key(pair, b"s3cret")
    with pytest.raises(StartError) as caught:
        server_context("web", ServerTls(certificates=(pair.entry(origin="a.yaml:9:11"),)))
    assert str(caught.value) == (
        f"a.yaml:9:11: virtual_servers.web.tls.certificates[0]: cannot load key {pair.key}: "
        "it is encrypted and no key_password_file is set"
    )
    (tmp_path / "pass").write_bytes(b"s3cret\nsecond line ignored\n")
    server_context("web", ServerTls(certificates=(pair.entry(key_password_file=str(tmp_path / "pass")),)))
    (tmp_path / "wrong").write_text("guess\n")
    with pytest.raises(StartError, match=f"wrong passphrase in key_password_file {tmp_path / 'wrong'}$"):
        server_context("web", ServerTls(certificates=(pair.entry(key_password_file=str(tmp_path / "wrong")),)))
    with pytest.raises(StartError, match="cannot read key_password_file .*/absent: No such file or directory$"):
        server_context("web", ServerTls(certificates=(pair.entry(key_password_file=str(tmp_path / "absent")),)))


def test_an_encrypted_key_never_prompts_even_without_stdin(ca: trustme.CA, tmp_path: Path) -> None:
    """In a fresh process with no terminal and stdin closed: an error at once, not a hang on a prompt."""
    pair = issue(ca, tmp_path, "web", "web.example.test")
    encrypt_key(pair, b"s3cret")
    script = textwrap.dedent(f"""
        from appliance.core.model import Certificate, ServerTls
        from appliance.dataplane.tls import server_context
        from appliance.errors import StartError
        try:
            server_context("web", ServerTls(certificates=(Certificate(cert={str(pair.cert)!r}, key={str(pair.key)!r}),)))
        except StartError as exc:
            print(exc)
    """)
    done = subprocess.run(
        [sys.executable, "-c", script], stdin=subprocess.DEVNULL, capture_output=True, text=True,
        timeout=20, start_new_session=True, check=True,
    )  # fmt: skip
    assert done.stdout.strip().endswith(f"cannot load key {pair.key}: it is encrypted and no key_password_file is set")


def test_load_errors_name_the_files_and_are_collected(ca: trustme.CA, tmp_path: Path) -> None:
    web = issue(ca, tmp_path, "web", "web.example.test")
    other = issue(ca, tmp_path, "other", "other.example.test")
    (tmp_path / "junk.pem").write_text("not a certificate\n")
    tls = ServerTls(
        certificates=(
            Certificate(cert=str(web.cert), key=str(other.key), origin="a.yaml:40:11"),
            Certificate(cert=str(tmp_path / "missing.pem"), key=str(web.key)),
            Certificate(cert=str(tmp_path / "junk.pem"), key=str(web.key)),
            Certificate(cert=str(web.cert), key=str(web.cert)),
        )
    )
    with pytest.raises(TlsConfigError) as caught:
        server_context("web", tls)
    assert caught.value.lines == (
        (
            f"a.yaml:40:11: virtual_servers.web.tls.certificates[0]: cannot load key {other.key}: "
            f"key does not match certificate {web.cert}"
        ),
        (
            f"virtual_servers.web.tls.certificates[1]: cannot read certificate {tmp_path / 'missing.pem'}: "
            "No such file or directory"
        ),
        (
            f"virtual_servers.web.tls.certificates[2]: certificate {tmp_path / 'junk.pem'} is not a PEM certificate "
            "(no -----BEGIN CERTIFICATE----- block that parses)"
        ),
        (
            f"virtual_servers.web.tls.certificates[3]: cannot load key {web.cert}: not a PEM private key "
            "(no -----BEGIN PRIVATE KEY----- block)"
        ),
    )


def ca_file(ca: trustme.CA, folder: Path) -> str:
    path = folder / "ca.pem"
    ca.cert_pem.write_to_path(str(path))
    return str(path)


def test_check_tls_reports_every_problem_at_its_config_line(ca: trustme.CA, tmp_path: Path) -> None:
    good = issue(ca, tmp_path, "good", "good.example.test")
    text = textwrap.dedent(f"""\
        pools:
          web:
            tls: {{verify: true, ca: {tmp_path}/no-ca.pem}}
            members: [{{address: 127.0.0.1:9001}}]
        virtual_servers:
          web:
            listen: [127.0.0.1:8443]
            pool: web
            tls:
              certificates:
                - {{cert: {good.cert}, key: {good.key}}}
                - {{cert: {tmp_path}/absent.pem, key: {good.key}}}
          fine:
            listen: [127.0.0.1:8444]
            pool: web
            tls: {{certificates: [{{cert: {good.cert}, key: {good.key}}}]}}
    """)
    assert check_tls(parse_config(text, "a.yaml")) == [
        (
            f"a.yaml:12:11: virtual_servers.web.tls.certificates[1]: cannot read certificate {tmp_path}/absent.pem: "
            "No such file or directory"
        ),
        f"a.yaml:3:10: pools.web.tls: cannot read ca {tmp_path}/no-ca.pem: No such file or directory",
    ]
    assert check_tls(parse_config(text.replace(f"{tmp_path}/absent.pem", str(good.cert)).replace(
        f"{tmp_path}/no-ca.pem", ca_file(ca, tmp_path)), "a.yaml")) == []  # fmt: skip


# ---------------------------------------------------------------- TLS to members


async def test_client_context_verifies_names_and_addresses(ca: trustme.CA, tmp_path: Path) -> None:
    pair = issue(ca, tmp_path, "member", "app.internal", "127.0.0.1")
    trusted = UpstreamTls(verify=True, ca=ca_file(ca, tmp_path))

    async def connect(port: int, tls: UpstreamTls, name: str | None) -> TlsStream:
        transport = SocketIO(socket.create_connection(("127.0.0.1", port)))
        return await connect_tls(transport, client_context(tls, "pools.web.tls"), name, 2)

    with trio.fail_after(5):
        async with tls_server(server_context("member", ServerTls(certificates=(pair.entry(),)))) as server:
            for name in ("app.internal", None):  # None: the member's address, matched against an IP SAN
                member = await connect(server.port, trusted, name)
                assert (member.alpn, member.server_name) == ("http/1.1", name or "127.0.0.1")
                await member.send_all(b"hello")
                assert await member.receive_some() == b"hello"
                await member.aclose()
            with pytest.raises(UpstreamConnectError) as caught:
                await connect(server.port, trusted, "wrong.internal")
            assert str(caught.value).startswith("TLS handshake failed: certificate verify failed: Hostname mismatch")
            (tmp_path / "other").mkdir()
            stranger = UpstreamTls(verify=True, ca=ca_file(trustme.CA(), tmp_path / "other"))
            with pytest.raises(UpstreamConnectError, match="certificate verify failed: unable to get local issuer"):
                await connect(server.port, stranger, "app.internal")
            member = await connect(server.port, UpstreamTls(verify=False), "wrong.internal")
            assert member.version == "TLSv1.3"
            await member.aclose()


async def test_connect_tls_times_out_on_a_silent_member() -> None:
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)  # accepts (in the backlog) and never answers
    try:
        with trio.fail_after(3):
            transport = SocketIO(socket.create_connection(listener.getsockname()))
            with pytest.raises(UpstreamConnectError, match=r"^TLS handshake timeout after 0.2s$"):
                await connect_tls(transport, client_context(UpstreamTls(verify=False), "t"), None, 0.2)
    finally:
        listener.close()


def test_client_context_refuses_a_ca_file_without_certificates(tmp_path: Path) -> None:
    (tmp_path / "ca.pem").write_text("nothing here\n")
    with pytest.raises(TlsConfigError) as caught:
        client_context(UpstreamTls(ca=str(tmp_path / "ca.pem"), origin="a.yaml:3:10"), "pools.web.tls")
    assert str(caught.value) == (
        f"a.yaml:3:10: pools.web.tls: ca {tmp_path / 'ca.pem'} holds no PEM certificate (-----BEGIN CERTIFICATE-----)"
    )
