"""The counters behind the metrics, through the real proxy: members' and virtual servers'."""

from __future__ import annotations

import httpx
import trio
import trio.testing
from prometheus_client.parser import text_string_to_metric_families

from appliance.controlplane.supervisor import Appliance
from helpers import Origin, config_text, free_port, running_appliance

N = 5


def scrape(appliance: Appliance) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """The appliance's metrics as a scraper sees them: (sample name, labels) -> value."""
    text = appliance.metrics.exposition(None)[0].decode()
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


async def settled(appliance: Appliance) -> None:
    """Waits (bounded) until the appliance has seen every client connection close and finished its bookkeeping.

    Waiting for blocked tasks alone is not enough: a handler waiting for the close it has not read yet is blocked too.
    """
    with trio.fail_after(5):
        while appliance.dispatcher.server_stats.of("web").active:
            await trio.sleep(0.01)
    await trio.testing.wait_all_tasks_blocked()


async def test_http_requests_responses_and_bytes_of_member_and_virtual_server(nursery: trio.Nursery) -> None:
    origin = await nursery.start(Origin("o1").serve)
    port = free_port()
    async with running_appliance(config_text(port, [origin.port])) as appliance:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client:
            for _ in range(N):
                assert (await client.get("/echo")).status_code == 200
            big = await client.get("/big/3000")
            posted = await client.post("/echo", content=b"x" * 1234)
            assert big.status_code == posted.status_code == 200
            vs = appliance.dispatcher.server_stats.of("web")
            assert vs.active == 1  # one keep-alive connection, still open
        await settled(appliance)
        member = appliance.runtime.snapshot.pools["web"].member("m1")
        assert member is not None
        stats = member.stats
        assert stats.requests == N + 2
        assert stats.responses == [0, 0, N + 2, 0, 0, 0]  # other, 1xx .. 5xx
        assert stats.bytes_out == 1234  # request bodies to the member
        assert stats.bytes_in >= 3000 + len(posted.content)  # response bodies from it
        assert (vs.active, vs.total, vs.requests) == (0, 1, N + 2)
        assert vs.responses == [0, 0, N + 2, 0, 0, 0]
        assert vs.bytes_in == 1234
        assert vs.bytes_out == stats.bytes_in  # one member: the same bodies
        values = scrape(appliance)
        member_labels = {("pool", "web"), ("member", "m1")}
        assert values[("appliance_server_requests_total", frozenset(member_labels))] == N + 2
        assert values[("appliance_server_http_responses_total", frozenset({*member_labels, ("code", "2xx")}))] == N + 2
        assert values[("appliance_frontend_sessions_total", frozenset({("virtual_server", "web")}))] == 1
        assert values[("appliance_frontend_http_responses_total", frozenset({("virtual_server", "web"), ("code", "2xx")}))] == N + 2


async def test_the_appliances_own_answers_count_for_the_virtual_server_only(nursery: trio.Nursery) -> None:
    origin = await nursery.start(Origin("o1").serve)
    port = free_port()
    text = config_text(port, [origin.port]).replace("name: m1}", "name: m1, state: disabled}")
    async with running_appliance(text) as appliance:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client:
            assert (await client.get("/echo")).status_code == 503  # no member available
        stream = await trio.open_tcp_stream("127.0.0.1", port)
        async with stream:
            await stream.send_all(b"GET / HTTP/1.1\r\nHost: a\r\nbroken header line\r\n\r\n")
            with trio.fail_after(5):
                answer = await stream.receive_some(65536)
            assert answer.startswith(b"HTTP/1.1 400 ")
        await settled(appliance)
        vs = appliance.dispatcher.server_stats.of("web")
        assert (vs.active, vs.total, vs.requests) == (0, 2, 2)
        assert vs.responses == [0, 0, 0, 0, 1, 1]  # the 400 and the 503
        stats = appliance.runtime.snapshot.pools["web"].members[0].stats
        assert (stats.requests, stats.total, sum(stats.responses)) == (0, 0, 0)
    assert origin.requests == []


async def test_tcp_mode_counts_connections_and_bytes_both_ways(nursery: trio.Nursery) -> None:
    origin = await nursery.start(Origin("o1").serve)
    port = free_port()
    text = config_text(port, [origin.port], extra_vs="    mode: tcp")
    request = b"GET /big/20000 HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n"
    received = []
    async with running_appliance(text) as appliance:
        for _ in range(2):
            stream = await trio.open_tcp_stream("127.0.0.1", port)
            async with stream:
                await stream.send_all(request)
                data = b""
                with trio.fail_after(5):
                    while chunk := await stream.receive_some(65536):
                        data += chunk
                received.append(len(data))
        await settled(appliance)
        vs = appliance.dispatcher.server_stats.of("web")
        assert (vs.active, vs.total) == (0, 2)
        assert vs.bytes_in == 2 * len(request)
        assert vs.bytes_out == sum(received) and received[0] > 20000
        assert (vs.requests, sum(vs.responses)) == (0, 0)  # tcp mode: no http counters
        stats = appliance.runtime.snapshot.pools["web"].members[0].stats
        assert (stats.total, stats.active) == (2, 0)
        assert (stats.bytes_out, stats.bytes_in) == (vs.bytes_in, vs.bytes_out)
