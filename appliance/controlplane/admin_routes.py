"""The admin API's route table: what the API does, apart from how HTTP carries it.

``ROUTES`` is the one table of operations: the server dispatches through
``resolve``, and ``openapi.build_document`` describes it (``document``), so
the two cannot drift. A handler takes the ``Operations`` and the routed
``Call`` and returns JSON (sent with the route's success status) or a whole
``Reply``.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from appliance import __version__
from appliance.controlplane import openapi
from appliance.controlplane.operations import Json, Operations

JSON_TYPE = "application/json"

Header = tuple[str, str]


@dataclass(frozen=True, slots=True)
class Call:
    """One routed request as a handler sees it."""

    params: Mapping[str, str]  # path parameters, percent-decoded
    body: Json  # the JSON object body; {} for a route without one
    accept: str  # the Accept header ("" when absent)


@dataclass(frozen=True, slots=True)
class Reply:
    """A complete answer."""

    status: int
    body: bytes
    content_type: str = JSON_TYPE
    headers: tuple[Header, ...] = ()
    close: bool = False  # close the connection after it

    @classmethod
    def json(cls, status: int, payload: object, headers: tuple[Header, ...] = (), *, close: bool = False) -> Reply:
        body = json.dumps(payload, separators=(",", ":"), allow_nan=False).encode() + b"\n"
        return cls(status, body, JSON_TYPE, headers, close)

    @classmethod
    def error(cls, status: int, reason: str, headers: tuple[Header, ...] = (), *, close: bool = False) -> Reply:
        return cls.json(status, {"error": reason, "status": status}, headers, close=close)


Handler = Callable[[Operations, Call], Awaitable[Json | Reply]]


@dataclass(frozen=True, slots=True, kw_only=True)
class Route:
    """One row of the API: dispatch and the OpenAPI document both read it."""

    method: str
    path: str  # a template; `{name}` matches one non-empty path segment
    operation_id: str
    summary: str
    handler: Handler
    status: int = 200  # the success status
    request: str | None = None  # openapi.SCHEMAS name of the JSON object body; None: no body
    response: str | None = None  # openapi.SCHEMAS name of the success body; None: text
    produces: tuple[str, ...] = (JSON_TYPE,)
    errors: tuple[int, ...] = ()  # statuses the operation itself may answer (404, 409, 422)
    segments: tuple[str, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "segments", tuple(self.path.strip("/").split("/")))

    def match(self, segments: list[str]) -> dict[str, str] | None:
        """The path parameters when `segments` (decoded) fit this route's path, else None."""
        if len(segments) != len(self.segments):
            return None
        params: dict[str, str] = {}
        for pattern, segment in zip(self.segments, segments):
            if pattern.startswith("{"):
                if not segment:
                    return None
                params[pattern[1:-1]] = segment
            elif pattern != segment:
                return None
        return params


async def _status(ops: Operations, call: Call) -> Json:
    return ops.status()


async def _pool(ops: Operations, call: Call) -> Json:
    return ops.pool(call.params["pool"])


async def _set_member_state(ops: Operations, call: Call) -> Json:
    return await ops.set_member_state(call.params["pool"], call.params["member"], call.body)


async def _add_member(ops: Operations, call: Call) -> Json:
    return await ops.add_member(call.params["pool"], call.body)


async def _remove_member(ops: Operations, call: Call) -> Json:
    return await ops.remove_member(call.params["pool"], call.params["member"])


def _add_address(kind: str) -> Handler:
    async def handler(ops: Operations, call: Call) -> Json:
        return await ops.add_address(kind, call.params["name"], call.body)

    return handler


def _remove_address(kind: str) -> Handler:
    async def handler(ops: Operations, call: Call) -> Json:
        return await ops.remove_address(kind, call.params["name"], call.params["address"])

    return handler


async def _reload(ops: Operations, call: Call) -> Json | Reply:
    errors = await ops.reload()
    if errors:
        return Reply.json(422, {"error": "configuration rejected", "status": 422, "errors": list(errors)})
    return {"reloaded": True}


async def _events(ops: Operations, call: Call) -> Json:
    return {"events": ops.events()}


async def _openapi(ops: Operations, call: Call) -> Reply:
    return Reply(200, document_bytes())


async def _metrics(ops: Operations, call: Call) -> Reply:
    body, content_type = ops.metrics(call.accept)
    return Reply(200, body, content_type)


def _address_routes(kind: str, label: str) -> tuple[Route, ...]:
    base = f"/api/v1/{kind}/{{name}}/addresses"
    singular = kind.removesuffix("s")
    return (
        Route(
            method="POST",
            path=base,
            operation_id=f"add_{singular}_address",
            summary=f"Add an address to a {label}",
            handler=_add_address(kind),
            status=201,
            request="AddressBody",
            response="AddressChange",
            errors=(404, 409, 422),
        ),
        Route(
            method="DELETE",
            path=base + "/{address}",
            operation_id=f"remove_{singular}_address",
            summary=f"Remove an address from a {label}",
            handler=_remove_address(kind),
            response="AddressChange",
            errors=(404, 409),
        ),
    )


ROUTES: tuple[Route, ...] = (
    Route(
        method="GET",
        path="/api/v1/status",
        operation_id="status",
        summary="Node, HA state, virtual servers, pools with their members",
        handler=_status,
        response="Status",
    ),
    Route(
        method="GET",
        path="/api/v1/pools/{pool}",
        operation_id="pool",
        summary="One pool with its members",
        handler=_pool,
        response="Pool",
        errors=(404,),
    ),
    Route(
        method="PUT",
        path="/api/v1/pools/{pool}/members/{member}/state",
        operation_id="set_member_state",
        summary="Set a member's admin state",
        handler=_set_member_state,
        request="MemberStateBody",
        response="Member",
        errors=(404, 409, 422),
    ),
    Route(
        method="POST",
        path="/api/v1/pools/{pool}/members",
        operation_id="add_member",
        summary="Add a member (the body is like a member in the config file)",
        handler=_add_member,
        status=201,
        request="MemberBody",
        response="Member",
        errors=(404, 409, 422),
    ),
    Route(
        method="DELETE",
        path="/api/v1/pools/{pool}/members/{member}",
        operation_id="remove_member",
        summary="Remove a member; its connections drain",
        handler=_remove_member,
        response="Member",
        errors=(404, 409),
    ),
    *_address_routes("snat_pools", "SNAT pool"),
    *_address_routes("address_sets", "address set"),
    Route(
        method="POST",
        path="/api/v1/reload",
        operation_id="reload",
        summary="Re-read the config file; on any error the running config stays",
        handler=_reload,
        response="Reloaded",
        errors=(422,),
    ),
    Route(
        method="GET",
        path="/api/v1/events",
        operation_id="events",
        summary="Recent state changes, newest last",
        handler=_events,
        response="Events",
    ),
    Route(
        method="GET",
        path="/api/v1/openapi.json",
        operation_id="openapi",
        summary="This document",
        handler=_openapi,
        response="OpenApi",
    ),
    Route(
        method="GET",
        path="/metrics",
        operation_id="metrics",
        summary="Prometheus exposition (text, or OpenMetrics when Accept asks for it)",
        handler=_metrics,
        produces=("text/plain", "application/openmetrics-text"),
    ),
)


@functools.cache
def document() -> dict[str, Any]:
    """The OpenAPI document of ``ROUTES``."""
    return openapi.build_document(ROUTES, version=__version__)


@functools.cache
def document_bytes() -> bytes:
    return json.dumps(document(), separators=(",", ":")).encode() + b"\n"


def resolve(method: str, segments: list[str]) -> tuple[Route | None, dict[str, str], list[str]]:
    """The route and its path parameters; without a route, the methods the path allows ([]: no such path)."""
    allowed: list[str] = []
    for route in ROUTES:
        params = route.match(segments)
        if params is None:
            continue
        if route.method == method:
            return route, params, []
        allowed.append(route.method)
    return None, {}, sorted(set(allowed))
