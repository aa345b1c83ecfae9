"""TLS through the whole appliance: termination with SNI in both modes, and re-encryption to members."""

from __future__ import annotations

import hashlib
import ssl
import subprocess
import sys
from pathlib import Path

import h11
import trio
import trustme

from helpers import Origin, free_port, read_response, running_appliance


def write_pair(tmp_path: Path, ca: trustme.CA, name: str, *hosts: str) -> tuple[Path, Path]:
    cert = ca.issue_cert(*hosts)
    pem, key = tmp_path / f"{name}.pem", tmp_path / f"{name}.key"
    cert.cert_chain_pems[0].write_to_path(str(pem))
    cert.private_key_pem.write_to_path(str(key))
    return pem, key


async def https_get(port: int, ca: trustme.CA, server_name: str, target: str = "/echo") -> tuple[int, bytes, ssl.SSLObject]:
    """One request over a real TLS connection with the given SNI name."""
    ctx = ssl.create_default_context()
    ca.configure_trust(ctx)
    ctx.set_alpn_protocols(["http/1.1"])
    tcp = await trio.open_tcp_stream("127.0.0.1", port)
    stream = trio.SSLStream(tcp, ctx, server_hostname=server_name, https_compatible=True)
    conn = h11.Connection(h11.CLIENT)
    async with stream:
        await stream.do_handshake()
        await stream.send_all(conn.send(h11.Request(method="GET", target=target, headers=[("Host", server_name)])) + conn.send(h11.EndOfMessage()))
        status, _, body = await read_response(conn, stream)
        return status, body, stream._ssl_object  # type: ignore[attr-defined]


def tls_config(port: int, member_port: int, certs: list[tuple[Path, Path]], *, mode: str = "http", pool_tls: str = "") -> str:
    entries = ", ".join(f"{{cert: {c}, key: {k}}}" for c, k in certs)
    return f"""\
appliance: {{name: t, log: {{access: off}}}}
pools:
  web:
{pool_tls}
    members: [{{address: 127.0.0.1:{member_port}, name: o}}]
virtual_servers:
  web:
    listen: [127.0.0.1:{port}]
    mode: {mode}
    pool: web
    tls: {{certificates: [{entries}], handshake_timeout: 2s}}
"""


async def test_sni_picks_the_certificate_and_the_member_sees_https(nursery: trio.Nursery, tmp_path: Path) -> None:
    origin = await nursery.start(Origin("o").serve)
    ca = trustme.CA()
    first = write_pair(tmp_path, ca, "a", "a.example.test")
    wildcard = write_pair(tmp_path, ca, "b", "*.b.example.test")
    port = free_port()
    async with running_appliance(tls_config(port, origin.port, [first, wildcard])):
        status, body, ssl_object = await https_get(port, ca, "www.b.example.test")
        assert status == 200 and ssl_object.selected_alpn_protocol() == "http/1.1"
        assert "*.b.example.test" in str(ssl_object.getpeercert()["subjectAltName"])
        headers = {k.lower(): v for k, v in __import__("json").loads(body)["headers"]}
        assert headers["x-forwarded-proto"] == "https"
        _, _, ssl_object = await https_get(port, ca, "a.example.test")
        assert "a.example.test" in str(ssl_object.getpeercert()["subjectAltName"])


async def test_plain_http_on_the_tls_port_is_dropped_while_tls_clients_are_served(nursery: trio.Nursery, tmp_path: Path) -> None:
    origin = await nursery.start(Origin("o").serve)
    ca = trustme.CA()
    port = free_port()
    async with running_appliance(tls_config(port, origin.port, [write_pair(tmp_path, ca, "a", "a.example.test")])):
        plain = await trio.open_tcp_stream("127.0.0.1", port)
        await plain.send_all(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
        status, _, _ = await https_get(port, ca, "a.example.test")  # served meanwhile
        assert status == 200
        with trio.fail_after(5):
            assert await plain.receive_some(100) == b""  # dropped, no answer
        silent = await trio.open_tcp_stream("127.0.0.1", port)
        await silent.send_all(b"\x16\x03\x01\x00")  # a truncated ClientHello
        with trio.fail_after(5):  # the handshake deadline (2s) ends it
            assert await silent.receive_some(100) == b""


async def test_tls_terminated_tcp_mode(nursery: trio.Nursery, tmp_path: Path) -> None:
    async def echo(stream: trio.SocketStream) -> None:
        async with stream:
            while data := await stream.receive_some(65536):
                await stream.send_all(data)

    listeners = await nursery.start(trio.serve_tcp, echo, 0)
    member_port = listeners[0].socket.getsockname()[1]
    ca = trustme.CA()
    port = free_port()
    async with running_appliance(tls_config(port, member_port, [write_pair(tmp_path, ca, "a", "db.example.test")], mode="tcp")):
        ctx = ssl.create_default_context()
        ca.configure_trust(ctx)
        stream = trio.SSLStream(await trio.open_tcp_stream("127.0.0.1", port), ctx, server_hostname="db.example.test")
        payload = bytes(range(256)) * 4096  # 1 MiB
        received = bytearray()
        async with stream:

            async def send() -> None:
                await stream.send_all(payload)

            async with trio.open_nursery() as inner:
                inner.start_soon(send)
                with trio.fail_after(20):
                    while len(received) < len(payload):
                        received += await stream.receive_some(65536)
        assert hashlib.sha256(received).digest() == hashlib.sha256(payload).digest()


async def test_pool_tls_verifies_members(nursery: trio.Nursery, tmp_path: Path) -> None:
    ca = trustme.CA()
    member_cert = ca.issue_cert("app.internal")
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    member_cert.configure_cert(server_ctx)

    async def tls_origin(stream: trio.SocketStream) -> None:
        tls = trio.SSLStream(stream, server_ctx, server_side=True)
        conn = h11.Connection(h11.SERVER)
        try:
            while True:
                event = conn.next_event()
                if event is h11.NEED_DATA:
                    conn.receive_data(await tls.receive_some(65536))
                elif isinstance(event, h11.Request):
                    body = b"secure member"
                    await tls.send_all(conn.send(h11.Response(status_code=200, headers=[("content-length", str(len(body)))])) + conn.send(h11.Data(data=body)) + conn.send(h11.EndOfMessage()))
                    conn.start_next_cycle() if conn.states[h11.CLIENT] is h11.DONE else None
                elif isinstance(event, h11.EndOfMessage):
                    continue
                else:
                    return
        except (trio.BrokenResourceError, h11.ProtocolError, ssl.SSLError):
            return

    listeners = await nursery.start(trio.serve_tcp, tls_origin, 0)
    member_port = listeners[0].socket.getsockname()[1]
    ca_file = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    front_ca = trustme.CA()
    front = write_pair(tmp_path, front_ca, "front", "front.example.test")
    for server_name, expected in (("app.internal", 200), ("wrong.internal", 502)):
        port = free_port()
        pool_tls = f"    tls: {{verify: true, ca: {ca_file}, server_name: {server_name}}}\n    retries: 0"
        async with running_appliance(tls_config(port, member_port, [front], pool_tls=pool_tls)):
            status, body, _ = await https_get(port, front_ca, "front.example.test", "/")
            assert status == expected
            if expected == 200:
                assert body == b"secure member"
            else:
                assert b"certificate verify failed" in body or b"TLS" in body


def test_check_names_a_bad_key_file(tmp_path: Path) -> None:
    ca = trustme.CA()
    cert, key = write_pair(tmp_path, ca, "a", "a.example.test")
    _, other_key = write_pair(tmp_path, ca, "b", "b.example.test")
    conf = tmp_path / "a.yaml"
    conf.write_text(tls_config(free_port(), free_port(), [(cert, other_key)]))
    result = subprocess.run([sys.executable, "-m", "appliance", "check", "-c", str(conf)], capture_output=True, text=True, timeout=30)
    assert result.returncode == 1
    assert str(other_key) in result.stdout and f"{conf}:" in result.stdout


async def test_a_thousand_addresses_on_one_virtual_server(nursery: trio.Nursery) -> None:
    origin = await nursery.start(Origin("o").serve)
    port = free_port()
    text = f"""\
appliance: {{name: t, log: {{access: off}}}}
pools:
  web: {{members: [{{address: 127.0.0.1:{origin.port}}}]}}
virtual_servers:
  web: {{listen: [127.1.0.0-127.1.3.255:{port}], pool: web}}
"""
    async with running_appliance(text) as appliance:
        assert len(appliance.listeners.endpoints) == 1024
        for host in ("127.1.0.0", "127.1.2.17", "127.1.3.255"):
            stream = await trio.open_tcp_stream(host, port)
            async with stream:
                await stream.send_all(b"GET /echo HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
                with trio.fail_after(5):
                    assert (await stream.receive_some(100)).startswith(b"HTTP/1.1 200 ")


async def test_certificates_are_re_read_on_reload_and_a_bad_one_keeps_the_old(nursery: trio.Nursery, tmp_path: Path) -> None:
    origin = await nursery.start(Origin("o").serve)
    ca = trustme.CA()
    cert, key = write_pair(tmp_path, ca, "site", "old.example.test")
    port = free_port()
    path = tmp_path / "a.yaml"
    path.write_text(tls_config(port, origin.port, [(cert, key)]))
    async with running_appliance(path.read_text(), str(path)) as appliance:
        _, _, ssl_object = await https_get(port, ca, "old.example.test")
        assert "old.example.test" in str(ssl_object.getpeercert()["subjectAltName"])
        key.write_text("not a key")
        errors = await appliance.reload()
        assert errors and str(key) in errors[0]
        _, _, ssl_object = await https_get(port, ca, "old.example.test")  # still served with the old one
        write_pair(tmp_path, ca, "site", "new.example.test")  # renewed in place, as certbot does
        assert await appliance.reload() == []
        _, _, ssl_object = await https_get(port, ca, "new.example.test")
        assert "new.example.test" in str(ssl_object.getpeercert()["subjectAltName"])
