"""The TCP relay (mode tcp): one client connection, one member connection, bytes both ways.

Per connection: pick a member from the current snapshot (the client address is
the key), connect (other members are tried on connect failure, up to the
pool's `retries`), then run two pumps in a nursery, one per direction, until
both have ended:

- A pump reads until its source sends EOF, writes out everything it read, then
  half-closes its destination (``shutdown(SHUT_WR)``): a client's FIN reaches
  the member and the answer still flows back while the other pump runs on.
- A reset or any other error on either side ends both pumps, and the other
  side is reset too, as it would have been on a direct connection.
- The idle `tunnel` timeout is one cancel scope around both pumps whose
  deadline every moved byte pushes forward: the connection closes when neither
  direction has moved a byte for that long. A drain does not touch tunnels:
  they end by themselves or when `shutdown_grace` cancels them.

Zero-copy path, when both sides are plain sockets: ``os.splice`` socket ->
pipe -> socket, with pipes enlarged to 1 MiB (the baseline's best bulk figure,
1.3x HAProxy splice-auto). Pipes come from a small pool per relay and go back
to it whenever a direction waits for data, as in HAProxy: Linux charges every
open pipe's capacity to its user (``fs.pipe-user-pages-soft``, 64 MiB by
default; past it new pipes get 8 KiB and cannot grow), so a pipe pair held by
every connection would leave an unprivileged appliance fast pipes for only 32
connections. A direction that finds no usable pipe copies that chunk through
user space. Without ``os.splice`` the plain-socket pumps copy with recv/send;
when either side is a TLS stream they copy with ``receive_some``/``send_all``.

I/O tries the syscall first and waits (``wait_readable``/``wait_writable``)
only on EAGAIN. After every chunk a pump yields once (a checkpoint, where
cancellation comes in): under load the next chunk has usually arrived by the
time the task runs again, so the yield saves the EAGAIN probe and the wait
(an ``epoll_ctl`` and a scheduler pass). Measured against skipping it with
wrk -c50 through the relay: 0.74 instead of 1.99 ``epoll_ctl`` and 4.6 instead
of 6.0 splices per request, and a third less CPU. A direction holds a pipe only
from a read to the end of its flush, so small messages need few pipes however
many connections are open.
"""

from __future__ import annotations

import errno
import fcntl
import logging
import math
import os
import socket
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

import trio

from appliance.core.model import ServiceDownAction, VirtualServer
from appliance.core.persistence import Persistences, SourcePersistence, Sticky
from appliance.core.snapshot import MemberView, PoolView, Snapshot
from appliance.core.stats import VirtualServerStats
from appliance.dataplane.access_log import AccessLog
from appliance.dataplane.passive import PassiveDetector
from appliance.dataplane.queue import PoolQueues
from appliance.dataplane.service_down import ActiveConnections
from appliance.dataplane.snat import SnatRefused, SnatSources
from appliance.dataplane.sockio import SocketIO
from appliance.dataplane.tracker import ConnectionTracker
from appliance.dataplane.upstream import UpstreamConnection
from appliance.errors import UpstreamConnectError

if TYPE_CHECKING:
    from appliance.dataplane.sockio import ByteStream
    from appliance.dataplane.upstream import MemberTls

LOGGER = logging.getLogger("appliance.tcp")

SPLICE_AVAILABLE = hasattr(os, "splice")  # Linux, Python 3.10+
FORCE_COPY = False  # tests set it to exercise the copy path between plain sockets
PIPE_SIZE = 1024 * 1024  # baseline: 2.22 GB/s with a 1 MiB pipe, 1.75 with the default 64 KiB
MIN_PIPE_SIZE = 64 * 1024  # a smaller pipe (8 KiB past the user's quota) moves less per syscall than a copy
PIPES_KEPT = 16  # free pipes kept for reuse: 16 MiB of the 64 MiB default per-user quota
PIPE_RETRY = 1.0  # seconds without making new pipes after the kernel refused a usable one
COPY_CHUNK = 256 * 1024  # baseline: recv/send 256 KiB ran 1.34x faster than 64 KiB on bulk
IDLE_SLACK = 0.01  # the idle deadline moves only when it would move by more than this share of tunnel
IDLE_SLACK_MAX = 1.0  # ... and at most this many seconds: a float compare per chunk, not a heap update
TLS_CLOSE_TIME = 1.0  # seconds to send a TLS close_notify to a peer that may not be reading

_SPLICE_FLAGS = getattr(os, "SPLICE_F_MOVE", 1) | getattr(os, "SPLICE_F_NONBLOCK", 2)
_F_SETPIPE_SZ = getattr(fcntl, "F_SETPIPE_SZ", 1031)
_F_GETPIPE_SZ = getattr(fcntl, "F_GETPIPE_SZ", 1032)
_RESET_ERRNOS = frozenset({errno.ECONNRESET, errno.EPIPE})
_BROKEN = (trio.BrokenResourceError, trio.ClosedResourceError)


class TcpRelay:
    """What every TCP-mode connection handler shares: snapshots, the log, splice pipes.

    Args:
        snapshot: returns the current snapshot.
        access_log: one line per connection.
        tracker: the appliance's connections; tunnels ignore a drain (see module doc).
        member_tls: pool name -> its TLS settings to members, or None for plain TCP.
    """

    def __init__(
        self,
        snapshot: Callable[[], Snapshot],
        access_log: AccessLog,
        tracker: ConnectionTracker,
        *,
        member_tls: Callable[[str], MemberTls | None] | None = None,
        queues: PoolQueues | None = None,
        active: ActiveConnections | None = None,
        passive: PassiveDetector | None = None,
        persistences: Persistences | None = None,
        snat: SnatSources | None = None,
    ) -> None:
        self.snapshot = snapshot
        self.access_log = access_log
        self.tracker = tracker
        self.member_tls = member_tls
        self.queues = queues or PoolQueues()
        self.active = active or ActiveConnections()
        self.passive = passive or PassiveDetector()
        self.persistences = persistences or Persistences()
        self.snat = snat or SnatSources()
        self.pipes = PipePool()

    async def serve(
        self, stream: ByteStream, vs_name: str, vip: str, client: tuple[str, int], *, counters: VirtualServerStats | None = None
    ) -> None:
        """Relays one client connection until both directions end, one fails, or it idles out.

        Resource handling: both streams are closed here on every path; any
        exception is contained to this connection and logged; one access-log
        line is written whatever happened.
        """
        tunnel = _Tunnel(self, stream, vs_name, vip, client, counters or VirtualServerStats())
        try:
            await tunnel.run()
        except Exception:
            LOGGER.exception("tcp connection from %s to %s failed", client[0], vip)
            tunnel.note(None, "internal error")
        except BaseException:
            tunnel.note(None, "shutdown")  # cancelled: shutdown_grace ran out
            raise
        finally:
            tunnel.close()
            tunnel.log()

    def close(self) -> None:
        """Closes the pooled pipes (at shutdown)."""
        self.pipes.close()

    def __repr__(self) -> str:
        return f"<TcpRelay {self.pipes!r}>"


class _Pipe:
    __slots__ = ("pending", "r", "size", "w")

    def __init__(self, r: int, w: int) -> None:
        self.r = r
        self.w = w
        self.size = 0
        self.pending = 0  # bytes spliced in and not yet out

    def close(self) -> None:
        os.close(self.r)
        os.close(self.w)


class PipePool:
    """Splice pipes reused across connections; a direction holds one only while data moves."""

    def __init__(self, size: int = PIPE_SIZE, keep: int = PIPES_KEPT) -> None:
        self.size = size
        self.keep = keep
        self._free: list[_Pipe] = []
        self._refused_at = -math.inf
        self.created = 0

    def take(self) -> _Pipe | None:
        """A free pipe, or None when none can be made now (the caller copies instead)."""
        if self._free:
            return self._free.pop()
        now = trio.current_time()
        if now - self._refused_at < PIPE_RETRY:
            return None
        try:
            r, w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        except OSError as exc:  # out of file descriptors
            LOGGER.debug("no splice pipe: %s", exc)
            self._refused_at = now
            return None
        pipe = _Pipe(r, w)
        try:
            fcntl.fcntl(w, _F_SETPIPE_SZ, self.size)
        except OSError:
            pass  # over fs.pipe-max-size or the user's quota: keep the kernel's size
        pipe.size = fcntl.fcntl(w, _F_GETPIPE_SZ)
        if pipe.size < MIN_PIPE_SIZE:
            pipe.close()
            self._refused_at = now
            return None
        self.created += 1
        return pipe

    def give(self, pipe: _Pipe) -> None:
        """Takes an unused pipe back; one with bytes still in it, or undersized, is closed."""
        if pipe.pending == 0 and pipe.size >= self.size and len(self._free) < self.keep:
            self._free.append(pipe)
        else:
            pipe.close()

    def close(self) -> None:
        while self._free:
            self._free.pop().close()

    def __len__(self) -> int:
        return len(self._free)

    def __repr__(self) -> str:
        return f"<PipePool {len(self._free)} free, {self.created} made, {self.size // 1024} KiB>"


class _SideError(Exception):
    """One side of the tunnel failed; `reason` is the access log's `error`."""

    def __init__(self, side: str, exc: BaseException) -> None:
        cause = exc if isinstance(exc, OSError) else exc.__cause__
        if isinstance(cause, OSError) and cause.errno in _RESET_ERRNOS:
            reason = f"{side} reset"
        elif isinstance(cause, OSError) and cause.errno == errno.ETIMEDOUT:
            reason = f"{side} timed out"
        elif isinstance(cause, OSError) and cause.strerror:
            reason = f"{side} error: {cause.strerror}"
        else:
            what = cause or exc
            reason = f"{side} error: {str(what) or type(what).__name__}"
        super().__init__(reason)
        self.side = side
        self.reason = reason


class _Tunnel:
    """One client connection and its member connection."""

    def __init__(
        self, relay: TcpRelay, stream: ByteStream, vs_name: str, vip: str, client: tuple[str, int], counters: VirtualServerStats
    ) -> None:
        self.relay = relay
        self.counters = counters  # the virtual server's
        self.stream = stream
        self.vs_name = vs_name
        self.vip = vip
        self.client = f"{client[0]}:{client[1]}"
        self.client_ip = client[0].encode()
        self.start = trio.current_time()
        self.pool_name: str | None = None
        self.member: MemberView | None = None
        self.up: UpstreamConnection | None = None
        self.retries = 0
        self.connect_time: float | None = None
        self.path: str | None = None
        self.copied = False  # a splice connection that had to copy some chunks (no pipe)
        self.bytes_in = 0  # client -> member
        self.bytes_out = 0  # member -> client
        self.error: str | None = None
        self.failed_side: str | None = None  # "client" | "member": the other side is reset
        self.reset_both = False  # action on service down: reset
        self.reselected = 0  # times the client was bound to another member (reselect)
        self.persist: SourcePersistence | None = None  # the virtual server's, when it has one
        self.sticky: Sticky | None = None  # the record read at accept
        self.persisted: str | None = None
        self.tunnel = 0.0
        self.slack = 0.0
        self.idle = trio.CancelScope()
        self.pumps: trio.Nursery | None = None

    # ------------------------------------------------------------ phases

    async def run(self) -> None:
        snap = self.relay.snapshot()
        vs = snap.virtual_server(self.vs_name)
        if vs is None:
            self.note(None, "virtual server removed")
            return
        self.pool_name = vs.pool
        pool = snap.pools.get(vs.pool) if vs.pool else None
        if pool is None:
            self.note(None, "no pool")
            return
        persist = self.relay.persistences.by_vs.get(vs.name)
        if isinstance(persist, SourcePersistence):
            self.persist = persist
            self.sticky = persist.lookup(pool, self.client_ip, trio.current_time())
        avoid: set[str] = set()
        while True:
            member = await self._connect(pool, vs, avoid)
            if member is None:
                return
            try:
                action = await self._relay(vs)
            finally:
                if self.persist is not None:  # kept for `timeout` after the last use
                    self.persist.record(pool, self.client_ip, member, trio.current_time())
                member.stats.closed()
                pool.balancer.on_close(member)
                self.relay.queues.slot_freed(pool.name)
            if action is not ServiceDownAction.RESELECT:
                return
            # Reselect: the client connection stays and is bound to another member.
            assert self.up is not None
            _close(self.up.stream, reset=True)
            self.up.forget()
            self.up = None
            avoid.add(member.name)
            self.reselected += 1
            snap = self.relay.snapshot()
            pool = snap.pools.get(pool.name) or pool

    async def _connect(self, pool: PoolView, vs: VirtualServer, avoid: set[str]) -> MemberView | None:
        """Picks a member and connects, trying others on connect failure (`retries`).

        The member is counted (active connections, balancer) from the pick on,
        so concurrent connects cannot overshoot a `connection_limit`.
        """
        balancer = pool.balancer
        tls = self.relay.member_tls(pool.name) if self.relay.member_tls is not None else None
        last: UpstreamConnectError | None = None
        attempt = -1
        queue_deadline = trio.current_time() + pool.config.queue.timeout
        sticky = self.sticky
        while attempt < pool.config.retries:
            if sticky is not None and sticky.member is not None and sticky.member.name not in avoid:
                member: MemberView | None = sticky.member  # persistence outranks balancing
            else:
                member = pool.select(self.client_ip, trio.current_time(), avoid)
            if member is None:
                at_limit = any(m.name not in avoid and not m.available for m in pool.groups.candidates())
                if last is None and at_limit and await self.relay.queues.wait(
                    pool.name, pool.config.queue.size, queue_deadline
                ):
                    continue  # a member closed a connection: pick again
                if at_limit and last is None:
                    self.note(None, "every member at its connection limit")
                    return None
                break
            attempt += 1
            self.member, self.retries = member, attempt
            member.stats.opened()
            balancer.on_open(member)
            began = trio.current_time()
            try:
                self.up = await self.relay.snat.connect(pool.name, member.address, vs.timeouts.connect, tls, queue_deadline)
            except BaseException as exc:
                member.stats.closed()
                balancer.on_close(member)
                self.relay.queues.slot_freed(pool.name)
                if isinstance(exc, SnatRefused):  # no source address: another member would fare no better
                    self.note(None, str(exc))
                    return None
                if not isinstance(exc, UpstreamConnectError):
                    raise
                LOGGER.debug("member %s/%s: %s", pool.name, member.name, exc)
                self.relay.passive.failed(pool, member, str(exc))
                avoid.add(member.name)
                last = exc
                continue
            self.connect_time = trio.current_time() - began
            balancer.observe(member, self.connect_time)
            self.relay.passive.succeeded(member)
            if self.persist is not None and sticky is not None:
                self.persist.record(pool, self.client_ip, member, trio.current_time())
                self.persisted = sticky.outcome(member, True)
            return member
        self.note(None, str(last) if last is not None else "no member available")
        return None

    async def _relay(self, vs: VirtualServer) -> ServiceDownAction | None:
        """Runs both pumps; the action on service down that ended them, if one did."""
        assert self.up is not None
        client, member = self.stream, self.up.stream
        plain = isinstance(client, SocketIO) and isinstance(member, SocketIO)
        splice = plain and SPLICE_AVAILABLE and not FORCE_COPY
        self.path = "splice" if splice else "copy"
        self.tunnel = vs.timeouts.tunnel
        self.slack = min(IDLE_SLACK_MAX, self.tunnel * IDLE_SLACK)
        self.idle = trio.CancelScope(deadline=trio.current_time() + self.tunnel)  # fresh: a reselect relays again
        assert self.member is not None and self.pool_name is not None
        down = trio.CancelScope()  # cancelled by the action on service down
        with self.idle, down, self.relay.active.held(self.pool_name, self.member.name, down) as handle:
            async with trio.open_nursery() as nursery:
                self.pumps = nursery
                if plain:
                    nursery.start_soon(self._guarded, self._socket_pump, client, member, True, splice)
                    nursery.start_soon(self._guarded, self._socket_pump, member, client, False, splice)
                else:
                    nursery.start_soon(self._guarded, self._copy_pump, client, member, True)
                    nursery.start_soon(self._guarded, self._copy_pump, member, client, False)
        if handle.action is ServiceDownAction.RESELECT:
            return handle.action  # the caller binds the client to another member
        if handle.action is not None:
            self.note(None, f"member out of service: {handle.action.value}")
            self.reset_both = handle.action is ServiceDownAction.RESET
            return handle.action  # drop and reset close at once, without a graceful close
        if self.idle.cancelled_caught:
            self.note(None, f"idle timeout {self.tunnel:g}s")
        if self.failed_side is None:
            await _graceful_close(client)
            await _graceful_close(member)
        return None

    # ------------------------------------------------------------ pumps

    async def _guarded(self, pump: Callable[..., Awaitable[None]], *args: Any) -> None:
        try:
            await pump(*args)
        except _SideError as exc:
            self.note(exc.side, exc.reason)
            assert self.pumps is not None
            self.pumps.cancel_scope.cancel()

    async def _socket_pump(self, src: SocketIO, dst: SocketIO, upstream: bool, splice: bool) -> None:
        """src -> dst between plain sockets until src's EOF, then half-closes dst.

        With `splice`, through a pipe from the pool; a chunk for which no pipe
        can be had, or every chunk without `splice`, is copied through user space.
        """
        pool = self.relay.pipes
        src_sock, dst_sock = src.sock, dst.sock
        src_fd, dst_fd = src_sock.fileno(), dst_sock.fileno()
        src_side, dst_side = ("client", "member") if upstream else ("member", "client")
        pipe: _Pipe | None = None
        try:
            while True:
                if splice:
                    pipe = pool.take()
                if pipe is not None:
                    try:
                        moved = os.splice(src_fd, pipe.w, pipe.size, flags=_SPLICE_FLAGS)
                    except BlockingIOError:
                        pool.give(pipe)  # a waiting direction holds no pipe
                        pipe = None
                        await trio.lowlevel.wait_readable(src_sock)
                        continue
                    except OSError as exc:
                        raise _SideError(src_side, exc) from exc
                    if moved == 0:
                        break  # EOF; the pipe is empty: every read is flushed before the next
                    try:  # usually all goes out at once: no coroutine for the flush
                        pipe.pending = moved - os.splice(pipe.r, dst_fd, moved, flags=_SPLICE_FLAGS)
                    except BlockingIOError:
                        pipe.pending = moved
                    except OSError as exc:
                        raise _SideError(dst_side, exc) from exc
                    if pipe.pending:
                        await self._flush(pipe, dst_fd, dst_sock, dst_side)
                    pool.give(pipe)
                    pipe = None
                else:
                    try:
                        data = src_sock.recv(COPY_CHUNK)
                    except BlockingIOError:
                        await trio.lowlevel.wait_readable(src_sock)
                        continue
                    except OSError as exc:
                        raise _SideError(src_side, exc) from exc
                    if not data:
                        break
                    moved = len(data)
                    if splice:
                        self.copied = True
                    try:
                        await dst.send_all(data)
                    except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
                        raise _SideError(dst_side, exc) from exc
                self._moved(moved, upstream)
                await trio.lowlevel.checkpoint()  # see the module notes: by then more has often arrived
        finally:
            if pipe is not None:
                pool.give(pipe)
        await self._send_eof(dst, dst_side)

    async def _flush(self, pipe: _Pipe, dst_fd: int, dst_sock: socket.socket, dst_side: str) -> None:
        """Splices everything in the pipe out to dst."""
        while True:
            try:
                sent = os.splice(pipe.r, dst_fd, pipe.pending, flags=_SPLICE_FLAGS)
            except BlockingIOError:
                await trio.lowlevel.wait_writable(dst_sock)
                continue
            except OSError as exc:
                raise _SideError(dst_side, exc) from exc
            if sent == 0:
                raise _SideError(dst_side, OSError(errno.EPIPE, "nothing written"))
            pipe.pending -= sent
            if not pipe.pending:
                return
            self._touch()  # a slow reader, not an idle one

    async def _copy_pump(self, src: ByteStream, dst: ByteStream, upstream: bool) -> None:
        """src -> dst through user space when one side is TLS, until src's EOF; then half-closes dst.

        No checkpoint of our own: every turn calls the TLS stream, and trio's
        SSLStream yields on every call.
        """
        src_side, dst_side = ("client", "member") if upstream else ("member", "client")
        while True:
            try:
                data = await src.receive_some(COPY_CHUNK)
            except _BROKEN as exc:
                raise _SideError(src_side, exc) from exc
            if not data:
                break
            try:
                await dst.send_all(data)
            except _BROKEN as exc:
                raise _SideError(dst_side, exc) from exc
            self._moved(len(data), upstream)
        await self._send_eof(dst, dst_side)

    async def _send_eof(self, dst: Any, side: str) -> None:
        """Half-closes dst; a stream that cannot (TLS without it) ends the whole tunnel."""
        send_eof = getattr(dst, "send_eof", None)
        if send_eof is not None:
            try:
                await send_eof()
                return
            except NotImplementedError:
                pass
            except _BROKEN as exc:
                raise _SideError(side, exc) from exc
        assert self.pumps is not None
        self.pumps.cancel_scope.cancel()  # a clean end: the other direction stops here

    def _moved(self, count: int, upstream: bool) -> None:
        assert self.member is not None
        if upstream:
            self.bytes_in += count
            self.member.stats.bytes_out += count
        else:
            self.bytes_out += count
            self.member.stats.bytes_in += count
        deadline = trio.current_time() + self.tunnel  # as _touch, inline on the hot path
        if deadline - self.idle.deadline > self.slack:
            self.idle.deadline = deadline

    def _touch(self) -> None:
        """Pushes the idle deadline forward (lazily, see IDLE_SLACK)."""
        deadline = trio.current_time() + self.tunnel
        if deadline - self.idle.deadline > self.slack:
            self.idle.deadline = deadline

    # ------------------------------------------------------------ the end

    def note(self, side: str | None, reason: str) -> None:
        """Records why the connection ended; the first reason wins."""
        if self.error is None:
            self.error = reason
            self.failed_side = side

    def close(self) -> None:
        """Closes both streams; after one side failed the other is reset, and both for `reset`."""
        side = self.failed_side
        _close(self.stream, reset=side == "member" or self.reset_both)
        if self.up is not None:
            _close(self.up.stream, reset=side == "client" or self.reset_both)
            self.up.forget()

    def log(self) -> None:
        counters = self.counters
        counters.bytes_in += self.bytes_in
        counters.bytes_out += self.bytes_out
        log = self.relay.access_log
        if not log.enabled:
            return
        member = self.member
        path = self.path
        if path == "splice" and self.copied:
            path = "mixed"  # some chunks copied: no splice pipe could be had
        log.write(
            client=self.client,
            vip=self.vip,
            vs=self.vs_name,
            pool=member.pool if member else self.pool_name,
            member=member.name if member else "-",
            bytes_in=self.bytes_in,
            bytes_out=self.bytes_out,
            reselected=self.reselected or None,
            persist=self.persisted,
            ms=round((trio.current_time() - self.start) * 1000, 2),
            connect_ms=round(self.connect_time * 1000, 2) if self.connect_time is not None else None,
            retries=self.retries or None,
            path=path,
            error=self.error,
        )

    def __repr__(self) -> str:
        member = self.member.name if self.member else "-"
        return f"<TcpTunnel {self.client} -> {self.vip} -> {member} [{self.bytes_in} in, {self.bytes_out} out]>"


async def _graceful_close(stream: Any) -> None:
    """Sends a TLS stream's close_notify (bounded); plain sockets need nothing."""
    if isinstance(stream, SocketIO):
        return
    with trio.move_on_after(TLS_CLOSE_TIME):
        try:
            await stream.aclose()
        except (*_BROKEN, OSError):
            pass


def _close(stream: Any, *, reset: bool) -> None:
    """Closes a SocketIO or a TLS stream over one (its `transport`), with an RST when asked."""
    raw = stream if isinstance(stream, SocketIO) else getattr(stream, "transport", None)
    if raw is None:
        raw = getattr(stream, "transport_stream", None)  # trio.SSLStream
    try:
        if reset and isinstance(raw, SocketIO):
            raw.reset()
        close = getattr(stream, "close", None)
        if close is not None:
            close()
        if isinstance(raw, SocketIO):
            raw.close()
    except OSError as exc:
        LOGGER.debug("closing %r: %s", stream, exc)
