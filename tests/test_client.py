"""The admin-API client and `appliance ctl`, against a fake admin server in a thread.

The fake speaks the contract of SPEC §4 (JSON, bearer token, error objects);
the real server is exercised by tests/e2e/test_ctl.py.
"""

from __future__ import annotations

import copy
import json
import os
import shutil
import socket
import socketserver
import tempfile
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import pytest

from appliance.ctl import UNREACHABLE_HINT
import appliance.client as client_module
from appliance.cli import main as cli_main
from appliance.client import (
    DEFAULT_ADMIN,
    AdminClient,
    AdminError,
    AdminUnreachable,
    ClientError,
    ClientSetupError,
    resolve,
)
from appliance.ctl import duration, table

TOKEN = "s3cret-token"
NOW = 1_700_000_000.0


def member(name: str, address: str, **fields: Any) -> dict[str, Any]:
    base = {
        "name": name,
        "address": address,
        "admin_state": "enabled",
        "admin_source": "config",
        "health": "unchecked",
        "available": True,
        "ratio": 1,
        "priority_group": 0,
        "connection_limit": 0,
        "active_connections": 0,
        "total_connections": 0,
        "requests": 0,
        "ramp": 1.0,
        "since": NOW - 5,
        "last_check": None,
    }
    base.update(fields)
    return base


def initial_pools() -> dict[str, dict[str, Any]]:
    web = [
        member(
            "m1", "127.0.0.1:9001", health="up", active_connections=3, total_connections=120, since=NOW - 192,
            last_check={"ok": True, "reason": "L7 ok", "latency": 0.0012, "at": NOW - 2},
        ),
        member(
            "[::1]:9002", "[::1]:9002", health="down", admin_state="disabled", admin_source="api", available=False,
            ratio=3, ramp=0.0, since=NOW - 7,
            last_check={"ok": False, "reason": "L7 status 503", "latency": 0.004, "at": NOW - 1},
        ),
        member("m3", "127.0.0.1:9003", admin_state="forced_offline", available=False, ramp=0.25, since=NOW - 7384),
    ]  # fmt: skip
    return {
        "web": {"name": "web", "method": "round_robin", "available_members": 1, "members": web, "draining": []},
        "api": {"name": "api", "method": "ratio", "available_members": 0, "members": [], "draining": []},
    }


class FakeAdmin:
    """State and behaviour of the fake; `seen` records (method, raw path, headers, body)."""

    def __init__(self) -> None:
        self.pools = initial_pools()
        self.seen: list[tuple[str, str, dict[str, str], Any]] = []
        self.connections = 0
        self.close_after_each = False  # close the connection after each answer, without saying so
        self.reload_errors: list[str] = []

    def status(self) -> dict[str, Any]:
        return {
            "node": "lb-test",
            "version": "9.9.9",
            "time": NOW,
            "uptime": 7440.0,
            "config": "conf/test.yaml",
            "ha": {"state": "standalone", "priority": None, "peers": []},
            "virtual_servers": [
                {
                    "name": "www",
                    "mode": "http",
                    "listen": ["127.0.0.1:8080", "[::1]:8080"],
                    "pool": "web",
                    "state": "listening",
                },
            ],
            "pools": list(self.pools.values()),
        }

    def answer(self, method: str, raw: str, body: Any) -> tuple[int, Any]:
        parts = [unquote(p) for p in raw.split("?", 1)[0].split("/")][1:]
        match (method, parts):
            case ("GET", ["api", "v1", "status"]):
                return 200, self.status()
            case ("GET", ["api", "v1", "events"]):
                return 200, {"events": [{"at": NOW, "kind": "admin", "message": "web/m1 enabled -> disabled"}]}
            case ("GET", ["api", "v1", "pools", pool]):
                if pool not in self.pools:
                    return 404, {"error": f"unknown pool {pool!r}", "status": 404}
                return 200, dict(self.pools[pool], time=NOW)
            case ("PUT", ["api", "v1", "pools", pool, "members", name, "state"]):
                found = self._member(pool, name)
                if isinstance(found, tuple):
                    return found
                state = body.get("state") if isinstance(body, dict) else None
                if state not in ("enabled", "disabled", "forced_offline"):
                    return 422, {"error": f"invalid state {state!r}", "status": 422}
                found.update(admin_state=state, admin_source="api", since=NOW)
                return 200, found
            case ("POST", ["api", "v1", "pools", pool, "members"]):
                if pool not in self.pools:
                    return 404, {"error": f"unknown pool {pool!r}", "status": 404}
                new = member(body.get("name", body["address"]), body["address"], admin_source="api")
                self.pools[pool]["members"].append(new)
                return 201, new
            case ("DELETE", ["api", "v1", "pools", pool, "members", name]):
                found = self._member(pool, name)
                if isinstance(found, tuple):
                    return found
                self.pools[pool]["members"].remove(found)
                return 200, found
            case ("POST", ["api", "v1", "reload"]):
                if self.reload_errors:
                    return 422, {"error": "configuration rejected", "status": 422, "errors": self.reload_errors}
                return 200, {"reloaded": True}
        return 404, {"error": f"no route {method} {raw}", "status": 404}

    def _member(self, pool: str, name: str) -> dict[str, Any] | tuple[int, Any]:
        if pool not in self.pools:
            return 404, {"error": f"unknown pool {pool!r}", "status": 404}
        for m in self.pools[pool]["members"]:
            if m["name"] == name:
                return m
        return 404, {"error": f"unknown member {name!r} in pool {pool!r}", "status": 404}


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive

    def setup(self) -> None:
        super().setup()
        self.server.fake.connections += 1  # type: ignore[attr-defined]

    def log_message(self, *args: Any) -> None:  # quiet, and unix sockets have no client address
        pass

    def _send(self, status: int, data: bytes, content_type: str = "application/json") -> None:
        fake: FakeAdmin = self.server.fake  # type: ignore[attr-defined]
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)
        self.wfile.flush()
        if fake.close_after_each:
            self.close_connection = True  # closes with no `Connection: close`, as an idle timeout would

    def _handle(self) -> None:
        fake: FakeAdmin = self.server.fake  # type: ignore[attr-defined]
        length = int(self.headers.get("Content-Length") or 0)
        raw_body = self.rfile.read(length) if length else b""
        body = json.loads(raw_body) if raw_body else None
        fake.seen.append((self.command, self.path, dict(self.headers.items()), body))
        if self.path == "/not-json":
            return self._send(200, b"<html>hello</html>", "text/html")
        if self.path == "/api/v1/teapot":
            return self._send(500, b"Internal Server Error", "text/plain")
        if self.headers.get("Authorization") != f"Bearer {TOKEN}":
            return self._send(401, json.dumps({"error": "missing or invalid token", "status": 401}).encode())
        if self.path == "/metrics":
            return self._send(200, b"# HELP appliance_up 1\nappliance_up 1\n", "text/plain; version=0.0.4")
        status, answer = fake.answer(self.command, self.path, body)
        self._send(status, json.dumps(answer).encode())

    do_GET = do_PUT = do_POST = do_DELETE = _handle


class UnixHTTPServer(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True


def _serve(server: socketserver.BaseServer) -> Iterator[FakeAdmin]:
    fake = FakeAdmin()
    server.fake = fake  # type: ignore[attr-defined]
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield fake
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


@pytest.fixture
def fake() -> Iterator[FakeAdmin]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    fake_admin: FakeAdmin
    for fake_admin in _serve(server):
        fake_admin.url = f"http://127.0.0.1:{server.server_address[1]}"  # type: ignore[attr-defined]
        yield fake_admin


@pytest.fixture
def unix_fake() -> Iterator[FakeAdmin]:
    folder = tempfile.mkdtemp(prefix="adm", dir="/tmp")  # short: sun_path holds 108 bytes
    path = os.path.join(folder, "admin.sock")
    server = UnixHTTPServer(path, Handler)
    try:
        for fake_admin in _serve(server):
            fake_admin.url = f"unix:{path}"  # type: ignore[attr-defined]
            yield fake_admin
    finally:
        shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture
def token_file(tmp_path: Path) -> Path:
    path = tmp_path / "admin.token"
    path.write_text(TOKEN + "\n")
    return path


# ---------------------------------------------------------------- the client


def test_bearer_token_sent_and_json_decoded(fake: FakeAdmin) -> None:
    with AdminClient(fake.url, TOKEN) as admin:  # type: ignore[attr-defined]
        status = admin.status()
        assert status["node"] == "lb-test"
        assert [p["name"] for p in status["pools"]] == ["web", "api"]
        assert admin.pool("web")["members"][0]["name"] == "m1"
        assert admin.events()[0]["kind"] == "admin"
        assert "appliance_up 1" in admin.metrics()
    method, path, headers, _ = fake.seen[0]
    assert (method, path) == ("GET", "/api/v1/status")
    assert headers["Authorization"] == f"Bearer {TOKEN}"
    assert all(h["Authorization"] == f"Bearer {TOKEN}" for _, _, h, _ in fake.seen)


def test_bare_host_port_is_http(fake: FakeAdmin) -> None:
    bare = fake.url.removeprefix("http://")  # type: ignore[attr-defined]
    with AdminClient(bare, TOKEN) as admin:
        assert admin.status()["version"] == "9.9.9"
        assert admin.url == fake.url  # type: ignore[attr-defined]


def test_changes_send_json_bodies_and_return_the_member(fake: FakeAdmin) -> None:
    with AdminClient(fake.url, TOKEN) as admin:  # type: ignore[attr-defined]
        changed = admin.set_state("web", "m1", "disabled")
        assert (changed["admin_state"], changed["admin_source"]) == ("disabled", "api")
        added = admin.add_member("web", {"address": "127.0.0.1:9009", "name": "m9"})
        assert added["name"] == "m9"
        removed = admin.remove_member("web", "m9")
        assert removed["address"] == "127.0.0.1:9009"
        assert admin.reload() == {"reloaded": True}
    put = fake.seen[0]
    assert (put[0], put[1], put[3]) == ("PUT", "/api/v1/pools/web/members/m1/state", {"state": "disabled"})
    assert put[2]["Content-Type"] == "application/json"
    assert [(m, p) for m, p, _, _ in fake.seen[1:]] == [
        ("POST", "/api/v1/pools/web/members"),
        ("DELETE", "/api/v1/pools/web/members/m9"),
        ("POST", "/api/v1/reload"),
    ]


def test_member_names_are_percent_encoded(fake: FakeAdmin) -> None:
    with AdminClient(fake.url, TOKEN) as admin:  # type: ignore[attr-defined]
        answer = admin.set_state("web", "[::1]:9002", "enabled")
        assert answer["name"] == "[::1]:9002"
        with pytest.raises(AdminError):
            admin.remove_member("web", "a/b c?d")
    assert fake.seen[0][1] == "/api/v1/pools/web/members/%5B%3A%3A1%5D%3A9002/state"
    assert fake.seen[1][1] == "/api/v1/pools/web/members/a%2Fb%20c%3Fd"


def test_json_errors_become_admin_errors(fake: FakeAdmin) -> None:
    with AdminClient(fake.url, TOKEN) as admin:  # type: ignore[attr-defined]
        with pytest.raises(AdminError) as unknown:
            admin.set_state("web", "nope", "disabled")
        assert (unknown.value.status, unknown.value.message) == (404, "unknown member 'nope' in pool 'web'")
        assert unknown.value.errors == []
        assert str(unknown.value) == "unknown member 'nope' in pool 'web'"
        with pytest.raises(AdminError) as invalid:
            admin.set_state("web", "m1", "sleeping")
        assert invalid.value.status == 422
        fake.reload_errors = ["conf/a.yaml:3:5: pools.web.retries: must be >= 0", "conf/a.yaml:9:1: bogus: unknown key"]
        with pytest.raises(AdminError) as rejected:
            admin.reload()
        assert (rejected.value.status, rejected.value.message) == (422, "configuration rejected")
        assert rejected.value.errors == fake.reload_errors
        assert admin.status()["node"] == "lb-test"  # the connection is still good after errors
    assert fake.connections == 1


def test_wrong_token_is_a_401_admin_error(fake: FakeAdmin) -> None:
    with AdminClient(fake.url, "wrong") as admin, pytest.raises(AdminError) as denied:  # type: ignore[attr-defined]
        admin.status()
    assert (denied.value.status, denied.value.message) == (401, "missing or invalid token")
    assert isinstance(denied.value, ClientError)


def test_a_non_json_answer_is_not_the_admin_api(fake: FakeAdmin) -> None:
    with AdminClient(fake.url, TOKEN) as admin:  # type: ignore[attr-defined]
        with pytest.raises(AdminUnreachable, match="not JSON"):
            admin.request("GET", "/not-json")
        with pytest.raises(AdminUnreachable, match="HTTP 500"):
            admin.request("GET", "/api/v1/teapot")


def test_connection_refused_is_unreachable_and_says_where() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # bound, not listening: refused
        with AdminClient(f"127.0.0.1:{port}", TOKEN) as admin, pytest.raises(AdminUnreachable) as refused:
            admin.status()
    assert str(refused.value) == f"cannot reach the admin API at http://127.0.0.1:{port}: connection refused"


def test_a_silent_server_times_out() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()  # the kernel completes the handshake; nobody ever answers
        port = s.getsockname()[1]
        with (
            AdminClient(f"http://127.0.0.1:{port}", TOKEN, timeout=0.3) as admin,
            pytest.raises(AdminUnreachable, match="timed out"),
        ):
            admin.status()


def test_a_server_that_hangs_up_at_once_is_unreachable_and_not_retried_forever() -> None:
    accepted = 0
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        listener.settimeout(5)
        port = listener.getsockname()[1]

        def hang_up() -> None:
            nonlocal accepted
            try:
                while True:
                    conn, _ = listener.accept()
                    accepted += 1
                    conn.recv(65536)
                    conn.close()
            except OSError:
                return

        thread = threading.Thread(target=hang_up, daemon=True)
        thread.start()
        with AdminClient(f"127.0.0.1:{port}", TOKEN) as admin, pytest.raises(AdminUnreachable) as dropped:
            admin.status()
        assert "closed without an answer" in str(dropped.value) or "reset" in str(dropped.value)
        listener.shutdown(socket.SHUT_RDWR)
    thread.join(timeout=5)
    assert accepted == 1


def test_keep_alive_reuses_one_connection(fake: FakeAdmin) -> None:
    with AdminClient(fake.url, TOKEN) as admin:  # type: ignore[attr-defined]
        for _ in range(5):
            admin.status()
        admin.set_state("web", "m1", "disabled")
        assert admin.connections == 1
    assert fake.connections == 1


@pytest.mark.parametrize("check_before_reuse", [True, False], ids=["eof-seen-before-reuse", "retry-after-failure"])
def test_reconnects_once_when_the_server_closed_the_connection(
    fake: FakeAdmin, monkeypatch: pytest.MonkeyPatch, check_before_reuse: bool
) -> None:
    if not check_before_reuse:
        monkeypatch.setattr(client_module, "_stale", lambda conn: False)  # only the retry can save it
    fake.close_after_each = True
    with AdminClient(fake.url, TOKEN) as admin:  # type: ignore[attr-defined]
        assert admin.status()["node"] == "lb-test"
        if check_before_reuse:
            import time

            time.sleep(0.1)  # the server's FIN arrives
        assert admin.set_state("web", "m1", "disabled")["admin_state"] == "disabled"
        assert admin.status()["node"] == "lb-test"
        assert admin.connections == 3
    puts = [s for s in fake.seen if s[0] == "PUT"]
    assert len(puts) == 1  # the change was sent once


def test_unix_socket(unix_fake: FakeAdmin) -> None:
    with AdminClient(unix_fake.url, TOKEN) as admin:  # type: ignore[attr-defined]
        assert admin.status()["node"] == "lb-test"
        assert admin.set_state("web", "[::1]:9002", "forced_offline")["admin_state"] == "forced_offline"
        assert admin.connections == 1
    assert unix_fake.seen[1][1] == "/api/v1/pools/web/members/%5B%3A%3A1%5D%3A9002/state"


def test_missing_unix_socket_is_unreachable(tmp_path: Path) -> None:
    with AdminClient(f"unix:{tmp_path}/none.sock", TOKEN) as admin, pytest.raises(AdminUnreachable) as missing:
        admin.status()
    assert str(missing.value) == f"cannot reach the admin API at unix:{tmp_path}/none.sock: no such socket"


@pytest.mark.parametrize("url", ["https://127.0.0.1:9900", "ftp://x", "unix:", "http://:80", "http://h:notaport"])
def test_unusable_urls_are_setup_errors(url: str) -> None:
    with pytest.raises(ClientSetupError, match="admin URL"):
        AdminClient(url, TOKEN)


def test_wildcard_listen_is_reached_on_loopback() -> None:
    assert AdminClient("0.0.0.0:9900", TOKEN).url == "http://127.0.0.1:9900"
    assert AdminClient("http://[::]:9900", TOKEN).url == "http://[::1]:9900"


# ---------------------------------------------------------------- resolve

CONFIG = """\
appliance: {{name: t, state_file: {tmp}/state.json}}
admin: {{listen: "{listen}", token_file: {tmp}/admin.token}}
pools:
  web:
    members:
      - {{address: 127.0.0.1:1}}
virtual_servers:
  web: {{listen: [127.0.0.1:2], pool: web}}
"""


def test_resolve_takes_listen_and_token_file_from_the_config(tmp_path: Path, token_file: Path) -> None:
    conf = tmp_path / "a.yaml"
    conf.write_text(CONFIG.format(tmp=tmp_path, listen="127.0.0.1:9911"))
    assert resolve(None, None, str(conf)) == ("http://127.0.0.1:9911", TOKEN)
    conf.write_text(CONFIG.format(tmp=tmp_path, listen=f"unix:{tmp_path}/admin.sock"))
    assert resolve(None, None, str(conf)) == (f"unix:{tmp_path}/admin.sock", TOKEN)
    conf.write_text(CONFIG.format(tmp=tmp_path, listen="[::1]:9911"))
    assert resolve(None, None, str(conf)) == ("http://[::1]:9911", TOKEN)


def test_resolve_explicit_flags_win(tmp_path: Path, token_file: Path) -> None:
    conf = tmp_path / "a.yaml"
    conf.write_text(CONFIG.format(tmp=tmp_path, listen="127.0.0.1:9911"))
    other = tmp_path / "other.token"
    other.write_text("  other-token \nsecond line is ignored, as the appliance ignores it\n")
    assert resolve("http://127.0.0.1:1234", str(other), str(conf)) == ("http://127.0.0.1:1234", "other-token")
    assert resolve("127.0.0.1:1234", None, str(conf)) == ("127.0.0.1:1234", TOKEN)
    assert resolve(None, str(other), str(conf)) == ("http://127.0.0.1:9911", "other-token")


def test_resolve_without_a_config_uses_the_defaults(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "var").mkdir()
    (tmp_path / "var" / "admin.token").write_text("default-token")
    assert resolve(None, None) == (DEFAULT_ADMIN, "default-token")
    assert resolve(None, None, "missing.yaml") == (DEFAULT_ADMIN, "default-token")


def test_a_broken_config_does_not_block_flags_or_its_admin_section(tmp_path: Path, token_file: Path) -> None:
    conf = tmp_path / "a.yaml"
    conf.write_text(CONFIG.format(tmp=tmp_path, listen="127.0.0.1:9911") + "bogus: 1\n")
    other = tmp_path / "other.token"
    other.write_text("other-token")
    assert resolve("127.0.0.1:1", str(other), str(conf)) == ("127.0.0.1:1", "other-token")
    # invalid as a config, yet its admin section is still what the running appliance most likely uses
    assert resolve(None, None, str(conf)) == ("http://127.0.0.1:9911", TOKEN)
    conf.write_text("admin: [\n")  # not even YAML: the defaults
    assert resolve(None, str(token_file), str(conf)) == (DEFAULT_ADMIN, TOKEN)


def test_token_file_problems_name_the_file(tmp_path: Path) -> None:
    missing = tmp_path / "none.token"
    with pytest.raises(ClientSetupError, match=f"admin token file {missing} does not exist"):
        resolve("127.0.0.1:1", str(missing))
    empty = tmp_path / "empty.token"
    empty.write_text("\n")
    with pytest.raises(ClientSetupError, match=f"admin token file {empty}: the first line is empty"):
        resolve("127.0.0.1:1", str(empty))
    with pytest.raises(ClientSetupError, match=f"cannot read the admin token file {tmp_path}"):
        resolve("127.0.0.1:1", str(tmp_path))  # a directory


# ---------------------------------------------------------------- appliance ctl, in process


def ctl(fake: FakeAdmin | None, token_file: Path, *args: str, url: str | None = None) -> list[str]:
    admin = url or (fake.url if fake else "127.0.0.1:1")  # type: ignore[attr-defined]
    return ["ctl", "--admin", admin, "--token-file", str(token_file), *args]


def test_ctl_members_table(fake: FakeAdmin, token_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli_main(ctl(fake, token_file, "members")) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert lines[0] == "pool web  round_robin  1/3 available"
    header = lines[1].split()
    assert header == ["NAME", "ADDRESS", "HEALTH", "ADMIN", "AVAIL", "RATIO", "PRIO", "ACTIVE", "TOTAL", "RAMP",
                      "SINCE", "LAST-CHECK"]  # fmt: skip
    m1, m2, m3 = lines[2:5]
    assert m1.split()[:11] == ["m1", "127.0.0.1:9001", "up", "enabled", "(config)", "yes", "1", "0", "3", "120", "100%"]
    assert "3m12s" in m1 and m1.endswith("L7 ok (1.2ms, 2s ago)")
    assert m2.split()[:6] == ["[::1]:9002", "[::1]:9002", "down", "disabled", "(api)", "no"]
    assert " 0% " in m2 and " 7s " in m2 and m2.endswith("L7 status 503 (4.0ms, 1s ago)")
    assert m3.split()[2:5] == ["unchecked", "forced_offline", "(config)"]
    assert " 25% " in m3 and "2h03m" in m3 and m3.endswith("-")
    # aligned: every column starts at the same offset on every line
    for column in ("ADDRESS", "HEALTH", "ADMIN", "AVAIL"):
        start = lines[1].index(column)
        assert all(line[start - 2 : start] == "  " and line[start] != " " for line in lines[2:5])
    assert lines[5:] == ["", "pool api  ratio  0/0 available", "  (no members)"]
    assert "\x1b[" not in out  # no colour when not a terminal


def test_ctl_members_of_one_pool_and_json(
    fake: FakeAdmin, token_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli_main(ctl(fake, token_file, "members", "web")) == 0
    assert capsys.readouterr().out.splitlines()[0] == "pool web  round_robin  1/3 available"
    assert cli_main(ctl(fake, token_file, "members", "web", "--json")) == 0
    assert json.loads(capsys.readouterr().out)["members"][0]["name"] == "m1"
    assert cli_main([*ctl(fake, token_file, "--json"), "members"]) == 0
    assert [p["name"] for p in json.loads(capsys.readouterr().out)["pools"]] == ["web", "api"]
    assert cli_main(ctl(fake, token_file, "members", "nope")) == 1
    captured = capsys.readouterr()
    assert (captured.out, captured.err) == ("", "appliance ctl: unknown pool 'nope'\n")


def test_ctl_state_changes(fake: FakeAdmin, token_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    for command, state in (("disable", "disabled"), ("offline", "forced_offline"), ("enable", "enabled")):
        assert cli_main(ctl(fake, token_file, command, "web", "m1")) == 0
        lines = capsys.readouterr().out.splitlines()
        assert lines[0].split()[0] == "NAME" and len(lines) == 2
        assert lines[1].split()[:5] == ["m1", "127.0.0.1:9001", "up", state, "(api)"]
        assert fake.pools["web"]["members"][0]["admin_state"] == state
    assert cli_main(ctl(fake, token_file, "disable", "web", "[::1]:9002", "--json")) == 0
    assert json.loads(capsys.readouterr().out)["admin_state"] == "disabled"
    assert fake.seen[-1][1] == "/api/v1/pools/web/members/%5B%3A%3A1%5D%3A9002/state"


def test_ctl_api_errors_exit_1_with_the_reason(
    fake: FakeAdmin, token_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli_main(ctl(fake, token_file, "disable", "web", "ghost")) == 1
    captured = capsys.readouterr()
    assert (captured.out, captured.err) == ("", "appliance ctl: unknown member 'ghost' in pool 'web'\n")
    wrong = token_file.parent / "wrong.token"
    wrong.write_text("wrong")
    assert cli_main(ctl(fake, wrong, "status")) == 1
    assert capsys.readouterr().err == "appliance ctl: missing or invalid token\n"
    assert cli_main(ctl(fake, wrong, "--json", "status")) == 1
    captured = capsys.readouterr()
    assert json.loads(captured.out) == {"error": "missing or invalid token", "status": 401, "errors": []}


def test_ctl_reload(fake: FakeAdmin, token_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli_main(ctl(fake, token_file, "reload")) == 0
    assert capsys.readouterr().out == "reloaded\n"
    fake.reload_errors = ["conf/a.yaml:3:5: pools.web.retries: must be >= 0", "conf/a.yaml:9:1: bogus: unknown key"]
    assert cli_main(ctl(fake, token_file, "reload")) == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.splitlines() == ["appliance ctl: configuration rejected", *fake.reload_errors]
    assert cli_main(ctl(fake, token_file, "reload", "--json")) == 1
    assert json.loads(capsys.readouterr().out)["errors"] == fake.reload_errors


def test_ctl_status(fake: FakeAdmin, token_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli_main(ctl(fake, token_file, "status")) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert lines[:5] == [
        "node     lb-test",
        "version  9.9.9",
        "uptime   2h04m",
        "ha       standalone",
        "config   conf/test.yaml",
    ]
    assert lines[6].split() == ["VIRTUAL-SERVER", "MODE", "STATE", "POOL", "LISTEN"]
    assert lines[7].split() == ["www", "http", "listening", "web", "127.0.0.1:8080,", "[::1]:8080"]
    assert lines[9].split() == ["POOL", "METHOD", "AVAIL", "UP", "DOWN", "UNKNOWN", "UNCHECKED", "DISABLED", "OFFLINE",
                                "ACTIVE"]  # fmt: skip
    assert lines[10].split() == ["web", "round_robin", "1/3", "1", "1", "0", "1", "1", "1", "3"]
    assert lines[11].split() == ["api", "ratio", "0/0", "0", "0", "0", "0", "0", "0", "0"]
    assert cli_main(ctl(fake, token_file, "status", "--json")) == 0
    assert json.loads(capsys.readouterr().out)["node"] == "lb-test"


def test_ctl_unreachable_and_setup_errors(tmp_path: Path, token_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
        assert cli_main(ctl(None, token_file, "status", url=f"127.0.0.1:{port}")) == 1
    assert (
        capsys.readouterr().err
        == f"appliance ctl: cannot reach the admin API at http://127.0.0.1:{port}: connection refused\n"
        + f"appliance ctl: {UNREACHABLE_HINT}\n"
    )
    assert cli_main(ctl(None, tmp_path / "none.token", "status")) == 1
    assert f"admin token file {tmp_path / 'none.token'} does not exist" in capsys.readouterr().err
    assert cli_main(["ctl", "-c", str(tmp_path / "none.yaml"), "status"]) == 2
    assert "config file" in capsys.readouterr().err


@pytest.mark.parametrize(
    "argv", [["ctl"], ["ctl", "frobnicate"], ["ctl", "enable", "web"], ["ctl", "members", "a", "b"]]
)
def test_ctl_usage_errors_exit_2(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        cli_main(argv)
    assert exit_.value.code == 2
    assert "usage: appliance" in capsys.readouterr().err


def test_ctl_defaults_come_from_the_config(fake: FakeAdmin, tmp_path: Path, token_file: Path,
                                           capsys: pytest.CaptureFixture[str]) -> None:  # fmt: skip
    conf = tmp_path / "a.yaml"
    conf.write_text(CONFIG.format(tmp=tmp_path, listen=fake.url.removeprefix("http://")))  # type: ignore[attr-defined]
    assert cli_main(["ctl", "-c", str(conf), "status", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["node"] == "lb-test"


def test_duration_and_table_helpers() -> None:
    assert [duration(s) for s in (0, 5.9, 59, 60, 192, 3599, 3600, 7440, 86399, 86400 * 3 + 3600 * 4, -3, None)] == [
        "0s", "5s", "59s", "1m00s", "3m12s", "59m59s", "1h00m", "2h04m", "23h59m", "3d04h", "0s", "-",
    ]  # fmt: skip
    assert table(("NAME", "RATIO"), [["a", "1"], ["long-name", "10"]]) == [
        "NAME       RATIO",
        "a              1",
        "long-name     10",
    ]


def test_ctl_colours_only_on_a_terminal(fake: FakeAdmin, token_file: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import io

    from appliance.ctl import Printer

    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True

    out = Tty()
    monkeypatch.delenv("NO_COLOR", raising=False)
    from appliance import ctl as ctl_module

    assert ctl_module._colour(out) and not ctl_module._colour(io.StringIO())
    printer = Printer(out, colour=True)
    printer.pools([copy.deepcopy(initial_pools()["web"])], NOW)
    text = out.getvalue()
    assert "\x1b[31m" in text and "\x1b[0m" in text
    monkeypatch.setenv("NO_COLOR", "1")
    assert not ctl_module._colour(out)


def test_draining_members_are_listed_after_the_others() -> None:
    import io

    from appliance.ctl import Printer

    pool = copy.deepcopy(initial_pools()["web"])
    pool["draining"] = [member("old", "127.0.0.1:9999", active_connections=2, admin_source="api")]
    out = io.StringIO()
    Printer(out).pools([pool], NOW)
    last = out.getvalue().splitlines()[-1]
    assert last.split()[:7] == ["old", "127.0.0.1:9999", "unchecked", "removed,", "draining", "(enabled)", "yes"]
