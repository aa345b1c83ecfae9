"""Layer-7 routes through the real proxy: per request on one connection, every match field, 503, the access log, check."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import h11
import pytest
import trio

from helpers import Origin, free_port, read_response, running_appliance


def head(tmp_path: Path, log: str = "{access: off}") -> str:
    return f"appliance: {{name: t, state_file: {tmp_path}/state.json, shutdown_grace: 1s, log: {log}}}\n"


def pools(origins: dict[str, Origin]) -> str:
    """One pool per origin, named like it."""
    return "pools:\n" + "".join(f"  {name}: {{members: [{{address: 127.0.0.1:{o.port}, name: {name}}}]}}\n" for name, o in origins.items())


async def start(nursery: trio.Nursery, *names: str) -> dict[str, Origin]:
    return {name: await nursery.start(Origin(name).serve) for name in names}


async def exchange(stream: trio.SocketStream, conn: h11.Connection, method: str, target: str, headers: list[tuple[str, str]]) -> tuple[int, dict[str, object] | bytes]:
    """One request on an open client connection; the status and the echo (or the raw body)."""
    await stream.send_all(conn.send(h11.Request(method=method, target=target, headers=headers)) + conn.send(h11.EndOfMessage()))
    status, _, body = await read_response(conn, stream)
    if conn.our_state is h11.DONE and conn.their_state is h11.DONE:
        conn.start_next_cycle()
    try:
        return status, json.loads(body)
    except ValueError:
        return status, body


async def request(port: int, method: str = "GET", target: str = "/", headers: list[tuple[str, str]] | None = None) -> tuple[int, dict[str, object] | bytes]:
    """One request on a new connection."""
    headers = headers or []
    if not any(k.lower() == "host" for k, _ in headers):
        headers = [("Host", "app.test"), *headers]
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    async with stream:
        return await exchange(stream, h11.Connection(h11.CLIENT), method, target, [*headers, ("Connection", "close")])


def origin(reply: tuple[int, dict[str, object] | bytes]) -> str:
    status, echo = reply
    assert status == 200 and isinstance(echo, dict), reply
    return str(echo["origin"])


async def test_each_request_on_one_keep_alive_connection_is_routed_on_its_own(nursery: trio.Nursery, tmp_path: Path) -> None:
    origins = await start(nursery, "api", "static", "canary", "web")
    port = free_port()
    log = tmp_path / "access.log"
    text = (
        head(tmp_path, f"{{access: {log}, format: json}}")
        + pools(origins)
        + "virtual_servers:\n  web:\n"
        + f"    listen: [127.0.0.1:{port}]\n    pool: web\n"
        + "    routes:\n"
        + "      - {path_prefix: /api/, pool: api}\n"
        + '      - {header: {name: X-Canary, equals: "1"}, pool: canary}\n'
        + "      - {path_prefix: /static, pool: static}\n"
    )
    steps = [
        ("/api/x", [], "api", "routes[0]"),
        ("/static", [], "static", "routes[2]"),
        ("/", [("X-Canary", "1")], "canary", "routes[1]"),
        ("/", [], "web", "default"),
        ("/api/y", [], "api", "routes[0]"),
        ("/static/app.css", [("X-Canary", "1")], "canary", "routes[1]"),  # the header rule comes first
    ]
    async with running_appliance(text):
        stream = await trio.open_tcp_stream("127.0.0.1", port)
        conn = h11.Connection(h11.CLIENT)
        async with stream:
            for target, extra, expected, _ in steps:
                status, echo = await exchange(stream, conn, "GET", target, [("Host", "app.test"), *extra])
                assert status == 200 and isinstance(echo, dict)
                assert (echo["origin"], echo["target"]) == (expected, target)
                assert echo["connection"] == 1  # each origin was reached on one member connection
    assert {name: o.connections for name, o in origins.items()} == {"api": 1, "static": 1, "canary": 1, "web": 1}
    assert [len(o.requests) for o in origins.values()] == [2, 1, 2, 1]
    lines = [json.loads(line) for line in log.read_text().splitlines()]
    assert [(line["pool"], line["route"], line["request"].split()[1]) for line in lines] == [(p, r, t) for t, _, p, r in steps]
    assert len({line["client"] for line in lines}) == 1  # one client connection carried them all


async def test_host_header_method_and_first_match_wins(nursery: trio.Nursery, tmp_path: Path) -> None:
    origins = await start(nursery, "static", "api", "canary", "writes", "never", "web")
    port = free_port()
    text = (
        head(tmp_path)
        + pools(origins)
        + "virtual_servers:\n  web:\n"
        + f"    listen: [127.0.0.1:{port}]\n    pool: web\n"
        + "    routes:\n"
        + '      - {host: "*.static.test", pool: static}\n'
        + "      - {host: api.example.test, pool: api}\n"
        + '      - {header: {name: X-Canary, equals: "1"}, pool: canary}\n'
        + "      - {method: [DELETE, PUT], pool: writes}\n"
        + "      - {path_prefix: /api/, pool: api}\n"
        + "      - {path_prefix: /api/, pool: never}\n"
        + "      - {path_prefix: /both, method: [POST], pool: never}\n"
    )
    cases = [
        # host: wildcard, with a port, any case, a trailing dot; never the bare domain
        ("GET", "/", [("Host", "img.static.test:8443")], "static"),
        ("GET", "/", [("Host", "IMG.Static.TEST.")], "static"),
        ("GET", "/", [("Host", "a.b.static.test:80")], "static"),
        ("GET", "/", [("Host", "static.test")], "web"),
        ("GET", "/", [("Host", "xstatic.test")], "web"),
        ("GET", "/", [("Host", "api.example.test:8080")], "api"),
        ("GET", "/", [("Host", "www.api.example.test")], "web"),
        # header: the whole value, case-sensitive
        ("GET", "/", [("X-Canary", "1")], "canary"),
        ("GET", "/", [("x-canary", "1")], "canary"),  # the header name is not
        ("GET", "/", [("X-Canary", "2")], "web"),
        ("GET", "/", [("X-Canary", "10")], "web"),
        # method
        ("DELETE", "/", [], "writes"),
        ("PUT", "/", [], "writes"),
        ("GET", "/", [], "web"),
        ("POST", "/", [], "web"),
        # first match wins, and every field of a route must match
        ("GET", "/api/x", [], "api"),
        ("GET", "/api/x", [("Host", "img.static.test")], "static"),
        ("DELETE", "/api/x", [], "writes"),
        ("GET", "/api/x", [("X-Canary", "1"), ("Host", "api.example.test")], "api"),
        ("GET", "/both", [], "web"),
        ("GET", "/api/x?q=1", [], "api"),
    ]
    async with running_appliance(text):
        got = [await request(port, method, target, headers) for method, target, headers, _ in cases]
    assert [origin(reply) for reply in got] == [expected for *_, expected in cases]
    assert origins["never"].requests == []


async def test_no_route_and_no_default_pool_is_503(nursery: trio.Nursery, tmp_path: Path) -> None:
    origins = await start(nursery, "api")
    port = free_port()
    text = (
        head(tmp_path)
        + pools(origins)
        + "virtual_servers:\n  web:\n"
        + f"    listen: [127.0.0.1:{port}]\n"
        + "    routes: [{path_prefix: /api/, pool: api}]\n"
    )
    async with running_appliance(text):
        status, _ = await request(port, "GET", "/other")
        assert status == 503
        assert origin(await request(port, "GET", "/api/x")) == "api"
        status, _ = await request(port, "POST", "/apix")
        assert status == 503
    assert len(origins["api"].requests) == 1


@pytest.mark.parametrize("fmt", ["text", "json"])
async def test_the_access_log_names_the_route_taken(nursery: trio.Nursery, tmp_path: Path, fmt: str) -> None:
    origins = await start(nursery, "api", "web")
    port = free_port()
    log = tmp_path / "access.log"
    text = (
        head(tmp_path, f"{{access: {log}, format: {fmt}}}")
        + pools(origins)
        + "virtual_servers:\n  web:\n"
        + f"    listen: [127.0.0.1:{port}]\n    pool: web\n"
        + "    routes: [{path_prefix: /api/, pool: api}]\n"
    )
    async with running_appliance(text):
        assert origin(await request(port, "GET", "/api/x")) == "api"
        assert origin(await request(port, "GET", "/x")) == "web"
    lines = log.read_text().splitlines()  # the last batch is flushed when the appliance stops
    assert len(lines) == 2
    if fmt == "json":
        entries = [json.loads(line) for line in lines]
        assert [(e["request"], e["pool"], e["route"]) for e in entries] == [
            ("GET /api/x HTTP/1.1", "api", "routes[0]"),
            ("GET /x HTTP/1.1", "web", "default"),
        ]
    else:
        assert 'request="GET /api/x HTTP/1.1"' in lines[0] and " pool=api " in lines[0] and " route=routes[0]" in lines[0]
        assert 'request="GET /x HTTP/1.1"' in lines[1] and " pool=web " in lines[1] and " route=default" in lines[1]


def test_check_rejects_a_bad_path_regex_naming_its_line(tmp_path: Path) -> None:
    conf = tmp_path / "bad.yaml"
    text = (
        head(tmp_path)
        + "pools:\n  api: {members: [{address: 127.0.0.1:9001}]}\n"
        + "virtual_servers:\n  web:\n    listen: [127.0.0.1:18080]\n    pool: api\n    routes:\n"
        + "      - path_prefix: /ok/\n        pool: api\n"
        + '      - path_regex: "^/(api"\n        pool: api\n'
    )
    conf.write_text(text)
    lines = text.splitlines()
    line = next(i for i, l in enumerate(lines, 1) if "path_regex" in l)
    column = lines[line - 1].index('"^/(api"') + 1
    result = subprocess.run([sys.executable, "-m", "appliance", "check", "-c", str(conf)], check=False, capture_output=True, text=True, timeout=30)
    assert result.returncode == 1, result.stdout + result.stderr
    out = result.stdout.splitlines()
    assert len(out) == 1, out
    assert out[0].startswith(f"{conf}:{line}:{column}: "), out
    assert "regular expression" in out[0] and "path_regex" in out[0], out
    assert not (tmp_path / "state.json").exists()


@pytest.mark.parametrize(
    "connection",
    ["new", "kept open"],
)
async def test_a_reload_routes_the_next_request_by_the_new_routes(nursery: trio.Nursery, tmp_path: Path, connection: str) -> None:
    origins = await start(nursery, "api", "web")
    port = free_port()
    path = tmp_path / "a.yaml"

    def text(routes: str) -> str:
        return head(tmp_path) + pools(origins) + "virtual_servers:\n  web:\n" + f"    listen: [127.0.0.1:{port}]\n    pool: web\n" + routes

    path.write_text(text(""))
    async with running_appliance(path.read_text(), str(path)) as appliance:
        stream = await trio.open_tcp_stream("127.0.0.1", port)
        conn = h11.Connection(h11.CLIENT)
        async with stream:
            status, echo = await exchange(stream, conn, "GET", "/api/x", [("Host", "app.test")])
            assert status == 200 and isinstance(echo, dict) and echo["origin"] == "web"
            path.write_text(text("    routes: [{path_prefix: /api/, pool: api}]\n"))
            assert await appliance.reload() == []
            if connection == "new":
                assert origin(await request(port, "GET", "/api/x")) == "api"
            else:
                status, echo = await exchange(stream, conn, "GET", "/api/x", [("Host", "app.test")])
                assert status == 200 and isinstance(echo, dict) and echo["origin"] == "api"
