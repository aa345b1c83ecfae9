"""The tcp monitor takes a stopped member out of rotation and brings it back."""

from __future__ import annotations

import httpx
import trio

from helpers import Origin, config_text, free_port, running_appliance

MONITORS = "monitors:\n  port: {type: tcp, interval: 100ms, timeout: 100ms, rise: 1, fall: 1}"


async def wait_for(predicate, limit: float = 5.0) -> None:
    with trio.fail_after(limit):
        while not predicate():
            await trio.sleep(0.02)


async def test_stopped_member_leaves_rotation_and_returns(nursery: trio.Nursery) -> None:
    origin_a = await nursery.start(Origin("a").serve)
    b = Origin("b")
    b_scope = trio.CancelScope()

    async def run_b(task_status=trio.TASK_STATUS_IGNORED):
        with b_scope:
            await b.serve(task_status=task_status)

    await nursery.start(run_b)
    port = free_port()
    text = config_text(port, [origin_a.port, b.port], monitors=MONITORS, extra_pool="    monitors: [port]")
    async with running_appliance(text) as appliance:
        def health(name: str) -> str:
            return appliance.runtime.snapshot.pools["web"].member(name).health.value

        await wait_for(lambda: health("m1") == "up" and health("m2") == "up")
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client:
            assert {(await client.get("/echo")).json()["origin"] for _ in range(4)} == {"a", "b"}
            b_scope.cancel()  # member b stops listening
            await wait_for(lambda: health("m2") == "down")
            assert {(await client.get("/echo")).json()["origin"] for _ in range(4)} == {"a"}
            await nursery.start(Origin("b-again", port=b.port).serve)  # b comes back on its address
            await wait_for(lambda: health("m2") == "up")
            assert {(await client.get("/echo")).json()["origin"] for _ in range(4)} == {"a", "b-again"}
        messages = [event.message for event in appliance.runtime.events]
        down = next(m for m in messages if "web/m2 health up -> down" in m)
        assert "connect refused" in down
        assert "web/m2 health down -> up" in messages[-1]
