"""`appliance demo`: three demo backends on loopback and the appliance in front of them.

The backends are the members of ``conf/demo.yaml``; each answers with its own
name so round robin is visible from curl. Stop with Ctrl-C.
"""

from __future__ import annotations

import logging
import sys

import h11
import trio

from appliance.controlplane.supervisor import Appliance, leaf_exceptions
from appliance.core.config import load_config
from appliance.errors import ConfigError, StartError

LOGGER = logging.getLogger("appliance.demo")


async def serve_backend(name: str, host: str, port: int, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
    """A tiny HTTP backend that says who it is."""

    async def handle(stream: trio.SocketStream) -> None:
        conn = h11.Connection(h11.SERVER)
        try:
            while True:
                event = conn.next_event()
                if event is h11.NEED_DATA:
                    conn.receive_data(await stream.receive_some(65536))
                    continue
                if isinstance(event, h11.Request):
                    body = f"hello from {name} ({host}:{port}) {event.method.decode()} {event.target.decode()}\n".encode()
                    headers = [("content-type", "text/plain"), ("content-length", str(len(body))), ("x-demo-backend", name)]
                    while not isinstance(conn.next_event(), (h11.EndOfMessage, h11.ConnectionClosed)):
                        pass
                    await stream.send_all(conn.send(h11.Response(status_code=200, headers=headers)))
                    await stream.send_all(conn.send(h11.Data(data=body)) + conn.send(h11.EndOfMessage()))
                    if conn.our_state is not h11.DONE or conn.their_state is not h11.DONE:
                        return
                    conn.start_next_cycle()
                else:
                    return
        except (h11.ProtocolError, trio.BrokenResourceError):
            return
        finally:
            await trio.aclose_forcefully(stream)

    listeners = await trio.open_tcp_listeners(port, host=host)
    task_status.started()
    await trio.serve_listeners(handle, listeners)


async def run_demo(config_path: str) -> int:
    try:
        config = load_config(config_path)
    except ConfigError as exc:
        for issue in exc.issues:
            print(issue, file=sys.stderr)
        return 1
    pool = next(iter(config.pools.values()))
    vs = next(iter(config.virtual_servers.values()))
    appliance = Appliance(config_path, config)
    failures: list[str] = []
    try:
        async with trio.open_nursery() as backends:
            for member in pool.members:
                await backends.start(serve_backend, member.name, member.address.host, member.address.port)
            async with trio.open_nursery() as front:
                await front.start(appliance.handle_signals)
                await front.start(appliance.run)
                url = f"http://{vs.endpoints[0]}/"
                admin = config.admin
                steer = (
                    f"  admin: API on {admin.listen}, token in {admin.token_file}\n"
                    f"  TUI:   appliance-tui -c {config_path}   (e/d/f on a member: enable, disable, force offline)\n"
                    f"  ctl:   appliance ctl -c {config_path} members   |   appliance ctl -c {config_path} disable {pool.name} {pool.members[0].name}\n"
                    if admin.enabled
                    else "  (no admin section in the config: no admin API, ctl or TUI)\n"
                )
                print(
                    f"\nDemo running: {len(pool.members)} backends behind virtual server {vs.name!r}.\n"
                    f"  try:   curl -s {url}   (repeat it: round robin over {', '.join(m.name for m in pool.members)})\n"
                    f"{steer}"
                    f"  watch: the access log below, one line per request\n"
                    f"  stop:  Ctrl-C (drains, then exits)\n",
                    flush=True,
                )
            # The appliance has drained: now the backends may go.
            backends.cancel_scope.cancel()
    except* (StartError, OSError) as group:
        failures = [str(exc) for exc in leaf_exceptions(group)]
    for failure in failures:
        print(f"demo: {failure}", file=sys.stderr)
    return 1 if failures else 0
