"""The HTTP reverse proxy: one client connection, its requests, and their members.

For every request on a keep-alive client connection: read the head under the
`client_header` deadline (after waiting up to `client_idle` for its first byte),
check it (400, 431), pick a member from the current snapshot (503), connect or
reuse an idle connection (retrying other members on connect failure), forward
the request with its body streaming concurrently, and stream the response back.
A failure before the response head reaches the client becomes 502 or 504; a
failure after it closes the client connection, since the status is already out.

Traps h11 leaves to us, each handled here: the head-size and header-count
limits once the head is complete, Content-Length beside chunked, bytes after a
complete response (checked by ``UpstreamPools.release``), a member that never
ends its status line (bounded by `server`), and an absolute-form target whose
authority differs from Host.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import urlsplit

import h11
import trio
from h11._headers import Headers  # private, stable since 0.8: skips re-validating parsed headers

from appliance.core import headers as hdr
from appliance.core.model import ServiceDownAction, VirtualServer
from appliance.core.persistence import CookiePersistence, Persistences, SourcePersistence, Sticky
from appliance.core.snapshot import MemberView, PoolView, Snapshot
from appliance.core.stats import VirtualServerStats
from appliance.dataplane.access_log import AccessLog
from appliance.dataplane.passive import PassiveDetector
from appliance.dataplane.queue import PoolQueues
from appliance.dataplane.service_down import ActiveConnections
from appliance.dataplane.snat import SnatRefused
from appliance.dataplane.sockio import ByteStream, SocketIO
from appliance.dataplane.tracker import ConnectionTracker
from appliance.dataplane.upstream import UpstreamConnection, UpstreamPools
from appliance.errors import UpstreamConnectError, UpstreamError, UpstreamProtocolError, UpstreamTimeout

LOGGER = logging.getLogger("appliance.http")

RECV_SIZE = 64 * 1024  # one socket read; larger reads measured faster for bulk in the baseline
LINGER_TIME = 1.0  # after an error response, read what the client still sends so it sees our answer
LINGER_BYTES = 256 * 1024
IDEMPOTENT = frozenset({b"GET", b"HEAD", b"PUT", b"DELETE", b"OPTIONS", b"TRACE"})
_CLOSE = (b"Connection", b"connection", b"close")
_END = h11.EndOfMessage()  # events are immutable; building one validates an empty trailer list each time

_REASONS = {
    400: b"Bad Request",
    408: b"Request Timeout",
    431: b"Request Header Fields Too Large",
    501: b"Not Implemented",
    502: b"Bad Gateway",
    503: b"Service Unavailable",
    504: b"Gateway Timeout",
}


def error_response(status: int, detail: str) -> bytes:
    """A complete, self-delimited error answer that closes the connection."""
    reason = _REASONS.get(status, b"Error")
    body = b"%d %s: %s\n" % (status, reason, detail.encode("ascii", "replace"))
    return b"HTTP/1.1 %d %s\r\nContent-Type: text/plain\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%s" % (
        status,
        reason,
        len(body),
        body,
    )


_NOT_STICKY = Sticky()  # a request without persistence (never changed: lookups return fresh ones)


class _Tries:
    """What is left of one request's tries: how many, and the members not to pick again."""

    __slots__ = ("left", "avoid")

    def __init__(self, count: int) -> None:
        self.left = count
        self.avoid: set[str] = set()


class _Refused(Exception):
    """A request the appliance answers itself with an error status."""

    def __init__(self, status: int, detail: str) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail


@dataclass(slots=True)
class _Outcome:
    """What happened to one exchange with a member."""

    reused: bool = False  # the member connection came from the idle pool
    status: int = 0  # what the client got; 0 = nothing yet
    response_time: float = 0.0  # request sent to response head received (feeds `fastest`)
    upgraded: bool = False  # 101 sent: the connection is now a tunnel
    action: ServiceDownAction | None = None  # the member went out of service during the exchange
    bytes_out: int = 0
    bytes_in: int = 0  # request body bytes sent to the member
    error: UpstreamError | None = None
    client_gone: bool = False
    body_unfinished: bool = False  # the client's body was not read to its end

    @property
    def head_sent(self) -> bool:
        return self.status != 0

    @property
    def stale(self) -> bool:
        """Failed on a reused connection before any answer: the member had closed it."""
        return self.reused and self.error is not None and not self.head_sent and not self.client_gone


class HttpProxy:
    """What every HTTP connection handler shares: snapshots, member connections, log."""

    def __init__(
        self,
        snapshot: Callable[[], Snapshot],
        upstreams: UpstreamPools,
        access_log: AccessLog,
        tracker: ConnectionTracker,
        queues: PoolQueues,
        active: ActiveConnections,
        passive: PassiveDetector | None = None,
        persistences: Persistences | None = None,
    ) -> None:
        self.snapshot = snapshot
        self.upstreams = upstreams
        self.access_log = access_log
        self.tracker = tracker
        self.queues = queues
        self.active = active
        self.passive = passive or PassiveDetector()
        self.persistences = persistences or Persistences()

    async def serve(
        self,
        stream: ByteStream,
        vs_name: str,
        vip: str,
        client: tuple[str, int],
        *,
        tls: bool = False,
        counters: VirtualServerStats | None = None,
    ) -> None:
        """Serves one client connection until it closes, fails or the appliance drains.

        Resource handling: the client stream is closed here on every path; any
        exception is contained to this connection and logged, so one bad
        connection never reaches the accept loop (which would end every VIP).
        """
        vs = self.snapshot().virtual_server(vs_name)
        try:
            if vs is not None:
                await _Session(self, stream, vs, vip, client, tls, counters or VirtualServerStats()).run()
        except Exception:
            LOGGER.exception("connection from %s to %s failed", client[0], vip)
        finally:
            await stream.aclose()


class _Session:
    """One client connection and the requests it carries, in order."""

    def __init__(
        self,
        proxy: HttpProxy,
        stream: ByteStream,
        vs: VirtualServer,
        vip: str,
        client: tuple[str, int],
        tls: bool,
        counters: VirtualServerStats,
    ) -> None:
        self.proxy = proxy
        self.counters = counters  # the virtual server's
        self.proto = b"https" if tls else b"http"
        self.secure = tls
        self.stream = stream
        self.vs_name = vs.name
        self.vip = vip
        self.client = f"{client[0]}:{client[1]}"
        self.client_ip = client[0].encode()
        self.http = h11.Connection(h11.SERVER, max_incomplete_event_size=vs.limits.max_header_bytes)
        # Per request: the route taken, and the persistence record read and its outcome.
        self.route: str | None = None
        self.persist: CookiePersistence | SourcePersistence | None = None
        self.sticky = _NOT_STICKY
        self.persisted: str | None = None

    async def run(self) -> None:
        first = True
        while await self._one_request(first):
            self.http.start_next_cycle()
            first = False

    async def _one_request(self, first: bool) -> bool:
        """Handles one request; True when the connection may carry another."""
        snap = self.proxy.snapshot()
        vs = snap.virtual_server(self.vs_name)
        if vs is None:
            return False  # the virtual server was removed by a reload
        start = trio.current_time()
        request = None
        self.route = self.persisted = None
        try:
            request = await self._read_head(vs, first)
            if request is None:
                return False
            snap = self.proxy.snapshot()  # a reload or a state change while the connection idled applies now
            vs = snap.virtual_server(self.vs_name) or vs
            forwarded, host, body, upgrade = hdr.forward_request(
                request.headers._full_items, client_ip=self.client_ip, proto=self.proto
            )
            target = _origin_form(request.target, host)
            pool_name = vs.pool
            router = snap.routers.get(vs.name)
            if router is not None:
                pool_name, self.route = router.route(request.method, target, host, request.headers._full_items)
            pool = snap.pools.get(pool_name) if pool_name else None
            if pool is None:
                raise _Refused(503, "no route")
        except _Refused as refused:
            await self._refuse(refused.status, refused.detail)
            self._log(vs, request, refused.status, 0, start, None, refused.detail)
            return False
        self.persist = persist = self.proxy.persistences.by_vs.get(vs.name)
        self.sticky, self.persisted = _NOT_STICKY, None
        if isinstance(persist, CookiePersistence):
            self.sticky = persist.lookup(pool, request.headers._full_items, int(time.time()))
            forwarded = persist.forwarded(forwarded, pool.name)
        elif persist is not None:
            self.sticky = persist.lookup(pool, self.client_ip, trio.current_time())
        if host is None:  # an HTTP/1.0 client without Host: name the address it reached
            forwarded.append((b"Host", b"host", self.vip.encode()))
        if upgrade is not None and not body.has_body:  # WebSocket and friends: a tunnel after 101
            forwarded += [(b"Upgrade", b"upgrade", upgrade), (b"Connection", b"connection", b"upgrade")]
        upstream_request = h11.Request(
            method=request.method, target=target, headers=Headers(forwarded), http_version=b"1.1", _parsed=True
        )
        return await self._proxy(vs, pool, request, upstream_request, body, start)

    # ------------------------------------------------------------ request head

    async def _read_head(self, vs: VirtualServer, first: bool) -> h11.Request | None:
        """The next request head, or None when the client closed or idled out.

        Raises:
            _Refused: 400 (malformed), 408 (head too slow), 431 (head too large), 501 (CONNECT).
        """
        conn, stream, tracker = self.http, self.stream, self.proxy.tracker
        fed = 0 if first else len(conn.trailing_data[0])
        timeouts = vs.timeouts
        # One scope for the whole head. Until its first byte the connection is
        # idle (a drain ends it at once) and, between keep-alive requests, waits
        # up to client_idle; from the first byte client_header applies (from the
        # accept for a connection's first request, as HAProxy's http-request).
        scope = trio.CancelScope(deadline=trio.current_time() + (timeouts.client_header if first else timeouts.client_idle))
        idle = True
        try:
            with scope:
                event = conn.next_event()
                if event is h11.NEED_DATA:
                    tracker.idle_scopes.add(scope)
                    if tracker.draining:
                        scope.cancel()
                elif not first:
                    # A pipelined request is already here: yield once, since our
                    # I/O tries first and may never have to wait.
                    await trio.lowlevel.checkpoint()
                while event is h11.NEED_DATA:
                    if idle and not first:  # we just answered: the next request cannot be here yet
                        data = await stream.receive_when_ready(RECV_SIZE)
                    else:
                        data = await stream.receive_some(RECV_SIZE)
                    if idle:
                        idle = False
                        tracker.idle_scopes.discard(scope)
                        if not first:
                            scope.deadline = trio.current_time() + timeouts.client_header
                    fed += len(data)
                    conn.receive_data(data)
                    event = conn.next_event()
        except h11.RemoteProtocolError as exc:
            raise _Refused(exc.error_status_hint, str(exc) or "malformed request") from None
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            return None
        finally:
            tracker.idle_scopes.discard(scope)
        if scope.cancelled_caught:
            if fed == 0:
                return None  # idle keep-alive, a drain, or a pre-connection that never spoke
            raise _Refused(408, f"request head not received within {timeouts.client_header:g}s")
        if type(event) is not h11.Request:
            return None  # ConnectionClosed
        limits = vs.limits
        # h11 bounds only an incomplete head; a complete one that came in one read is ours to measure.
        if fed > limits.max_header_bytes and fed - len(conn.trailing_data[0]) > limits.max_header_bytes:
            raise _Refused(431, f"request head over {limits.max_header_bytes} bytes")
        if len(event.headers) > limits.max_header_count:
            raise _Refused(431, f"more than {limits.max_header_count} header lines")
        if event.method == b"CONNECT":
            raise _Refused(501, "CONNECT is not supported by a reverse proxy")
        return event

    # ------------------------------------------------------------ the exchange

    async def _proxy(
        self,
        vs: VirtualServer,
        pool: PoolView,
        request: h11.Request,
        upstream_request: h11.Request,
        body: hdr.Framing,
        start: float,
    ) -> bool:
        """Forwards one request, trying other members as the retry rules allow.

        A failed connect is always tried on another member (`retries`). A
        request already sent is tried again only when no response byte reached
        the client, it has no body (a streamed body cannot be replayed), and
        its method is idempotent or the pool sets `retry_non_idempotent`.
        """
        tries = _Tries(pool.config.retries + 1)
        replayable = not body.has_body and (request.method in IDEMPOTENT or pool.config.retry_non_idempotent)
        conn = self.http
        outcome: _Outcome | None = None
        while True:
            member, up, refusal = await self._connect(pool, vs, tries)
            if up is None or member is None:
                if outcome is not None:  # no other member to try: the last failure answers
                    break
                status, detail = refusal
                await self._refuse(status, detail)
                self._log(vs, request, status, 0, start, member, detail)
                return False
            if body.has_body and conn.they_are_waiting_for_100_continue:
                await self.stream.send_all(conn.send(h11.InformationalResponse(status_code=100, headers=[])))
            outcome = await self._attempt(vs, pool, member, up, upstream_request, body, replayable)
            if outcome.action in (ServiceDownAction.DROP, ServiceDownAction.RESET):
                if outcome.action is ServiceDownAction.RESET:
                    _reset(self.stream)
                self._log(vs, request, outcome.status, outcome.bytes_out, start, member, str(outcome.error))
                return False  # closed at once, no answer of our own
            if outcome.error is not None and not outcome.head_sent and not outcome.client_gone and replayable and tries.left:
                LOGGER.debug("member %s/%s: %s; trying another", pool.name, member.name, outcome.error)
                tries.avoid.add(member.name)
                continue
            break
        if outcome.error is not None and not outcome.head_sent and not outcome.client_gone:
            status = outcome.error.status_hint
            await self._refuse(status, str(outcome.error))
            self._log(vs, request, status, 0, start, member, str(outcome.error))
            return False
        note = str(outcome.error) if outcome.error else ("client closed" if outcome.client_gone else None)
        self._log(vs, request, outcome.status, outcome.bytes_out, start, member, note)
        return (
            outcome.error is None
            and not outcome.client_gone
            and not outcome.body_unfinished
            and not body.both
            and conn.our_state is h11.DONE
            and conn.their_state is h11.DONE
        )

    async def _attempt(
        self,
        vs: VirtualServer,
        pool: PoolView,
        member: MemberView,
        up: UpstreamConnection,
        upstream_request: h11.Request,
        body: hdr.Framing,
        replayable: bool,
    ) -> _Outcome:
        """One exchange with one member, counted in its stats; `up` is closed or pooled after."""
        balancer = pool.balancer
        member.stats.opened()
        balancer.on_open(member)
        down = trio.CancelScope()  # cancelled by the action on service down
        outcome = _Outcome(reused=up.reused)
        try:
            with down, self.proxy.active.held(pool.name, member.name, down) as handle:
                await self._exchange(vs, member, up, upstream_request, body, outcome)
                if outcome.stale and replayable:
                    # A reused connection the member had already given up on: one fresh try, same member.
                    await up.aclose()
                    upstreams = self.proxy.upstreams
                    now = trio.current_time()
                    up = await upstreams.open(member.address, vs.timeouts.connect, upstreams.member_tls.get(pool.name), pool.name, now)
                    outcome = _Outcome()
                    await self._exchange(vs, member, up, upstream_request, body, outcome)
                if outcome.upgraded:
                    outcome.bytes_out += await _tunnel(self.stream, up, self.http, vs.timeouts.tunnel)
            if handle.action is not None:
                # drop/reset: both sides close at once; reselect: retried elsewhere when safe.
                error = UpstreamProtocolError(f"member out of service ({handle.action.value})")
                outcome.error, outcome.action = error, handle.action
        except (UpstreamConnectError, SnatRefused) as exc:
            outcome = _Outcome(error=exc)
        finally:
            member.stats.closed()
            balancer.on_close(member)
            self.proxy.queues.slot_freed(pool.name)
        member.stats.bytes_out += outcome.bytes_in
        self.counters.bytes_in += outcome.bytes_in
        if outcome.head_sent:
            balancer.observe(member, outcome.response_time)
            member.stats.answered(outcome.status, outcome.bytes_out)
            self.proxy.passive.succeeded(member)
        elif outcome.error is not None and outcome.action is None and not outcome.client_gone:
            if isinstance(outcome.error, UpstreamTimeout):
                member.stats.failures += 1  # counted, but slowness is the monitor's business
            elif isinstance(outcome.error, SnatRefused):
                pass  # no source address: not the member's doing
            else:
                self.proxy.passive.failed(pool, member, str(outcome.error))
        if outcome.action is ServiceDownAction.RESET:
            _reset(up.stream)
        if outcome.error is not None or not self.proxy.upstreams.release(up, trio.current_time()):
            await up.aclose()
        return outcome

    async def _connect(
        self, pool: PoolView, vs: VirtualServer, tries: _Tries
    ) -> tuple[MemberView | None, UpstreamConnection | None, tuple[int, str]]:
        """Picks a member and connects, trying others on connect failure.

        When every candidate is at its connection limit the request waits in
        the pool's queue. Returns the member and connection, or the status and
        reason to refuse with: 502 when connects failed, 503 when no member
        could take it (or the queue was full or timed out).
        """
        upstreams = self.proxy.upstreams
        tls = upstreams.member_tls.get(pool.name)
        member: MemberView | None = None
        error: UpstreamConnectError | None = None
        queue_deadline = trio.current_time() + pool.config.queue.timeout
        preferred = self.sticky.member
        while tries.left:
            if preferred is not None and preferred.name not in tries.avoid:
                member = preferred  # persistence outranks balancing, priority groups and slow ramp
            else:
                member = pool.select(self.client_ip, trio.current_time(), tries.avoid)
            if member is None:
                at_limit = any(m.name not in tries.avoid and not m.available for m in pool.groups.candidates())
                if error is None and at_limit and await self.proxy.queues.wait(
                    pool.name, pool.config.queue.size, queue_deadline
                ):
                    continue  # a slot was freed: pick again
                break
            tries.left -= 1
            try:
                conn = await upstreams.acquire(
                    member.address, vs.timeouts.connect, trio.current_time(), tls, pool.name, queue_deadline
                )
                if type(self.persist) is SourcePersistence:
                    self.persist.record(pool, self.client_ip, member, trio.current_time())
                    self.persisted = self.sticky.outcome(member, True)
                return member, conn, (0, "")
            except SnatRefused as exc:  # no source address: another member would fare no better
                return member, None, (503, str(exc))
            except UpstreamConnectError as exc:
                LOGGER.debug("member %s/%s: %s", pool.name, member.name, exc)
                self.proxy.passive.failed(pool, member, str(exc))
                tries.avoid.add(member.name)
                error = UpstreamConnectError(f"member {member.name}: {exc}")
        if error is not None:
            return member, None, (502, str(error))
        if not pool.ready:
            return None, None, (503, "no member available")
        if pool.config.queue.size > 0:
            return None, None, (503, f"every member at its connection limit; queued up to {pool.config.queue.timeout:g}s")
        return None, None, (503, "every member at its connection limit")

    async def _exchange(
        self,
        vs: VirtualServer,
        member: MemberView,
        up: UpstreamConnection,
        upstream_request: h11.Request,
        body: hdr.Framing,
        outcome: _Outcome,
    ) -> None:
        """Sends the request (its body concurrently) and relays the response.

        What happened goes into `outcome` (the caller's, so that it survives a
        cancellation by the action on service down).
        """
        head = up.http.send(upstream_request)
        if not body.has_body:
            head += up.http.send(_END)  # writes nothing, but completes h11's side
            self.http.next_event()  # the request's EndOfMessage, already parsed
            await self._relay_response(vs, member, up, outcome, head, body.both)
            return
        try:
            with trio.fail_after(vs.timeouts.server):
                await up.stream.send_all(head)
        except (trio.BrokenResourceError, trio.ClosedResourceError, trio.TooSlowError) as exc:
            outcome.error = UpstreamProtocolError(f"sending request failed: {exc!r}")
            return
        upload = _Upload()
        async with trio.open_nursery() as nursery:
            nursery.start_soon(upload.run, self.http, self.stream, up, vs, nursery.cancel_scope)
            await self._relay_response(vs, member, up, outcome, None, body.both)
            nursery.cancel_scope.cancel()  # the member answered before reading all of the body
        if not upload.done:
            outcome.body_unfinished = True
            if upload.client_gone:
                outcome.client_gone = True
            elif upload.error is not None and outcome.error is None and not outcome.head_sent:
                outcome.error = upload.error
            if outcome.error is None:
                outcome.error = UpstreamProtocolError("member answered before the request body ended")
        outcome.bytes_in += upload.sent

    async def _relay_response(
        self,
        vs: VirtualServer,
        picked: MemberView,
        up: UpstreamConnection,
        outcome: _Outcome,
        request_head: bytes | None,
        close: bool,
    ) -> None:
        """Sends `request_head` if given, then streams the member's response to the client.

        One cancel scope covers the exchange; its deadline moves with the phase:
        `server` while waiting on the member, `client_idle` while the client
        reads. What happened is recorded in `outcome`; nothing is raised.
        """
        conn, stream, member = self.http, self.stream, up.http
        timeouts = vs.timeouts
        sent_at = trio.current_time()
        scope = trio.CancelScope(deadline=sent_at + timeouts.server)
        waiting_on_client = False
        try:
            with scope:
                if request_head is not None:
                    await up.stream.send_all(request_head)
                event = member.next_event()
                while True:
                    if event is h11.NEED_DATA:
                        member.receive_data(await up.stream.receive_when_ready(RECV_SIZE))
                    elif type(event) is not h11.InformationalResponse:
                        break
                    elif event.status_code == 101 and member.our_state is h11.SWITCHED_PROTOCOL:
                        outcome.response_time = trio.current_time() - sent_at
                        sent, _ = hdr.forward_response(event.headers._full_items)
                        sent += [(b"Connection", b"connection", b"upgrade")] + [
                            t for t in event.headers._full_items if t[1] == b"upgrade"
                        ]
                        switch = h11.InformationalResponse(
                            status_code=101, headers=Headers(sent), reason=event.reason, http_version=b"1.1", _parsed=True
                        )
                        waiting_on_client = True
                        await stream.send_all(conn.send(switch))
                        outcome.status, outcome.upgraded = 101, True
                        return
                    # other 1xx are skipped: we answered Expect ourselves
                    event = member.next_event()
                if type(event) is not h11.Response:
                    raise UpstreamProtocolError("member closed the connection before responding")
                outcome.response_time = trio.current_time() - sent_at
                sent, _ = hdr.forward_response(event.headers._full_items)
                if type(self.persist) is CookiePersistence:
                    self.persisted = self.persist.respond(self.sticky, picked, sent, secure=self.secure, now=int(time.time()))
                if close or self.proxy.tracker.draining:
                    sent.append(_CLOSE)
                response = h11.Response(
                    status_code=event.status_code, headers=Headers(sent), reason=event.reason, http_version=b"1.1", _parsed=True
                )
                out = [conn.send(response)]
                outcome.status = event.status_code
                # Gather whatever body is already here so a small response goes out in one write.
                while True:
                    event = member.next_event()
                    if event is h11.NEED_DATA:
                        if out:
                            waiting_on_client = True
                            scope.deadline = trio.current_time() + timeouts.client_idle
                            await stream.send_all(b"".join(out))
                            out.clear()
                            waiting_on_client = False
                        scope.deadline = trio.current_time() + timeouts.server
                        await trio.lowlevel.checkpoint()
                        member.receive_data(await up.stream.receive_some(RECV_SIZE))
                    elif type(event) is h11.Data:
                        outcome.bytes_out += len(event.data)
                        out.append(conn.send(event))
                    elif type(event) is h11.EndOfMessage:
                        out.append(conn.send(_END))
                        waiting_on_client = True
                        scope.deadline = trio.current_time() + timeouts.client_idle
                        await stream.send_all(b"".join(out))
                        return
                    else:
                        raise UpstreamProtocolError("member closed the connection mid-response")
        except h11.RemoteProtocolError as exc:
            outcome.error = UpstreamProtocolError(f"invalid response: {exc}")
        except UpstreamError as exc:
            outcome.error = exc
        except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
            if waiting_on_client:
                outcome.client_gone = True
            else:
                outcome.error = UpstreamProtocolError(f"connection to member broken: {exc!r}")
        if scope.cancelled_caught:
            if waiting_on_client:
                outcome.client_gone = True
            elif outcome.head_sent:
                outcome.error = UpstreamTimeout(f"response stalled for {timeouts.server:g}s")
            else:
                outcome.error = UpstreamTimeout(f"no response within {timeouts.server:g}s")

    # ------------------------------------------------------------ answers of our own

    async def _refuse(self, status: int, detail: str) -> None:
        """Sends an error response and closes gently so the client can read it."""
        stream = self.stream
        with trio.move_on_after(LINGER_TIME):
            try:
                await stream.send_all(error_response(status, detail))
                await stream.send_eof()
                drained = 0
                while drained < LINGER_BYTES:
                    data = await stream.receive_some(RECV_SIZE)
                    if not data:
                        break
                    drained += len(data)
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                pass

    def _log(
        self,
        vs: VirtualServer,
        request: h11.Request | None,
        status: int,
        bytes_out: int,
        start: float,
        member: MemberView | None,
        detail: str | None,
    ) -> None:
        self.counters.answered(status, bytes_out)
        log = self.proxy.access_log
        if not log.enabled:
            return
        line = None
        if request is not None:
            method, target = request.method.decode("ascii", "replace"), request.target.decode("ascii", "replace")
            line = f"{method} {target} HTTP/{request.http_version.decode()}"
        log.write(
            client=self.client,
            vip=self.vip,
            vs=vs.name,
            request=line,
            status=status,
            bytes=bytes_out,
            ms=round((trio.current_time() - start) * 1000, 2),
            pool=member.pool if member else vs.pool,
            member=member.name if member else "-",
            route=self.route,
            persist=self.persisted,
            error=detail,
        )


class _Upload:
    """Streams a client's request body to the member, beside the response relay."""

    def __init__(self) -> None:
        self.done = False
        self.sent = 0  # body bytes sent to the member
        self.client_gone = False
        self.error: UpstreamError | None = None

    async def run(
        self, conn: h11.Connection, stream: ByteStream, up: UpstreamConnection, vs: VirtualServer, scope: trio.CancelScope
    ) -> None:
        """Copies body events until the client's EndOfMessage; cancels `scope` if it cannot."""
        member = up.http
        idle = vs.timeouts.client_idle
        timer = trio.CancelScope(deadline=trio.current_time() + idle)
        try:
            with timer:
                while True:
                    event = conn.next_event()
                    if event is h11.NEED_DATA:
                        timer.deadline = trio.current_time() + idle  # an idle timeout, not a total
                        conn.receive_data(await stream.receive_some(RECV_SIZE))
                    elif type(event) is h11.Data:
                        await up.stream.send_all(member.send(event))
                        self.sent += len(event.data)
                        await trio.lowlevel.checkpoint()
                    elif type(event) is h11.EndOfMessage:
                        await up.stream.send_all(member.send(_END))
                        self.done = True
                        return
                    else:
                        break  # the client closed mid-body
        except h11.RemoteProtocolError:
            pass  # a malformed body: nothing useful can follow
        except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
            self.error = UpstreamProtocolError(f"sending request body failed: {exc!r}")
        if self.error is None:
            self.client_gone = True  # closed, malformed or stalled for client_idle
        scope.cancel()


def _origin_form(target: bytes, host: bytes | None) -> bytes:
    """The target in origin form, for the member.

    Raises:
        _Refused: 400 when an absolute-form target names another host than Host.
    """
    if target[:1] == b"/" or target == b"*":
        return target
    if target[:7].lower() == b"http://" or target[:8].lower() == b"https://":
        parts = urlsplit(target)
        if host is not None and parts.netloc.lower() != host.lower():
            raise _Refused(400, "absolute-form target and Host name different hosts")
        path = parts.path or b"/"
        return path + b"?" + parts.query if parts.query else path
    raise _Refused(400, "request target is neither origin-form nor absolute-form")


async def _tunnel(client: ByteStream, up: UpstreamConnection, conn: h11.Connection, idle: float) -> int:
    """Relays bytes both ways after a 101 until both sides end or `idle` passes; bytes to the client.

    Bytes that arrived behind either side's head (h11 keeps them) go first.
    A side's EOF is passed on as a half-close; an error on either side ends both.
    """
    member = up.stream
    moved = [0, 0]
    scope = trio.CancelScope(deadline=trio.current_time() + idle)

    async def pump(src: ByteStream, dst: ByteStream, pending: bytes, index: int) -> None:
        try:
            data = pending
            while True:
                if data:
                    await dst.send_all(data)
                    moved[index] += len(data)
                    scope.deadline = trio.current_time() + idle
                    await trio.lowlevel.checkpoint()
                data = await src.receive_some(RECV_SIZE)
                if not data:
                    break
            await dst.send_eof()
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            scope.cancel()

    with scope:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(pump, client, member, conn.trailing_data[0], 0)
            nursery.start_soon(pump, member, client, up.http.trailing_data[0], 1)
    return moved[1]


def _reset(stream: ByteStream) -> None:
    """Closes a plain or TLS stream with an RST (action on service down: reset)."""
    raw = stream if isinstance(stream, SocketIO) else getattr(stream, "transport", None)
    if isinstance(raw, SocketIO):
        raw.reset()
