"""Shared test setup.

pytest-trio runs in trio_mode (pyproject.toml): every `async def` test runs
under trio. The TUI runs on asyncio, so its tests (a later release) are plain
`def` tests that call `asyncio.run(...)`.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
