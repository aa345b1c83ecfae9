"""Listen forms through real sockets, and the access log lines they produce."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import httpx
import pytest
import trio
import trio.testing

from helpers import Origin, free_port, running_appliance


def has_ipv6_loopback() -> bool:
    try:
        with socket.socket(socket.AF_INET6) as s:
            s.bind(("::1", 0))
        return True
    except OSError:
        return False


def conf(listen: str, member_port: int, log: str) -> str:
    return f"""\
appliance: {{name: t, log: {log}}}
pools:
  web:
    members: [{{address: 127.0.0.1:{member_port}, name: o}}]
virtual_servers:
  web:
    listen: [{listen}]
    pool: web
"""


async def test_address_range_port_range_and_json_access_log(nursery: trio.Nursery, tmp_path: Path) -> None:
    origin = await nursery.start(Origin("o").serve)
    port = free_port()
    log = tmp_path / "access.log"
    text = conf(f"127.0.0.2-127.0.0.4:{port}-{port + 1}", origin.port, f"{{access: {log}, format: json}}")
    async with running_appliance(text) as appliance:
        assert len(appliance.listeners.endpoints) == 6
        async with httpx.AsyncClient() as client:
            for host in ("127.0.0.2", "127.0.0.3", "127.0.0.4"):
                for p in (port, port + 1):
                    response = await client.get(f"http://{host}:{p}/echo?x=1")
                    assert response.json()["origin"] == "o"
    lines = [json.loads(line) for line in log.read_text().splitlines()]
    assert len(lines) == 6
    assert {line["vip"] for line in lines} == {f"127.0.0.{n}:{p}" for n in (2, 3, 4) for p in (port, port + 1)}
    first = lines[0]
    assert first["request"] == "GET /echo?x=1 HTTP/1.1"
    assert (first["status"], first["vs"], first["pool"], first["member"]) == (200, "web", "web", "o")
    assert first["client"].startswith("127.0.0.1:") and first["bytes"] > 0


@pytest.mark.skipif(not has_ipv6_loopback(), reason="no IPv6 loopback on this host")
async def test_ipv6_listener_and_text_access_log(nursery: trio.Nursery, tmp_path: Path) -> None:
    origin = await nursery.start(Origin("o").serve)
    port = free_port()
    log = tmp_path / "access.log"
    async with running_appliance(conf(f'"[::1]:{port}"', origin.port, f"{{access: {log}}}")):
        async with httpx.AsyncClient() as client:
            response = await client.get(f"http://[::1]:{port}/echo")
    forwarded = dict((k.lower(), v) for k, v in response.json()["headers"])
    assert forwarded["x-forwarded-for"] == "::1"
    line = log.read_text().strip()
    assert f"vip=[::1]:{port}" in line and 'request="GET /echo HTTP/1.1"' in line and "status=200" in line


async def test_reload_moves_the_access_log_and_refuses_a_log_it_cannot_open(nursery: trio.Nursery, tmp_path: Path) -> None:
    origin = await nursery.start(Origin("o").serve)
    port = free_port()
    first, second = tmp_path / "first.log", tmp_path / "second.log"
    path = tmp_path / "a.yaml"
    path.write_text(conf(f"127.0.0.1:{port}", origin.port, f"{{access: {first}}}"))
    async with running_appliance(path.read_text(), str(path)) as appliance:
        async with httpx.AsyncClient() as client:
            await client.get(f"http://127.0.0.1:{port}/one")
            path.write_text(conf(f"127.0.0.1:{port}", origin.port, f"{{access: {tmp_path}/no/such/dir/x.log}}"))
            (tmp_path / "no").write_text("a file, not a directory")
            errors = await appliance.reload()
            assert errors and "appliance.log.access: cannot open" in errors[0]
            path.write_text(conf(f"127.0.0.1:{port}", origin.port, f"{{access: {second}}}"))
            assert await appliance.reload() == []
            await trio.testing.wait_all_tasks_blocked()  # the log task has switched files
            await client.get(f"http://127.0.0.1:{port}/two")
    assert "GET /one" in first.read_text() and "GET /two" not in first.read_text()
    assert "GET /two" in second.read_text()


async def test_a_wildcard_listener_logs_the_address_the_client_reached(nursery: trio.Nursery, tmp_path: Path) -> None:
    origin = await nursery.start(Origin("o").serve)
    port = free_port()
    log = tmp_path / "access.log"
    async with running_appliance(conf(f"0.0.0.0:{port}", origin.port, f"{{access: {log}, format: json}}")):
        async with httpx.AsyncClient() as client:
            assert (await client.get(f"http://127.0.0.7:{port}/echo")).status_code == 200
    assert json.loads(log.read_text().splitlines()[0])["vip"] == f"127.0.0.7:{port}"


def test_an_address_the_host_does_not_have_yet_can_be_bound() -> None:
    """IP_FREEBIND: the HA takeover binds VIPs before the address is configured."""
    from appliance.core.model import Endpoint
    from appliance.dataplane.listen import bind_socket

    sock = bind_socket(Endpoint(host="192.0.2.44", port=free_port()))  # TEST-NET-1: never routed, nothing is sent
    try:
        assert sock.getsockname()[0] == "192.0.2.44"
    finally:
        sock.close()
