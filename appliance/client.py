"""A synchronous client of the admin API (SPEC §4), for `appliance ctl` and the TUI.

Standard library only (http.client, json, socket) and no trio, so the asyncio
TUI can call it through `asyncio.to_thread` and `appliance ctl` can call it
directly. One `AdminClient` keeps one keep-alive connection; it is not
thread-safe (use one client per thread, or serialise the calls).

Errors, all subclasses of `ClientError`:
- `AdminError`: the API answered with a JSON error (`{"error", "status"}`,
  plus `errors` from a rejected reload). `.status`, `.message`, `.errors`.
- `AdminUnreachable`: no answer from an admin API: cannot connect, the
  connection dropped, a timeout, or an answer that is not the API's JSON. The
  message says where it tried.
- `ClientSetupError`: the client cannot be set up: an unreadable or empty token
  file, a URL it cannot use. The message names the file or the URL.

Decisions:
- A URL is `http://HOST:PORT`, a bare `HOST:PORT` (http is assumed), or
  `unix:PATH` (also `unix://PATH`). `https` is refused: the admin API speaks
  plain HTTP on loopback or a unix socket. A wildcard host (`0.0.0.0`, `::`,
  as an `admin.listen` with `allow_remote` may say) is reached on loopback.
- A request on a reused keep-alive connection that the server had already
  closed is sent again once on a new connection (the connection is checked for
  EOF before reuse too); a failure on a fresh connection is not retried.
- Relative paths in the config (`admin.token_file`, `unix:PATH`) are relative
  to the working directory, as the appliance itself reads them.
- `resolve` reads the config only for what the flags leave open; a config that
  fails validation does not block it: `admin.listen` and `admin.token_file`
  are then read from the raw YAML when they are plain text, else the defaults
  apply. So `appliance ctl reload` still works (and reports the errors) right
  after a broken edit of `conf/appliance.yaml`.
"""

from __future__ import annotations

import http.client
import json
import os
import select
import socket
from typing import Any, Self
from urllib.parse import quote, urlsplit

__all__ = [
    "DEFAULT_ADMIN",
    "DEFAULT_CONFIG",
    "DEFAULT_TOKEN_FILE",
    "AdminClient",
    "AdminError",
    "AdminUnreachable",
    "ClientError",
    "ClientSetupError",
    "read_token",
    "resolve",
    "segment",
]

DEFAULT_ADMIN = "http://127.0.0.1:9900"
DEFAULT_CONFIG = "conf/appliance.yaml"
DEFAULT_TOKEN_FILE = "var/admin.token"  # AdminSpec's default, used when no config says otherwise
API = "/api/v1"
_WILDCARDS = {"0.0.0.0": "127.0.0.1", "::": "::1", "[::]": "[::1]"}


class ClientError(Exception):
    """Base of the client's errors."""


class AdminError(ClientError):
    """The admin API refused a request and said why (a JSON error answer)."""

    def __init__(self, status: int, message: str, errors: list[str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.errors: list[str] = list(errors or [])


class AdminUnreachable(ClientError):
    """No usable answer from the admin API; the message says where it tried."""


class ClientSetupError(ClientError):
    """The client cannot be set up (token file, URL); the message names what is wrong."""


# ---------------------------------------------------------------- connections


class _UnixConnection(http.client.HTTPConnection):
    def __init__(self, path: str, timeout: float) -> None:
        super().__init__("localhost", timeout=timeout)
        self.unix_path = path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.settimeout(self.timeout)
            sock.connect(self.unix_path)
        except BaseException:
            sock.close()
            raise
        self.sock = sock


def _parse_url(url: str) -> tuple[str, str, int | None, str]:
    """(kind, host or socket path, port, display URL); kind is "tcp" or "unix"."""
    text = url.strip()
    if text.startswith("unix:"):
        path = text[len("unix:") :]
        path = path.removeprefix("//")
        if not path:
            raise ClientSetupError(f"admin URL {url!r}: expected unix:PATH with a path")
        return "unix", path, None, f"unix:{path}"
    if "://" not in text:
        text = "http://" + text
    parts = urlsplit(text)
    if parts.scheme != "http":
        raise ClientSetupError(f"admin URL {url!r}: only http://HOST:PORT or unix:PATH is supported")
    try:
        host, port = parts.hostname, parts.port
    except ValueError as exc:
        raise ClientSetupError(f"admin URL {url!r}: {exc}") from None
    if not host:
        raise ClientSetupError(f"admin URL {url!r}: no host")
    host = _WILDCARDS.get(host, host)
    shown = f"[{host}]" if ":" in host else host
    return "tcp", host, port, f"http://{shown}:{port or 80}"


def _describe(exc: BaseException) -> str:
    if isinstance(exc, (socket.timeout, TimeoutError)):
        return "timed out"
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused"
    if isinstance(exc, FileNotFoundError):
        return "no such socket"
    if isinstance(exc, http.client.RemoteDisconnected):
        return "the connection was closed without an answer"
    if isinstance(exc, (ConnectionResetError, BrokenPipeError)):
        return "the connection was reset"
    if isinstance(exc, socket.gaierror):
        return f"cannot resolve the host: {exc.strerror or exc}"
    if isinstance(exc, http.client.HTTPException):
        return f"malformed answer: {type(exc).__name__} {exc}".rstrip()
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror[0].lower() + exc.strerror[1:]
    return str(exc) or type(exc).__name__


def _stale(conn: http.client.HTTPConnection) -> bool:
    """Whether an idle kept-alive connection was closed by the server (readable = EOF or junk)."""
    sock = conn.sock
    if sock is None:
        return False
    try:
        readable, _, _ = select.select([sock], [], [], 0)
    except (OSError, ValueError):
        return True
    return bool(readable)


# ---------------------------------------------------------------- the client


class AdminClient:
    """The admin API at `url` (`http://HOST:PORT`, `HOST:PORT` or `unix:PATH`), with bearer `token`."""

    def __init__(self, url: str, token: str, timeout: float = 5.0) -> None:
        self._kind, self._host, self._port, self.url = _parse_url(url)
        if not token or any(ord(c) < 0x21 or ord(c) == 0x7F for c in token):
            raise ClientSetupError("admin token: empty, or holds spaces or control characters")
        self.token = token
        self.timeout = timeout
        self._conn: http.client.HTTPConnection | None = None
        self._used = False  # whether the open connection has carried a request already
        self.connections = 0  # connections opened so far (for tests and diagnostics)

    # -- the API

    def status(self) -> dict[str, Any]:
        """GET /api/v1/status."""
        return self._object(self.request("GET", f"{API}/status"))

    def pool(self, name: str) -> dict[str, Any]:
        """GET /api/v1/pools/{pool}: the pool with its members."""
        return self._object(self.request("GET", f"{API}/pools/{segment(name)}"))

    def events(self) -> list[dict[str, Any]]:
        """GET /api/v1/events: recent state changes, newest last."""
        answer = self.request("GET", f"{API}/events")
        events = answer.get("events") if isinstance(answer, dict) else answer
        if not isinstance(events, list):
            raise AdminUnreachable(f"unexpected answer from the admin API at {self.url}: no events list")
        return events

    def set_state(self, pool: str, member: str, state: str) -> dict[str, Any]:
        """PUT .../members/{member}/state: `enabled`, `disabled` or `forced_offline`; the member."""
        path = f"{API}/pools/{segment(pool)}/members/{segment(member)}/state"
        return self._object(self.request("PUT", path, {"state": state}))

    def add_member(self, pool: str, body: dict[str, Any]) -> dict[str, Any]:
        """POST /api/v1/pools/{pool}/members, `body` like a config member; the member."""
        return self._object(self.request("POST", f"{API}/pools/{segment(pool)}/members", body))

    def remove_member(self, pool: str, member: str) -> dict[str, Any]:
        """DELETE /api/v1/pools/{pool}/members/{member} (it drains); the member as it was."""
        return self._object(self.request("DELETE", f"{API}/pools/{segment(pool)}/members/{segment(member)}"))

    def reload(self) -> dict[str, Any]:
        """POST /api/v1/reload: `{"reloaded": true}`; a rejected config is an AdminError with `.errors`."""
        return self._object(self.request("POST", f"{API}/reload"))

    def metrics(self) -> str:
        """GET /metrics: the Prometheus text exposition."""
        status, _, data = self._exchange("GET", "/metrics", None, "text/plain")
        if status >= 400:
            raise self._error(status, data)
        return data.decode("utf-8", "replace")

    def request(self, method: str, path: str, body: Any = None) -> Any:
        """Any route: `body` is sent as JSON when not None; the decoded JSON answer.

        `path` is used as given: percent-encode its segments (see `segment`).
        """
        payload = None if body is None else json.dumps(body).encode()
        status, _, data = self._exchange(method, path, payload, "application/json")
        if status >= 400:
            raise self._error(status, data)
        if not data.strip():
            return None
        try:
            return json.loads(data)
        except ValueError:
            raise AdminUnreachable(
                f"unexpected answer from {self.url}{path}: HTTP {status}, not JSON (is this the admin API?)"
            ) from None

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- plumbing

    def _object(self, answer: Any) -> dict[str, Any]:
        if not isinstance(answer, dict):
            raise AdminUnreachable(f"unexpected answer from the admin API at {self.url}: not a JSON object")
        return answer

    def _error(self, status: int, data: bytes) -> ClientError:
        try:
            answer = json.loads(data)
        except ValueError:
            answer = None
        if not isinstance(answer, dict) or "error" not in answer:
            return AdminUnreachable(
                f"unexpected answer from {self.url}: HTTP {status}, not the admin API's JSON (is this the admin API?)"
            )
        errors = answer.get("errors")
        return AdminError(
            int(answer.get("status") or status),
            str(answer["error"]),
            [str(e) for e in errors] if isinstance(errors, list) else [],
        )

    def _connection(self) -> http.client.HTTPConnection:
        if self._conn is not None and _stale(self._conn):
            self.close()
        if self._conn is None:
            if self._kind == "unix":
                self._conn = _UnixConnection(self._host, self.timeout)
            else:
                self._conn = http.client.HTTPConnection(self._host, self._port, timeout=self.timeout)
            self._used = False
        return self._conn

    def _exchange(
        self, method: str, path: str, payload: bytes | None, accept: str
    ) -> tuple[int, dict[str, str], bytes]:
        headers = {"Authorization": f"Bearer {self.token}", "Accept": accept}
        if payload is not None:
            headers["Content-Type"] = "application/json"
        for attempt in (1, 2):
            conn = self._connection()
            reused = self._used
            try:
                if conn.sock is None:
                    conn.connect()
                    self.connections += 1
                conn.request(method, path, body=payload, headers=headers)
                self._used = True
                response = conn.getresponse()
                data = response.read()
            except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError) as exc:
                self.close()
                if reused and attempt == 1 and method in _REPEATABLE:
                    continue  # the server had closed the idle connection: once more on a new one
                raise AdminUnreachable(f"cannot reach the admin API at {self.url}: {_describe(exc)}") from None
            except (OSError, http.client.HTTPException) as exc:
                self.close()
                raise AdminUnreachable(f"cannot reach the admin API at {self.url}: {_describe(exc)}") from None
            if response.will_close:
                self.close()
            return response.status, {k.lower(): v for k, v in response.getheaders()}, data
        raise AssertionError("unreachable")  # pragma: no cover


_REPEATABLE = frozenset({"GET", "HEAD", "PUT"})  # sending these twice does what sending them once does


def segment(value: str) -> str:
    """`value` percent-encoded as one path segment (member names hold ':' '[' ']', even '/')."""
    return quote(str(value), safe="")


# ---------------------------------------------------------------- where and who


def read_token(path: str) -> str:
    """The bearer token: the first line of `path`, stripped; ClientSetupError names the file."""
    try:
        with open(path, encoding="utf-8") as stream:
            token = stream.readline().strip()  # the first line, as the appliance reads it
    except FileNotFoundError:
        raise ClientSetupError(
            f"admin token file {path} does not exist (the appliance creates it at start; or pass --token-file)"
        ) from None
    except (OSError, UnicodeDecodeError) as exc:
        reason = getattr(exc, "strerror", None) or str(exc)
        raise ClientSetupError(f"cannot read the admin token file {path}: {reason}") from None
    if not token:
        raise ClientSetupError(f"admin token file {path}: the first line is empty")
    return token


def _raw_admin(config_path: str) -> tuple[str | None, str | None]:
    """`admin.listen` and `admin.token_file` from a config that fails validation, when plain text."""
    try:
        import yaml

        with open(config_path, encoding="utf-8") as stream:
            document = yaml.safe_load(stream)
    except Exception:  # noqa: BLE001 - any failure here means "no hint": the defaults apply
        return None, None
    admin = document.get("admin") if isinstance(document, dict) else None
    if not isinstance(admin, dict):
        return None, None
    listen, token_file = admin.get("listen"), admin.get("token_file")
    return (
        listen if isinstance(listen, str) and listen.strip() else None,
        token_file if isinstance(token_file, str) and token_file.strip() else None,
    )


def _config_admin(config_path: str) -> tuple[str | None, str | None]:
    if not os.path.exists(config_path):
        return None, None
    from appliance.core.config import load_config
    from appliance.errors import ConfigError

    try:
        config = load_config(config_path)
    except ConfigError:
        return _raw_admin(config_path)
    return config.admin.listen, config.admin.token_file


def listen_to_url(listen: str) -> str:
    """An `admin.listen` value (`HOST:PORT`, `[V6]:PORT`, `unix:PATH`) as a client URL."""
    listen = listen.strip()
    if listen.startswith("unix:"):
        return listen
    return "http://" + listen


def resolve(admin: str | None, token_file: str | None, config_path: str = DEFAULT_CONFIG) -> tuple[str, str]:
    """(URL, token) per SPEC §1: explicit values win; else the config's `admin` section; else defaults.

    The config is read only when a value is missing and the file exists. Raises
    ClientSetupError for a token file that is missing, unreadable or empty.
    """
    listen = file = None
    if admin is None or token_file is None:
        listen, file = _config_admin(config_path)
    url = admin if admin is not None else (listen_to_url(listen) if listen else DEFAULT_ADMIN)
    path = token_file if token_file is not None else (file or DEFAULT_TOKEN_FILE)
    _parse_url(url)  # a URL it cannot use fails here, naming it
    return url, read_token(path)
