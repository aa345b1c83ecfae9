"""Smoke test of the SNAT scale bench (`bench.snat`): its config, and one tiny run of both scenarios.

The run uses a private network namespace with a 40-port ephemeral range, so one SNAT address runs out
at about 40 connections and four at about 160, within 200 connections and a few seconds.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

# bench/ is not an installed package: make it importable however pytest is started.
_REPO = Path(__file__).resolve().parents[2]
if str(_REPO) not in sys.path:
    sys.path.insert(0, str(_REPO))

from appliance.core.config import parse_config
from bench.snat import fitting_range, max_connections, snat_config

RANGE = (40000, 40039)  # 40 ports
TARGET = 200


@pytest.mark.parametrize(("count", "listed"), [(1, "[127.0.0.30]"), (4, "[127.0.0.30-127.0.0.33]")])
def test_config_is_one_member_behind_a_snat_pool(count: int, listed: str, tmp_path: Path) -> None:
    text = snat_config(18001, 18002, count, tmp_path / "access.log")
    assert f"addresses: {listed}" in text
    config = parse_config(text, str(tmp_path / "appliance.yaml"))
    pool = config.pools["sink"]
    assert pool.snat == "out"
    assert [str(m.address) for m in pool.members] == ["127.0.0.1:18002"]
    assert config.snat_pools["out"].addresses == tuple(f"127.0.0.{30 + i}" for i in range(count))
    assert config.virtual_servers["snat"].mode.value == "tcp"


def test_fd_budget() -> None:
    assert max_connections(20_000) == (20_000 - 256) // 2
    low, high = fitting_range(max_connections(20_000), 4)
    assert (high - low + 1) % 100 == 0
    assert 4 * (high - low + 1) * 1.1 <= max_connections(20_000)


def test_tiny_run(tmp_path: Path) -> None:
    out = tmp_path / "snat.json"
    argv = [sys.executable, "-m", "bench.snat", "--port-range", f"{RANGE[0]}-{RANGE[1]}", "--target", str(TARGET),
            "--timeout", "8", "--no-pin", "--json", str(out)]
    began = time.monotonic()
    proc = subprocess.run(argv, cwd=_REPO, capture_output=True, text=True, timeout=30, check=False)
    elapsed = time.monotonic() - began
    if proc.returncode == 2 and "private network namespace" in proc.stderr:
        pytest.skip(f"no private network namespace here: {proc.stderr.strip()}")
    assert out.exists(), proc.stdout + proc.stderr
    result = json.loads(out.read_text())
    runs = {r["addresses"]: r for r in result["runs"]}
    assert set(runs) == {1, 4}, proc.stdout + proc.stderr
    for r in runs.values():
        assert r["status"] == "ok", r["reason"]
        assert r["wall"], r  # each run went past its addresses' ports
        assert r["opened"]["errors_before_limit"] == 0, proc.stdout
        assert r["opened"]["errors"]["dropped"] == 0, proc.stdout
        assert r["rss_before"] and r["rss_after"] and r["rss_after"] >= r["rss_before"]
        assert r["sink"]["held"] == r["held"]
    one, four = runs[1]["held"], runs[4]["held"]
    assert 0.9 * 40 <= one <= 40, proc.stdout
    assert four >= 3.5 * one, proc.stdout
    assert set(runs[4]["sink"]["sources"]) == {f"127.0.0.{30 + i}" for i in range(4)}, proc.stdout
    assert result["ok"] and proc.returncode == 0, proc.stdout + proc.stderr
    assert "4 addresses vs 1" in proc.stdout
    assert elapsed < 20
