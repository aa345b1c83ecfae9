"""The admin API server: JSON over HTTP/1.1 on `admin.listen` (SPEC §4).

Theory of operation. One listening socket (TCP, or a unix socket made mode
0600; ``admin_listen``) and one task per connection, in a nursery that lives as
long as ``AdminServer.run``. A connection carries requests one after the other
(keep-alive: the TUI polls once a second on one connection). Per request:

1. read the head within ``HEAD_TIMEOUT`` (between requests the connection may
   idle for ``IDLE_TIMEOUT`` first); malformed → 400, over ``MAX_HEAD`` → 431;
2. check the bearer token (401; the token file is ``admin_token``'s), find the
   route (404, or 405 with ``Allow``), refuse a declared body over ``MAX_BODY``
   unread (413, then close);
3. read the body (bounded by ``MAX_BODY`` and ``HEAD_TIMEOUT``); a refusal of
   step 2 is sent only now, so the connection stays usable;
4. decode the JSON object the route takes (400 with the reason), call the
   ``Operations`` method, and answer: its ``OperationError`` becomes that
   error's status, any other exception a logged 500. The server never stops
   because of what one request did.

What the API does is ``admin_routes.ROUTES``, the one table that dispatch reads
and ``openapi.build_document`` describes; this module is only how HTTP carries
it. Answers are JSON; errors are ``{"error": REASON, "status": CODE}``. At most
``MAX_CONNECTIONS`` connections are served; one more is answered 503 and closed.
"""

from __future__ import annotations

import errno
import hmac
import json
import logging
from collections.abc import Sequence
from urllib.parse import unquote, urlsplit

import h11
import trio

from appliance.controlplane.admin_listen import bind
from appliance.controlplane.admin_routes import JSON_TYPE, ROUTES, Call, Header, Reply, Route, document, resolve
from appliance.controlplane.admin_token import load_or_create_token
from appliance.controlplane.operations import Json, OperationError, Operations
from appliance.core.model import AdminSpec

# AdminServer, and what callers and tests long imported from here before the route table and the token moved out
__all__ = ["ROUTES", "AdminServer", "document", "load_or_create_token", "resolve"]

LOGGER = logging.getLogger("appliance.admin")

MAX_HEAD = 16 * 1024  # a request head; ours are a request line and a few headers (curl sends ~100 bytes)
MAX_BODY = 64 * 1024  # a JSON body; the largest the API takes (a member) is well under 1 KiB
HEAD_TIMEOUT = 10.0  # first byte (or accept) to the end of the head; also bounds reading a body
IDLE_TIMEOUT = 60.0  # a keep-alive connection waiting for its next request (the TUI asks every second)
SEND_TIMEOUT = 10.0  # writing one answer to a client that does not read
MAX_CONNECTIONS = 64  # the TUI, some `appliance ctl` calls and a metrics scraper need a handful
LINGER_TIME = 0.5  # after refusing with input unread, read what still comes so the client sees the answer
LINGER_BYTES = 256 * 1024
RECV_SIZE = 16 * 1024
LOG_INTERVAL = 1.0  # refused requests: at most one log line per client address per interval
_RESOURCE_ERRORS = {errno.EMFILE, errno.ENFILE, errno.ENOMEM, errno.ENOBUFS}
_ACCEPT_BACKOFF = 0.1  # out of file descriptors: wait before accepting again

_REASONS = {
    200: "OK",
    201: "Created",
    400: "Bad Request",
    401: "Unauthorized",
    404: "Not Found",
    405: "Method Not Allowed",
    408: "Request Timeout",
    409: "Conflict",
    413: "Content Too Large",
    422: "Unprocessable Content",
    431: "Request Header Fields Too Large",
    500: "Internal Server Error",
    501: "Not Implemented",
    503: "Service Unavailable",
}


# ------------------------------------------------------------------ the server


class AdminServer:
    """Serves the admin API for `ops` on `spec.listen` until cancelled.

    ``address`` is what the socket is bound to once ``run`` reports started:
    ``HOST:PORT`` (the real port when the spec asked for 0) or ``unix:PATH``.
    """

    def __init__(self, spec: AdminSpec, ops: Operations) -> None:
        self.spec = spec
        self.ops = ops
        self.address: str | None = None
        self.connections = 0
        self._token = b""
        self._throttle = _Throttle(LOG_INTERVAL)

    def __repr__(self) -> str:
        return f"<AdminServer {self.address or self.spec.listen} [{self.connections} connections]>"

    async def run(self, *, task_status: trio.TaskStatus[AdminServer] = trio.TASK_STATUS_IGNORED) -> None:
        """Loads the token, binds, reports started, serves until cancelled.

        Raises:
            StartError: the token file is unusable or the address cannot be bound.
        """
        self._token = load_or_create_token(self.spec.token_file).encode()
        sock, self.address, cleanup = bind(self.spec.listen)
        listener = trio.SocketListener(trio.socket.from_stdlib_socket(sock))
        try:
            LOGGER.info("admin API listening on %s", self.address)
            async with trio.open_nursery() as nursery:
                task_status.started(self)
                await self._accept_loop(listener, nursery)
        finally:
            listener.socket.close()
            cleanup()

    async def _accept_loop(self, listener: trio.SocketListener, nursery: trio.Nursery) -> None:
        while True:
            try:
                stream = await listener.accept()
            except OSError as exc:
                if exc.errno not in _RESOURCE_ERRORS:
                    raise
                LOGGER.error("admin API accept: %s; retrying in %gs", exc.strerror, _ACCEPT_BACKOFF)
                await trio.sleep(_ACCEPT_BACKOFF)
                continue
            nursery.start_soon(self._connection, stream)

    async def _connection(self, stream: trio.SocketStream) -> None:
        """One client connection; closed here on every path, its failures contained and logged."""
        peer = _peer(stream)
        try:
            if self.connections >= MAX_CONNECTIONS:
                self._log_refusal(peer, f"{self.connections} connections open (limit {MAX_CONNECTIONS})")
                await _refuse_raw(stream, 503, f"too many admin connections (limit {MAX_CONNECTIONS})")
                return
            self.connections += 1
            try:
                await _Session(self, stream, peer).run()
            finally:
                self.connections -= 1
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass  # the client went away
        except Exception:
            LOGGER.exception("admin API connection from %s failed", peer)
        finally:
            await trio.aclose_forcefully(stream)

    def _authorize(self, values: list[bytes], peer: str) -> str | None:
        """None when `values` (the Authorization headers) carry our token, else the reason to refuse."""
        if not values:
            reason = "no Authorization header"
        elif len(values) > 1:
            reason = "more than one Authorization header"
        else:
            scheme, _, credentials = values[0].strip().partition(b" ")
            if scheme.lower() != b"bearer":
                reason = "Authorization is not a Bearer token"
            elif not hmac.compare_digest(credentials.strip(), self._token):
                reason = "wrong token"
            else:
                return None
        self._log_refusal(peer, reason)
        return reason

    def _log_refusal(self, peer: str, reason: str) -> None:
        suppressed = self._throttle.allow(peer, trio.current_time())
        if suppressed is not None:
            more = f" ({suppressed} more refused since the last line)" if suppressed else ""
            LOGGER.warning("admin API refused a request from %s: %s%s", peer, reason, more)


class _Refused(Exception):
    """A request answered with an error before (or instead of) its operation."""

    def __init__(self, status: int, reason: str, headers: tuple[Header, ...] = (), *, close: bool = False) -> None:
        super().__init__(reason)
        self.reply = Reply.error(status, reason, headers, close=close)


class _Session:
    """One connection and the requests it carries, in order."""

    def __init__(self, server: AdminServer, stream: trio.SocketStream, peer: str) -> None:
        self.server = server
        self.stream = stream
        self.peer = peer
        self.http = h11.Connection(h11.SERVER, max_incomplete_event_size=MAX_HEAD)
        self.request_method = b""

    async def run(self) -> None:
        first = True
        while await self._exchange(first):
            self.http.start_next_cycle()
            first = False

    async def _exchange(self, first: bool) -> bool:
        """Reads one request and answers it; True when the connection can carry another."""
        self.request_method = b""
        try:
            request = await self._read_head(first)
            if request is None:
                return False
            reply = await self._handle(request)
        except _Refused as refused:
            reply = refused.reply
        if not await self._send(reply):
            return False
        if reply.close or self.http.our_state is not h11.DONE or self.http.their_state is not h11.DONE:
            if self.http.their_state not in (h11.DONE, h11.MUST_CLOSE, h11.CLOSED):
                await _linger(self.stream)  # input left unread
            return False
        return True

    async def _read_head(self, first: bool) -> h11.Request | None:
        """The next request head; None when the client closed or idled out.

        Raises:
            _Refused: 400 malformed, 408 too slow, 431 too large.
        """
        http = self.http
        fed = 0 if first else len(http.trailing_data[0])
        # Until its first byte, a connection's next request may take IDLE_TIMEOUT;
        # from then on (from the accept, for the first request) HEAD_TIMEOUT.
        scope = trio.CancelScope(deadline=trio.current_time() + (HEAD_TIMEOUT if first else IDLE_TIMEOUT))
        idle = not first
        try:
            with scope:
                event = http.next_event()
                while event is h11.NEED_DATA:
                    data = await self.stream.receive_some(RECV_SIZE)
                    if idle:
                        idle = False
                        scope.deadline = trio.current_time() + HEAD_TIMEOUT
                    fed += len(data)
                    http.receive_data(data)
                    event = http.next_event()
        except h11.RemoteProtocolError as exc:
            raise _Refused(exc.error_status_hint, f"malformed request: {exc}", close=True) from None
        if scope.cancelled_caught:
            if fed == 0:
                return None
            raise _Refused(408, f"request head not received within {HEAD_TIMEOUT:g}s", close=True)
        if type(event) is not h11.Request:
            return None  # ConnectionClosed
        if fed - len(http.trailing_data[0]) > MAX_HEAD:
            raise _Refused(431, f"request head over {MAX_HEAD} bytes", close=True)
        return event

    async def _handle(self, request: h11.Request) -> Reply:
        self.request_method = request.method
        method = request.method.decode("ascii", "replace")
        headers = request.headers
        refusal: _Refused | None = None
        route: Route | None = None
        params: dict[str, str] = {}
        try:
            segments = _segments(request.target)
            reason = self.server._authorize([v for n, v in headers if n == b"authorization"], self.peer)
            if reason is not None:
                # Closed after the answer: a client without the token holds no connection slot for long.
                raise _Refused(401, f"authentication required: {reason}", (("WWW-Authenticate", "Bearer"),), close=True)
            route, params, allowed = resolve("GET" if method == "HEAD" else method, segments)
            if route is None:
                if not allowed:
                    raise _Refused(404, f"no such path: {_path_text(request.target)}")
                allow = ", ".join(allowed)
                raise _Refused(405, f"{method} is not allowed here; allowed: {allow}", (("Allow", allow),))
        except _Refused as exc:
            refusal = exc
        length = _content_length(headers)
        if length is not None and length > MAX_BODY:
            raise _Refused(413, f"request body of {length} bytes is over the limit of {MAX_BODY}", close=True)
        body = await self._read_body()
        if refusal is not None:
            raise refusal
        assert route is not None
        call = Call(params=params, body=_json_object(body) if route.request else {}, accept=_header(headers, b"accept"))
        return await self._call(route, call, method, request.target)

    async def _call(self, route: Route, call: Call, method: str, target: bytes) -> Reply:
        try:
            result = await route.handler(self.server.ops, call)
            return result if isinstance(result, Reply) else Reply.json(route.status, result)
        except OperationError as exc:
            return Reply.error(exc.status, exc.message)
        except Exception as exc:
            LOGGER.exception("admin API %s %s failed", method, _path_text(target))
            return Reply.error(500, f"internal error: {type(exc).__name__}")

    async def _read_body(self) -> bytes:
        """The whole request body (b"" for none).

        Raises:
            _Refused: 400 malformed framing, 408 too slow, 413 over MAX_BODY.
        """
        http, chunks, size = self.http, [], 0
        with trio.move_on_after(HEAD_TIMEOUT):
            try:
                if http.they_are_waiting_for_100_continue:
                    await self.stream.send_all(
                        http.send(h11.InformationalResponse(status_code=100, headers=[], reason="Continue"))
                    )
                while True:
                    event = http.next_event()
                    if event is h11.NEED_DATA:
                        http.receive_data(await self.stream.receive_some(RECV_SIZE))
                    elif type(event) is h11.Data:
                        size += len(event.data)
                        if size > MAX_BODY:
                            raise _Refused(413, f"request body over the limit of {MAX_BODY} bytes", close=True)
                        chunks.append(bytes(event.data))
                    elif type(event) is h11.EndOfMessage:
                        return b"".join(chunks)
                    else:
                        raise trio.BrokenResourceError("client closed mid-request")
            except h11.RemoteProtocolError as exc:
                raise _Refused(exc.error_status_hint, f"malformed request body: {exc}", close=True) from None
        raise _Refused(408, f"request body not received within {HEAD_TIMEOUT:g}s", close=True)

    async def _send(self, reply: Reply) -> bool:
        """Writes `reply`; False when the client is gone or too slow to take it."""
        http = self.http
        if http.our_state not in (h11.IDLE, h11.SEND_RESPONSE):
            return False
        headers = [
            ("Content-Type", reply.content_type),
            ("Content-Length", str(len(reply.body))),
            ("Cache-Control", "no-store"),
            *reply.headers,
        ]
        if reply.close:
            headers.append(("Connection", "close"))
        try:
            response = h11.Response(status_code=reply.status, headers=headers, reason=_REASONS.get(reply.status, ""))
        except h11.LocalProtocolError:  # a content type from an operation that is not a valid header value
            LOGGER.error("admin API: cannot send a %d answer with content type %r", reply.status, reply.content_type)
            return await self._send(Reply.error(500, "internal error: invalid response header"))
        events: list[h11.Event] = [response, h11.EndOfMessage()]
        if self.request_method != b"HEAD":  # HEAD: the head of the GET answer, its Content-Length included
            events.insert(1, h11.Data(data=reply.body))
        data = b"".join(http.send(event) or b"" for event in events)
        with trio.move_on_after(SEND_TIMEOUT):
            await self.stream.send_all(data)
            return True
        return False


# ------------------------------------------------------------------ pieces


def _segments(target: bytes) -> list[str]:
    """The percent-decoded segments of a request target's path (no query)."""
    text = target.decode("latin-1")
    path = text if text.startswith("/") else urlsplit(text).path if "://" in text else ""  # absolute-form
    if not path.startswith("/"):
        raise _Refused(400, f"request target is not a path: {text[:100]!r}")
    path = path.partition("?")[0].partition("#")[0]
    try:
        return [unquote(part, errors="strict") for part in path[1:].split("/")]
    except UnicodeDecodeError:
        raise _Refused(400, "the path is not UTF-8 once percent-decoded") from None


def _path_text(target: bytes) -> str:
    return target.decode("latin-1").partition("?")[0][:200]


def _header(headers: Sequence[tuple[bytes, bytes]], name: bytes) -> str:
    for key, value in headers:
        if key == name:
            return bytes(value).decode("latin-1")
    return ""


def _content_length(headers: Sequence[tuple[bytes, bytes]]) -> int | None:
    value = _header(headers, b"content-length")
    return int(value) if value.isdigit() else None  # h11 has checked it is one valid number


def _json_object(body: bytes) -> Json:
    """The request body as a JSON object.

    Raises:
        _Refused: 400 when it is empty, not JSON, or not an object.
    """
    if not body.strip():
        raise _Refused(400, "a JSON object body is required")
    try:
        value = json.loads(body)
    except (ValueError, RecursionError) as exc:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        raise _Refused(400, f"malformed JSON body: {exc}") from None
    if not isinstance(value, dict):
        raise _Refused(400, f"the body must be a JSON object, got {_json_type(value)}")
    return value


def _json_type(value: object) -> str:
    kinds: dict[type, str] = {list: "an array", str: "a string", bool: "a boolean", int: "a number", float: "a number"}
    return "null" if value is None else kinds.get(type(value), type(value).__name__)


def _peer(stream: trio.SocketStream) -> str:
    try:
        name = stream.socket.getpeername()
    except OSError:
        return "unknown"
    return str(name[0]) if isinstance(name, tuple) else "unix"


def _raw_response(status: int, reason: str) -> bytes:
    body = json.dumps({"error": reason, "status": status}).encode() + b"\n"
    head = (
        f"HTTP/1.1 {status} {_REASONS.get(status, 'Error')}\r\nContent-Type: {JSON_TYPE}\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    )
    return head.encode() + body


async def _refuse_raw(stream: trio.SocketStream, status: int, reason: str) -> None:
    """Answers without reading the request, then lingers so the client sees it."""
    with trio.move_on_after(LINGER_TIME):  # short: these pile up only when the server is full
        await stream.send_all(_raw_response(status, reason))
    await _linger(stream)


async def _linger(stream: trio.SocketStream) -> None:
    """Half-closes and reads what the client still sends, bounded in time and bytes.

    Closing with unread input makes the kernel reset the connection, and a
    reset can reach the client before our answer does.
    """
    with trio.move_on_after(LINGER_TIME):
        try:
            await stream.send_eof()
            left = LINGER_BYTES
            while left > 0:
                data = await stream.receive_some(RECV_SIZE)
                if not data:
                    return
                left -= len(data)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            return


class _Throttle:
    """One pass per key per interval; counts what it held back in between."""

    MAX_KEYS = 1024  # past this, keys idle for an interval are forgotten

    def __init__(self, interval: float) -> None:
        self.interval = interval
        self._seen: dict[str, tuple[float, int]] = {}

    def allow(self, key: str, now: float) -> int | None:
        """None to hold this one back; else how many were held back since the last pass."""
        last = self._seen.get(key)
        if last is not None and now - last[0] < self.interval:
            self._seen[key] = (last[0], last[1] + 1)
            return None
        if len(self._seen) >= self.MAX_KEYS:
            self._seen = {k: v for k, v in self._seen.items() if now - v[0] < self.interval}
        self._seen[key] = (now, 0)
        return 0 if last is None else last[1]
