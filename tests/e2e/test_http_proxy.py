"""The HTTP proxy through real loopback sockets: an origin, the appliance, a real client."""

from __future__ import annotations

import hashlib
import json

import httpx
import pytest
import trio

from helpers import Origin, config_text, free_port, pattern, running_appliance

MIB = 1024 * 1024


async def start_origins(nursery: trio.Nursery, count: int) -> list[Origin]:
    return [await nursery.start(Origin(f"o{i}").serve) for i in range(1, count + 1)]


async def raw_exchange(port: int, data: bytes, *, read_until_close: bool = True) -> bytes:
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    async with stream:
        await stream.send_all(data)
        chunks = []
        with trio.fail_after(5):
            while True:
                chunk = await stream.receive_some(65536)
                if not chunk:
                    break
                chunks.append(chunk)
                if not read_until_close:
                    break
        return b"".join(chunks)


async def test_keep_alive_round_robin_and_member_connection_reuse(nursery: trio.Nursery) -> None:
    origins = await start_origins(nursery, 2)
    port = free_port()
    async with running_appliance(config_text(port, [o.port for o in origins])) as appliance:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client:
            seen = [(await client.get("/echo")).json()["origin"] for _ in range(6)]
        pool = appliance.runtime.snapshot.pools["web"]
        assert [(m.stats.requests, m.stats.total, m.stats.active) for m in pool.members] == [(3, 3, 0), (3, 3, 0)]
    assert seen == ["o1", "o2", "o1", "o2", "o1", "o2"]
    # Six requests, two members: keep-alive to members means one connection each.
    assert [o.connections for o in origins] == [1, 1]


async def test_large_bodies_stream_both_ways_with_checksums(nursery: trio.Nursery) -> None:
    (origin,) = await start_origins(nursery, 1)
    port = free_port()
    body = pattern(4 * MIB)
    async with running_appliance(config_text(port, [origin.port])):
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=20) as client:
            up = (await client.post("/echo", content=body)).json()
            assert up["body_len"] == len(body)
            assert up["body_sha256"] == hashlib.sha256(body).hexdigest()

            async def chunks():
                for i in range(0, len(body), 100_000):
                    yield body[i : i + 100_000]

            up_chunked = (await client.post("/echo", content=chunks())).json()
            assert up_chunked["body_sha256"] == hashlib.sha256(body).hexdigest()
            assert ["Transfer-Encoding", "chunked"] in up_chunked["headers"]
            for path in (f"/big/{4 * MIB}", f"/chunked/{4 * MIB}"):
                down = await client.get(path)
                assert hashlib.sha256(down.content).hexdigest() == hashlib.sha256(body).hexdigest()


async def test_forwarded_headers_and_hop_by_hop_removal(nursery: trio.Nursery) -> None:
    (origin,) = await start_origins(nursery, 1)
    port = free_port()
    async with running_appliance(config_text(port, [origin.port])):
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client:
            response = await client.get(
                "/echo",
                headers={
                    "Host": "shop.example",
                    "X-Forwarded-For": "203.0.113.7",
                    "X-Forwarded-Proto": "spoofed",
                    "Connection": "keep-alive, X-Secret",
                    "X-Secret": "hop",
                    "Keep-Alive": "timeout=5",
                    "Proxy-Authorization": "Basic eA==",
                    "X-Kept": "yes",
                },
            )
    headers = {k.lower(): v for k, v in response.json()["headers"]}
    assert headers["x-forwarded-for"] == "203.0.113.7, 127.0.0.1"
    assert headers["x-forwarded-proto"] == "http"
    assert headers["x-forwarded-host"] == "shop.example"
    assert headers["x-kept"] == "yes"
    for gone in ("x-secret", "keep-alive", "proxy-authorization", "connection"):
        assert gone not in headers


async def test_malformed_request_is_400_and_other_clients_unaffected(nursery: trio.Nursery) -> None:
    (origin,) = await start_origins(nursery, 1)
    port = free_port()
    async with running_appliance(config_text(port, [origin.port])):
        answer = await raw_exchange(port, b"GET / HTTP/1.1\r\nHost: a\r\nBad Header\r\n\r\n")
        assert answer.startswith(b"HTTP/1.1 400 ")
        answer = await raw_exchange(port, b"GET http://other.example/ HTTP/1.1\r\nHost: a.example\r\n\r\n")
        assert answer.startswith(b"HTTP/1.1 400 ")
        answer = await raw_exchange(port, b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n")
        assert answer.startswith(b"HTTP/1.1 400 ")
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client:
            assert (await client.get("/echo")).status_code == 200


@pytest.mark.parametrize(
    "head",
    [
        b"GET / HTTP/1.1\r\nHost: a\r\nX-Big: " + b"a" * 17_000 + b"\r\n\r\n",  # one write, one header
        b"GET / HTTP/1.1\r\nHost: a\r\n" + b"".join(b"X-H%d: v\r\n" % i for i in range(200)) + b"\r\n",
        b"GET / HTTP/1.1\r\nHost: a\r\nX-Big: " + b"a" * 40_000 + b"\r\n\r\n",  # over h11's own limit
    ],
    ids=["17KB-head", "200-lines", "40KB-head"],
)
async def test_oversized_heads_are_431(nursery: trio.Nursery, head: bytes) -> None:
    (origin,) = await start_origins(nursery, 1)
    port = free_port()
    text = config_text(port, [origin.port], extra_vs="    limits: {max_header_bytes: 16384, max_header_count: 100}")
    async with running_appliance(text):
        answer = await raw_exchange(port, head)
    assert answer.startswith(b"HTTP/1.1 431 ")
    assert origin.requests == []


async def test_content_length_beside_chunked_is_not_forwarded(nursery: trio.Nursery) -> None:
    (origin,) = await start_origins(nursery, 1)
    port = free_port()
    async with running_appliance(config_text(port, [origin.port])):
        answer = await raw_exchange(
            port,
            b"POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n"
            b"5\r\nhello\r\n0\r\n\r\n",
        )
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 ")
    assert b"connection: close" in head.lower()  # and the connection closed (read until EOF)
    seen = origin.requests[0]
    names = [k.lower() for k, _ in seen["headers"]]
    assert "content-length" not in names
    assert seen["body_len"] == 5


async def test_member_failures_are_502_and_504(nursery: trio.Nursery) -> None:
    (origin,) = await start_origins(nursery, 1)
    port = free_port()
    text = config_text(port, [origin.port], extra_vs="    timeouts: {server: 500ms}")
    async with running_appliance(text):
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=5) as client:
            assert (await client.get("/reset")).status_code == 502
            assert (await client.get("/garbage")).status_code == 502
            assert (await client.get("/slow")).status_code == 504
            assert (await client.get("/partial-head")).status_code == 504  # h11 alone would wait forever
            assert (await client.get("/echo")).status_code == 200


async def test_no_available_member_is_503_and_refused_connect_retries_elsewhere(nursery: trio.Nursery) -> None:
    (origin,) = await start_origins(nursery, 1)
    dead = free_port()
    port = free_port()
    async with running_appliance(config_text(port, [dead, origin.port])):
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client:
            # m1 refuses; every request is retried on m2.
            assert {(await client.get("/echo")).json()["origin"] for _ in range(4)} == {"o1"}
    port = free_port()
    async with running_appliance(config_text(port, [dead], extra_pool="    retries: 0")):
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client:
            response = await client.get("/echo")
            assert response.status_code == 502
            assert "connect refused" in response.text
    port = free_port()
    text = config_text(port, [origin.port]).replace("name: m1}", "name: m1, state: disabled}")
    async with running_appliance(text):
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client:
            assert (await client.get("/echo")).status_code == 503


async def test_trailing_bytes_after_a_response_never_reach_the_next_client(nursery: trio.Nursery) -> None:
    (origin,) = await start_origins(nursery, 1)
    port = free_port()
    async with running_appliance(config_text(port, [origin.port])):
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client:
            assert (await client.get("/trailing")).text == "first"
            # The same member again: the forged response must not be served.
            after = await client.get("/echo")
            assert after.json()["origin"] == "o1"
    assert origin.connections == 2


async def test_request_head_timeout_is_408(nursery: trio.Nursery) -> None:
    (origin,) = await start_origins(nursery, 1)
    port = free_port()
    text = config_text(port, [origin.port], extra_vs="    timeouts: {client_header: 300ms}")
    async with running_appliance(text):
        answer = await raw_exchange(port, b"GET / HTTP/1.1\r\nHost: a\r\n")
    assert answer.startswith(b"HTTP/1.1 408 ")


async def test_http_10_client_and_member_closing(nursery: trio.Nursery) -> None:
    (origin,) = await start_origins(nursery, 1)
    port = free_port()
    async with running_appliance(config_text(port, [origin.port])):
        answer = await raw_exchange(port, b"GET /chunked/10 HTTP/1.0\r\n\r\n")
        assert answer.startswith(b"HTTP/1.1 200 ")
        assert answer.endswith(pattern(10))
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client:
            assert (await client.get("/close")).status_code == 200
            assert (await client.get("/echo")).status_code == 200
    closed, after = origin.requests[-2:]
    assert closed["target"] == "/close"
    assert after["connection"] != closed["connection"]  # the member closed it: not reused


async def test_head_request_passes_through(nursery: trio.Nursery) -> None:
    (origin,) = await start_origins(nursery, 1)
    port = free_port()
    async with running_appliance(config_text(port, [origin.port])):
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client:
            response = await client.head("/big/1000")
            assert response.status_code == 200
            assert response.headers["content-length"] == "1000"
            assert (await client.get("/echo")).json()["method"] == "GET"


async def test_a_handler_crash_costs_only_its_own_connection(nursery: trio.Nursery, monkeypatch: pytest.MonkeyPatch) -> None:
    from appliance.dataplane import http_proxy

    (origin,) = await start_origins(nursery, 1)
    port = free_port()
    async def read_head_then_crash(self, vs, first):  # type: ignore[no-untyped-def]
        request = await real_read(self, vs, first)
        if request is not None and request.target == b"/boom":
            raise RuntimeError("a bug in one handler")
        return request

    real_read = http_proxy._Session._read_head
    monkeypatch.setattr(http_proxy._Session, "_read_head", read_head_then_crash)
    async with running_appliance(config_text(port, [origin.port])):
        answer = await raw_exchange(port, b"GET /boom HTTP/1.1\r\nHost: a\r\n\r\n")
        assert answer == b""  # that connection is closed...
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client:
            assert (await client.get("/echo")).status_code == 200  # ...and the VIP still serves


async def test_pipelined_requests_are_answered_in_order(nursery: trio.Nursery) -> None:
    origins = await start_origins(nursery, 2)
    port = free_port()
    async with running_appliance(config_text(port, [o.port for o in origins])):
        three = b"".join(b"GET /echo?n=%d HTTP/1.1\r\nHost: a\r\n\r\n" % n for n in range(3))
        answer = await raw_exchange(port, three + b"GET /echo?n=3 HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
    bodies = [json.loads(part.split(b"\r\n\r\n", 1)[1].split(b"HTTP/1.1")[0]) for part in answer.split(b"HTTP/1.1 200")[1:]]
    assert [b["target"] for b in bodies] == ["/echo?n=0", "/echo?n=1", "/echo?n=2", "/echo?n=3"]
    assert [b["origin"] for b in bodies] == ["o1", "o2", "o1", "o2"]


async def test_drain_ends_idle_connections_at_once(nursery: trio.Nursery) -> None:
    (origin,) = await start_origins(nursery, 1)
    port = free_port()
    text = config_text(port, [origin.port]).replace("shutdown_grace: 2s", "shutdown_grace: 30s")
    async with running_appliance(text) as appliance:
        silent = await trio.open_tcp_stream("127.0.0.1", port)  # connected, never speaks
        kept = await trio.open_tcp_stream("127.0.0.1", port)  # idle between keep-alive requests
        await kept.send_all(b"GET /echo HTTP/1.1\r\nHost: a\r\n\r\n")
        assert (await kept.receive_some(65536)).startswith(b"HTTP/1.1 200 ")
        appliance.stop()
        with trio.fail_after(5):  # far below both client_header (10s) and shutdown_grace (30s)
            assert await silent.receive_some(100) == b""
            assert await kept.receive_some(100) == b""
            await appliance.tracker.wait_all_closed()


async def test_an_upgrade_becomes_a_tunnel_after_101(nursery: trio.Nursery) -> None:
    (origin,) = await start_origins(nursery, 1)
    port = free_port()
    async with running_appliance(config_text(port, [origin.port])):
        stream = await trio.open_tcp_stream("127.0.0.1", port)
        await stream.send_all(b"GET /upgrade HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: echo\r\n\r\nearly ")
        received = b""
        with trio.fail_after(5):
            while b"early " not in received:
                received += await stream.receive_some(65536)
        head, _, rest = received.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 101 ")
        assert b"upgrade: echo" in head.lower() and b"connection: upgrade" in head.lower()
        await stream.send_all(b"and later")
        with trio.fail_after(5):
            while not rest.endswith(b"and later"):
                rest += await stream.receive_some(65536)
        assert rest == b"early and later"
        await stream.send_eof()  # the half-close reaches the member, which ends too
        with trio.fail_after(5):
            assert await stream.receive_some(100) == b""
    seen = origin.requests[-1]
    assert ["Upgrade", "echo"] in seen["headers"] and ["Connection", "upgrade"] in seen["headers"]
