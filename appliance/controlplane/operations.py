"""What the admin API can read and change, independent of HTTP.

The admin server (``admin.py``) parses requests, checks the token and maps
these exceptions to statuses; everything an operator can do lives here, so
the API, `appliance ctl` and tests all go through one place. Every method
returns JSON-ready data (see ``views.py`` for the shapes).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Protocol


class OperationError(Exception):
    """A request the API refuses; `status` is its HTTP status, the message its reason."""

    status = 400

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class NotFound(OperationError):
    status = 404


class Conflict(OperationError):
    """The object is immutable (`mutable: false`), or the change collides with what exists."""

    status = 409


class Invalid(OperationError):
    """The body is malformed or names a value the schema does not allow."""

    status = 422


class NotKept(OperationError):
    """The change is running, but the state file could not be written: it will not survive a restart."""

    status = 500


Json = dict[str, Any]


class Operations(Protocol):
    """The admin API's view of one running appliance."""

    def status(self) -> Json:
        """GET /api/v1/status."""

    def pool(self, pool: str) -> Json:
        """GET /api/v1/pools/{pool}. Raises NotFound."""

    async def set_member_state(self, pool: str, member: str, body: Mapping[str, Any]) -> Json:
        """PUT .../members/{member}/state; the member. Raises NotFound, Invalid, Conflict."""

    async def add_member(self, pool: str, body: Mapping[str, Any]) -> Json:
        """POST .../members, body like a config member; the member. Raises NotFound, Invalid, Conflict."""

    async def remove_member(self, pool: str, member: str) -> Json:
        """DELETE .../members/{member}: drains; the member as it was. Raises NotFound, Conflict."""

    async def add_address(self, kind: str, name: str, body: Mapping[str, Any]) -> Json:
        """POST /api/v1/{snat_pools|address_sets}/{name}/addresses. Raises NotFound, Invalid, Conflict."""

    async def remove_address(self, kind: str, name: str, address: str) -> Json:
        """DELETE /api/v1/{snat_pools|address_sets}/{name}/addresses/{address}."""

    async def reload(self) -> list[str]:
        """POST /api/v1/reload: the errors, empty when the new config is running."""

    def events(self) -> list[Json]:
        """GET /api/v1/events: recent state changes, newest last."""

    def metrics(self, accept: str) -> tuple[bytes, str]:
        """GET /metrics: the exposition and its content type, negotiated from `accept`."""


Reload = Callable[[], Awaitable[list[str]]]
