"""`appliance-tui`: the live TUI (arrives with the admin API)."""

from __future__ import annotations

import sys


def main(argv: list[str] | None = None) -> int:
    print("appliance-tui: the TUI needs the admin API, which is not part of this release yet", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
