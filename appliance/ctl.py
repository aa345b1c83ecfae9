"""`appliance ctl`: the scripting front to the admin API (SPEC §1).

    appliance ctl [--admin URL] [--token-file F] [-c CONFIG] [--json] [--timeout S] COMMAND
      status                       node, version, uptime, HA, virtual servers, pools summary
      members [POOL]               a table of members per pool (every pool without POOL)
      enable|disable|offline POOL MEMBER
                                   set the admin state (offline = forced_offline); prints the member
      reload                       re-read the config: "reloaded", or the errors

The options may also follow the command (`appliance ctl members --json`).
`--json` prints the API's JSON answer instead of tables: `status` -> GET
/api/v1/status, `members POOL` -> GET /api/v1/pools/POOL, `members` ->
`{"pools": [...]}` (the `pools` of the status), `enable|disable|offline` -> the
member, `reload` -> `{"reloaded": true}`; an API error is then also printed to
stdout as `{"error", "status", "errors"}`.

Exit status: 0 success; 1 the API refused (`appliance ctl: <reason>` on stderr,
then one line per reload error, as `appliance check` prints them), the API
cannot be reached, or the token file cannot be read; 2 usage errors.

Tables are plain text, columns aligned with spaces; colour only when stdout is
a terminal and NO_COLOR is not set. Times in state are `5s`, `3m12s`, `2h04m`,
`3d04h`; ramp is a percentage of the member's full share.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Sequence
from typing import Any, TextIO

from appliance import humanize
from appliance.client import (
    DEFAULT_ADMIN,
    DEFAULT_CONFIG,
    AdminClient,
    AdminError,
    AdminUnreachable,
    ClientSetupError,
    resolve,
)

PROG = "appliance ctl"
STATES = {"enable": "enabled", "disable": "disabled", "offline": "forced_offline"}
MEMBER_COLUMNS = (
    "NAME", "ADDRESS", "HEALTH", "ADMIN", "AVAIL", "RATIO", "PRIO", "ACTIVE", "TOTAL", "RAMP", "SINCE", "LAST-CHECK",
)  # fmt: skip
_RIGHT = {"RATIO", "PRIO", "ACTIVE", "TOTAL", "RAMP", "SINCE", "UP", "DOWN", "UNKNOWN", "UNCHECKED",
          "DISABLED", "OFFLINE"}  # fmt: skip

# ---------------------------------------------------------------- arguments


def _shared(parser: argparse.ArgumentParser, suppress: bool) -> None:
    """The options, on `ctl` itself and (with SUPPRESS defaults) after each command."""

    def default(value: Any) -> Any:
        return argparse.SUPPRESS if suppress else value

    parser.add_argument(
        "--admin", metavar="URL", default=default(None),
        help=f"admin API: http://HOST:PORT or unix:PATH (default: admin.listen of the config, else {DEFAULT_ADMIN})",
    )  # fmt: skip
    parser.add_argument(
        "--token-file", metavar="FILE", default=default(None),
        help="bearer token file (default: admin.token_file of the config)",
    )  # fmt: skip
    parser.add_argument(
        "-c", "--config", metavar="CONFIG", default=default(None),
        help=f"config file the defaults come from (default {DEFAULT_CONFIG}, when it exists)",
    )  # fmt: skip
    parser.add_argument("--json", action="store_true", default=default(False), help="print the API's JSON")
    parser.add_argument(
        "--timeout", metavar="SECONDS", type=float, default=default(5.0), help="per request (default 5)"
    )


def configure_parser(parser: argparse.ArgumentParser) -> None:
    """Fill the `ctl` subparser of `appliance`."""
    _shared(parser, suppress=False)
    commands = parser.add_subparsers(dest="ctl_command", required=True, metavar="COMMAND")
    sub = commands.add_parser("status", help="node, version, uptime, HA state, virtual servers, pools")
    _shared(sub, suppress=True)
    sub = commands.add_parser("members", help="the members of POOL (of every pool without POOL)")
    sub.add_argument("pool", nargs="?", metavar="POOL")
    _shared(sub, suppress=True)
    for command, state in STATES.items():
        sub = commands.add_parser(command, help=f"set a member's admin state to {state}")
        sub.add_argument("pool", metavar="POOL")
        sub.add_argument("member", metavar="MEMBER")
        _shared(sub, suppress=True)
    sub = commands.add_parser("reload", help="re-read the config; prints the errors if it is rejected")
    _shared(sub, suppress=True)


def main(argv: Sequence[str] | None = None) -> int:
    """`python -m appliance.ctl ...`: the same as `appliance ctl ...`."""
    parser = argparse.ArgumentParser(prog=PROG, description="Script the appliance's admin API.")
    configure_parser(parser)
    return run(parser.parse_args(argv))


# ---------------------------------------------------------------- running


def run(args: argparse.Namespace, out: TextIO | None = None, err: TextIO | None = None) -> int:
    out = out or sys.stdout
    err = err or sys.stderr
    if args.config is not None and not os.path.exists(args.config):
        print(f"{PROG}: config file {args.config} does not exist", file=err)
        return 2
    if args.timeout is not None and args.timeout <= 0:
        print(f"{PROG}: --timeout must be > 0", file=err)
        return 2
    try:
        url, token = resolve(args.admin, args.token_file, args.config or DEFAULT_CONFIG)
    except ClientSetupError as exc:
        print(f"{PROG}: {exc}", file=err)
        return 1
    printer = Printer(out, colour=_colour(out))
    with AdminClient(url, token, timeout=args.timeout) as client:
        try:
            return _command(args, client, printer)
        except AdminError as exc:
            if args.json:
                printer.json({"error": exc.message, "status": exc.status, "errors": exc.errors})
            print(f"{PROG}: {exc.message}", file=err)
            for line in exc.errors:
                print(line, file=err)
            return 1
        except (AdminUnreachable, ClientSetupError) as exc:
            print(f"{PROG}: {exc}", file=err)
            if isinstance(exc, AdminUnreachable):
                print(f"{PROG}: {UNREACHABLE_HINT}", file=err)
            return 1


UNREACHABLE_HINT = "is the appliance running, with an `admin:` section in its config? (no section: no API)"


def _command(args: argparse.Namespace, client: AdminClient, printer: Printer) -> int:
    command = args.ctl_command
    if command == "status":
        status = client.status()
        if args.json:
            printer.json(status)
        else:
            printer.status(status)
    elif command == "members" and args.pool is not None:
        pool = client.pool(args.pool)
        if args.json:
            printer.json(pool)
        else:
            printer.pools([pool], pool.get("time"))
    elif command == "members":
        status = client.status()
        pools = status.get("pools") or []
        if args.json:
            printer.json({"pools": pools})
        else:
            printer.pools(pools, status.get("time"))
    elif command in STATES:
        member = client.set_state(args.pool, args.member, STATES[command])
        if args.json:
            printer.json(member)
        else:
            printer.members([member], None)
    elif command == "reload":
        answer = client.reload()
        if args.json:
            printer.json(answer)
        else:
            printer.line("reloaded")
    else:  # pragma: no cover - argparse allows only the commands above
        raise AssertionError(command)
    return 0


def _colour(stream: TextIO) -> bool:
    if os.environ.get("NO_COLOR"):
        return False
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


# ---------------------------------------------------------------- formatting


def duration(seconds: float | None) -> str:
    """5s, 3m12s, 2h04m, 3d04h; "-" when unknown."""
    return "-" if seconds is None else humanize.duration(seconds)


def latency(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    if seconds < 1:
        return f"{seconds * 1000:.1f}ms"
    return f"{seconds:.2f}s"


def ramp(value: Any) -> str:
    if not isinstance(value, (int, float)):
        return "-"
    return f"{round(value * 100)}%"


def last_check(check: Any, now: float) -> str:
    if not isinstance(check, dict):
        return "-"
    reason = str(check.get("reason") or ("ok" if check.get("ok") else "failed"))
    at = check.get("at")
    age = f", {duration(now - at)} ago" if isinstance(at, (int, float)) else ""
    return f"{reason} ({latency(check.get('latency'))}{age})"


def member_row(member: dict[str, Any], now: float, draining: bool = False) -> list[str]:
    """One member as the cells of MEMBER_COLUMNS."""
    admin = str(member.get("admin_state", "?"))
    if member.get("admin_source"):
        admin += f" ({member['admin_source']})"
    if draining:
        admin = f"removed, draining ({member.get('admin_state', '?')})"
    since = member.get("since")
    return [
        str(member.get("name", "?")),
        str(member.get("address", "?")),
        str(member.get("health", "?")),
        admin,
        "yes" if member.get("available") else "no",
        str(member.get("ratio", "-")),
        str(member.get("priority_group", "-")),
        str(member.get("active_connections", "-")),
        str(member.get("total_connections", "-")),
        ramp(member.get("ramp")),
        duration(now - since if isinstance(since, (int, float)) else None),
        last_check(member.get("last_check"), now),
    ]


def table(headers: Sequence[str], rows: Sequence[Sequence[str]], paint: Any = None) -> list[str]:
    """Aligned lines: two spaces between columns; numbers right-aligned; `paint(header, text, padded)`."""
    widths = [max([len(h), *(len(row[i]) for row in rows)]) for i, h in enumerate(headers)]
    lines = []
    for index, row in enumerate([list(headers), *rows]):
        cells = []
        for header, width, text in zip(headers, widths, row, strict=True):
            padded = text.rjust(width) if header in _RIGHT and index else text.ljust(width)
            cells.append(paint(header, text, padded) if paint and index else padded)
        lines.append("  ".join(cells).rstrip())
    return lines


_STYLE = {
    ("HEALTH", "up"): "32", ("HEALTH", "unchecked"): "32", ("HEALTH", "down"): "31", ("HEALTH", "unknown"): "33",
    ("ADMIN", "disabled"): "33", ("ADMIN", "forced_offline"): "31", ("ADMIN", "removed,"): "35",
    ("AVAIL", "no"): "31",
}  # fmt: skip


class Printer:
    """What `ctl` prints, on `out`."""

    def __init__(self, out: TextIO, colour: bool = False) -> None:
        self.out = out
        self.colour = colour

    def line(self, text: str = "") -> None:
        print(text, file=self.out)

    def json(self, value: Any) -> None:
        print(json.dumps(value, indent=2, sort_keys=False), file=self.out)

    def _paint(self, header: str, text: str, padded: str) -> str:
        if not self.colour:
            return padded
        code = _STYLE.get((header, text.split(" ", 1)[0]))
        return f"\x1b[{code}m{padded}\x1b[0m" if code else padded

    def _table(self, headers: Sequence[str], rows: Sequence[Sequence[str]]) -> None:
        for text in table(headers, rows, self._paint):
            self.line(text)

    def members(
        self, members: Sequence[dict[str, Any]], now: float | None, draining: Sequence[dict[str, Any]] = ()
    ) -> None:
        now = time.time() if now is None else now
        rows = [member_row(m, now) for m in members] + [member_row(m, now, draining=True) for m in draining]
        self._table(MEMBER_COLUMNS, rows)

    def pools(self, pools: list[dict[str, Any]], now: float | None) -> None:
        for index, pool in enumerate(pools):
            if index:
                self.line()
            members = pool.get("members") or []
            available = pool.get("available_members", sum(1 for m in members if m.get("available")))
            self.line(f"pool {pool.get('name', '?')}  {pool.get('method', '?')}  {available}/{len(members)} available")
            if members or pool.get("draining"):
                self.members(members, now, pool.get("draining") or [])
            else:
                self.line("  (no members)")

    def status(self, status: dict[str, Any]) -> None:
        ha = status.get("ha") or {}
        ha_text = str(ha.get("state", "?"))
        if ha.get("priority") is not None:
            ha_text += f", priority {ha['priority']}"
        if ha.get("peers"):
            ha_text += ", peers " + ", ".join(map(str, ha["peers"]))
        facts = [
            ("node", str(status.get("node", "?"))),
            ("version", str(status.get("version", "?"))),
            ("uptime", duration(status.get("uptime"))),
            ("ha", ha_text),
        ]
        if status.get("config"):
            facts.append(("config", str(status["config"])))
        for key, value in facts:
            self.line(f"{key:<8} {value}")
        self.line()
        servers = status.get("virtual_servers") or []
        self._table(
            ("VIRTUAL-SERVER", "MODE", "STATE", "POOL", "LISTEN"),
            [
                [
                    str(vs.get("name", "?")),
                    str(vs.get("mode", "?")),
                    str(vs.get("state", "-")),
                    str(vs.get("pool") or "-"),
                    ", ".join(map(str, vs.get("listen") or [])),
                ]
                for vs in servers
            ],
        )
        self.line()
        rows = []
        for pool in status.get("pools") or []:
            members = pool.get("members") or []

            def count(key: str, value: str, members: list[dict[str, Any]] = members) -> str:
                return str(sum(1 for m in members if m.get(key) == value))

            available = pool.get("available_members", sum(1 for m in members if m.get("available")))
            rows.append(
                [
                    str(pool.get("name", "?")),
                    str(pool.get("method", "?")),
                    f"{available}/{len(members)}",
                    count("health", "up"),
                    count("health", "down"),
                    count("health", "unknown"),
                    count("health", "unchecked"),
                    count("admin_state", "disabled"),
                    count("admin_state", "forced_offline"),
                    str(sum(int(m.get("active_connections") or 0) for m in members)),
                ]
            )
        self._table(
            ("POOL", "METHOD", "AVAIL", "UP", "DOWN", "UNKNOWN", "UNCHECKED", "DISABLED", "OFFLINE", "ACTIVE"), rows
        )


if __name__ == "__main__":
    sys.exit(main())
