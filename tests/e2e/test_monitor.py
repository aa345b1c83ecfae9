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


async def test_http_monitor_judges_status_and_body(nursery: trio.Nursery) -> None:
    origin = await nursery.start(Origin("a").serve)
    port = free_port()
    monitors = (
        "monitors:\n  web: {type: http, interval: 100ms, timeout: 100ms, rise: 1, fall: 1,"
        " send: {path: /health, host: app.test}, expect: {status: [200], body: ok}}"
    )
    text = config_text(port, [origin.port], monitors=monitors, extra_pool="    monitors: [web]")
    async with running_appliance(text) as appliance:
        def member():
            return appliance.runtime.snapshot.pools["web"].member("m1")

        await wait_for(lambda: member().health.value == "up")
        origin.health_status = 503
        await wait_for(lambda: member().health.value == "down")
        assert "L7 status 503" in appliance.runtime.events[-1].message
        origin.health_status, origin.health_body = 200, b"degraded"
        await wait_for(lambda: member().last_check is not None and member().last_check.reason == "body mismatch")
        assert member().health.value == "down"
        origin.health_body = b"ok"
        await wait_for(lambda: member().health.value == "up")
    seen = [r for r in origin.requests if r["target"] == "/health"]
    assert ["Host", "app.test"] in seen[0]["headers"]


async def test_https_monitor_uses_the_pool_tls_settings(nursery: trio.Nursery, tmp_path) -> None:
    import ssl

    import h11
    import trustme

    ca = trustme.CA()
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("app.internal").configure_cert(server_ctx)

    async def tls_health(stream: trio.SocketStream) -> None:
        tls = trio.SSLStream(stream, server_ctx, server_side=True)
        conn = h11.Connection(h11.SERVER)
        try:
            while not isinstance(event := conn.next_event(), h11.Request):
                if event is h11.NEED_DATA:
                    conn.receive_data(await tls.receive_some(65536))
                else:
                    return
            await tls.send_all(
                conn.send(h11.Response(status_code=200, headers=[("content-length", "2")])) + conn.send(h11.Data(data=b"ok"))
            )
            await tls.aclose()
        except (trio.BrokenResourceError, ssl.SSLError):
            return

    listeners = await nursery.start(trio.serve_tcp, tls_health, 0)
    member_port = listeners[0].socket.getsockname()[1]
    ca_file = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    monitors = "monitors:\n  s: {type: https, interval: 500ms, timeout: 500ms, rise: 1, fall: 1, send: {path: /health}}"
    for server_name, expected in (("app.internal", "up"), ("other.internal", "down")):
        port = free_port()
        pool = f"    monitors: [s]\n    tls: {{verify: true, ca: {ca_file}, server_name: {server_name}}}"
        async with running_appliance(config_text(port, [member_port], monitors=monitors, extra_pool=pool)) as appliance:
            member = lambda: appliance.runtime.snapshot.pools["web"].member("m1")  # noqa: E731
            await wait_for(lambda: member().health.value != "unknown")
            assert member().health.value == expected
            if expected == "down":
                assert "TLS handshake failed" in member().last_check.reason


async def test_idle_member_connections_close_when_the_member_leaves_service(nursery: trio.Nursery) -> None:
    origin = await nursery.start(Origin("a").serve)
    backup = await nursery.start(Origin("b").serve)
    port = free_port()
    monitors = "monitors:\n  web: {type: http, interval: 100ms, timeout: 100ms, rise: 1, fall: 1, send: {path: /health}}"
    text = config_text(port, [origin.port, backup.port], monitors=monitors, extra_pool="    monitors: [web]")
    async with running_appliance(text) as appliance:
        pool = lambda: appliance.runtime.snapshot.pools["web"]  # noqa: E731
        await wait_for(lambda: all(m.health.value == "up" for m in pool().members))
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client:
            await client.get("/echo")  # leaves an idle keep-alive connection to a
        address = pool().member("m1").address
        assert appliance.upstreams.idle_count(address) == 1
        origin.health_status = 503
        await wait_for(lambda: pool().member("m1").health.value == "down")
        assert appliance.upstreams.idle_count(address) == 0
