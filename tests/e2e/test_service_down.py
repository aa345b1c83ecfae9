"""Action on service down on live connections, when a member's monitor takes it down."""

from __future__ import annotations

import pytest
import trio

from helpers import Origin, free_port, running_appliance

MONITOR = "monitors:\n  web: {type: http, interval: 100ms, timeout: 100ms, rise: 1, fall: 1, send: {path: /health}}\n"


def conf(port: int, members: list[int], mode: str, action: str) -> str:
    lines = "\n".join(f"      - {{address: 127.0.0.1:{p}, name: m{i}}}" for i, p in enumerate(members))
    return f"""\
appliance: {{name: t, log: {{access: off}}}}
{MONITOR}
pools:
  web:
    monitors: [web]
    action_on_service_down: {action}
    members:
{lines}
virtual_servers:
  web: {{listen: [127.0.0.1:{port}], pool: web, mode: {mode}}}
"""


async def wait_for(predicate, limit: float = 5.0) -> None:
    with trio.fail_after(limit):
        while not predicate():
            await trio.sleep(0.02)


async def exchange(stream: trio.SocketStream, path: str) -> bytes:
    await stream.send_all(b"GET %s HTTP/1.1\r\nHost: a\r\n\r\n" % path.encode())
    data = b""
    with trio.fail_after(5):
        while b"}" not in data:
            data += await stream.receive_some(65536)
    return data


async def outcome_after_down(stream: trio.SocketStream) -> str:
    """What the client sees on its open connection once the member is down."""
    try:
        with trio.fail_after(0.5):
            data = await stream.receive_some(100)
    except trio.TooSlowError:
        return "open"
    except trio.BrokenResourceError:
        return "reset"
    return "eof" if data == b"" else "data"


@pytest.mark.parametrize(("action", "seen"), [("none", "open"), ("drop", "eof"), ("reset", "reset")])
async def test_tcp_mode_connections_get_the_pools_action(nursery: trio.Nursery, action: str, seen: str) -> None:
    origin = await nursery.start(Origin("a").serve)
    port = free_port()
    async with running_appliance(conf(port, [origin.port], "tcp", action)) as appliance:
        member = lambda: appliance.runtime.snapshot.pools["web"].member("m0")  # noqa: E731
        await wait_for(lambda: member().health.value == "up")
        stream = await trio.open_tcp_stream("127.0.0.1", port)
        assert b'"origin": "a"' in await exchange(stream, "/echo")
        origin.health_status = 503
        await wait_for(lambda: member().health.value == "down")
        assert await outcome_after_down(stream) == seen
        if seen == "open":
            assert b'"origin": "a"' in await exchange(stream, "/echo")  # none: the tunnel still works
        await stream.aclose()


async def test_http_reselect_retries_a_request_in_flight_on_another_member(nursery: trio.Nursery) -> None:
    sick = await nursery.start(Origin("sick").serve)
    well = await nursery.start(Origin("well").serve)
    port = free_port()
    async with running_appliance(conf(port, [sick.port, well.port], "http", "reselect")) as appliance:
        pool = lambda: appliance.runtime.snapshot.pools["web"]  # noqa: E731
        await wait_for(lambda: all(m.health.value == "up" for m in pool().members))
        stream = await trio.open_tcp_stream("127.0.0.1", port)
        await stream.send_all(b"GET /delay/3000 HTTP/1.1\r\nHost: a\r\n\r\n")  # round robin: sick first
        await wait_for(lambda: pool().member("m0").stats.active == 1)
        sick.health_status = 503
        data = b""
        with trio.fail_after(5):
            while b"}" not in data:
                data += await stream.receive_some(65536)
        assert data.startswith(b"HTTP/1.1 200 ") and b'"origin": "well"' in data
        await stream.aclose()


async def test_http_reset_closes_a_request_in_flight_at_once(nursery: trio.Nursery) -> None:
    sick = await nursery.start(Origin("sick").serve)
    port = free_port()
    async with running_appliance(conf(port, [sick.port], "http", "reset")) as appliance:
        member = lambda: appliance.runtime.snapshot.pools["web"].member("m0")  # noqa: E731
        await wait_for(lambda: member().health.value == "up")
        stream = await trio.open_tcp_stream("127.0.0.1", port)
        await stream.send_all(b"GET /delay/3000 HTTP/1.1\r\nHost: a\r\n\r\n")
        await wait_for(lambda: member().stats.active == 1)
        sick.health_status = 503
        with trio.fail_after(2):  # well before the member would have answered
            with pytest.raises(trio.BrokenResourceError):
                while await stream.receive_some(100):
                    pass


async def test_tcp_reselect_binds_the_client_connection_to_another_member(nursery: trio.Nursery) -> None:
    sick = await nursery.start(Origin("sick").serve)
    well = await nursery.start(Origin("well").serve)
    port = free_port()
    async with running_appliance(conf(port, [sick.port, well.port], "tcp", "reselect")) as appliance:
        pool = lambda: appliance.runtime.snapshot.pools["web"]  # noqa: E731
        await wait_for(lambda: all(m.health.value == "up" for m in pool().members))
        stream = await trio.open_tcp_stream("127.0.0.1", port)  # round robin: sick first
        assert b'"origin": "sick"' in await exchange(stream, "/echo")
        sick.health_status = 503
        await wait_for(lambda: pool().member("m0").health.value == "down")
        await wait_for(lambda: pool().member("m1").stats.active == 1)  # re-bound
        assert b'"origin": "well"' in await exchange(stream, "/echo")  # the same client connection, still echoing
        await stream.aclose()


@pytest.mark.parametrize(("state", "action", "seen"), [("disabled", "reset", "open"), ("forced_offline", "none", "open"), ("forced_offline", "drop", "eof")])
async def test_admin_states_on_a_live_tcp_connection(nursery: trio.Nursery, tmp_path, state: str, action: str, seen: str) -> None:
    origin = await nursery.start(Origin("a").serve)
    port = free_port()
    path = tmp_path / "a.yaml"
    path.write_text(conf(port, [origin.port], "tcp", action))
    async with running_appliance(path.read_text(), str(path)) as appliance:
        member = lambda: appliance.runtime.snapshot.pools["web"].member("m0")  # noqa: E731
        await wait_for(lambda: member().health.value == "up")
        stream = await trio.open_tcp_stream("127.0.0.1", port)
        assert b'"origin": "a"' in await exchange(stream, "/echo")
        path.write_text(conf(port, [origin.port], "tcp", action).replace("name: m0}", f"name: m0, state: {state}}}"))
        assert await appliance.reload() == []
        assert member().admin_state.value == state
        assert await outcome_after_down(stream) == seen  # disabled keeps its connections whatever the action
        if seen == "open":
            assert b'"origin": "a"' in await exchange(stream, "/echo")
            fresh = await trio.open_tcp_stream("127.0.0.1", port)  # but no new connection reaches it
            with trio.fail_after(5):
                assert await fresh.receive_some(100) == b""
        await stream.aclose()
