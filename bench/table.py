"""Plain-text tables and ratios for the tcp and tls suites (the http suite keeps its own layout in run.py)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from bench.run import Scenario


@dataclass
class Column:
    header: str
    width: int
    cell: Callable[[Scenario], str]
    left: bool = False


def fmt_ratio(x: float | None) -> str:
    return f"{x:.2f}" if x is not None else "-"


def fmt_pct(x: float | None) -> str:
    return f"{x:.0f}%" if x is not None else "-"


def cpu_pair(sc: Scenario) -> str:
    return "/".join(f"{sc.cpu_busy_pct[c]:.0f}" for c in ("cpu0", "cpu1") if c in sc.cpu_busy_pct) or "-"


def members(sc: Scenario) -> str:
    if sc.load is None:
        return "-"
    return " ".join(f"{k}={v}" for k, v in sorted(sc.load.members.items())) or "-"


NAME_WIDTH = 14


def format_table(rows: list[Scenario], columns: list[Column]) -> str:
    """One line per row; a row that did not run shows its status and reason instead of figures."""
    cells = [f"{c.header:<{c.width}}" if c.left else f"{c.header:>{c.width}}" for c in columns]
    hdr = f"{'scenario':<{NAME_WIDTH}} " + " ".join(cells)
    lines = [hdr.rstrip(), "-" * len(hdr.rstrip())]
    for sc in rows:
        if sc.status != "ok":
            reason = sc.reason.replace("\n", "\n" + " " * (NAME_WIDTH + 1))
            lines.append(f"{sc.name:<{NAME_WIDTH}} {sc.status.upper()}: {reason}")
            continue
        out = []
        for c in columns:
            text = c.cell(sc)
            out.append(f"{text:<{c.width}}" if c.left else f"{text:>{c.width}}")
        lines.append((f"{sc.name:<{NAME_WIDTH}} " + " ".join(out)).rstrip())
    return "\n".join(lines)


def fill_ratios(rows: list[Scenario], refs: dict[str, str], value: Callable[[Scenario], float | None]) -> None:
    """``sc.ratios[label] = value(sc) / value(row named refs[label])`` for every row that ran.

    A reference that did not run (or measured 0) leaves its ratio out.
    """
    by = {sc.name: sc for sc in rows if sc.status == "ok"}
    for label, ref_name in refs.items():
        ref = by.get(ref_name)
        ref_value = value(ref) if ref is not None else None
        if not ref_value:
            continue
        for sc in by.values():
            v = value(sc)
            if v is not None:
                sc.ratios[label] = v / ref_value
