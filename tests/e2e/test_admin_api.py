"""The admin API through a real appliance: auth, each route, refusals, restarts, reloads and metrics."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import httpx
import trio
from prometheus_client.parser import text_string_to_metric_families

from appliance.controlplane.supervisor import Appliance
from helpers import Origin, free_port, running_appliance


def config(tmp_path: Path, port: int, admin: int, origins: list[Origin], *, static: str = "false", extra: str = "") -> str:
    members = "\n".join(f"      - {{address: 127.0.0.1:{o.port}, name: {o.name}}}" for o in origins)
    return f"""\
appliance: {{name: lb-t, state_file: {tmp_path}/var/state.json, shutdown_grace: 1s, log: {{access: "off"}}}}
admin: {{listen: 127.0.0.1:{admin}, token_file: {tmp_path}/var/admin.token}}
pools:
  web:
    static: {static}
    members:
{members}
  fixed:
    mutable: false
    members: [{{address: 127.0.0.1:1, name: f1}}]
virtual_servers:
  web: {{listen: [127.0.0.1:{port}], pool: web}}
{extra}"""


@asynccontextmanager
async def api(tmp_path: Path, text: str) -> AsyncIterator[tuple[Appliance, httpx.AsyncClient]]:
    path = tmp_path / "a.yaml"
    path.write_text(text)
    async with running_appliance(text, str(path)) as appliance:
        assert appliance.admin is not None and appliance.admin.address is not None
        token = (tmp_path / "var" / "admin.token").read_text().strip()
        headers = {"Authorization": f"Bearer {token}"}
        async with httpx.AsyncClient(base_url=f"http://{appliance.admin.address}", headers=headers, timeout=5) as client:
            yield appliance, client


async def origins(nursery: trio.Nursery, *names: str) -> list[Origin]:
    return [await nursery.start(Origin(name).serve) for name in names]


async def test_no_token_or_a_wrong_one_is_401(nursery: trio.Nursery, tmp_path: Path) -> None:
    members = await origins(nursery, "m1")
    async with api(tmp_path, config(tmp_path, free_port(), free_port(), members)) as (appliance, client):
        for headers in ({"Authorization": ""}, {"Authorization": "Bearer wrong"}):
            for path in ("/api/v1/status", "/metrics", "/api/v1/openapi.json"):
                response = await client.get(path, headers=headers)
                assert response.status_code == 401 and response.headers["www-authenticate"].startswith("Bearer")
        assert (await client.get("/api/v1/status")).status_code == 200


async def test_each_route_and_its_refusals(nursery: trio.Nursery, tmp_path: Path) -> None:
    members = await origins(nursery, "m1", "m2")
    async with api(tmp_path, config(tmp_path, free_port(), free_port(), members)) as (appliance, client):
        status = (await client.get("/api/v1/status")).json()
        assert status["node"] == "lb-t" and status["ha"]["state"] == "standalone"
        assert [vs["name"] for vs in status["virtual_servers"]] == ["web"] and status["virtual_servers"][0]["state"] == "listening"
        assert [m["name"] for m in status["pools"][0]["members"]] == ["m1", "m2"]

        response = await client.put("/api/v1/pools/web/members/m1/state", json={"state": "disabled"})
        assert response.status_code == 200 and response.json()["admin_state"] == "disabled"
        assert response.json()["admin_source"] == "api"
        assert appliance.runtime.snapshot.pools["web"].member("m1").admin_state.value == "disabled"

        added = await client.post("/api/v1/pools/web/members", json={"address": "127.0.0.1:9", "name": "m3", "ratio": 2})
        assert added.status_code == 201 and added.json()["ratio"] == 2
        removed = await client.delete("/api/v1/pools/web/members/m3")
        assert removed.status_code == 200
        pool = (await client.get("/api/v1/pools/web")).json()
        assert [m["name"] for m in pool["members"]] == ["m1", "m2"]

        events = (await client.get("/api/v1/events")).json()["events"]
        assert [e["source"] for e in events[-3:]] == ["api", "api", "api"]
        assert "web/m1 admin state enabled -> disabled" in events[-3]["message"]

        refusals = [
            (await client.get("/api/v1/pools/nope"), 404),
            (await client.put("/api/v1/pools/web/members/zz/state", json={"state": "disabled"}), 404),
            (await client.put("/api/v1/pools/web/members/m1/state", json={"state": "sleeping"}), 422),
            (await client.put("/api/v1/pools/web/members/m1/state", json={"state": "enabled", "why": "x"}), 422),
            (await client.post("/api/v1/pools/web/members", json={"address": "127.0.0.1:9", "ratio": 0}), 422),
            (await client.post("/api/v1/pools/web/members", json={"address": "127.0.0.1:9", "ratio": 10**400}), 422),
            (await client.post("/api/v1/pools/web/members", json={"address": "127.0.0.1:9", "name": "x\u001b[2J"}), 422),
            (await client.post("/api/v1/pools/web/members", content=b'{"address": ' + b"[" * 5000 + b"]" * 5000 + b"}"), 400),
            (await client.post("/api/v1/pools/web/members", json={"address": f"127.0.0.1:{members[1].port}"}), 409),
            (await client.put("/api/v1/pools/fixed/members/f1/state", json={"state": "disabled"}), 409),
            (await client.post("/api/v1/snat_pools/out/addresses", json={"address": "127.0.0.34"}), 404),
            (await client.put("/api/v1/pools/web/members/m1/state", content=b"{not json"), 400),
        ]
        for response, expected in refusals:
            assert response.status_code == expected, response.text
            assert response.json()["status"] == expected and response.json()["error"]
        assert "ratio: must be 1..65535" in refusals[4][0].json()["error"]


async def test_a_disabled_member_stays_disabled_after_a_restart(nursery: trio.Nursery, tmp_path: Path) -> None:
    members = await origins(nursery, "m1", "m2")
    text = config(tmp_path, free_port(), free_port(), members)
    async with api(tmp_path, text) as (_, client):
        await client.put("/api/v1/pools/web/members/m2/state", json={"state": "disabled"})
    async with api(tmp_path, text) as (appliance, client):
        member = (await client.get("/api/v1/pools/web")).json()["members"][1]
        assert (member["name"], member["admin_state"], member["admin_source"]) == ("m2", "disabled", "state-file")


async def test_a_static_pool_is_reseeded_by_the_config_at_restart(nursery: trio.Nursery, tmp_path: Path) -> None:
    members = await origins(nursery, "m1")
    text = config(tmp_path, free_port(), free_port(), members, static="true")
    async with api(tmp_path, text) as (_, client):
        await client.put("/api/v1/pools/web/members/m1/state", json={"state": "disabled"})
    async with api(tmp_path, text) as (_, client):
        member = (await client.get("/api/v1/pools/web")).json()["members"][0]
        assert (member["admin_state"], member["admin_source"]) == ("enabled", "config")


async def test_a_broken_reload_is_422_while_traffic_keeps_flowing(nursery: trio.Nursery, tmp_path: Path) -> None:
    members = await origins(nursery, "m1")
    port = free_port()
    async with api(tmp_path, config(tmp_path, port, free_port(), members)) as (_, client):
        (tmp_path / "a.yaml").write_text("pools:\n  web: {members: [{address: nowhere}]}\n")
        async with httpx.AsyncClient(timeout=5) as traffic:
            before = await traffic.get(f"http://127.0.0.1:{port}/echo")
            response = await client.post("/api/v1/reload")
            after = await traffic.get(f"http://127.0.0.1:{port}/echo")
        assert response.status_code == 422
        body = response.json()
        assert body["error"] == "configuration rejected" and any(line.startswith(f"{tmp_path}/a.yaml:") for line in body["errors"])
        assert before.status_code == after.status_code == 200 and after.json()["origin"] == "m1"


async def test_metrics_parse_and_count_what_went_through(nursery: trio.Nursery, tmp_path: Path) -> None:
    members = await origins(nursery, "m1")
    port = free_port()
    async with api(tmp_path, config(tmp_path, port, free_port(), members)) as (_, client):
        async with httpx.AsyncClient(timeout=5) as traffic:
            for _ in range(3):
                assert (await traffic.get(f"http://127.0.0.1:{port}/echo")).status_code == 200
        response = await client.get("/metrics")
        assert response.status_code == 200 and response.headers["content-type"].startswith("text/plain")
        samples = {
            (sample.name, tuple(sorted(sample.labels.items()))): sample.value
            for family in text_string_to_metric_families(response.text)
            for sample in family.samples
        }
        assert samples[("appliance_server_requests_total", (("member", "m1"), ("pool", "web")))] == 3
        assert samples[("appliance_frontend_http_responses_total", (("code", "2xx"), ("virtual_server", "web")))] == 3
        assert samples[("appliance_server_admin_state", (("member", "f1"), ("pool", "fixed"), ("state", "enabled")))] == 1
        open_metrics = await client.get("/metrics", headers={"Accept": "application/openmetrics-text; version=1.0.0"})
        assert open_metrics.headers["content-type"].startswith("application/openmetrics-text")


async def test_a_reload_that_supersedes_a_change_is_kept_over_a_restart(nursery: trio.Nursery, tmp_path: Path) -> None:
    """SIGHUP's reload rewrites the state file too: the file's newer decision is what a restart brings back."""
    members = await origins(nursery, "m1", "m2")
    text = config(tmp_path, free_port(), free_port(), members)
    edited = text.replace("name: m2}", "name: m2, state: forced_offline}")
    async with api(tmp_path, text) as (appliance, client):
        await client.put("/api/v1/pools/web/members/m2/state", json={"state": "disabled"})
        (tmp_path / "a.yaml").write_text(edited)
        assert await appliance.reload() == []  # what SIGHUP runs
    async with api(tmp_path, edited) as (_, client):
        member = (await client.get("/api/v1/pools/web")).json()["members"][1]
        assert (member["admin_state"], member["admin_source"]) == ("forced_offline", "config")
