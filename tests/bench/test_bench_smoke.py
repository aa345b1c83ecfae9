"""Smoke tests of the bench fixtures: bench.origin, bench.load and wrk parsing."""

from __future__ import annotations

import sys
from pathlib import Path

import trio

# bench/ is not an installed package: make it importable however pytest is started.
_REPO = str(Path(__file__).resolve().parents[2])
if _REPO not in sys.path:
    sys.path.insert(0, _REPO)

from bench.load import run_load
from bench.origin import serve_origin
from bench.run import appliance_config, parse_wrk


async def test_load_against_origin(nursery: trio.Nursery) -> None:
    port = await nursery.start(serve_origin, 0, "smoke")
    assert port > 0
    with trio.fail_after(10):
        result = await run_load("127.0.0.1", port, "/", connections=2, duration=2.0, max_requests=200)
    assert result.ok == 200
    assert result.requests == 200
    assert result.total_errors == 0, result.errors
    assert result.members == {"smoke": 200}
    assert result.statuses == {"200": 200}
    assert result.rps > 0
    assert 0 < result.latency_ms["p50"] <= result.latency_ms["p99"] <= result.latency_ms["max"]


async def test_load_counts_connect_errors() -> None:
    # A port nobody listens on: every connect fails fast, the run stays bounded.
    with trio.socket.socket() as s:
        await s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with trio.fail_after(10):
        result = await run_load("127.0.0.1", port, "/", connections=2, duration=0.3, max_requests=100)
    assert result.ok == 0
    assert result.errors["connect"] > 0


async def _exchange(port: int, data: bytes, expect_responses: int) -> bytes:
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    async with stream:
        await stream.send_all(data)
        got = b""
        with trio.fail_after(5):
            while got.count(b"HTTP/1.1 200 OK") < expect_responses or not got.endswith((b"ok\n", b"\r\n\r\n")):
                chunk = await stream.receive_some(65536)
                if not chunk:
                    break
                got += chunk
        return got


async def test_origin_bodies_head_and_pipelining(nursery: trio.Nursery) -> None:
    port = await nursery.start(serve_origin, 0, "o1")
    requests = (
        b"POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello"
        b"POST /b HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"5;ext=1\r\nhello\r\n0\r\nX-Trailer: 1\r\n\r\n"
        b"HEAD /c HTTP/1.1\r\nHost: x\r\n\r\n"
        b"GET /d HTTP/1.1\r\nHost: x\r\n\r\n"
    )
    got = await _exchange(port, requests, 4)
    assert got.count(b"HTTP/1.1 200 OK") == 4
    assert got.count(b"X-Origin: o1\r\n") == 4
    assert got.count(b"\r\n\r\nok\n") == 3  # HEAD has no body
    assert got.endswith(b"ok\n")


def test_appliance_config_shape() -> None:
    text = appliance_config(8080, [9001, 9002, 9003], access_log=False)
    assert 'log: {access: "off"}' in text
    assert "listen: [127.0.0.1:8080]" in text
    assert text.count("{address: 127.0.0.1:") == 3
    assert "log: {access: stderr}" in appliance_config(8080, [9001], access_log=True)


WRK_OUTPUT = """Running 3s test @ http://127.0.0.1:8001/
  1 threads and 50 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency   350.85us  385.42us   8.72ms   97.39%
    Req/Sec   104.69k     7.48k  113.22k    66.67%
  Latency Distribution
     50%  328.00us
     75%  402.00us
     90%  472.00us
     99%    1.48ms
  312601 requests in 3.00s, 25.64MB read
  Socket errors: connect 0, read 2, write 1, timeout 3
  Non-2xx or 3xx responses: 1
Requests/sec: 104161.86
Transfer/sec:      8.54MB
X-ORIGIN-COUNT web1 156300
X-ORIGIN-COUNT web2 156301
"""


def test_parse_wrk() -> None:
    r = parse_wrk(WRK_OUTPUT, "http://127.0.0.1:8001/", 50, 3)
    assert r.requests == 312601
    assert r.ok == 312600
    assert abs(r.rps - 312600 / 3.0) < 1
    assert r.latency_ms["p50"] == 0.328
    assert r.latency_ms["p99"] == 1.48
    assert r.latency_ms["max"] == 8.72
    assert r.errors == {"connect": 0, "read": 3, "timeout": 3, "status": 1}
    assert r.members == {"web1": 156300, "web2": 156301}


def test_chunked_skipper_any_split() -> None:
    from bench._http import ChunkedSkipper

    body = b"5;x=1\r\nhello\r\n10\r\n" + b"y" * 16 + b"\r\n0\r\nTrailer: 1\r\n\r\n"
    data = body + b"NEXT"
    for cut in range(len(data) + 1):
        sk = ChunkedSkipper()
        first = sk.feed(data[:cut])
        if first >= 0:
            assert first == len(body)
            continue
        assert sk.feed(data[cut:]) == len(body) - cut
