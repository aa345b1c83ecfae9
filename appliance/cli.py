"""The `appliance` command: run | check | demo | ctl | --version."""

from __future__ import annotations

import argparse
import logging
import sys

import trio

from appliance import __version__

DEFAULT_CONFIG = "conf/appliance.yaml"
LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="appliance", description="A pure-Python L4/L7 load balancer appliance.")
    parser.add_argument("--version", action="version", version=f"appliance {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    run = commands.add_parser("run", help="run the appliance in the foreground")
    run.add_argument("-c", "--config", default=DEFAULT_CONFIG, help=f"config file (default {DEFAULT_CONFIG})")
    run.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    check = commands.add_parser("check", help="validate a config file")
    check.add_argument("-c", "--config", default=DEFAULT_CONFIG, help=f"config file (default {DEFAULT_CONFIG})")
    demo = commands.add_parser("demo", help="demo backends and the appliance on loopback")
    demo.add_argument("-c", "--config", default="conf/demo.yaml", help="demo config (default conf/demo.yaml)")
    from appliance.ctl import configure_parser as configure_ctl

    ctl = commands.add_parser("ctl", help="script the admin API", description="Script the appliance's admin API.")
    configure_ctl(ctl)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "check":
        return _check(args.config)
    if args.command == "ctl":
        from appliance.ctl import run as run_ctl

        return run_ctl(args)
    logging.basicConfig(
        level=logging.DEBUG if getattr(args, "verbose", False) else logging.INFO, format=LOG_FORMAT, stream=sys.stderr
    )
    if args.command == "run":
        from appliance.controlplane.supervisor import run_from_file

        return trio.run(run_from_file, args.config)
    if args.command == "demo":
        from appliance.demo import run_demo

        return trio.run(run_demo, args.config)
    raise AssertionError(args.command)  # argparse allows only the commands above


def _check(path: str) -> int:
    from appliance.core.config import load_config
    from appliance.errors import ConfigError

    try:
        config = load_config(path)
    except ConfigError as exc:
        for issue in exc.issues:
            print(issue)
        return 1
    from appliance.dataplane.tls import check_tls

    problems = check_tls(config)  # certificates, keys and CAs are read as `run` reads them
    for line in problems:
        print(line)
    if problems:
        return 1
    for dotted in config.not_yet_supported:
        print(f"{path}: {dotted}: accepted but not yet supported in this release", file=sys.stderr)
    print("configuration OK")
    return 0


if __name__ == "__main__":
    sys.exit(main())
