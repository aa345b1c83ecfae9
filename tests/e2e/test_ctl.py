"""`appliance ctl` against the real appliance: both are subprocesses, as an operator runs them.

The members are loopback ports nobody listens on and no monitor checks them,
so they are `unchecked` (treated as up): admin-state changes show without any
traffic. Every wait is bounded; every process started here is stopped by PID.
"""

from __future__ import annotations

import json
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from appliance.ctl import UNREACHABLE_HINT
from helpers import free_port, stop_process

ROOT = Path(__file__).resolve().parents[2]
APPLIANCE = [sys.executable, "-m", "appliance"]

pytestmark = pytest.mark.skipif(
    not (ROOT / "appliance" / "controlplane" / "admin.py").exists(),
    reason="the admin API server (appliance/controlplane/admin.py) is not there yet",
)


def config_text(tmp: Path, admin_listen: str, vs_port: int, ports: list[int], extra: str = "") -> str:
    return f"""\
appliance: {{name: ctl-e2e, state_file: {tmp}/var/state.json, shutdown_grace: 1s, log: {{access: off}}}}
admin: {{listen: "{admin_listen}", token_file: {tmp}/var/admin.token}}
pools:
  web:
    members:
      - {{address: 127.0.0.1:{ports[0]}, name: m1}}
      - {{address: 127.0.0.1:{ports[1]}, name: m2}}
      - {{address: "[::1]:{ports[2]}"}}
{extra}
virtual_servers:
  web: {{listen: [127.0.0.1:{vs_port}], pool: web}}
"""


@dataclass
class Running:
    process: subprocess.Popen[bytes]
    conf: Path
    admin: str  # what --admin takes
    token_file: Path
    log: Path
    ports: list[int]
    vs_port: int

    def ctl(self, *args: str, admin: str | None = None, token_file: Path | None = None,
            cwd: Path | None = None, flags: bool = True) -> subprocess.CompletedProcess[str]:  # fmt: skip
        options = ["--admin", admin or self.admin, "--token-file", str(token_file or self.token_file)] if flags else []
        return subprocess.run(
            [*APPLIANCE, "ctl", *options, *args],
            capture_output=True,
            text=True,
            timeout=30,
            cwd=cwd or ROOT,
            check=False,
        )


def _connectable(admin: str) -> bool:
    if admin.startswith("unix:"):
        family, address = socket.AF_UNIX, admin[len("unix:") :]
    else:
        host, _, port = admin.removeprefix("http://").rpartition(":")
        family, address = socket.AF_INET, (host, int(port))  # type: ignore[assignment]
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.settimeout(0.5)
        try:
            probe.connect(address)
        except OSError:
            return False
        return True


def start(conf: Path, admin: str, token_file: Path, ports: list[int], vs_port: int, limit: float = 20.0) -> Running:
    log = conf.with_suffix(".log")
    with log.open("wb") as sink:
        process = subprocess.Popen([*APPLIANCE, "run", "-c", str(conf)], stdout=sink, stderr=sink, cwd=ROOT)
    running = Running(process, conf, admin, token_file, log, ports, vs_port)
    deadline = time.monotonic() + limit
    while True:
        if process.poll() is not None:
            raise AssertionError(f"the appliance exited with {process.returncode}:\n{log.read_text()}")
        if _connectable(admin) and token_file.exists():
            return running
        if time.monotonic() > deadline:
            stop(process)
            raise AssertionError(f"the admin API did not listen within {limit}s:\n{log.read_text()}")
        time.sleep(0.05)


def stop(process: subprocess.Popen[bytes]) -> None:
    stop_process(process)


@pytest.fixture
def appliance(tmp_path: Path) -> Iterator[Running]:
    ports, vs_port, admin_port = [free_port() for _ in range(3)], free_port(), free_port()
    conf = tmp_path / "appliance.yaml"
    conf.write_text(config_text(tmp_path, f"127.0.0.1:{admin_port}", vs_port, ports))
    running = start(conf, f"http://127.0.0.1:{admin_port}", tmp_path / "var" / "admin.token", ports, vs_port)
    try:
        yield running
    finally:
        stop(running.process)


def member(pools: list[dict], name: str) -> dict:  # type: ignore[type-arg]
    return next(m for p in pools if p["name"] == "web" for m in p["members"] if m["name"] == name)


def test_members_table_and_state_changes(appliance: Running) -> None:
    result = appliance.ctl("members")
    assert (result.returncode, result.stderr) == (0, "")
    lines = result.stdout.splitlines()
    assert lines[0] == "pool web  round_robin  3/3 available"
    assert lines[1].split() == ["NAME", "ADDRESS", "HEALTH", "ADMIN", "AVAIL", "RATIO", "PRIO", "ACTIVE", "TOTAL",
                                "RAMP", "SINCE", "LAST-CHECK"]  # fmt: skip
    p1, p2, p3 = appliance.ports
    assert [line.split()[:6] for line in lines[2:5]] == [
        ["m1", f"127.0.0.1:{p1}", "unchecked", "enabled", "(config)", "yes"],
        ["m2", f"127.0.0.1:{p2}", "unchecked", "enabled", "(config)", "yes"],
        [f"[::1]:{p3}", f"[::1]:{p3}", "unchecked", "enabled", "(config)", "yes"],
    ]

    result = appliance.ctl("disable", "web", "m1")
    assert (result.returncode, result.stderr) == (0, "")
    lines = result.stdout.splitlines()
    assert lines[0].split()[0] == "NAME"
    assert lines[1].split()[:6] == ["m1", f"127.0.0.1:{p1}", "unchecked", "disabled", "(api)", "no"]
    listed = json.loads(appliance.ctl("members", "--json").stdout)["pools"]
    assert (member(listed, "m1")["admin_state"], member(listed, "m1")["available"]) == ("disabled", False)

    assert appliance.ctl("enable", "web", "m1").returncode == 0
    assert member(json.loads(appliance.ctl("--json", "members").stdout)["pools"], "m1")["admin_state"] == "enabled"

    result = appliance.ctl("offline", "web", "m2", "--json")
    assert result.returncode == 0
    assert json.loads(result.stdout)["admin_state"] == "forced_offline"
    pool = json.loads(appliance.ctl("members", "web", "--json").stdout)
    assert [m["admin_state"] for m in pool["members"]] == ["enabled", "forced_offline", "enabled"]

    # a name with ':' '[' ']' (the address, by default) goes through percent-encoded
    result = appliance.ctl("disable", "web", f"[::1]:{p3}")
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[1].split()[:5] == [f"[::1]:{p3}", f"[::1]:{p3}", "unchecked", "disabled", "(api)"]
    lines = appliance.ctl("members", "web").stdout.splitlines()
    assert lines[0] == "pool web  round_robin  1/3 available"


def test_status(appliance: Running) -> None:
    result = appliance.ctl("status", "--json")
    assert result.returncode == 0, result.stderr
    status = json.loads(result.stdout)
    assert status["node"] == "ctl-e2e"
    assert status["ha"]["state"] == "standalone"
    assert [vs["name"] for vs in status["virtual_servers"]] == ["web"]
    assert [p["name"] for p in status["pools"]] == ["web"]
    text = appliance.ctl("status")
    assert text.returncode == 0
    lines = text.stdout.splitlines()
    assert lines[0] == "node     ctl-e2e"
    assert lines[3] == "ha       standalone"
    assert any(line.split()[:2] == ["web", "http"] and f"127.0.0.1:{appliance.vs_port}" in line for line in lines)
    assert any(line.split()[:3] == ["web", "round_robin", "3/3"] for line in lines)


def test_refusals_exit_1_with_the_reason(appliance: Running, tmp_path: Path) -> None:
    result = appliance.ctl("disable", "web", "ghost")
    assert (result.returncode, result.stdout) == (1, "")
    assert result.stderr.startswith("appliance ctl: ") and "ghost" in result.stderr
    assert len(result.stderr.splitlines()) == 1
    result = appliance.ctl("members", "nopool")
    assert result.returncode == 1 and "nopool" in result.stderr

    wrong = tmp_path / "wrong.token"
    wrong.write_text("not-the-token\n")
    result = appliance.ctl("members", token_file=wrong)
    assert (result.returncode, result.stdout) == (1, "")
    assert result.stderr.startswith("appliance ctl: ") and "authentication required" in result.stderr
    result = appliance.ctl("status", "--json", token_file=wrong)
    assert result.returncode == 1 and json.loads(result.stdout)["status"] == 401

    result = appliance.ctl("status", token_file=tmp_path / "none.token")
    assert result.returncode == 1 and f"admin token file {tmp_path / 'none.token'} does not exist" in result.stderr

    closed = free_port()
    result = appliance.ctl("status", admin=f"127.0.0.1:{closed}")
    assert result.returncode == 1
    assert (
        result.stderr == f"appliance ctl: cannot reach the admin API at http://127.0.0.1:{closed}: connection refused\n"
        + f"appliance ctl: {UNREACHABLE_HINT}\n"
    )


def test_reload_good_and_broken(appliance: Running) -> None:
    result = appliance.ctl("reload")
    assert (result.returncode, result.stdout, result.stderr) == (0, "reloaded\n", "")

    good = appliance.conf.read_text()
    appliance.conf.write_text(good.replace("    members:\n", "    retries: -1\n    colour: blue\n    members:\n"))
    result = appliance.ctl("reload")
    assert (result.returncode, result.stdout) == (1, "")
    lines = result.stderr.splitlines()
    assert lines[0] == "appliance ctl: configuration rejected"
    assert len(lines) >= 3
    assert all(re.match(rf"{re.escape(str(appliance.conf))}:\d+:\d+: ", line) for line in lines[1:]), lines
    assert any("retries" in line for line in lines[1:]) and any("colour" in line for line in lines[1:])
    result = appliance.ctl("reload", "--json")
    assert result.returncode == 1
    assert json.loads(result.stdout)["errors"] == lines[1:]
    # the running config stayed
    assert [m["name"] for m in json.loads(appliance.ctl("members", "web", "--json").stdout)["members"]][:2] == [
        "m1",
        "m2",
    ]

    spare = free_port()
    appliance.conf.write_text(
        good.replace("    members:\n", f"    members:\n      - {{address: 127.0.0.1:{spare}, name: m0}}\n")
    )
    result = appliance.ctl("reload")
    assert (result.returncode, result.stdout) == (0, "reloaded\n"), result.stderr
    names = [m["name"] for m in json.loads(appliance.ctl("members", "web", "--json").stdout)["members"]]
    assert names[:3] == ["m0", "m1", "m2"]


def test_defaults_come_from_conf_appliance_yaml(tmp_path: Path) -> None:
    """No flags at all: `--admin` and `--token-file` from ./conf/appliance.yaml, as SPEC §1 says."""
    ports, vs_port, admin_port = [free_port() for _ in range(3)], free_port(), free_port()
    (tmp_path / "conf").mkdir()
    conf = tmp_path / "conf" / "appliance.yaml"
    conf.write_text(config_text(tmp_path, f"127.0.0.1:{admin_port}", vs_port, ports))
    running = start(conf, f"http://127.0.0.1:{admin_port}", tmp_path / "var" / "admin.token", ports, vs_port)
    try:
        result = running.ctl("status", "--json", cwd=tmp_path, flags=False)
        assert result.returncode == 0, result.stderr
        assert json.loads(result.stdout)["node"] == "ctl-e2e"
        # -c names another config; flags still win over it
        result = running.ctl("-c", str(conf), "members", cwd=ROOT, flags=False)
        assert result.returncode == 0 and result.stdout.startswith("pool web"), result.stderr
        result = running.ctl("-c", str(conf), "--admin", f"127.0.0.1:{free_port()}", "status", cwd=ROOT, flags=False)
        assert result.returncode == 1 and "connection refused" in result.stderr
    finally:
        stop(running.process)


@pytest.mark.skipif(not hasattr(socket, "AF_UNIX"), reason="no unix sockets here")
def test_unix_socket_admin(tmp_path: Path) -> None:
    folder = Path(tempfile.mkdtemp(prefix="ctl", dir="/tmp"))  # short: sun_path holds 108 bytes
    try:
        ports, vs_port = [free_port() for _ in range(3)], free_port()
        conf = tmp_path / "appliance.yaml"
        conf.write_text(config_text(tmp_path, f"unix:{folder}/admin.sock", vs_port, ports))
        running = start(conf, f"unix:{folder}/admin.sock", tmp_path / "var" / "admin.token", ports, vs_port)
        try:
            result = running.ctl("disable", "web", "m2")
            assert result.returncode == 0, result.stderr
            assert result.stdout.splitlines()[1].split()[:5] == ["m2", f"127.0.0.1:{ports[1]}", "unchecked",
                                                                 "disabled", "(api)"]  # fmt: skip
            result = running.ctl("-c", str(conf), "members", "web", "--json", flags=False)
            assert result.returncode == 0, result.stderr
            assert json.loads(result.stdout)["members"][1]["admin_state"] == "disabled"
        finally:
            stop(running.process)
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def test_state_changes_survive_a_restart(tmp_path: Path) -> None:
    """A `static: false` pool keeps API changes across a restart (a static one is re-seeded from config)."""
    ports, vs_port, admin_port = [free_port() for _ in range(3)], free_port(), free_port()
    conf = tmp_path / "appliance.yaml"
    conf.write_text(config_text(tmp_path, f"127.0.0.1:{admin_port}", vs_port, ports, extra="    static: false"))
    admin, token_file = f"http://127.0.0.1:{admin_port}", tmp_path / "var" / "admin.token"
    first = start(conf, admin, token_file, ports, vs_port)
    try:
        assert first.ctl("offline", "web", "m1").returncode == 0
    finally:
        stop(first.process)
    assert first.process.returncode == 0
    again = start(conf, admin, token_file, ports, vs_port)
    try:
        result = again.ctl("members", "web")
        assert result.returncode == 0, result.stderr
        row = result.stdout.splitlines()[2].split()
        assert row[:4] == ["m1", f"127.0.0.1:{ports[0]}", "unchecked", "forced_offline"]
        assert row[5] == "no"
    finally:
        stop(again.process)
