"""`appliance-tui` (also `python -m tui`): the live TUI over the admin API."""

from __future__ import annotations

import argparse
import sys

DEFAULT_CONFIG = "conf/appliance.yaml"
MIN_INTERVAL = 0.2  # faster than this only loads the appliance


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="appliance-tui", description="The appliance's live view, over its admin API.")
    parser.add_argument(
        "--admin", metavar="URL", help="admin API (default: the config's admin.listen, else http://127.0.0.1:9900)"
    )
    parser.add_argument(
        "--token-file", metavar="FILE", help="bearer token file (default: the config's admin.token_file)"
    )
    parser.add_argument(
        "-c", "--config", default=DEFAULT_CONFIG, help=f"config to take the defaults from (default {DEFAULT_CONFIG})"
    )
    parser.add_argument("--interval", type=float, default=1.0, help="seconds between refreshes (default 1)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        from appliance.client import resolve
    except ImportError as exc:
        print(f"appliance-tui: the admin client is not available: {exc}", file=sys.stderr)
        return 1
    from tui.client import AsyncAdminClient

    try:
        url, token = resolve(args.admin, args.token_file, args.config)
        client = AsyncAdminClient.connect(url, token)
    except Exception as exc:  # noqa: BLE001 - a missing or empty token file, an unusable URL: say which, no traceback
        print(f"appliance-tui: {exc or type(exc).__name__}", file=sys.stderr)
        return 1

    from tui.app import make_app

    try:
        make_app(client, interval=max(args.interval, MIN_INTERVAL)).run()
    finally:
        client.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
