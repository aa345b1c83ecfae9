"""The TUI against a real appliance: `python -m appliance run` as a subprocess, the real admin client.

The members are loopback ports nobody listens on and no monitor checks them,
so they are `unchecked` (treated as up) and admin-state changes show without
traffic. A direct `AdminClient` call confirms what the TUI did. Every wait is
bounded; the appliance is stopped by its PID. Plain `def` tests running their
scenario with `asyncio.run` (Textual is asyncio; tests/conftest.py).
"""

from __future__ import annotations

import asyncio
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from helpers import stop_process
from tui_fakes import cell_text, notifications, row_keys, snat_keys, snat_text, wait_for

from tui.app import ApplianceApp, make_app
from tui.format import admin_cell
from tui.widgets import ConfirmScreen

ROOT = Path(__file__).resolve().parents[2]
SIZE = (140, 40)
POLL = 0.2
START_LIMIT = 20.0  # seconds for the appliance to listen on its admin port
MISSING = [p for p in ("appliance/client.py", "appliance/controlplane/admin.py") if not (ROOT / p).exists()]

pytestmark = pytest.mark.skipif(
    bool(MISSING), reason=f"the admin API is not there yet: {', '.join(MISSING)} missing (the TUI speaks only the API)"
)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Appliance:
    conf: Path
    url: str
    port: int
    token_file: Path
    log: Path
    ports: list[int]
    process: subprocess.Popen[bytes] | None = None

    @property
    def token(self) -> str:
        return self.token_file.read_text().splitlines()[0].strip()

    def start(self) -> None:
        with self.log.open("ab") as sink:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "appliance", "run", "-c", str(self.conf)], stdout=sink, stderr=sink, cwd=ROOT
            )
        deadline = time.monotonic() + START_LIMIT
        while not (self.token_file.exists() and self._listening()):
            if self.process.poll() is not None:
                raise AssertionError(f"the appliance exited with {self.process.returncode}:\n{self.log.read_text()}")
            if time.monotonic() > deadline:
                self.stop()
                raise AssertionError(f"no admin API within {START_LIMIT}s:\n{self.log.read_text()}")
            time.sleep(0.05)

    def _listening(self) -> bool:
        with socket.socket() as probe:
            probe.settimeout(0.5)
            try:
                probe.connect(("127.0.0.1", self.port))
            except OSError:
                return False
            return True

    def stop(self) -> None:
        stop_process(self.process)  # by PID: only the process this test started

    def member(self, pool: str, name: str) -> dict[str, Any]:
        """The member as the API has it now, asked directly (not through the TUI)."""
        from appliance.client import AdminClient

        with AdminClient(self.url, self.token) as client:
            status = client.status()
        return next(m for p in status["pools"] if p["name"] == pool for m in p["members"] if m["name"] == name)


@pytest.fixture
def appliance(tmp_path: Path) -> Iterator[Appliance]:
    ports = [free_port() for _ in range(4)]
    admin_port, vs_port, db_port = free_port(), free_port(), free_port()
    conf = tmp_path / "appliance.yaml"
    conf.write_text(f"""\
appliance: {{name: tui-e2e, state_file: {tmp_path}/state.json, shutdown_grace: 1s, log: {{access: off}}}}
admin: {{listen: 127.0.0.1:{admin_port}, token_file: {tmp_path}/admin.token}}
pools:
  web:
    members:
      - {{address: 127.0.0.1:{ports[0]}, name: m1}}
      - {{address: 127.0.0.1:{ports[1]}, name: m2}}
      - {{address: 127.0.0.1:{ports[2]}, name: m3}}
  fixed:
    mutable: false
    snat: out
    members:
      - {{address: 127.0.0.1:{ports[3]}, name: f1}}
snat_pools:
  out: {{addresses: [127.0.0.30, 127.0.0.31]}}
virtual_servers:
  web: {{listen: [127.0.0.1:{vs_port}], pool: web}}
  db: {{listen: [127.0.0.1:{db_port}], mode: tcp, pool: fixed}}
""")
    running = Appliance(
        conf, f"http://127.0.0.1:{admin_port}", admin_port, tmp_path / "admin.token", tmp_path / "appliance.log", ports
    )
    running.start()
    try:
        yield running
    finally:
        running.stop()


def tui(appliance: Appliance) -> ApplianceApp:
    from tui.client import AsyncAdminClient

    return make_app(AsyncAdminClient.connect(appliance.url, appliance.token), interval=POLL, max_backoff=0.5)


async def connected(app: ApplianceApp, pilot: Any) -> None:
    await wait_for(
        pilot, lambda: app.connected and app.members_table.row_count > 0, timeout=10, what="the first answer"
    )


def test_the_table_shows_the_real_members(appliance: Appliance) -> None:
    async def scenario() -> None:
        app = tui(appliance)
        async with app.run_test(size=SIZE) as pilot:
            await connected(app, pilot)
            assert row_keys(app) == ["web/m1", "web/m2", "web/m3", "fixed/f1"]
            assert cell_text(app, "web/m1", "address") == f"127.0.0.1:{appliance.ports[0]}"
            assert cell_text(app, "web/m1", "health") == "unchecked"
            assert cell_text(app, "web/m1", "admin") == "enabled"
            assert cell_text(app, "web/m1", "check") == "no monitor"
            assert list(app.vs_table.shown) == ["web", "db"]
            header = str(app.query_one("#header").content)  # type: ignore[attr-defined]
            assert "tui-e2e" in header and "standalone" in header and "live" in header
            assert app.display_errors == []

    asyncio.run(scenario())


def test_the_snat_view_shows_the_real_snat_addresses(appliance: Appliance) -> None:
    async def scenario() -> None:
        app = tui(appliance)
        async with app.run_test(size=SIZE) as pilot:
            await connected(app, pilot)
            await pilot.press("s")
            await wait_for(pilot, lambda: len(snat_keys(app)) == 2, timeout=10, what="the SNAT rows")
            assert snat_keys(app) == ["out/127.0.0.30", "out/127.0.0.31"]
            for key in snat_keys(app):  # no traffic yet: usable, nothing counted
                assert snat_text(app, key, "state") == "usable"
                assert [snat_text(app, key, c) for c in ("active", "total", "failures", "exhausted")] == ["0"] * 4
                assert snat_text(app, key, "pools") == "fixed"
            summary = str(app.query_one("#snat-pools").content)  # type: ignore[attr-defined]
            assert summary.startswith("SNAT  out: 2 addresses") and "used by fixed" in summary
            await pilot.press("s")
            assert app.members_table.selected_key == "web/m1" and app.display_errors == []

    asyncio.run(scenario())


def test_disable_and_force_offline_reach_the_appliance(appliance: Appliance) -> None:
    async def scenario() -> None:
        app = tui(appliance)
        async with app.run_test(size=SIZE) as pilot:
            await connected(app, pilot)
            await pilot.press("down")
            assert app.members_table.selected_key == "web/m2"
            await pilot.press("d")
            await wait_for(pilot, lambda: cell_text(app, "web/m2", "admin") == "disabled (api)", timeout=10)
            member = appliance.member("web", "m2")
            assert (member["admin_state"], member["admin_source"], member["available"]) == ("disabled", "api", False)

            await pilot.press("f")
            await wait_for(pilot, lambda: isinstance(app.screen, ConfirmScreen), what="the confirmation")
            await pilot.pause(0.3)
            assert appliance.member("web", "m2")["admin_state"] == "disabled"  # not before the answer
            await pilot.press("n")
            await wait_for(pilot, lambda: not isinstance(app.screen, ConfirmScreen))
            await pilot.pause(0.3)
            assert appliance.member("web", "m2")["admin_state"] == "disabled"

            await pilot.press("f")
            await wait_for(pilot, lambda: isinstance(app.screen, ConfirmScreen), what="the confirmation")
            await pilot.press("y")
            await wait_for(pilot, lambda: cell_text(app, "web/m2", "admin") == "forced_offline (api)", timeout=10)
            assert appliance.member("web", "m2")["admin_state"] == "forced_offline"

            await pilot.press("e")
            await wait_for(pilot, lambda: cell_text(app, "web/m2", "admin") == "enabled (api)", timeout=10)
            assert appliance.member("web", "m2")["admin_state"] == "enabled"
            await wait_for(pilot, lambda: any("m2" in line for line in app.event_lines), timeout=5, what="events")
            assert app.members_table.selected_key == "web/m2"

    asyncio.run(scenario())


def test_a_refusal_of_the_real_api_shows_its_reason(appliance: Appliance) -> None:
    async def scenario() -> None:
        app = tui(appliance)
        async with app.run_test(size=SIZE) as pilot:
            await connected(app, pilot)
            await pilot.press("down", "down", "down")
            assert app.members_table.selected_key == "fixed/f1"
            await pilot.press("d")
            await wait_for(pilot, lambda: "failed" in app.status_line, timeout=10, what="the refusal")
            assert app.status_line.startswith("fixed/f1: disabled failed: ")
            reason = app.status_line.removeprefix("fixed/f1: disabled failed: ")
            assert reason and "unreachable" not in reason
            assert any(severity == "error" and reason in message for message, severity in notifications(app))
            assert appliance.member("fixed", "f1")["admin_state"] == "enabled"
            assert app.is_running and app.connected

    asyncio.run(scenario())


def test_a_stopped_appliance_shows_disconnected_and_a_restarted_one_comes_back(appliance: Appliance) -> None:
    async def scenario() -> None:
        app = tui(appliance)
        async with app.run_test(size=SIZE) as pilot:
            await connected(app, pilot)
            await pilot.press("d")
            await wait_for(pilot, lambda: cell_text(app, "web/m1", "admin") == "disabled (api)", timeout=10)

            await asyncio.to_thread(appliance.stop)
            await wait_for(pilot, lambda: not app.connected and app.failures >= 2, timeout=15, what="disconnection")
            header = str(app.query_one("#header").content)  # type: ignore[attr-defined]
            assert "DISCONNECTED" in header and "retrying" in header
            assert app.query_one("#body").has_class("-stale")
            assert row_keys(app) == ["web/m1", "web/m2", "web/m3", "fixed/f1"]  # the last data stays
            await pilot.press("down", "d")  # an action while it is down: a message, not a crash
            await wait_for(pilot, lambda: "web/m2: disabled failed" in app.status_line, timeout=10)
            assert app.is_running

            await asyncio.to_thread(appliance.start)  # same port, same token, state file kept
            await wait_for(pilot, lambda: app.connected, timeout=15, what="the reconnection")
            assert not app.query_one("#body").has_class("-stale")
            # `static` (the default) pools are re-seeded from config at start: the TUI shows what the API says now
            now = await asyncio.to_thread(appliance.member, "web", "m1")
            await wait_for(pilot, lambda: cell_text(app, "web/m1", "admin") == admin_cell(now)[0], timeout=10)
            assert cell_text(app, "web/m2", "admin") == "enabled"

    asyncio.run(scenario())
