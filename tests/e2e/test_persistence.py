"""Persistence through the real proxy: cookie insert, rewrite, passive and f5, and source address in both modes."""

from __future__ import annotations

import base64
import json
import re
import socket
import ssl
import time
from pathlib import Path
from typing import Any

import h11
import httpx
import pytest
import trio
import trustme

from appliance.controlplane.supervisor import Appliance
from appliance.core.model import AdminState
from appliance.core.tokens import TokenSigner, f5_decode
from helpers import Origin, free_port, read_response, running_appliance

TOKEN = re.compile(r"^[A-Za-z0-9_-]{32}$")  # one signed entry: 24 bytes, base64url without padding


# ---------------------------------------------------------------- helpers


def head(tmp_path: Path, log: str = "{access: off}") -> str:
    """The `appliance` section: the state file (and so the cookie key) in tmp_path."""
    return f"appliance: {{name: t, state_file: {tmp_path}/state.json, shutdown_grace: 1s, log: {log}}}\n"


def pool(name: str, origins: list[Origin], *, method: str = "round_robin", extra: str = "", member: dict[str, str] | None = None) -> str:
    """A pool whose members are named after their origins; `member` adds keys to a member by name."""
    member = member or {}
    lines = "\n".join(
        f"      - {{address: 127.0.0.1:{o.port}, name: {o.name}{', ' + member[o.name] if o.name in member else ''}}}" for o in origins
    )
    return f"  {name}:\n    method: {method}\n{extra}    members:\n{lines}\n"


def config(tmp_path: Path, port: int, origins: list[Origin], persistence: str, *, listen: str | None = None, member: dict[str, str] | None = None, extra_pool: str = "", vs_extra: str = "", mode: str = "http") -> str:
    return (
        head(tmp_path)
        + "pools:\n"
        + pool("web", origins, member=member, extra=extra_pool)
        + "virtual_servers:\n  web:\n"
        + f"    listen: [{listen or f'127.0.0.1:{port}'}]\n    mode: {mode}\n    pool: web\n"
        + f"    persistence: {persistence}\n"
        + vs_extra
    )


async def origins_named(nursery: trio.Nursery, *names: str) -> list[Origin]:
    return [await nursery.start(Origin(name).serve) for name in names]


class Reply:
    def __init__(self, status: int, headers: list[tuple[str, str]], body: bytes) -> None:
        self.status = status
        self.headers = headers
        self.body = body

    @property
    def echo(self) -> dict[str, Any]:
        echo: dict[str, Any] = json.loads(self.body)
        return echo

    @property
    def origin(self) -> str:
        return str(self.echo["origin"])

    def set_cookies(self) -> list[str]:
        return [v for k, v in self.headers if k.lower() == "set-cookie"]


async def fetch(port: int, target: str = "/echo", *, host: str = "127.0.0.1", cookie: str | None = None, source: str | None = None, headers: list[tuple[str, str]] | None = None) -> Reply:
    """One request on a new connection, without any cookie jar: only the cookie given is sent."""
    stream = await trio.open_tcp_stream(host, port, local_address=source)
    conn = h11.Connection(h11.CLIENT)
    sent = [("Host", "app.test"), ("Connection", "close"), *(headers or [])]
    if cookie is not None:
        sent.append(("Cookie", cookie))
    async with stream:
        await stream.send_all(conn.send(h11.Request(method="GET", target=target, headers=sent)) + conn.send(h11.EndOfMessage()))
        status, got, body = await read_response(conn, stream)
    return Reply(status, got, body)


def forwarded(echo: dict[str, Any], name: str) -> list[str]:
    """The values of header `name` the origin received."""
    return [v for k, v in echo["headers"] if k.lower() == name]


def cookie_of(set_cookie: str) -> tuple[str, str, list[str]]:
    """name, value and attributes of one Set-Cookie line."""
    first, *attributes = [part.strip() for part in set_cookie.split(";")]
    name, _, value = first.partition("=")
    return name, value, attributes


def lb_value(response: httpx.Response | Reply) -> str:
    lines = response.headers.get_list("set-cookie") if isinstance(response, httpx.Response) else response.set_cookies()
    assert len(lines) == 1, lines
    name, value, _ = cookie_of(lines[0])
    assert name == "LBSESSION"
    return value


async def write_and_reload(appliance: Appliance, path: Path, text: str) -> None:
    path.write_text(text)
    assert await appliance.reload() == []


# ---------------------------------------------------------------- cookie insert


async def test_insert_sets_one_cookie_then_the_client_stays_on_its_member(nursery: trio.Nursery, tmp_path: Path) -> None:
    origins = await origins_named(nursery, "o0", "o1", "o2")
    port = free_port()
    async with running_appliance(config(tmp_path, port, origins, "{type: cookie}")):
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client:
            first = await client.get("/echo")
            lines = first.headers.get_list("set-cookie")
            assert len(lines) == 1
            name, value, attributes = cookie_of(lines[0])
            assert name == "LBSESSION" and TOKEN.fullmatch(value)
            assert sorted(attributes) == sorted(["Path=/", "HttpOnly", "SameSite=Lax"])  # no Secure over plain HTTP, no Max-Age
            member = first.json()["origin"]
            assert client.cookies.get("LBSESSION") == value
            for _ in range(10):
                response = await client.get("/echo")
                assert response.json()["origin"] == member
                assert "set-cookie" not in response.headers
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as fresh:
            response = await fresh.get("/echo")
            assert response.json()["origin"] != member  # round robin moved on: persistence kept the first client
            assert len(response.headers.get_list("set-cookie")) == 1


@pytest.mark.parametrize(
    "method",
    ["round_robin", "ratio", "least_connections", "ratio_least_connections", "fastest", "observed", "predictive", "ip_hash"],
)
async def test_the_cookie_outranks_every_method(nursery: trio.Nursery, tmp_path: Path, method: str) -> None:
    """Its member is disabled, so the method never picks it; the cookie still reaches it, from any source."""
    origins = await origins_named(nursery, "o0", "o1", "o2")
    port = free_port()
    text = config(tmp_path, port, origins, "{type: cookie}").replace("method: round_robin", f"method: {method}")
    async with running_appliance(text) as appliance:
        first = await fetch(port, source="127.0.0.2")
        cookie = "LBSESSION=" + lb_value(first)
        appliance.runtime.set_admin_state("web", first.origin, AdminState.DISABLED, "test")
        sticky, balanced = set(), set()
        for n in range(3, 11):
            balanced.add((await fetch(port, source=f"127.0.0.{n}")).origin)
            sticky.add((await fetch(port, source=f"127.0.0.{n}", cookie=cookie)).origin)
    assert sticky == {first.origin}
    assert balanced and first.origin not in balanced


async def test_the_member_never_sees_the_persistence_cookie_but_gets_the_others(nursery: trio.Nursery, tmp_path: Path) -> None:
    origins = await origins_named(nursery, "o0", "o1", "o2")
    port = free_port()
    async with running_appliance(config(tmp_path, port, origins, "{type: cookie}")):
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client:
            first = await client.get("/echo")
            token = lb_value(first)
            client.cookies.set("theme", "dark", domain="127.0.0.1")
            for _ in range(3):
                echo = (await client.get("/echo")).json()
                assert echo["origin"] == first.json()["origin"]
                assert forwarded(echo, "cookie") == ["theme=dark"]
                assert "LBSESSION" not in json.dumps(echo["headers"])
        # Our cookie in the middle of others, and alone, as a browser would send them.
        mixed = await fetch(port, cookie=f"a=1; LBSESSION={token}; b=two=2; c=\"q\"")
        assert mixed.origin == first.json()["origin"] and mixed.set_cookies() == []
        assert forwarded(mixed.echo, "cookie") == ['a=1; b=two=2; c="q"']
        alone = await fetch(port, cookie=f"LBSESSION={token}")
        assert alone.origin == first.json()["origin"]
        assert forwarded(alone.echo, "cookie") == []  # the line left empty goes
        assert "LBSESSION" not in json.dumps(alone.echo["headers"])


async def test_the_token_reveals_no_member_address_or_name(nursery: trio.Nursery, tmp_path: Path) -> None:
    origins = await origins_named(nursery, "member-alpha", "member-bravo", "member-charlie")
    port = free_port()
    async with running_appliance(config(tmp_path, port, origins, "{type: cookie}")):
        tokens = [lb_value(await fetch(port)) for _ in range(3)]  # one per member (round robin)
    for value in tokens:
        assert TOKEN.fullmatch(value)
        raw = base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))
        assert len(raw) == 24
        for origin in origins:
            address = socket.inet_aton("127.0.0.1")
            for needle in (
                b"127.0.0.1",
                str(origin.port).encode(),
                f"127.0.0.1:{origin.port}".encode(),
                origin.name.encode(),
                address + origin.port.to_bytes(2, "big"),
                address + origin.port.to_bytes(2, "little"),
                address,
                address[::-1],
            ):
                assert needle not in raw
            for text in ("127.0.0.1", str(origin.port), origin.name):
                assert text not in value


async def test_a_tampered_token_is_ignored_and_replaced(nursery: trio.Nursery, tmp_path: Path) -> None:
    origins = await origins_named(nursery, "o0", "o1", "o2")
    port = free_port()
    async with running_appliance(config(tmp_path, port, origins, "{type: cookie}")):
        first = await fetch(port)
        token = lb_value(first)
        for i in (0, 9, 31):  # the version byte, the member id, the MAC
            tampered = token[:i] + ("A" if token[i] != "A" else "B") + token[i + 1 :]
            seen = []
            for _ in range(3):
                reply = await fetch(port, cookie=f"LBSESSION={tampered}")
                assert reply.status == 200
                fresh = lb_value(reply)  # a new valid cookie in that same response
                assert TOKEN.fullmatch(fresh) and fresh != tampered
                seen.append(reply.origin)
                again = await fetch(port, cookie=f"LBSESSION={fresh}")  # the fresh one is honoured
                assert again.origin == reply.origin and again.set_cookies() == []
            assert sorted(seen) == ["o0", "o1", "o2"]  # balanced (round robin), not stuck anywhere


async def test_the_cookie_is_honoured_on_every_address_and_on_another_virtual_server_of_the_pool(nursery: trio.Nursery, tmp_path: Path) -> None:
    origins = await origins_named(nursery, "o0", "o1", "o2")
    port, other = free_port(), free_port()
    text = config(tmp_path, port, origins, "{type: cookie}", listen=f"127.0.0.1-127.0.0.3:{port}")
    text += f"  other:\n    listen: [127.0.0.1:{other}]\n    pool: web\n    persistence: {{type: cookie}}\n"
    async with running_appliance(text):
        async with httpx.AsyncClient() as client:
            first = await client.get(f"http://127.0.0.1:{port}/echo")
        token, member = lb_value(first), first.json()["origin"]
        for host, p in [("127.0.0.2", port), ("127.0.0.3", port), ("127.0.0.1", other)] * 3:
            reply = await fetch(p, host=host, cookie=f"LBSESSION={token}")
            assert (reply.origin, reply.set_cookies()) == (member, []), (host, p)
        # Without it, the same addresses are balanced.
        assert len({(await fetch(p, host=host)).origin for host, p in [("127.0.0.2", port), ("127.0.0.3", port), ("127.0.0.1", other)]}) == 3


async def test_a_disabled_member_keeps_its_persistent_client_and_gets_no_new_one(nursery: trio.Nursery, tmp_path: Path) -> None:
    origins = await origins_named(nursery, "o0", "o1", "o2")
    port = free_port()
    path = tmp_path / "a.yaml"
    path.write_text(config(tmp_path, port, origins, "{type: cookie}"))
    async with running_appliance(path.read_text(), str(path)) as appliance:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client:
            first = await client.get("/echo")
            member = first.json()["origin"]
            lb_value(first)
            await write_and_reload(appliance, path, config(tmp_path, port, origins, "{type: cookie}", member={member: "state: disabled"}))
            assert appliance.runtime.snapshot.pools["web"].member(member).admin_state.value == "disabled"
            for _ in range(5):
                response = await client.get("/echo")
                assert response.json()["origin"] == member and "set-cookie" not in response.headers
            newcomers = [await fetch(port) for _ in range(6)]
            assert member not in {reply.origin for reply in newcomers}
            assert all(len(reply.set_cookies()) == 1 for reply in newcomers)
            for _ in range(2):  # the persistent client still reaches it, between newcomers
                response = await client.get("/echo")
                assert response.json()["origin"] == member and "set-cookie" not in response.headers


@pytest.mark.parametrize(
    "connections",
    ["one per request", "keep-alive"],
)
async def test_a_forced_offline_members_client_is_rebalanced_and_gets_a_new_cookie(nursery: trio.Nursery, tmp_path: Path, connections: str) -> None:
    origins = await origins_named(nursery, "o0", "o1", "o2")
    port = free_port()
    path = tmp_path / "a.yaml"
    path.write_text(config(tmp_path, port, origins, "{type: cookie}"))
    limits = httpx.Limits(max_keepalive_connections=0 if connections == "one per request" else 10)
    async with running_appliance(path.read_text(), str(path)) as appliance:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", limits=limits) as client:
            first = await client.get("/echo")
            member = first.json()["origin"]
            old = lb_value(first)
            assert (await client.get("/echo")).json()["origin"] == member
            await write_and_reload(appliance, path, config(tmp_path, port, origins, "{type: cookie}", member={member: "state: forced_offline"}))
            assert appliance.runtime.snapshot.pools["web"].member(member).admin_state.value == "forced_offline"
            moved = await client.get("/echo")
            assert moved.json()["origin"] != member
            token = lb_value(moved)  # re-issued in that same response
            assert token != old and client.cookies.get("LBSESSION") == token
            for _ in range(5):
                response = await client.get("/echo")
                assert response.json()["origin"] == moved.json()["origin"] and "set-cookie" not in response.headers


async def serve_until_cancelled(origin: Origin, scope: trio.CancelScope, *, task_status: trio.TaskStatus[Origin] = trio.TASK_STATUS_IGNORED) -> None:
    with scope:
        await origin.serve(task_status=task_status)


async def test_a_member_that_goes_down_loses_its_clients_to_another_with_a_new_cookie(nursery: trio.Nursery, tmp_path: Path) -> None:
    scope = trio.CancelScope()
    doomed = await nursery.start(serve_until_cancelled, Origin("o0"), scope)
    others = await origins_named(nursery, "o1", "o2")
    origins = [doomed, *others]
    port = free_port()
    text = config(tmp_path, port, origins, "{type: cookie}", extra_pool="    passive: {failures: 1, down_for: 60s}\n")
    async with running_appliance(text) as appliance:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client:
            first = await client.get("/echo")
            assert first.json()["origin"] == "o0"  # round robin starts with the first member
            old = lb_value(first)
            assert (await client.get("/echo")).json()["origin"] == "o0"
            scope.cancel()  # the member stops: its listener and connections close
            with trio.fail_after(5):
                moved = await client.get("/echo")
            assert moved.status_code == 200 and moved.json()["origin"] in ("o1", "o2")
            new = lb_value(moved)
            assert new != old and client.cookies.get("LBSESSION") == new
            assert appliance.runtime.snapshot.pools["web"].member("o0").health.value == "down"
            for _ in range(5):
                response = await client.get("/echo")
                assert response.json()["origin"] == moved.json()["origin"] and "set-cookie" not in response.headers
        # The old cookie is not honoured either: balanced afresh and re-issued.
        stale = await fetch(port, cookie=f"LBSESSION={old}")
        assert stale.origin in ("o1", "o2") and lb_value(stale) != old


# ---------------------------------------------------------------- rewrite, passive, f5


async def test_rewrite_replaces_the_members_value_and_keeps_its_attributes(nursery: trio.Nursery, tmp_path: Path) -> None:
    origins = await origins_named(nursery, "o0", "o1", "o2")
    port = free_port()
    async with running_appliance(config(tmp_path, port, origins, "{type: cookie, mode: rewrite}")):
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client:
            plain = await client.get("/echo")  # the member sets nothing: neither do we
            assert "set-cookie" not in plain.headers
            login = await client.get("/set-cookie/LBSESSION=placeholder%3B%20Max-Age=600%3B%20SameSite=Strict")
            lines = login.headers.get_list("set-cookie")
            assert len(lines) == 1
            name, value, attributes = cookie_of(lines[0])
            assert name == "LBSESSION" and value != "placeholder" and TOKEN.fullmatch(value)
            assert attributes == ["Max-Age=600", "SameSite=Strict", "Path=/"]  # the member's, in its order
            member = login.json()["origin"]
            assert client.cookies.get("LBSESSION") == value
            for _ in range(6):
                response = await client.get("/echo")
                assert response.json()["origin"] == member and "set-cookie" not in response.headers


async def test_passive_reads_the_members_own_cookie_and_forwards_it_untouched(nursery: trio.Nursery, tmp_path: Path) -> None:
    origins = await origins_named(nursery, "o0", "o1")
    port = free_port()
    values = {"o0": "a", "o1": "b"}
    text = config(tmp_path, port, origins, "{type: cookie, mode: passive}", member={n: f"cookie_value: {v}" for n, v in values.items()})
    async with running_appliance(text):
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client:
            first = await client.get("/echo")
            assert "set-cookie" not in first.headers  # passive: we never set a cookie of our own
            other = "o1" if first.json()["origin"] == "o0" else "o0"
            login = await client.get(f"/set-cookie/LBSESSION={values[other]}")  # round robin: the other member
            assert login.json()["origin"] == other
            assert login.headers.get_list("set-cookie") == [f"LBSESSION={values[other]}; Path=/"]  # untouched
            for _ in range(6):
                response = await client.get("/echo")
                echo = response.json()
                assert echo["origin"] == other and "set-cookie" not in response.headers
                assert forwarded(echo, "cookie") == [f"LBSESSION={values[other]}"]


async def test_f5_encoding_writes_and_reads_the_big_ip_cookie(nursery: trio.Nursery, tmp_path: Path) -> None:
    origins = await origins_named(nursery, "o0", "o1", "o2")
    port = free_port()
    by_name = {o.name: o for o in origins}
    async with running_appliance(config(tmp_path, port, origins, "{type: cookie, encoding: f5}")):
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client:
            first = await client.get("/echo")
            lines = first.headers.get_list("set-cookie")
            assert len(lines) == 1
            name, value, attributes = cookie_of(lines[0])
            assert name == "BIGipServerweb"
            assert "Path=/" in attributes
            member = first.json()["origin"]
            assert f5_decode(value.encode()) == ("127.0.0.1", by_name[member].port)
            for _ in range(4):
                response = await client.get("/echo")
                assert response.json()["origin"] == member and "set-cookie" not in response.headers
        # A cookie a BIG-IP issued (K6917) for the last member.
        target = origins[2]
        swapped = int.from_bytes(target.port.to_bytes(2, "big"), "little")
        handmade = f"{int.from_bytes(bytes([127, 0, 0, 1]), 'little')}.{swapped}.0000"
        assert handmade.startswith("16777343.")
        for _ in range(4):
            reply = await fetch(port, cookie=f"BIGipServerweb={handmade}")
            assert (reply.origin, reply.set_cookies()) == (target.name, [])
        # Forwarded to the member? The f5 cookie is ours, like insert: stripped.
        assert "BIGipServerweb" not in json.dumps(reply.echo["headers"])


async def test_over_tls_the_inserted_cookie_is_secure(nursery: trio.Nursery, tmp_path: Path) -> None:
    origins = await origins_named(nursery, "o0", "o1", "o2")
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1")
    pem, key = tmp_path / "lb.pem", tmp_path / "lb.key"
    cert.cert_chain_pems[0].write_to_path(str(pem))
    cert.private_key_pem.write_to_path(str(key))
    port = free_port()
    tls = f"    tls: {{certificates: [{{cert: {pem}, key: {key}}}]}}\n"
    ctx = ssl.create_default_context()
    ca.configure_trust(ctx)
    async with running_appliance(config(tmp_path, port, origins, "{type: cookie}", vs_extra=tls)):
        async with httpx.AsyncClient(base_url=f"https://127.0.0.1:{port}", verify=ctx) as client:
            first = await client.get("/echo")
            lines = first.headers.get_list("set-cookie")
            assert len(lines) == 1
            _, _, attributes = cookie_of(lines[0])
            assert sorted(attributes) == sorted(["Path=/", "HttpOnly", "SameSite=Lax", "Secure"])
            member = first.json()["origin"]
            for _ in range(4):
                response = await client.get("/echo")
                assert response.json()["origin"] == member and "set-cookie" not in response.headers


async def test_max_age_is_sent_with_the_cookie(nursery: trio.Nursery, tmp_path: Path) -> None:
    origins = await origins_named(nursery, "o0", "o1")
    port = free_port()
    async with running_appliance(config(tmp_path, port, origins, "{type: cookie, max_age: 1h}")):
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client:
            first = await client.get("/echo")
            lines = first.headers.get_list("set-cookie")
            assert len(lines) == 1
            _, _, attributes = cookie_of(lines[0])
            assert "Max-Age=3600" in attributes
            member = first.json()["origin"]
            for _ in range(3):
                response = await client.get("/echo")
                assert response.json()["origin"] == member and "set-cookie" not in response.headers


async def test_max_age_expires_old_tokens_and_reissues_after_half_of_it(nursery: trio.Nursery, tmp_path: Path) -> None:
    origins = await origins_named(nursery, "o0", "o1", "o2")
    port = free_port()
    async with running_appliance(config(tmp_path, port, origins, "{type: cookie, max_age: 1h}")):
        key_file = tmp_path / "persistence.key"  # next to the state file, private
        assert key_file.stat().st_mode & 0o777 == 0o600
        signer = TokenSigner(bytes.fromhex(key_file.read_text().strip()))
        now = int(time.time())

        def dated(age: int) -> str:
            return signer.issue("web", "o2", now - age).decode()  # what we would have issued `age` seconds ago

        young = await fetch(port, cookie=f"LBSESSION={dated(600)}")
        assert (young.origin, young.set_cookies()) == ("o2", [])
        older = await fetch(port, cookie=f"LBSESSION={dated(2400)}")  # past half of max_age: honoured and re-issued
        assert older.origin == "o2"
        refreshed = lb_value(older)
        assert refreshed != dated(2400) and "Max-Age=3600" in older.set_cookies()[0]
        again = await fetch(port, cookie=f"LBSESSION={refreshed}")
        assert (again.origin, again.set_cookies()) == ("o2", [])
        for age in (3700, -2 * 86_400):  # expired; dated in the future
            seen = set()
            for _ in range(3):
                reply = await fetch(port, cookie=f"LBSESSION={dated(age)}")
                assert lb_value(reply) != dated(age)
                seen.add(reply.origin)
            assert len(seen) > 1  # balanced afresh, not kept on o2


@pytest.mark.parametrize(
    "client",
    ["new", "persistent"],
)
async def test_insert_drops_a_cookie_of_its_name_that_the_member_sets(nursery: trio.Nursery, tmp_path: Path, client: str) -> None:
    origins = await origins_named(nursery, "o0", "o1", "o2")
    port = free_port()
    async with running_appliance(config(tmp_path, port, origins, "{type: cookie}")):
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as browser:
            if client == "persistent":
                first = await browser.get("/echo")
                token, member = lb_value(first), first.json()["origin"]
            response = await browser.get("/set-cookie/LBSESSION=app")
            names = [cookie_of(line) for line in response.headers.get_list("set-cookie")]
            assert ("LBSESSION", "app") not in [(n, v) for n, v, _ in names]  # HAProxy's insert (without preserve) removes it
            if client == "persistent":
                assert response.json()["origin"] == member and browser.cookies.get("LBSESSION") == token
                assert (await browser.get("/echo")).json()["origin"] == member
            else:
                assert len(names) == 1 and TOKEN.fullmatch(names[0][1])


# ---------------------------------------------------------------- source address


async def origin_from(port: int, source: str) -> str:
    """One request on a new connection from `source`; the member's name."""
    reply = await fetch(port, source=source)
    assert reply.status == 200
    return reply.origin


@pytest.mark.parametrize("mode", ["http", "tcp"])
async def test_source_address_keeps_each_client_on_one_member(nursery: trio.Nursery, tmp_path: Path, mode: str) -> None:
    origins = await origins_named(nursery, "o0", "o1", "o2")
    port = free_port()
    sources = [f"127.0.0.{n}" for n in range(2, 8)]
    async with running_appliance(config(tmp_path, port, origins, "{type: source_address, timeout: 1m}", mode=mode)):
        first = {s: await origin_from(port, s) for s in sources}
        for order in (reversed(sources), sources, reversed(sources)):  # round robin alone would reshuffle them
            again = {s: await origin_from(port, s) for s in order}
            assert again == first
    assert len(set(first.values())) == 3  # round robin spread the six sources over the three members


@pytest.mark.parametrize("mode", ["http", "tcp"])
async def test_source_address_with_hash_mask_24_keeps_a_whole_subnet_together(nursery: trio.Nursery, tmp_path: Path, mode: str) -> None:
    origins = await origins_named(nursery, "o0", "o1", "o2")
    port = free_port()
    sources = [f"127.0.0.{n}" for n in range(2, 8)]
    text = config(tmp_path, port, origins, "{type: source_address}", mode=mode, extra_pool="    hash_mask: 24\n")
    async with running_appliance(text):
        seen = [await origin_from(port, s) for s in sources + sources[::-1]]
    assert len(set(seen)) == 1


# ---------------------------------------------------------------- routes and persistence


async def test_one_cookie_keeps_the_client_sticky_in_every_pool_it_was_routed_to(nursery: trio.Nursery, tmp_path: Path) -> None:
    web = await origins_named(nursery, "w0", "w1", "w2")
    api = await origins_named(nursery, "a0", "a1", "a2")
    port = free_port()
    text = (
        head(tmp_path)
        + "pools:\n"
        + pool("web", web)
        + pool("api", api)
        + "virtual_servers:\n  web:\n"
        + f"    listen: [127.0.0.1:{port}]\n    pool: web\n"
        + "    routes: [{path_prefix: /api/, pool: api}]\n"
        + "    persistence: {type: cookie}\n"
    )
    async with running_appliance(text):
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client:
            first_web = await client.get("/")
            web_member = first_web.json()["origin"]
            assert web_member.startswith("w") and TOKEN.fullmatch(lb_value(first_web))
            first_api = await client.get("/api/x")
            api_member = first_api.json()["origin"]
            assert api_member.startswith("a")
            both = lb_value(first_api)
            assert len(both.split(".")) == 2 and all(TOKEN.fullmatch(part) for part in both.split("."))  # the web entry kept
            assert client.cookies.get("LBSESSION") == both
            for _ in range(5):
                on_web = await client.get("/")
                on_api = await client.get("/api/y")
                assert (on_web.json()["origin"], on_api.json()["origin"]) == (web_member, api_member)
                assert "set-cookie" not in on_web.headers and "set-cookie" not in on_api.headers
                assert "LBSESSION" not in json.dumps(on_api.json()["headers"])
