"""The walls of the house: cores are pure, the TUI never touches trio."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
CORE_FORBIDDEN = {"trio", "socket", "ssl", "time", "threading", "asyncio", "select", "selectors"}
TUI_FORBIDDEN = {"trio", "appliance.dataplane", "appliance.controlplane"}


def imports(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
    return found


def offending(module: str, forbidden: set[str]) -> bool:
    return any(module == f or module.startswith(f + ".") for f in forbidden)


@pytest.mark.parametrize(
    ("folder", "forbidden"),
    [("appliance/core", CORE_FORBIDDEN), ("tui", TUI_FORBIDDEN)],
)
def test_folder_imports_nothing_forbidden(folder: str, forbidden: set[str]) -> None:
    files = sorted((ROOT / folder).rglob("*.py"))
    assert files, f"no python files under {folder}"
    bad = {str(f.relative_to(ROOT)): sorted(m for m in imports(f) if offending(m, forbidden)) for f in files}
    assert {f: m for f, m in bad.items() if m} == {}


def test_the_scan_catches_a_forbidden_import(tmp_path: Path) -> None:
    sample = tmp_path / "x.py"
    sample.write_text("import time\nfrom trio import sleep\nimport socketserver\n")
    assert sorted(m for m in imports(sample) if offending(m, CORE_FORBIDDEN)) == ["time", "trio"]
