"""SNAT through the real proxy: member connections leave from the SNAT pool's addresses, in both modes."""

from __future__ import annotations

import collections
from pathlib import Path

import httpx
import pytest
import trio

from helpers import free_port, running_appliance


class PeerRecorder:
    """A member that records the source address of each connection, then echoes (tcp) or answers (http)."""

    def __init__(self) -> None:
        self.sources: list[str] = []
        self.port = 0

    async def serve(self, *, task_status: trio.TaskStatus[PeerRecorder] = trio.TASK_STATUS_IGNORED) -> None:
        listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
        self.port = listeners[0].socket.getsockname()[1]
        task_status.started(self)
        await trio.serve_listeners(self._handle, listeners)

    async def _handle(self, stream: trio.SocketStream) -> None:
        self.sources.append(stream.socket.getpeername()[0])
        async with stream:
            try:
                while data := await stream.receive_some(65536):
                    if data.startswith(b"GET "):
                        await stream.send_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok")
                        return
                    await stream.send_all(data)
            except trio.BrokenResourceError:
                pass


def config(tmp_path: Path, port: int, member: int, mode: str, snat: str, extra: str = "") -> str:
    return f"""\
appliance: {{name: t, state_file: {tmp_path}/state.json, shutdown_grace: 1s, log: {{access: "off"}}}}
address_sets:
  dc1: [127.0.0.40-127.0.0.44]
snat_pools:
  out: {snat}
pools:
  web:
    snat: out
{extra}    members: [{{address: 127.0.0.1:{member}, name: m1}}]
virtual_servers:
  web: {{listen: [127.0.0.1:{port}], mode: {mode}, pool: web}}
"""


async def one(port: int, mode: str) -> None:
    if mode == "http":
        async with httpx.AsyncClient(timeout=5) as client:
            assert (await client.get(f"http://127.0.0.1:{port}/", headers={"Connection": "close"})).status_code == 200
        return
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    async with stream:
        await stream.send_all(b"ping")
        with trio.fail_after(5):
            assert await stream.receive_some(4) == b"ping"


@pytest.mark.parametrize("mode", ["tcp", "http"])
async def test_member_connections_leave_from_exactly_the_snat_addresses_evenly(
    nursery: trio.Nursery, tmp_path: Path, mode: str
) -> None:
    member = await nursery.start(PeerRecorder().serve)
    port = free_port()
    async with running_appliance(config(tmp_path, port, member.port, mode, "{addresses: [127.0.0.30-127.0.0.33]}")):
        for _ in range(12):
            await one(port, mode)
    counts = collections.Counter(member.sources)
    assert counts == {f"127.0.0.{n}": 3 for n in range(30, 34)}


async def test_a_draw_of_two_from_a_set_of_five_uses_only_the_first_two(nursery: trio.Nursery, tmp_path: Path) -> None:
    member = await nursery.start(PeerRecorder().serve)
    port = free_port()
    async with running_appliance(config(tmp_path, port, member.port, "tcp", "{draw: [{from: dc1, count: 2}]}")):
        for _ in range(6):
            await one(port, "tcp")
    assert collections.Counter(member.sources) == {"127.0.0.40": 3, "127.0.0.41": 3}


async def test_min_interval_spreads_new_connections_over_identities(nursery: trio.Nursery, tmp_path: Path) -> None:
    """Two addresses, one connection per address per 10 s: the third connection in a row waits, then is refused
    when the wait would pass the pool's queue timeout (here 0.2 s)."""
    member = await nursery.start(PeerRecorder().serve)
    port = free_port()
    text = config(tmp_path, port, member.port, "http", "{addresses: [127.0.0.30, 127.0.0.31], min_interval: 10s}",
                  extra="    queue: {size: 0, timeout: 200ms}\n")
    async with running_appliance(text):
        await one(port, "http")
        await one(port, "http")
        async with httpx.AsyncClient(timeout=5) as client:
            third = await client.get(f"http://127.0.0.1:{port}/")
    assert sorted(member.sources) == ["127.0.0.30", "127.0.0.31"]
    assert third.status_code == 503 and b"min_interval" in third.content


async def test_runtime_address_changes_join_and_drain_and_reach_pools_through_their_set(
    nursery: trio.Nursery, tmp_path: Path
) -> None:
    member = await nursery.start(PeerRecorder().serve)
    port, admin = free_port(), free_port()
    text = config(tmp_path, port, member.port, "tcp", "{draw: [{from: dc1, count: 3}], static: false}").replace(
        "address_sets:", f"admin: {{listen: 127.0.0.1:{admin}, token_file: {tmp_path}/admin.token}}\naddress_sets:"
    ).replace("dc1: [127.0.0.40-127.0.0.44]", "dc1: [127.0.0.40, 127.0.0.41]")
    async with running_appliance(text) as appliance:
        token = (tmp_path / "admin.token").read_text().strip()
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{admin}", headers={"Authorization": f"Bearer {token}"}) as api:
            added = await api.post("/api/v1/address_sets/dc1/addresses", json={"address": "127.0.0.42"})
            assert added.status_code == 201 and added.json()["addresses"] == ["127.0.0.40", "127.0.0.41", "127.0.0.42"]
            member.sources.clear()
            for _ in range(6):
                await one(port, "tcp")
            assert collections.Counter(member.sources) == {"127.0.0.40": 2, "127.0.0.41": 2, "127.0.0.42": 2}

            removed = await api.delete("/api/v1/snat_pools/out/addresses/127.0.0.40")
            assert removed.status_code == 404  # it is the set's address, not the pool's own
            removed = await api.delete("/api/v1/address_sets/dc1/addresses/127.0.0.40")
            assert removed.status_code == 200 and "127.0.0.40" not in removed.json()["addresses"]
            member.sources.clear()
            for _ in range(4):
                await one(port, "tcp")
            assert set(member.sources) == {"127.0.0.41", "127.0.0.42"}
            status = (await api.get("/api/v1/status")).json()
            (out,) = status["snat_pools"]
            assert out["name"] == "out" and out["used_by"] == ["web"]
            rows = {row["address"]: row for row in out["addresses"]}
            assert "127.0.0.40" not in rows  # removed with no connection open: gone at once
            assert [rows[a]["total_connections"] for a in ("127.0.0.41", "127.0.0.42")] == [4, 4]
            assert rows["127.0.0.41"]["pools"][0] == {"pool": "web", "active_connections": 0, "streak": 0, "quarantined_until": None}
            metrics = (await api.get("/metrics")).text
            assert 'appliance_snat_connections_total{address="127.0.0.42",snat_pool="out"} 4.0' in metrics
            assert (await api.post("/api/v1/address_sets/dc1/addresses", json={"address": "127.0.0.41"})).status_code == 409
            assert (await api.post("/api/v1/address_sets/dc1/addresses", json={"address": "nope"})).status_code == 422
        events = [e.message for e in appliance.runtime.events if e.kind == "snat"]
        assert events == ["address_sets.dc1: address 127.0.0.42 added", "address_sets.dc1: address 127.0.0.40 removed (its connections finish)"]


@pytest.mark.parametrize(("snat", "expected"), [("true", {"127.0.0.30", "127.0.0.31"}), ("false", {"127.0.0.1"})])
async def test_monitor_probes_leave_from_the_snat_addresses_when_asked(
    nursery: trio.Nursery, tmp_path: Path, snat: str, expected: set[str]
) -> None:
    member = await nursery.start(PeerRecorder().serve)
    port = free_port()
    text = config(tmp_path, port, member.port, "tcp", "{addresses: [127.0.0.30, 127.0.0.31]}", extra="    monitors: [port]\n")
    text += f"monitors:\n  port: {{type: tcp, interval: 100ms, timeout: 100ms, snat: {snat}}}\n"
    async with running_appliance(text):
        with trio.fail_after(5):
            while len(member.sources) < 4:
                await trio.sleep(0.05)
    assert set(member.sources) == expected
