"""The HA peer heartbeat: the thin trio shell around ``core.ha`` and ``core.advert``.

One UDP socket on `ha.listen`. The loop waits for a datagram or the election's
deadline, feeds the election, and carries out its actions: adverts go to every
peer; becoming master binds the governed virtual servers' listeners (retried
while the old master still holds them) and runs the `master` hooks; leaving
master closes them (connections finish) and runs the `backup` or `fault` hooks.
Hooks run one at a time, in order, each bounded by ``HOOK_TIMEOUT``, with the
node, state and VIP addresses in their environment; their output is logged.

State sync: while master, every runtime change (and, as a safety net, every
``SYNC_EVERY`` adverts) sends the full runtime changes with a generation
number; a backup applies a generation newer than the last it applied from that
process (epoch), so a lost or repeated datagram does no harm.

Rejected datagrams (bad MAC, replay, stale timestamp, malformed) are counted per
source and logged at most once per advert interval per source.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import time
from collections.abc import Awaitable, Callable
from typing import Any

import trio

from appliance.controlplane.keys import ha_secret
from appliance.controlplane.runtime import Runtime
from appliance.core import advert as wire
from appliance.core import ha
from appliance.core.config import parse_member
from appliance.core.model import Config, Endpoint
from appliance.core.snapshot import Snapshot
from appliance.core.overrides import from_json
from appliance.errors import ConfigError, StartError

LOGGER = logging.getLogger("appliance.ha")

HOOK_TIMEOUT = 30.0  # a hook (ip addr add, arping) that takes longer is killed
SYNC_EVERY = 5  # adverts between re-sends of the runtime changes while master


class Heartbeat:
    """One node's HA: election, adverts, takeover and state sync."""

    def __init__(
        self,
        config: Config,
        runtime: Runtime,
        *,
        set_master: Callable[[bool], Awaitable[None]],
        vips: Callable[[], list[str]],
        synced: Callable[[], Awaitable[None]],
    ) -> None:
        spec = config.ha
        assert spec is not None
        self.spec = spec
        self.node = config.appliance.name
        self.runtime = runtime
        self._set_master = set_master
        self._vips = vips
        self._synced = synced  # after a peer's changes are applied: save, reconfigure
        self.key = wire.derive_key(ha_secret(spec.secret_file))
        self.election = ha.Election(
            node=self.node,
            priority=spec.priority,
            advert_interval=spec.advert_interval,
            preempt=spec.preempt,
            preempt_delay=spec.preempt_delay,
            track=dict(spec.track_pools),
            now=trio.current_time(),
        )
        self.sequencer = wire.Sequencer(node=self.node, epoch=wire.new_epoch(os.urandom(8)))
        self.guard = wire.ReplayGuard(wire.default_window(spec.advert_interval))
        self.rejects = wire.RejectCounts()
        self._limiter = wire.LogLimiter(spec.advert_interval)
        self._sock: socket.socket | None = None
        self._nursery: trio.Nursery | None = None
        hooks: tuple[trio.MemorySendChannel[tuple[str, str]], trio.MemoryReceiveChannel[tuple[str, str]]]
        hooks = trio.open_memory_channel(64)
        self._hooks_in, self._hooks_out = hooks
        self._tracked = {pool: True for pool in spec.track_pools}
        self._generation = 0
        self._applied: dict[str, tuple[int, int]] = {}  # peer -> (epoch, generation) last applied
        self._adverts = 0
        self.peer_addresses: dict[str, str] = {}
        self.last_heard: dict[str, float] = {}  # peer -> wall time of its last accepted advert

    # ------------------------------------------------------------ lifetime

    async def run(self, *, task_status: trio.TaskStatus[Heartbeat] = trio.TASK_STATUS_IGNORED) -> None:
        """Binds the socket, starts the election, and runs until cancelled (call ``leave`` first to hand over)."""
        self._sock = _bind(self.spec.listen)
        try:
            async with trio.open_nursery() as nursery:
                self._nursery = nursery
                nursery.start_soon(self._run_hooks)
                now = trio.current_time()
                self._track(self.runtime.snapshot, now, execute=False)
                self._execute(self.election.start(now))
                self.runtime.subscribers.append(self._on_snapshot)
                LOGGER.info(
                    "ha %s: listening on %s, priority %d, peers %s",
                    self.node, self.spec.listen, self.spec.priority, ", ".join(map(str, self.spec.peers)),
                )  # fmt: skip
                task_status.started(self)
                await self._loop()
        finally:
            if self._on_snapshot in self.runtime.subscribers:
                self.runtime.subscribers.remove(self._on_snapshot)
            self._sock.close()

    async def leave(self) -> None:
        """Graceful shutdown: tells the peers at once (priority 0), so a backup takes over without waiting.

        A master then runs its `backup` hooks (each bounded by ``HOOK_TIMEOUT``), so that
        the VIP it added is released rather than left on two hosts.
        """
        if self._sock is None or self.election.state is ha.HaState.INIT:
            return
        was_master = self.election.state is ha.HaState.MASTER
        self._execute(self.election.shutdown(trio.current_time()))
        if was_master:
            self.runtime.record("ha", "ha", f"ha {self.node} master -> stopping (shutdown: priority 0 sent)")
            for argv in self.spec.hooks.backup:
                await self._hook(list(argv), "backup", "shutdown")

    def changed(self) -> None:
        """Runtime changes were made here: a master sends them to its peers."""
        if self.election.state is ha.HaState.MASTER:
            self._generation += 1
            self._send_sync()

    # ------------------------------------------------------------ the loop

    async def _loop(self) -> None:
        sock = self._sock
        assert sock is not None
        while True:
            with trio.move_on_at(self.election.deadline()):
                await trio.lowlevel.wait_readable(sock)
                while True:
                    try:
                        data, address = sock.recvfrom(wire.MAX_FRAME + 1)
                    except BlockingIOError:
                        break
                    except OSError as exc:  # ICMP port unreachable from a peer that is down
                        LOGGER.debug("ha: receive: %s", exc)
                        break
                    self._receive(data, f"{address[0]}:{address[1]}")
            now = trio.current_time()
            if now >= self.election.deadline():
                self._execute(self.election.on_timer(now))

    def _receive(self, data: bytes, source: str) -> None:
        try:
            message = wire.decode(data, self.key, own_node=self.node)
            self.guard.check(message, time.time())
        except wire.Rejected as rejected:
            self.rejects.add(source, rejected.kind)
            suppressed = self._limiter.admit(source, trio.current_time())
            if suppressed is not None:
                more = f" (+{suppressed} suppressed)" if suppressed else ""
                LOGGER.warning("ha: datagram from %s dropped: %s%s", source, rejected.reason, more)
            return
        self.peer_addresses[message.node] = source
        if isinstance(message, wire.Advert):
            self.last_heard[message.node] = message.timestamp
            heard = ha.Heard(
                node=message.node,
                priority=message.priority,
                state=ha.HaState(message.state),
                advert_interval=message.advert_interval,
            )
            self._execute(self.election.on_advert(heard, trio.current_time()))
        else:
            self._take_sync(message)

    def _execute(self, actions: list[ha.Action]) -> None:
        for action in actions:
            if isinstance(action, ha.SendAdvert):
                self._send_advert(action)
            elif isinstance(action, ha.BecomeMaster):
                self._transition(True, "master", action.reason)
            elif isinstance(action, ha.BecomeBackup):
                self._transition(False, "backup", action.reason)
            elif isinstance(action, ha.EnterFault):
                self._transition(False, "fault", action.reason)

    def _transition(self, master: bool, state: str, reason: str) -> None:
        last = self.election.transitions[-1] if self.election.transitions else None
        before = last.old.value if last is not None else "?"
        self.runtime.record("ha", "ha", f"ha {self.node} {before} -> {state} ({reason})")
        assert self._nursery is not None
        self._nursery.start_soon(self._set_master, master)
        self._hooks_in.send_nowait((state, reason))
        if master:
            self._generation += 1
            self._send_sync()  # the new master's changes are the truth from now on

    # ------------------------------------------------------------ sending

    def _send_advert(self, action: ha.SendAdvert) -> None:
        message = self.sequencer.advert(
            priority=action.priority,
            state=action.state.value,
            advert_interval=self.spec.advert_interval,
            now_wall=time.time(),
        )
        self._send(wire.encode(message, self.key))
        self._adverts += 1
        if self.election.state is ha.HaState.MASTER and self._adverts % SYNC_EVERY == 0:
            self._send_sync()

    def _send_sync(self) -> None:
        payload = json.dumps(self.runtime.overrides.to_json(), separators=(",", ":")).encode()
        message = self.sequencer.sync(generation=self._generation, payload=payload, now_wall=time.time())
        self._send(wire.encode(message, self.key))

    def _send(self, data: bytes) -> None:
        sock = self._sock
        if sock is None:
            return
        for peer in self.spec.peers:
            try:
                sock.sendto(data, (peer.host, peer.port))
            except OSError as exc:  # a full buffer or an unreachable peer: the next advert will do
                LOGGER.debug("ha: send to %s: %s", peer, exc)

    # ------------------------------------------------------------ state sync

    def _take_sync(self, message: wire.Sync) -> None:
        if self.election.state is ha.HaState.MASTER:
            return  # a master's changes are its own; two masters heal by the election first
        last = self._applied.get(message.node)
        if last is not None and last[0] == message.epoch and message.generation <= last[1]:
            return  # already applied (a re-send)
        try:
            overrides = from_json(json.loads(message.payload), parse_member)
        except (ValueError, TypeError, ConfigError) as exc:
            LOGGER.error("ha: runtime changes from %s ignored: %s", message.node, exc)
            return
        self._applied[message.node] = (message.epoch, message.generation)
        if overrides.to_json() == self.runtime.overrides.to_json():
            return
        self.runtime.adopt_overrides(overrides, source=f"peer {message.node}")
        assert self._nursery is not None
        self._nursery.start_soon(self._synced)

    # ------------------------------------------------------------ tracked pools

    def _on_snapshot(self, snapshot: Snapshot) -> None:
        self._track(snapshot, trio.current_time(), execute=True)

    def _track(self, snapshot: Snapshot, now: float, *, execute: bool) -> None:
        for pool, was in self._tracked.items():
            view = snapshot.pools.get(pool)
            available = view is not None and any(m.available for m in view.members)
            if available is not was:
                self._tracked[pool] = available
                actions = self.election.on_track(pool, available, now)
                if execute:
                    self._execute(actions)

    # ------------------------------------------------------------ hooks

    async def _run_hooks(self) -> None:
        async for state, reason in self._hooks_out:
            for argv in getattr(self.spec.hooks, state, ()):
                await self._hook(list(argv), state, reason)

    async def _hook(self, argv: list[str], state: str, reason: str) -> None:
        env = {
            **os.environ,
            "APPLIANCE_NODE": self.node,
            "APPLIANCE_STATE": state,
            "APPLIANCE_REASON": reason,
            "APPLIANCE_VIPS": " ".join(self._vips()),
        }
        with trio.move_on_after(HOOK_TIMEOUT) as timer:
            try:
                result = await trio.run_process(argv, env=env, capture_stdout=True, capture_stderr=True, check=False)
            except OSError as exc:
                LOGGER.error("ha hook %s for %s failed to start: %s", argv[0], state, exc)
                return
        if timer.cancelled_caught:
            LOGGER.error("ha hook %s for %s killed after %gs", argv[0], state, HOOK_TIMEOUT)
            return
        output = (result.stdout + result.stderr).decode(errors="replace").strip()
        level = logging.INFO if result.returncode == 0 else logging.ERROR
        LOGGER.log(level, "ha hook %s for %s exited %d%s", " ".join(argv), state, result.returncode, f": {output}" if output else "")

    # ------------------------------------------------------------ visibility

    def view(self) -> dict[str, Any]:
        election = self.election
        wall = self.runtime.wall_time
        return {
            "state": election.state.value,
            "priority": self.spec.priority,
            "effective_priority": election.effective_priority,
            "master": election.master,
            "peers": [
                {
                    "name": name,
                    "address": self.peer_addresses.get(name),
                    "state": peer.state.value,
                    "priority": peer.priority,
                    "last_advert": round(self.last_heard.get(name, wall(peer.last_heard)), 3),
                }
                for name, peer in election.peers.items()
            ],
            "configured_peers": [str(peer) for peer in self.spec.peers],
            "transitions": [
                {"at": round(wall(t.at), 3), "from": t.old.value, "to": t.new.value, "reason": t.reason}
                for t in election.transitions
            ],
            "rejected": {kind: count for kind, count in self.rejects.by_kind().items()},
        }


def _bind(listen: Endpoint) -> socket.socket:
    family = socket.AF_INET6 if listen.is_ipv6 else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_DGRAM)
    try:
        sock.setblocking(False)
        sock.bind((listen.host, listen.port))
    except OSError as exc:
        sock.close()
        raise StartError(f"ha.listen {listen}: cannot bind: {exc.strerror or exc}") from None
    return sock


def vip_addresses(config: Config, governed: set[str]) -> list[str]:
    """The distinct listen addresses of the governed virtual servers (for the hooks' APPLIANCE_VIPS)."""
    return list(dict.fromkeys(ep.host for name in governed for ep in config.virtual_servers[name].endpoints))

