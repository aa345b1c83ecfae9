"""The live Textual TUI; it speaks only the admin API.

`make_app(client)` builds the app over any `tui.client.AdminApi`
(`AsyncAdminClient` for a real appliance, a fake in tests).
"""

from __future__ import annotations

from typing import Any

__all__ = ["ApplianceApp", "make_app"]


def __getattr__(name: str) -> Any:  # Textual is imported only when the app is wanted (`--help` stays fast)
    if name in __all__:
        from tui import app

        return getattr(app, name)
    raise AttributeError(name)
