"""Two real `appliance run` processes as an HA pair on loopback: takeover, preemption, pauses, state sync.

Timings use `advert_interval: 200ms`: the backup (priority 100) takes over
3 × 0.2 + (256 − 100)/256 × 0.2 ≈ 0.72 s after the master's last advert. Where
the issue asks for "within the master-down interval plus one advert", the
test allows that plus SCHEDULING_SLACK for two busy processes on a shared CI
machine; the bench (`bench/ha_failover.py`) measures the real gap.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from helpers import free_port, stop_process

APPLIANCE = [sys.executable, "-m", "appliance"]
INTERVAL = 0.2
MASTER_DOWN_B = 3 * INTERVAL + (256 - 100) / 256 * INTERVAL
SCHEDULING_SLACK = 0.5


@dataclass
class Node:
    name: str
    conf: Path
    admin: int
    token: Path
    log: Path
    process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.process = subprocess.Popen([*APPLIANCE, "run", "-c", str(self.conf)], stderr=self.log.open("ab"))

    def stop(self, sig: int = signal.SIGTERM) -> None:
        stop_process(self.process, sig)

    def api(self, path: str, method: str = "GET", body: object = None) -> dict:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(f"http://127.0.0.1:{self.admin}{path}", data=data, method=method)
        request.add_header("Authorization", f"Bearer {self.token.read_text().strip()}")
        with urllib.request.urlopen(request, timeout=2) as response:
            return json.loads(response.read())

    def ha_state(self) -> str | None:
        try:
            return str(self.api("/api/v1/status")["ha"]["state"])
        except OSError:
            return None

    def listening(self) -> bool | None:
        try:
            return self.api("/api/v1/status")["virtual_servers"][0]["state"] == "listening"
        except OSError:
            return None


def wait_for(check, timeout: float = 10.0, step: float = 0.02) -> float:
    """Polls `check` until true (bounded); the seconds it took."""
    began = time.monotonic()
    while not check():
        if time.monotonic() - began > timeout:
            raise AssertionError(f"not true within {timeout}s")
        time.sleep(step)
    return time.monotonic() - began


def vip_answers(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=0.3) as response:
            return response.status == 200
    except OSError:
        return False


@pytest.fixture
def pair(tmp_path: Path) -> Iterator[tuple[Node, Node, int]]:
    secret = tmp_path / "ha.key"
    secret.write_bytes(os.urandom(32).hex().encode())
    origin = subprocess.Popen([sys.executable, "-m", "bench.origin", "--port", str(origin_port := free_port())],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    vip = free_port()
    udp = {"a": free_port(), "b": free_port()}
    nodes = []
    for name, priority, peer in (("a", 150, "b"), ("b", 100, "a")):
        admin = free_port()
        conf = tmp_path / f"{name}.yaml"
        conf.write_text(f"""\
appliance: {{name: lb-{name}, state_file: {tmp_path}/{name}/state.json, shutdown_grace: 1s, log: {{access: "off"}}}}
admin: {{listen: 127.0.0.1:{admin}, token_file: {tmp_path}/{name}/admin.token}}
pools:
  web:
    static: false
    members: [{{address: 127.0.0.1:{origin_port}, name: m1}}, {{address: 127.0.0.1:9, name: m2}}]
virtual_servers:
  web: {{listen: [127.0.0.1:{vip}], pool: web}}
ha:
  priority: {priority}
  advert_interval: 200ms
  listen: 127.0.0.1:{udp[name]}
  peers: [127.0.0.1:{udp[peer]}]
  secret_file: {secret}
  hooks:
    master: [[sh, -c, 'echo "$APPLIANCE_STATE $APPLIANCE_VIPS" >> {tmp_path}/{name}.hooks']]
    backup: [[sh, -c, 'echo "$APPLIANCE_STATE $APPLIANCE_REASON" >> {tmp_path}/{name}.hooks']]
""")
        nodes.append(Node(name, conf, admin, tmp_path / name / "admin.token", tmp_path / f"{name}.log"))
    a, b = nodes
    try:
        wait_for(lambda: port_open(origin_port))
        for node in nodes:
            node.start()
        wait_for(lambda: a.ha_state() == "master" and b.ha_state() == "backup")
        yield a, b, vip
    finally:
        for node in nodes:
            node.stop(signal.SIGKILL)
        origin.terminate()
        origin.wait(timeout=10)


def port_open(port: int) -> bool:
    import socket

    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


def test_kill_9_of_the_master_the_backup_serves_the_vip_within_the_master_down_interval(pair) -> None:
    a, b, vip = pair
    wait_for(lambda: vip_answers(vip))
    a.stop(signal.SIGKILL)
    gap = wait_for(lambda: vip_answers(vip), timeout=5, step=0.01)
    assert b.ha_state() == "master"
    assert gap <= MASTER_DOWN_B + INTERVAL + SCHEDULING_SLACK, gap


def test_the_old_master_back_with_preempt_takes_over_and_the_backup_releases_the_vip(pair) -> None:
    a, b, vip = pair
    a.stop(signal.SIGKILL)
    wait_for(lambda: b.ha_state() == "master" and b.listening())
    a.start()
    wait_for(lambda: a.ha_state() == "master" and b.ha_state() == "backup")
    wait_for(lambda: a.listening() is True and b.listening() is False)
    assert vip_answers(vip)


def test_sigstop_beyond_the_interval_then_sigcont_leaves_exactly_one_master(pair) -> None:
    a, b, _ = pair
    assert a.process is not None
    a.process.send_signal(signal.SIGSTOP)
    wait_for(lambda: b.ha_state() == "master")
    time.sleep(MASTER_DOWN_B)  # well beyond the interval
    a.process.send_signal(signal.SIGCONT)
    time.sleep(2 * INTERVAL + SCHEDULING_SLACK)
    states = sorted([a.ha_state(), b.ha_state()])
    assert states == ["backup", "master"], states


def test_a_graceful_stop_of_the_master_hands_over_at_once_and_runs_its_backup_hooks(pair) -> None:
    a, b, vip = pair
    a.stop(signal.SIGTERM)  # priority 0 first: the backup waits only its skew time
    wait_for(lambda: b.ha_state() == "master", timeout=2)
    wait_for(lambda: vip_answers(vip), timeout=2)
    hooks = a.log.with_name("a.hooks").read_text().splitlines()
    assert hooks[-2:] == ["master 127.0.0.1", "backup shutdown"]  # the VIP it added is released
    assert b.log.with_name("b.hooks").read_text().splitlines()[-1] == "master 127.0.0.1"


def test_an_admin_change_on_the_master_is_visible_on_the_backup(pair) -> None:
    a, b, _ = pair
    a.api("/api/v1/pools/web/members/m2/state", "PUT", {"state": "disabled"})
    a.api("/api/v1/pools/web/members", "POST", {"address": "127.0.0.1:10", "name": "m3"})

    def synced() -> bool:
        members = {m["name"]: m for m in b.api("/api/v1/pools/web")["members"]}
        return "m3" in members and members["m2"]["admin_state"] == "disabled"

    wait_for(synced, timeout=5)
    member = b.api("/api/v1/pools/web")["members"][1]
    assert member["admin_source"] == "peer lb-a"
    events = [e["message"] for e in b.api("/api/v1/events")["events"]]
    assert "runtime changes taken from the peer" in events


def test_the_ha_state_is_visible_in_the_status_and_the_metrics(pair) -> None:
    a, b, _ = pair
    ha = b.api("/api/v1/status")["ha"]
    assert (ha["state"], ha["priority"], ha["effective_priority"], ha["master"]) == ("backup", 100, 100, "lb-a")
    (peer,) = ha["peers"]
    assert (peer["name"], peer["state"], peer["priority"]) == ("lb-a", "master", 150)
    assert time.time() - peer["last_advert"] < 1.0
    assert [t["to"] for t in ha["transitions"]][-1] == "backup"
    request = urllib.request.Request(f"http://127.0.0.1:{b.admin}/metrics")
    request.add_header("Authorization", f"Bearer {b.token.read_text().strip()}")
    with urllib.request.urlopen(request, timeout=2) as response:
        metrics = response.read().decode()
    assert 'appliance_ha_state{state="backup"} 1.0' in metrics
    assert 'appliance_ha_peer_state{peer="lb-a",state="master"} 1.0' in metrics
    assert "appliance_ha_effective_priority 100.0" in metrics
