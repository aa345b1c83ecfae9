"""The README's pictures are made from demo data; they must keep rendering."""

from __future__ import annotations

import asyncio
from pathlib import Path

from tui.screenshot import screenshot


def test_the_screenshot_renders_the_demo_node(tmp_path: Path) -> None:
    out = asyncio.run(screenshot(tmp_path / "docs" / "tui.svg"))
    svg = out.read_text()
    assert svg.startswith("<svg")
    for text in ("lb-a", "web1", "forced_offline&#160;(api)", "L7&#160;status&#160;503", "HA&#160;master"):
        assert text in svg, text


def test_the_snat_screenshot_renders_the_demo_snat_pools(tmp_path: Path) -> None:
    out = asyncio.run(screenshot(tmp_path / "docs" / "tui-snat.svg", snat=True))
    svg = out.read_text()
    assert svg.startswith("<svg")
    for text in ("SNAT&#160;addresses", "10.0.9.2", "quarantined&#160;for&#160;api", "draining", "db-out"):
        assert text in svg, text
    assert "api-standby" not in svg  # the members table is not shown
