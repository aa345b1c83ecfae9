"""Numbers as operators read them, shared by `appliance ctl` and the TUI (stdlib only)."""

from __future__ import annotations


def duration(seconds: float) -> str:
    """A compact age: 42s, 12m05s, 3h07m, 2d04h (negative counts as 0)."""
    s = max(0, int(seconds))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    if s < 86400:
        return f"{s // 3600}h{s % 3600 // 60:02d}m"
    return f"{s // 86400}d{s % 86400 // 3600:02d}h"
