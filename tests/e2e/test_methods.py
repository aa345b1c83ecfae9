"""Balancing methods and priority groups through the real proxy, in both modes."""

from __future__ import annotations

import httpx
import pytest
import trio
import trio.testing

from helpers import Origin, free_port, running_appliance


def method_config(port: int, mode: str, method: str, members: list[tuple[int, int, int]], extra_pool: str = "") -> str:
    """members: (port, ratio, priority_group)."""
    lines = "\n".join(
        f"      - {{address: 127.0.0.1:{p}, name: m{i}, ratio: {r}, priority_group: {g}}}" for i, (p, r, g) in enumerate(members)
    )
    return f"""\
appliance: {{name: t, log: {{access: off}}}}
pools:
  web:
    method: {method}
{extra_pool}
    members:
{lines}
virtual_servers:
  web:
    listen: [127.0.0.1:{port}]
    mode: {mode}
    pool: web
"""


async def origin_of(port: int, mode: str, source: str = "127.0.0.1") -> str:
    """One request, on a new connection from `source`; the member's name."""
    stream = await trio.open_tcp_stream("127.0.0.1", port, local_address=source)
    async with stream:
        await stream.send_all(b"GET /echo HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
        data = b""
        with trio.fail_after(5):
            while chunk := await stream.receive_some(65536):
                data += chunk
    return data.split(b'"origin": "')[1].split(b'"')[0].decode()


@pytest.mark.parametrize("mode", ["http", "tcp"])
async def test_ip_hash_keeps_each_client_on_one_member(nursery: trio.Nursery, mode: str) -> None:
    origins = [await nursery.start(Origin(f"o{i}").serve) for i in range(3)]
    port = free_port()
    async with running_appliance(method_config(port, mode, "ip_hash", [(o.port, 1, 0) for o in origins])):
        sources = [f"127.0.0.{n}" for n in range(2, 14)]
        first = {s: await origin_of(port, mode, s) for s in sources}
        again = {s: await origin_of(port, mode, s) for s in sources}
    assert first == again
    assert len(set(first.values())) > 1  # twelve clients do not all land on one member


@pytest.mark.parametrize("mode", ["http", "tcp"])
async def test_priority_groups_confine_traffic_to_the_preferred_group(nursery: trio.Nursery, mode: str) -> None:
    origins = [await nursery.start(Origin(f"o{i}").serve) for i in range(3)]
    port = free_port()
    members = [(origins[0].port, 1, 10), (origins[1].port, 1, 10), (origins[2].port, 1, 0)]
    async with running_appliance(method_config(port, mode, "round_robin", members, "    min_active_members: 2")):
        assert {await origin_of(port, mode) for _ in range(6)} == {"o0", "o1"}
    port = free_port()
    async with running_appliance(method_config(port, mode, "round_robin", members, "    min_active_members: 3")):
        assert {await origin_of(port, mode) for _ in range(6)} == {"o0", "o1", "o2"}  # 2 < 3: group 0 joins


async def test_round_robin_through_http_keep_alive(nursery: trio.Nursery) -> None:
    origins = [await nursery.start(Origin(f"o{i}").serve) for i in range(3)]
    port = free_port()
    async with running_appliance(method_config(port, "http", "round_robin", [(o.port, 1, 0) for o in origins])):
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client:
            assert [(await client.get("/echo")).json()["origin"] for _ in range(6)] == ["o0", "o1", "o2"] * 2


METHODS = ["round_robin", "ratio", "least_connections", "ratio_least_connections", "fastest", "observed", "predictive", "ip_hash"]


@pytest.mark.parametrize("mode", ["http", "tcp"])
@pytest.mark.parametrize("method", METHODS)
async def test_every_method_serves_through_the_real_proxy(nursery: trio.Nursery, method: str, mode: str) -> None:
    origins = [await nursery.start(Origin(f"o{i}").serve) for i in range(3)]
    port = free_port()
    async with running_appliance(method_config(port, mode, method, [(o.port, 1 + i, 0) for i, o in enumerate(origins)])) as appliance:
        seen = [await origin_of(port, mode, f"127.0.0.{2 + n}") for n in range(12)]
        await trio.testing.wait_all_tasks_blocked()  # tcp tunnels finish their bookkeeping after the client's EOF
        pool = appliance.runtime.snapshot.pools["web"]
        assert sum(m.stats.total for m in pool.members) == 12
        assert all(m.stats.active == 0 for m in pool.members)
    assert set(seen) <= {"o0", "o1", "o2"}
    if method not in ("fastest", "ip_hash"):  # these may legitimately prefer one member
        assert len(set(seen)) > 1
