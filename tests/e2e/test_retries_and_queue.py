"""Retries of requests already sent, and the pool queue, through the real proxy."""

from __future__ import annotations

import httpx
import trio

from helpers import Origin, config_text, free_port, running_appliance


async def test_an_idempotent_request_is_retried_on_another_member_but_post_is_not(nursery: trio.Nursery) -> None:
    flaky = await nursery.start(Origin("flaky").serve)
    good = await nursery.start(Origin("good").serve)
    port = free_port()
    async with running_appliance(config_text(port, [flaky.port, good.port])):
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client:
            flaky.reset_next = 1
            response = await client.get("/flaky")  # round robin starts at flaky: reset, then good answers
            assert (response.status_code, response.json()["origin"]) == (200, "good")
            flaky.reset_next = 1  # the retry moved the rotation on: flaky's turn again
            assert (await client.post("/flaky")).status_code == 502  # sent once, never replayed
    port = free_port()
    text = config_text(port, [flaky.port, good.port], extra_pool="    retry_non_idempotent: true")
    async with running_appliance(text):
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client:
            flaky.reset_next = 1
            response = await client.post("/flaky")
            assert (response.status_code, response.json()["origin"]) == (200, "good")


async def test_requests_wait_in_the_pool_queue_for_a_member_below_its_limit(nursery: trio.Nursery) -> None:
    origin = await nursery.start(Origin("o").serve)
    port = free_port()
    text = config_text(port, [origin.port], extra_pool="    queue: {size: 1, timeout: 5s}").replace(
        "name: m1}", "name: m1, connection_limit: 1}"
    )
    async with running_appliance(text) as appliance:
        results: dict[str, int] = {}

        async def get(name: str, path: str) -> None:
            async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=10) as client:
                results[name] = (await client.get(path)).status_code

        async with trio.open_nursery() as inner:
            inner.start_soon(get, "first", "/delay/300")
            await trio.sleep(0.1)  # first holds the only slot
            inner.start_soon(get, "queued", "/echo")
            await trio.sleep(0.1)
            assert appliance.queues.waiting("web") == 1
            inner.start_soon(get, "refused", "/echo")  # the queue (size 1) is full
        assert results == {"first": 200, "queued": 200, "refused": 503}
    port = free_port()
    no_queue = config_text(port, [origin.port]).replace("name: m1}", "name: m1, connection_limit: 1}")
    async with running_appliance(no_queue):
        async with trio.open_nursery() as inner:
            inner.start_soon(get, "first", "/delay/300")
            await trio.sleep(0.1)
            async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client:
                response = await client.get("/echo")
            assert response.status_code == 503 and "connection limit" in response.text


async def test_tcp_connections_wait_in_the_pool_queue(nursery: trio.Nursery) -> None:
    async def echo(stream: trio.SocketStream) -> None:
        async with stream:
            while data := await stream.receive_some(65536):
                await stream.send_all(data)

    listeners = await nursery.start(trio.serve_tcp, echo, 0)
    member_port = listeners[0].socket.getsockname()[1]
    port = free_port()
    text = (
        config_text(port, [member_port], extra_pool="    queue: {size: 1, timeout: 5s}")
        .replace("name: m1}", "name: m1, connection_limit: 1}")
        .replace("    pool: web\n", "    pool: web\n    mode: tcp\n")
    )
    async with running_appliance(text) as appliance:
        first = await trio.open_tcp_stream("127.0.0.1", port)
        await first.send_all(b"one")
        assert await first.receive_some(10) == b"one"  # holds the only slot
        second = await trio.open_tcp_stream("127.0.0.1", port)
        await second.send_all(b"two")
        with trio.fail_after(5):
            while appliance.queues.waiting("web") != 1:
                await trio.sleep(0.01)
        await first.aclose()  # the slot frees: the queued connection goes through
        with trio.fail_after(5):
            assert await second.receive_some(10) == b"two"
        await second.aclose()


async def test_passive_detection_takes_a_failing_member_out_before_any_probe(nursery: trio.Nursery) -> None:
    good = await nursery.start(Origin("good").serve)
    dead = free_port()
    port = free_port()
    text = config_text(port, [dead, good.port], extra_pool="    passive: {failures: 2, down_for: 60s}")
    async with running_appliance(text) as appliance:
        pool = lambda: appliance.runtime.snapshot.pools["web"]  # noqa: E731
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client:
            for _ in range(8):
                assert (await client.get("/echo")).status_code == 200  # retried on good meanwhile
        m1 = pool().member("m1")
        assert m1.health.value == "down"
        assert m1.stats.failures == 2  # after the second refusal it was never tried again
        assert any("passive: 2 failures in a row, last: connect refused" in e.message for e in appliance.runtime.events)
