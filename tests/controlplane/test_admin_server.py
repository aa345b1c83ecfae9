"""The admin API server over real loopback sockets, against a fake `Operations`.

Async tests run under trio (pytest-trio in trio_mode); httpx speaks to the
server through anyio's trio backend, and a small raw h11 client covers what
httpx will not send (garbage, oversized declarations, pipelining).
"""

from __future__ import annotations

import json
import logging
import os
import socket
import stat
from collections.abc import AsyncIterator, Mapping
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path
from typing import Any

import h11
import httpx
import pytest
import trio

from appliance.controlplane import admin, views
from appliance.controlplane.admin import ROUTES, AdminServer, load_or_create_token
from appliance.controlplane.openapi import SCHEMAS, path_parameters
from appliance.controlplane.operations import Conflict, Invalid, NotFound, NotKept, OperationError
from appliance.core.model import AdminSpec
from appliance.errors import StartError

TOKEN = "test-token-0123456789"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
LIMIT = 5  # seconds: every test's bound; each takes well under one


class FakeOps:
    """Records every call; `fail` is raised by the next call (then cleared)."""

    def __init__(self) -> None:
        self.calls: list[tuple[Any, ...]] = []
        self.fail: BaseException | None = None
        self.reload_errors: list[str] = []

    def _call(self, *call: Any) -> None:
        self.calls.append(call)
        if self.fail is not None:
            exc, self.fail = self.fail, None
            raise exc

    def status(self) -> dict[str, Any]:
        self._call("status")
        return {"node": "lb-a"}

    def pool(self, pool: str) -> dict[str, Any]:
        self._call("pool", pool)
        return {"name": pool}

    async def set_member_state(self, pool: str, member: str, body: Mapping[str, Any]) -> dict[str, Any]:
        self._call("set_member_state", pool, member, dict(body))
        return {"name": member, "admin_state": body.get("state")}

    async def add_member(self, pool: str, body: Mapping[str, Any]) -> dict[str, Any]:
        self._call("add_member", pool, dict(body))
        return {"name": body.get("address")}

    async def remove_member(self, pool: str, member: str) -> dict[str, Any]:
        self._call("remove_member", pool, member)
        return {"name": member}

    async def add_address(self, kind: str, name: str, body: Mapping[str, Any]) -> dict[str, Any]:
        self._call("add_address", kind, name, dict(body))
        return {"name": name}

    async def remove_address(self, kind: str, name: str, address: str) -> dict[str, Any]:
        self._call("remove_address", kind, name, address)
        return {"name": name}

    async def reload(self) -> list[str]:
        self._call("reload")
        return self.reload_errors

    def events(self) -> list[dict[str, Any]]:
        self._call("events")
        return [{"at": 1.0, "kind": "admin", "source": "api", "message": "m"}]

    def metrics(self, accept: str) -> tuple[bytes, str]:
        self._call("metrics", accept)
        return b"appliance_up 1\n", "text/plain; version=0.0.4; charset=utf-8"


def write_token(path: Path, token: str = TOKEN) -> Path:
    path.write_text(token + "\n")
    path.chmod(0o600)
    return path


@asynccontextmanager
async def serving(
    tmp_path: Path, ops: FakeOps | None = None, listen: str = "127.0.0.1:0"
) -> AsyncIterator[AdminServer]:
    token_file = tmp_path / "admin.token"
    if not token_file.exists():
        write_token(token_file)
    spec = AdminSpec(listen=listen, token_file=str(token_file))
    with trio.fail_after(LIMIT):
        async with trio.open_nursery() as nursery:
            server = await nursery.start(AdminServer(spec, ops or FakeOps()).run)
            try:
                yield server
            finally:
                nursery.cancel_scope.cancel()


def client(server: AdminServer, headers: Mapping[str, str] = AUTH) -> httpx.AsyncClient:
    return httpx.AsyncClient(base_url=f"http://{server.address}", headers=dict(headers), timeout=LIMIT)


class Raw:
    """A raw h11 client on one TCP connection."""

    def __init__(self, stream: trio.SocketStream) -> None:
        self.stream = stream
        self.http = h11.Connection(h11.CLIENT)

    @classmethod
    async def open(cls, server: AdminServer) -> Raw:
        assert server.address is not None
        host, _, port = server.address.rpartition(":")
        return cls(await trio.open_tcp_stream(host, int(port)))

    async def request(self, method: str, target: str, body: bytes = b"", headers: Mapping[str, str] = AUTH) -> None:
        fields = [("Host", "admin"), ("Content-Length", str(len(body))), *headers.items()]
        data = self.http.send(h11.Request(method=method, target=target, headers=fields))
        data += self.http.send(h11.Data(data=body)) if body else b""
        data += self.http.send(h11.EndOfMessage())
        await self.stream.send_all(data)

    async def response(self) -> tuple[int, dict[str, str], bytes]:
        status, headers, body = 0, {}, b""
        while True:
            event = self.http.next_event()
            if event is h11.NEED_DATA:
                self.http.receive_data(await self.stream.receive_some(65536))
            elif type(event) is h11.Response:
                status = event.status_code
                headers = {k.decode(): v.decode() for k, v in event.headers}
            elif type(event) is h11.Data:
                body += event.data
            elif type(event) is h11.EndOfMessage:
                if self.http.our_state is h11.DONE and self.http.their_state is h11.DONE:
                    self.http.start_next_cycle()
                return status, headers, body
            else:
                raise AssertionError(f"unexpected {event!r}")


async def raw_exchange(server: AdminServer, data: bytes) -> tuple[bytes, bool]:
    """Sends `data` on a fresh connection; what came back until the server closed, and whether it did."""
    raw = await Raw.open(server)
    async with raw.stream:
        await raw.stream.send_all(data)
        received = b""
        with trio.move_on_after(2):
            while chunk := await raw.stream.receive_some(65536):
                received += chunk
            return received, True
        return received, False


# ------------------------------------------------------------------ authentication


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": "Bearer wrong-token"},
        {"Authorization": f"Basic {TOKEN}"},
        {"Authorization": "Bearer"},
        {"Authorization": f"Bearer {TOKEN}x"},
    ],
    ids=["none", "wrong", "basic", "empty", "longer"],
)
async def test_requests_without_the_token_get_401(tmp_path: Path, headers: dict[str, str]) -> None:
    ops = FakeOps()
    async with serving(tmp_path, ops) as server, client(server, headers) as http:
        for method, path in [("GET", "/api/v1/status"), ("GET", "/metrics"), ("GET", "/api/v1/openapi.json"),
                             ("POST", "/api/v1/reload"), ("GET", "/no/such/path")]:  # fmt: skip
            response = await http.request(method, path)
            assert response.status_code == 401, path
            assert response.headers["www-authenticate"] == "Bearer"
            assert response.headers["content-type"] == "application/json"
            assert response.json()["status"] == 401
            assert response.json()["error"].startswith("authentication required")
    assert ops.calls == []


async def test_bearer_scheme_is_case_insensitive(tmp_path: Path) -> None:
    async with serving(tmp_path) as server, client(server, {"Authorization": f"bearer {TOKEN}"}) as http:
        assert (await http.get("/api/v1/status")).status_code == 200


async def test_refused_auth_is_logged_once_per_second_per_client(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="appliance.admin")
    async with serving(tmp_path) as server, client(server, {"Authorization": "Bearer nope"}) as http:
        for _ in range(10):
            assert (await http.get("/api/v1/status")).status_code == 401
    lines = [r.getMessage() for r in caplog.records if "refused" in r.getMessage()]
    assert lines == ["admin API refused a request from 127.0.0.1: wrong token"]


# ------------------------------------------------------------------ routes

MEMBER = {"address": "127.0.0.1:9005", "name": "web5", "ratio": 2}

ROUTE_CASES = [
    ("GET", "/api/v1/status", None, ("status",), 200),
    ("GET", "/api/v1/pools/web", None, ("pool", "web"), 200),
    ("PUT", "/api/v1/pools/web/members/web1/state", {"state": "disabled"},
     ("set_member_state", "web", "web1", {"state": "disabled"}), 200),
    ("PUT", "/api/v1/pools/web/members/127.0.0.1:9001/state", {"state": "enabled"},
     ("set_member_state", "web", "127.0.0.1:9001", {"state": "enabled"}), 200),
    ("PUT", "/api/v1/pools/web/members/%5B%3A%3A1%5D%3A9001/state", {"state": "forced_offline"},
     ("set_member_state", "web", "[::1]:9001", {"state": "forced_offline"}), 200),
    ("POST", "/api/v1/pools/web/members", MEMBER, ("add_member", "web", MEMBER), 201),
    ("DELETE", "/api/v1/pools/web/members/web1", None, ("remove_member", "web", "web1"), 200),
    ("DELETE", "/api/v1/pools/my%20pool/members/%5B::1%5D:9001", None, ("remove_member", "my pool", "[::1]:9001"), 200),
    ("POST", "/api/v1/snat_pools/outbound/addresses", {"address": "127.0.0.34"},
     ("add_address", "snat_pools", "outbound", {"address": "127.0.0.34"}), 201),
    ("DELETE", "/api/v1/snat_pools/outbound/addresses/127.0.0.34", None,
     ("remove_address", "snat_pools", "outbound", "127.0.0.34"), 200),
    ("POST", "/api/v1/address_sets/dc1/addresses", {"address": "127.0.0.40"},
     ("add_address", "address_sets", "dc1", {"address": "127.0.0.40"}), 201),
    ("DELETE", "/api/v1/address_sets/dc1/addresses/127.0.0.40", None,
     ("remove_address", "address_sets", "dc1", "127.0.0.40"), 200),
    ("POST", "/api/v1/reload", None, ("reload",), 200),
    ("GET", "/api/v1/events", None, ("events",), 200),
    ("GET", "/metrics?name=x", None, ("metrics", "text/plain"), 200),
]  # fmt: skip


async def test_each_route_reaches_its_operation_with_decoded_parameters(tmp_path: Path) -> None:
    ops = FakeOps()
    async with serving(tmp_path, ops) as server, client(server) as http:
        for method, path, body, call, status in ROUTE_CASES:
            ops.calls.clear()
            extra = {"Accept": "text/plain"} if path.startswith("/metrics") else {}
            response = await http.request(method, path, json=body, headers=extra)
            assert (response.status_code, ops.calls) == (status, [call]), (method, path, response.text)


def test_the_route_cases_cover_every_operation() -> None:
    reached = set()
    for method, path, *_ in ROUTE_CASES:
        route, _, _ = admin.resolve(method, path.split("?")[0].strip("/").split("/"))
        assert route is not None
        reached.add(route.operation_id)
    assert reached == {route.operation_id for route in ROUTES} - {"openapi"}  # served: test_openapi_json_is_served


async def test_answers_carry_the_operation_result_as_json(tmp_path: Path) -> None:
    ops = FakeOps()
    async with serving(tmp_path, ops) as server, client(server) as http:
        response = await http.put("/api/v1/pools/web/members/web1/state", json={"state": "disabled"})
        assert response.headers["content-type"] == "application/json"
        assert response.json() == {"name": "web1", "admin_state": "disabled"}
        assert (await http.get("/api/v1/events")).json() == {"events": ops.events()}
        metrics = await http.get("/metrics", headers={"Accept": "application/openmetrics-text"})
        assert metrics.content == b"appliance_up 1\n"
        assert metrics.headers["content-type"] == "text/plain; version=0.0.4; charset=utf-8"
        assert ops.calls[-1] == ("metrics", "application/openmetrics-text")


async def test_head_is_the_get_answer_without_its_body(tmp_path: Path) -> None:
    ops = FakeOps()
    async with serving(tmp_path, ops) as server, client(server) as http:
        response = await http.head("/api/v1/status")
        assert (response.status_code, response.content) == (200, b"")
        assert response.headers["content-length"] == str(len(b'{"node":"lb-a"}\n'))
        assert (await http.head("/api/v1/reload")).headers["allow"] == "POST"
        assert (await http.get("/api/v1/status")).json() == {"node": "lb-a"}  # the connection goes on
    assert ops.calls == [("status",), ("status",)]


async def test_reload_reports_its_errors_as_422(tmp_path: Path) -> None:
    ops = FakeOps()
    async with serving(tmp_path, ops) as server, client(server) as http:
        ok = await http.post("/api/v1/reload")
        assert (ok.status_code, ok.json()) == (200, {"reloaded": True})
        ops.reload_errors = ["a.yaml:3:5: pools.web.method: unknown method 'x'"]
        rejected = await http.post("/api/v1/reload")
        assert rejected.status_code == 422
        assert rejected.json() == {"error": "configuration rejected", "status": 422, "errors": ops.reload_errors}


async def test_unknown_path_is_404_and_wrong_method_is_405_with_allow(tmp_path: Path) -> None:
    ops = FakeOps()
    async with serving(tmp_path, ops) as server, client(server) as http:
        for path in ["/", "/api/v1", "/api/v1/statuses", "/api/v1/status/", "/api/v1/pools//members"]:
            response = await http.get(path)
            assert (response.status_code, response.json()["status"]) == (404, 404), path
        response = await http.delete("/api/v1/status")
        assert response.status_code == 405
        assert response.headers["allow"] == "GET"
        assert response.json() == {"error": "DELETE is not allowed here; allowed: GET", "status": 405}
        response = await http.get("/api/v1/pools/web/members")
        assert (response.status_code, response.headers["allow"]) == (405, "POST")
        response = await http.put("/api/v1/pools/web/members/a")
        assert (response.status_code, response.headers["allow"]) == (405, "DELETE")
        assert (await http.get("/api/v1/status")).status_code == 200  # the connection goes on
    assert ops.calls == [("status",)]


# ------------------------------------------------------------------ bodies


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"{not json", "malformed JSON body"),
        (b"", "a JSON object body is required"),
        (b"\xff\xfe\x00", "malformed JSON body"),
        (b"[1, 2]", "the body must be a JSON object, got an array"),
        (b'"enabled"', "the body must be a JSON object, got a string"),
        (b"null", "the body must be a JSON object, got null"),
        (b"[" * 50000 + b"]" * 10000, "malformed JSON body"),
    ],
    ids=["broken", "empty", "binary", "array", "string", "null", "deep"],
)
async def test_a_body_that_is_not_a_json_object_is_400(tmp_path: Path, body: bytes, reason: str) -> None:
    ops = FakeOps()
    async with serving(tmp_path, ops) as server, client(server) as http:
        response = await http.put("/api/v1/pools/web/members/web1/state", content=body)
        assert response.status_code == 400
        assert response.json()["error"].startswith(reason)
        assert (await http.get("/api/v1/status")).status_code == 200
    assert ops.calls == [("status",)]


async def test_a_declared_body_over_the_limit_is_413_unread(tmp_path: Path) -> None:
    async with serving(tmp_path) as server:
        head = (
            f"POST /api/v1/pools/web/members HTTP/1.1\r\nHost: a\r\nAuthorization: Bearer {TOKEN}\r\n"
            f"Content-Length: {admin.MAX_BODY + 1}\r\n\r\n"
        )
        received, closed = await raw_exchange(server, head.encode())
        assert received.startswith(b"HTTP/1.1 413 ")
        assert b'"status":413' in received
        assert closed


async def test_a_chunked_body_over_the_limit_is_413(tmp_path: Path) -> None:
    ops = FakeOps()
    async with serving(tmp_path, ops) as server, client(server) as http:

        async def chunks() -> AsyncIterator[bytes]:
            for _ in range(10):
                yield b" " * 8192  # whitespace: valid JSON padding were it not too long

        response = await http.post("/api/v1/pools/web/members", content=chunks())
        assert response.status_code == 413
        assert response.json()["error"] == f"request body over the limit of {admin.MAX_BODY} bytes"
        assert (await http.post("/api/v1/pools/web/members", json=MEMBER)).status_code == 201
    assert ops.calls == [("add_member", "web", MEMBER)]


@pytest.mark.parametrize(
    "data",
    [
        b"GARBAGE\r\n\r\n",
        b"GET /api/v1/status HTTP/1.1\r\nHost: a\r\nBad Header\r\n\r\n",
        b"\x16\x03\x01\x00\xa5\x01\x00\x00",
    ],
    ids=["request-line", "header", "tls-hello"],
)
async def test_malformed_http_is_400_and_closed(tmp_path: Path, data: bytes) -> None:
    async with serving(tmp_path) as server:
        received, closed = await raw_exchange(server, data + (b"\r\n\r\n" if data.startswith(b"\x16") else b""))
        assert received.startswith(b"HTTP/1.1 400 ")
        assert closed
        async with client(server) as http:
            assert (await http.get("/api/v1/status")).status_code == 200


async def test_a_head_over_16k_is_431(tmp_path: Path) -> None:
    async with serving(tmp_path) as server:
        head = f"GET /api/v1/status HTTP/1.1\r\nHost: a\r\nX-Big: {'a' * admin.MAX_HEAD}\r\n\r\n"
        received, closed = await raw_exchange(server, head.encode())
        assert received.startswith(b"HTTP/1.1 431 ")
        assert closed


# ------------------------------------------------------------------ operation errors


@pytest.mark.parametrize(
    ("exc", "status"),
    [
        (NotFound("no member web/x"), 404),
        (Conflict("pool web is not mutable"), 409),
        (Invalid("state: expected one of enabled, disabled, forced_offline, got 'up'"), 422),
        (NotKept("the change is running but will not survive a restart: disk full"), 500),
        (OperationError("bad"), 400),
    ],
)
async def test_operation_errors_map_to_their_status(tmp_path: Path, exc: OperationError, status: int) -> None:
    ops = FakeOps()
    async with serving(tmp_path, ops) as server, client(server) as http:
        ops.fail = exc
        response = await http.put("/api/v1/pools/web/members/x/state", json={"state": "up"})
        assert (response.status_code, response.json()) == (status, {"error": exc.message, "status": status})


async def test_a_crashing_operation_is_500_logged_and_the_server_goes_on(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    ops = FakeOps()
    async with serving(tmp_path, ops) as server, client(server) as http:
        ops.fail = ZeroDivisionError("boom")
        response = await http.get("/api/v1/pools/web")
        assert (response.status_code, response.json()) == (
            500,
            {"error": "internal error: ZeroDivisionError", "status": 500},
        )
        assert (await http.get("/api/v1/pools/web")).status_code == 200  # same connection
        async with client(server) as other:
            assert (await other.get("/api/v1/status")).status_code == 200  # and a new one
    [record] = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert record.getMessage() == "admin API GET /api/v1/pools/web failed"
    assert record.exc_info is not None and record.exc_info[0] is ZeroDivisionError


async def test_an_answer_that_is_not_json_serializable_is_500(tmp_path: Path) -> None:
    ops = FakeOps()
    ops.status = lambda: {"bad": float("nan")}  # type: ignore[method-assign]
    async with serving(tmp_path, ops) as server, client(server) as http:
        assert (await http.get("/api/v1/status")).status_code == 500


# ------------------------------------------------------------------ connections


async def test_keep_alive_serves_many_requests_on_one_connection(tmp_path: Path) -> None:
    ops = FakeOps()
    async with serving(tmp_path, ops) as server, AsyncExitStack() as stack:
        raw = await Raw.open(server)
        stack.push_async_callback(raw.stream.aclose)
        for i in range(5):
            await raw.request("GET", f"/api/v1/pools/p{i}")
            status, headers, body = await raw.response()
            assert (status, json.loads(body)) == (200, {"name": f"p{i}"})
            assert "connection" not in headers
        await raw.request("PUT", "/api/v1/pools/web/members/a/state", json.dumps({"state": "disabled"}).encode())
        assert (await raw.response())[0] == 200
        await raw.request("GET", "/nope")  # an error answer keeps the connection too
        assert (await raw.response())[0] == 404
        # Pipelined: two requests in one write, answered in order.
        pipelined = (
            f"GET /api/v1/pools/x HTTP/1.1\r\nHost: a\r\nAuthorization: Bearer {TOKEN}\r\n\r\n"
            f"GET /api/v1/pools/y HTTP/1.1\r\nHost: a\r\nAuthorization: Bearer {TOKEN}\r\n\r\n"
        )
        await raw.stream.send_all(pipelined.encode())
        raw.http = h11.Connection(h11.CLIENT)  # the client side of the pipelined pair, by hand
        raw.http.send(h11.Request(method="GET", target="/", headers=[("Host", "a")]))
        raw.http.send(h11.EndOfMessage())
        first = await raw.response()
        raw.http.send(h11.Request(method="GET", target="/", headers=[("Host", "a")]))
        raw.http.send(h11.EndOfMessage())
        second = await raw.response()
        assert [json.loads(first[2]), json.loads(second[2])] == [{"name": "x"}, {"name": "y"}]
        assert server.connections == 1
    assert len(ops.calls) == 8


async def test_head_and_idle_timeouts_close_the_connection(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(admin, "HEAD_TIMEOUT", 0.1)
    monkeypatch.setattr(admin, "IDLE_TIMEOUT", 0.2)
    async with serving(tmp_path) as server, AsyncExitStack() as stack:
        received, closed = await raw_exchange(server, b"GET /api/v1/status HTTP/1.1\r\nHost: a\r\n")
        assert received.startswith(b"HTTP/1.1 408 ") and closed
        raw = await Raw.open(server)
        stack.push_async_callback(raw.stream.aclose)
        await raw.request("GET", "/api/v1/status")
        assert (await raw.response())[0] == 200
        start = trio.current_time()
        with trio.fail_after(2):
            assert await raw.stream.receive_some(100) == b""  # closed quietly after the idle time
        assert trio.current_time() - start >= 0.15


async def test_connections_over_the_limit_get_503(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(admin, "MAX_CONNECTIONS", 2)
    async with serving(tmp_path) as server, AsyncExitStack() as stack:
        held = [await Raw.open(server) for _ in range(2)]
        for raw in held:
            stack.push_async_callback(raw.stream.aclose)
        for raw in held:  # each is being served once it has answered
            await raw.request("GET", "/api/v1/status")
            assert (await raw.response())[0] == 200
        received, closed = await raw_exchange(
            server, f"GET /api/v1/status HTTP/1.1\r\nHost: a\r\nAuthorization: Bearer {TOKEN}\r\n\r\n".encode()
        )
        assert received.startswith(b"HTTP/1.1 503 ") and closed
        assert b"too many admin connections" in received
        await held[0].stream.aclose()
        with trio.fail_after(2):
            while server.connections >= 2:
                await trio.sleep(0.01)
        async with client(server) as http:
            assert (await http.get("/api/v1/status")).status_code == 200


# ------------------------------------------------------------------ token and listen


async def test_token_file_is_created_0600_and_reused(tmp_path: Path) -> None:
    token_file = tmp_path / "var" / "sub" / "admin.token"
    spec = AdminSpec(listen="127.0.0.1:0", token_file=str(token_file))
    tokens = []
    for _ in range(2):
        with trio.fail_after(LIMIT):
            async with trio.open_nursery() as nursery:
                server = await nursery.start(AdminServer(spec, FakeOps()).run)
                assert stat.S_IMODE(token_file.stat().st_mode) == 0o600
                token = token_file.read_text().splitlines()[0]
                async with client(server, {"Authorization": f"Bearer {token}"}) as http:
                    assert (await http.get("/api/v1/status")).status_code == 200
                tokens.append(token)
                nursery.cancel_scope.cancel()
    assert tokens[0] == tokens[1] and len(tokens[0]) >= 40
    assert load_or_create_token(token_file) == tokens[0]


def test_an_empty_or_unreadable_token_file_is_a_start_error(tmp_path: Path) -> None:
    empty = tmp_path / "empty.token"
    empty.write_text("\n")
    with pytest.raises(StartError, match="empty.token"):
        load_or_create_token(empty)
    directory = tmp_path / "dir.token"
    directory.mkdir()
    with pytest.raises(StartError, match="dir.token"):
        load_or_create_token(directory)
    assert load_or_create_token(write_token(tmp_path / "ok", "  tok  ")) == "tok"


async def test_an_address_in_use_is_a_start_error_naming_it(tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        write_token(tmp_path / "admin.token")
        spec = AdminSpec(listen=f"127.0.0.1:{port}", token_file=str(tmp_path / "admin.token"))
        with pytest.raises(StartError, match=f"cannot listen on 127.0.0.1:{port}"):
            await AdminServer(spec, FakeOps()).run()


async def test_unix_socket_is_0600_replaces_a_stale_one_and_is_removed_after(tmp_path: Path) -> None:
    path = tmp_path / "run" / "admin.sock"
    path.parent.mkdir()
    stale = socket.socket(socket.AF_UNIX)
    stale.bind(str(path))  # bound, never listened on, closed: a file nobody answers
    stale.close()
    ops = FakeOps()
    async with serving(tmp_path, ops, listen=f"unix:{path}") as server:
        assert server.address == f"unix:{path}"
        assert stat.S_ISSOCK(path.stat().st_mode)
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        transport = httpx.AsyncHTTPTransport(uds=str(path))
        async with httpx.AsyncClient(transport=transport, base_url="http://admin", headers=AUTH, timeout=LIMIT) as http:
            assert (await http.get("/api/v1/status")).json() == {"node": "lb-a"}
            assert (await http.delete("/api/v1/pools/web/members/web1")).status_code == 200
            assert (await http.get("/api/v1/status", headers={"Authorization": "Bearer x"})).status_code == 401
        # A second server on the same live socket is refused, not stolen.
        spec = AdminSpec(listen=f"unix:{path}", token_file=str(tmp_path / "admin.token"))
        with pytest.raises(StartError, match="another process is listening"):
            await AdminServer(spec, FakeOps()).run()
    assert not path.exists()
    assert ops.calls == [("status",), ("remove_member", "web", "web1")]


def has_ipv6_loopback() -> bool:
    try:
        with socket.socket(socket.AF_INET6) as s:
            s.bind(("::1", 0))
        return True
    except OSError:
        return False


@pytest.mark.skipif(not has_ipv6_loopback(), reason="no IPv6 loopback")
async def test_ipv6_listen(tmp_path: Path) -> None:
    async with serving(tmp_path, listen="[::1]:0") as server:
        assert server.address is not None and server.address.startswith("[::1]:")
        async with client(server) as http:
            assert (await http.get("/api/v1/status")).status_code == 200


# ------------------------------------------------------------------ the OpenAPI document


def refs(node: object) -> set[str]:
    if isinstance(node, dict):
        found = {node["$ref"]} if isinstance(node.get("$ref"), str) else set()
        return found.union(*(refs(v) for v in node.values()))
    if isinstance(node, list):
        return set().union(*(refs(v) for v in node))
    return set()


def test_the_openapi_document_and_the_route_table_agree() -> None:
    document = admin.document()
    assert document["openapi"].startswith("3.1")
    documented = {(method.upper(), path) for path, item in document["paths"].items() for method in item}
    routed = {(route.method, route.path) for route in ROUTES}
    assert documented == routed
    assert len(routed) == len(ROUTES) == 13
    for route in ROUTES:
        operation = document["paths"][route.path][route.method.lower()]
        assert [p["name"] for p in operation["parameters"]] == path_parameters(route.path)
        assert str(route.status) in operation["responses"]
        assert "401" in operation["responses"]
        assert ("requestBody" in operation) == (route.request is not None)
    ids = [route.operation_id for route in ROUTES]
    assert len(set(ids)) == len(ids)
    assert document["components"]["securitySchemes"]["bearer"] == {
        "type": "http", "scheme": "bearer", "description": "the first line of admin.token_file"
    }  # fmt: skip
    for ref in refs(document):
        assert ref.removeprefix("#/components/schemas/") in SCHEMAS, ref


def test_every_documented_operation_is_routed() -> None:
    for path, item in admin.document()["paths"].items():
        segments = [s.replace("{", "").replace("}", "") for s in path.strip("/").split("/")]  # sample values
        for method in item:
            route, params, _ = admin.resolve(method.upper(), segments)
            assert route is not None and route.path == path, (method, path)
            assert list(params) == path_parameters(path)


async def test_openapi_json_is_served(tmp_path: Path) -> None:
    async with serving(tmp_path) as server, client(server) as http:
        response = await http.get("/api/v1/openapi.json")
        assert response.status_code == 200
        assert response.json() == admin.document()


# The documented response schemas against the real views, key for key.


def check(value: object, schema: dict[str, Any], where: str = "$") -> None:
    """A small JSON Schema check: types, enums, consts, required and known properties, $refs."""
    if "$ref" in schema:
        return check(value, SCHEMAS[schema["$ref"].rsplit("/", 1)[1]], where)
    if "oneOf" in schema:
        errors = []
        for option in schema["oneOf"]:
            try:
                check(value, option, where)
                return None
            except AssertionError as exc:
                errors.append(str(exc))
        raise AssertionError(f"{where}: matches no option: {errors}")
    if "enum" in schema:
        assert value in schema["enum"], f"{where}: {value!r} not in {schema['enum']}"
    if "const" in schema:
        assert value == schema["const"], where
    kind = schema.get("type")
    types = {"object": dict, "array": list, "string": str, "boolean": bool, "null": type(None)}
    if kind in ("integer", "number"):
        assert isinstance(value, int if kind == "integer" else (int, float)) and not isinstance(value, bool), where
    elif kind is not None:
        assert isinstance(value, types[kind]), f"{where}: expected {kind}, got {value!r}"
    if kind == "object" and "properties" in schema:
        assert isinstance(value, dict)
        assert set(value) == set(schema["properties"]), (
            f"{where}: keys {sorted(value)} != {sorted(schema['properties'])}"
        )
        for key, sub in schema["properties"].items():
            check(value[key], sub, f"{where}.{key}")
    if kind == "array" and "items" in schema:
        assert isinstance(value, list)
        for i, item in enumerate(value):
            check(item, schema["items"], f"{where}[{i}]")
    return None


def test_the_documented_schemas_match_what_views_produce() -> None:
    from appliance.controlplane.runtime import Runtime
    from appliance.core.config import parse_config
    from appliance.core.health import CheckResult

    config = """\
monitors:
  port: {type: tcp}
pools:
  web:
    monitors: [port]
    members:
      - {address: 127.0.0.1:9001, name: a}
      - {address: "[::1]:9002"}
virtual_servers:
  web: {listen: [127.0.0.1:8080], pool: web}
"""
    runtime = Runtime(parse_config(config, "t.yaml"), lambda: 100.0)
    target = next(t for t in runtime.monitor_targets() if t.member == "a")
    runtime.record_check(target, CheckResult(ok=False, reason="connect refused", latency=0.001, at=100.0))
    snapshot = runtime.snapshot
    status = views.status_json(
        snapshot, now=100.0, wall=lambda t: t + 1e9, started=90.0, listening=lambda name: True,
        draining=lambda pool: snapshot.pools["web"].members[:1],
    )  # fmt: skip
    check(status, {"$ref": "#/components/schemas/Status"})
    assert status["pools"][0]["members"][0]["last_check"] is not None  # both branches of last_check seen
    assert status["pools"][0]["members"][1]["last_check"] is None
    check({"events": [{"at": 1.0, "kind": "reload", "source": "config", "message": "m"}]}, SCHEMAS["Events"])


def test_request_body_schemas_name_the_config_member_keys() -> None:
    from dataclasses import fields

    from appliance.core.model import Member

    assert set(SCHEMAS["MemberBody"]["properties"]) == {f.name for f in fields(Member)}
    assert SCHEMAS["MemberBody"]["required"] == ["address"]
    assert SCHEMAS["MemberStateBody"]["properties"]["state"]["enum"] == ["enabled", "disabled", "forced_offline"]


def test_a_token_file_readable_by_others_works_with_a_warning(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = write_token(tmp_path / "t")
    os.chmod(path, 0o644)
    assert load_or_create_token(path) == TOKEN
    assert [r.getMessage() for r in caplog.records] == [
        f"admin token file {path} is readable by others (mode 644); chmod 600 it"
    ]
