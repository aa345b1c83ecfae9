"""Smoke test of the HA failover bench (`bench.ha_failover`): its config, its arithmetic, and one tiny run.

The tiny run is the whole scenario at small scale: 4 keep-alive clients and 1 new-connection client for
4.5 s, lb-a killed 0.7 s in and restarted 1.4 s in (it takes the VIP back about 1.3 s later). About 8 s
in all; bounded by a timeout after which the bench is stopped with SIGTERM (it then stops its own
processes by PID).
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

# bench/ is not an installed package: make it importable however pytest is started.
_REPO = Path(__file__).resolve().parents[2]
if str(_REPO) not in sys.path:
    sys.path.insert(0, str(_REPO))

from appliance.core import ha
from appliance.core.config import parse_config
from bench.ha_failover import (
    Phase,
    analyse,
    dark_time,
    failure_streak,
    ha_config,
    master_down_interval,
)


@pytest.mark.parametrize(("priority", "interval"), [(100, 0.2), (150, 0.2), (1, 1.0), (254, 0.05)])
def test_master_down_interval_is_the_spec_formula(priority: int, interval: float) -> None:
    assert master_down_interval(priority, interval) == pytest.approx(ha.master_down_interval(priority, interval))
    assert master_down_interval(100, 0.2) == pytest.approx(0.6 + 156 / 256 * 0.2)


def test_config_is_one_node_of_the_pair(tmp_path: Path) -> None:
    text = ha_config("lb-b", 100, 18000, 18001, 18002, 18003, 18004, tmp_path / "ha.key", tmp_path, 0.2)
    config = parse_config(text, str(tmp_path / "appliance.yaml"))
    assert config.ha is not None
    assert (config.ha.priority, config.ha.advert_interval, config.ha.preempt) == (100, 0.2, True)
    assert [str(p) for p in config.ha.peers] == ["127.0.0.1:18004"]
    assert str(config.ha.listen) == "127.0.0.1:18003"
    assert [str(e) for e in config.virtual_servers["web"].endpoints] == ["127.0.0.1:18000"]
    assert [str(m.address) for m in config.pools["web"].members] == ["127.0.0.1:18001"]


def test_analysis_of_a_kill() -> None:
    # (start, end, client, outcome, node); the kill at 1.0, lb-b answers from 1.6
    records = [
        (0.80, 0.90, "ka", "ok", "web-a"),
        (0.95, 0.99, "new", "ok", "web-a"),
        (0.98, 1.02, "ka", "reset", ""),  # in flight at the kill: the kill's
        (1.05, 1.05, "ka", "refused", ""),
        (1.10, 1.10, "new", "refused", ""),
        (1.20, 1.70, "ka", "timeout", ""),
        (1.55, 1.60, "ka", "ok", "web-b"),
        (1.65, 1.66, "new", "ok", "web-b"),
    ]
    steady = analyse(records, Phase("steady", 0.0, 1.0), 2.0)
    assert (steady.requests, steady.failed, steady.streak) == (2, 0, 0)
    kill = analyse(records, Phase("kill", 1.0, 2.0, 1.0, "the kill", "web-b"), 2.0)
    assert kill.requests == 6
    assert kill.outcomes == {"ok": 2, "refused": 2, "reset": 1, "closed": 0, "timeout": 1, "other": 0}
    assert kill.gap == pytest.approx(0.6)
    assert kill.dark == pytest.approx(1.60 - 0.99)  # from the last 2xx before the kill
    assert kill.dark_new == pytest.approx(1.66 - 0.99)
    assert kill.streak == 3  # by end time: reset, refused, refused; the timeout ends after lb-b's first 2xx
    assert kill.served == {"web-b": 2}
    assert failure_streak([]) == 0
    assert dark_time([], 0.0, 1.0, 1.0) == pytest.approx(1.0)  # never answered: the whole phase


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            cmdline = f.read()
    except OSError:
        return False
    return b"bench-ha-" in cmdline or b"bench.origin" in cmdline  # not a PID reused by something else


def test_tiny_run(tmp_path: Path) -> None:
    out = tmp_path / "ha.json"
    argv = [sys.executable, "-m", "bench.ha_failover", "-c", "4", "--fresh", "1", "-d", "4.5", "--kill-after", "0.7",
            "--handback", "--restart-after", "1.4", "--no-pin", "--json", str(out)]
    began = time.monotonic()
    proc = subprocess.Popen(argv, cwd=_REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        stdout, stderr = proc.communicate(timeout=25)
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGTERM)  # the bench stops what it started, in its finally
        stdout, stderr = proc.communicate(timeout=20)
        pytest.fail(f"the bench did not finish within 25 s\n{stdout}\n{stderr}")
    elapsed = time.monotonic() - began
    assert out.exists(), stdout + stderr
    result = json.loads(out.read_text())
    steady, kill, handback = result["phases"]
    assert steady["failed"] == 0, stdout
    assert steady["served_by"] and set(steady["served_by"]) == {"web-a"}, stdout
    # The backup took over and answered: within a loose bound here (a busy CI machine); the aim is the bench's.
    assert kill["gap_s"] is not None and 0.0 < kill["gap_s"] < 3.0, stdout
    assert kill["failed"] > 0 and kill["served_by"].get("web-b", 0) > 0, stdout
    assert any(e["node"] == "lb-b" and e["to"] == "master" for e in result["events"]), result["events"]
    # The old master came back and took the VIP back: new connections reach web-a again.
    assert any(e["node"] == "lb-a" and e["to"] == "master" for e in result["events"]), result["events"]
    assert handback["gap_s"] is not None and handback["served_by"].get("web-a", 0) > 0, stdout
    assert result["master_down_interval_s"] == pytest.approx(0.7219, abs=1e-3)
    assert proc.returncode == (0 if result["aim_met"] else 1), stdout + stderr
    assert "result: aim" in stdout
    # Every process it started is gone: origins, lb-b, and lb-a both times.
    pids = [pid for group in result["pids"].values() for pid in group]
    assert len(result["pids"]["lb-a"]) == 2 and len(pids) == 5, result["pids"]
    assert not [pid for pid in pids if _alive(pid)], pids
    assert elapsed < 15, elapsed
