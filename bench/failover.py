"""Reliability under a member failure: `python -m bench.failover`.

Three origins behind the appliance (round robin, an http monitor every
`--interval`, `action_on_service_down: reselect`, `retries: 2`, passive
failure detection after one failure); a steady keep-alive GET load; one origin
killed (SIGKILL, by PID) part-way through. Reports requests sent, failed
(non-2xx or broken), and how long after the kill the member left rotation
(the appliance's `health up -> down` log line). Aim: zero failed idempotent
requests.
"""

from __future__ import annotations

import argparse
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import trio

from bench.load import run_load

ROOT = Path(__file__).resolve().parent.parent
APPLIANCE = [sys.executable, "-m", "appliance", "run", "-c"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def wait_port(port: int, limit: float = 10.0) -> None:
    with trio.fail_after(limit):
        while True:
            try:
                await (await trio.open_tcp_stream("127.0.0.1", port)).aclose()
                return
            except OSError:
                await trio.sleep(0.05)


async def main_async(args: argparse.Namespace) -> int:
    workdir = Path(tempfile.mkdtemp(prefix="failover-"))
    ports = [free_port() for _ in range(3)]
    front = free_port()
    members = "\n".join(f"      - {{address: 127.0.0.1:{p}, name: web{i + 1}}}" for i, p in enumerate(ports))
    conf = workdir / "appliance.yaml"
    conf.write_text(
        f"""\
appliance: {{name: failover, log: {{access: "off"}}}}
monitors:
  health: {{type: http, interval: {args.interval}s, timeout: {min(args.interval, 1.0)}s, rise: 2, fall: 2}}
pools:
  web:
    monitors: [health]
    retries: 2
    action_on_service_down: reselect
    passive: {{failures: 1, down_for: 10s}}
    members:
{members}
virtual_servers:
  web: {{listen: [127.0.0.1:{front}], pool: web}}
"""
    )
    origins = [
        subprocess.Popen([sys.executable, "-m", "bench.origin", "--port", str(p), "--name", f"web{i + 1}"], cwd=ROOT, stdout=subprocess.DEVNULL)
        for i, p in enumerate(ports)
    ]
    log = open(workdir / "appliance.log", "w")
    appliance = subprocess.Popen([*APPLIANCE, str(conf)], cwd=workdir, stderr=log, env={**os.environ, "PYTHONPATH": str(ROOT)})
    try:
        for p in [*ports, front]:
            await wait_port(p)
        await trio.sleep(args.interval * 2 + 0.5)  # every member up
        killed_at = 0.0

        async def kill_later() -> None:
            nonlocal killed_at
            await trio.sleep(args.kill_after)
            origins[0].send_signal(signal.SIGKILL)  # web1 dies without a word
            killed_at = time.time()

        async with trio.open_nursery() as nursery:
            nursery.start_soon(kill_later)
            result = await run_load("127.0.0.1", front, "/", args.connections, args.duration)
        appliance.send_signal(signal.SIGTERM)
        appliance.wait(timeout=15)
        log.close()
        text = (workdir / "appliance.log").read_text()
        down = re.search(r"^(\S+ \S+) INFO appliance.runtime: member web/web1 health up -> down \((.*)\)$", text, re.M)
        left_after = None
        if down:
            stamp = time.mktime(time.strptime(down.group(1).split(",")[0], "%Y-%m-%d %H:%M:%S")) + int(down.group(1).split(",")[1]) / 1000
            left_after = stamp - killed_at
        failed = result.requests - result.ok + result.total_errors
        print(f"requests sent     {result.requests + result.total_errors}")
        print(f"answered 2xx      {result.ok}")
        print(f"failed            {failed}  {result.errors or ''} {dict((k, v) for k, v in result.statuses.items() if not k.startswith('2')) or ''}")
        print(f"per member        {result.members}")
        print(f"left rotation     {'%.3f s after the kill' % left_after if left_after is not None else 'not seen'}"
              f"{' (' + down.group(2) + ')' if down else ''}")
        return 0 if failed == 0 else 1
    finally:
        for process in [appliance, *origins]:
            if process.poll() is None:
                process.kill()
                process.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-c", "--connections", type=int, default=20)
    parser.add_argument("-d", "--duration", type=float, default=6.0, help="seconds of load")
    parser.add_argument("--kill-after", type=float, default=2.0, help="seconds into the load")
    parser.add_argument("--interval", type=float, default=1.0, help="monitor interval, seconds")
    sys.exit(trio.run(main_async, parser.parse_args()))


if __name__ == "__main__":
    main()
