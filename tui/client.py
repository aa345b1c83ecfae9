"""The TUI's side of the admin API: a small async protocol and its asyncio facade.

The app depends only on `AdminApi` (three coroutines), so tests drive it with
a fake. `AsyncAdminClient` runs the synchronous `appliance.client.AdminClient`
(stdlib http.client) in a thread with `asyncio.to_thread`, one call at a time,
and turns its errors into the two kinds the app tells apart:

- `ApiError`: the API answered and refused (401, 404, 409, 422 ...); its
  `message` is the API's reason, shown to the operator as it is;
- `Unreachable`: no answer at all (refused, reset, timed out); the app shows
  DISCONNECTED and retries.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any, Protocol, TypeVar

Json = dict[str, Any]
T = TypeVar("T")


class ApiError(Exception):
    """The admin API answered with an error; `message` is its reason."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.status = status

    def __str__(self) -> str:
        return f"{self.status} {self.message}" if self.status else self.message


class Unreachable(Exception):
    """The admin API did not answer (connection refused, reset or timed out)."""


class AdminApi(Protocol):
    """What the app needs from the admin API (SPEC §4)."""

    async def status(self) -> Json:
        """GET /api/v1/status."""

    async def events(self) -> list[Json]:
        """GET /api/v1/events: recent state changes, newest last."""

    async def set_state(self, pool: str, member: str, state: str) -> Json:
        """PUT /api/v1/pools/{pool}/members/{member}/state; the member."""


def _client_errors() -> tuple[type[BaseException] | None, type[BaseException] | None]:
    """appliance.client's (AdminError, AdminUnreachable), when that module is there."""
    try:
        from appliance import client
    except ImportError:
        return None, None
    return getattr(client, "AdminError", None), getattr(client, "AdminUnreachable", None)


def classify(exc: BaseException) -> ApiError | Unreachable:
    """Any error of a call to the API as one of the two kinds the app shows."""
    if isinstance(exc, (ApiError, Unreachable)):
        return exc
    admin_error, admin_unreachable = _client_errors()
    if admin_unreachable is not None and isinstance(exc, admin_unreachable):
        return Unreachable(str(exc) or type(exc).__name__)
    if isinstance(exc, (OSError, TimeoutError, EOFError)):
        return Unreachable(str(exc) or type(exc).__name__)
    message = getattr(exc, "message", None)
    status = getattr(exc, "status", None)
    if (admin_error is not None and isinstance(exc, admin_error)) or isinstance(message, str):
        return ApiError(str(message if message is not None else exc), status if isinstance(status, int) else None)
    return ApiError(f"{type(exc).__name__}: {exc}")


class AsyncAdminClient:
    """`AdminApi` over a synchronous admin client, one call at a time in a worker thread."""

    def __init__(self, sync_client: Any) -> None:
        self._sync = sync_client
        self._lock = asyncio.Lock()

    @classmethod
    def connect(cls, url: str, token: str, timeout: float = 5.0) -> AsyncAdminClient:
        from appliance.client import AdminClient

        return cls(AdminClient(url, token, timeout=timeout))

    async def _call(self, fn: Callable[..., T], *args: Any) -> T:
        async with self._lock:  # http.client connections are not shared between threads
            try:
                return await asyncio.to_thread(fn, *args)
            except Exception as exc:
                raise classify(exc) from exc

    async def status(self) -> Json:
        return await self._call(self._sync.status)

    async def events(self) -> list[Json]:
        return await self._call(self._sync.events)

    async def set_state(self, pool: str, member: str, state: str) -> Json:
        return await self._call(self._sync.set_state, pool, member, state)

    def close(self) -> None:
        close = getattr(self._sync, "close", None)
        if close is not None:
            close()
