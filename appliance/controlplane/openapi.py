"""The OpenAPI 3.1 document of the admin API, built from its route table.

``admin_routes.py`` holds the one table of routes; dispatch reads it, and
``build_document`` turns the same rows into the document served at
``/api/v1/openapi.json``, so a route cannot exist undocumented or the other way
round. Everything else here is data: the JSON Schemas (2020-12, as OpenAPI 3.1
uses) of the bodies, written to match ``views.py`` key for key, and the words
for path parameters and statuses. A route names its schemas by their key in
``SCHEMAS``; an unknown name fails when the document is built (the first
request for it, and the tests).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any, Protocol

JSON = "application/json"
OPENAPI_VERSION = "3.1.0"
_PARAMETER = re.compile(r"\{([a-z_]+)\}")

Schema = dict[str, Any]


class Operation(Protocol):
    """What the document needs of a route (``admin_routes.Route`` has these fields)."""

    @property
    def method(self) -> str: ...  # upper case: GET, PUT, POST, DELETE
    @property
    def path(self) -> str: ...  # a template: /api/v1/pools/{pool}
    @property
    def operation_id(self) -> str: ...
    @property
    def summary(self) -> str: ...
    @property
    def status(self) -> int: ...  # the success status
    @property
    def request(self) -> str | None: ...  # schema of the JSON body; None: no body
    @property
    def response(self) -> str | None: ...  # schema of the success body; None: text (see `produces`)
    @property
    def produces(self) -> tuple[str, ...]: ...  # content types of the success body
    @property
    def errors(self) -> tuple[int, ...]: ...  # statuses beyond the ones every route can answer


def _ref(name: str) -> Schema:
    if name not in SCHEMAS:
        raise KeyError(f"no schema named {name!r} in openapi.SCHEMAS")
    return {"$ref": f"#/components/schemas/{name}"}


def _nullable(schema: Schema) -> Schema:
    return {"oneOf": [schema, {"type": "null"}]}


def _object(properties: dict[str, Schema], *, required: Iterable[str] | None = None, closed: bool = False) -> Schema:
    """An object schema; every property is required unless `required` says otherwise."""
    schema: Schema = {
        "type": "object",
        "properties": properties,
        "required": list(properties if required is None else required),
    }
    if closed:
        schema["additionalProperties"] = False
    return schema


_STRING: Schema = {"type": "string"}
_INT: Schema = {"type": "integer"}
_NUMBER: Schema = {"type": "number"}
_BOOL: Schema = {"type": "boolean"}
_ADMIN_STATES = ["enabled", "disabled", "forced_offline"]
_TIME: Schema = {"type": "number", "description": "wall-clock Unix seconds"}

# ------------------------------------------------------------------ schemas
# Response shapes follow views.py; requests follow the config file's keys (SPEC §2).

SCHEMAS: dict[str, Schema] = {
    "Error": _object(
        {
            "error": {"type": "string", "description": "the reason, for an operator"},
            "status": {"type": "integer", "description": "the HTTP status, repeated"},
        }
    ),
    "ReloadRejected": _object(
        {
            "error": {"const": "configuration rejected"},
            "status": {"const": 422},
            "errors": {"type": "array", "items": _STRING, "description": "FILE:LINE:COL: message, one per problem"},
        }
    ),
    "Reloaded": _object({"reloaded": {"const": True}}),
    "MemberStateBody": _object({"state": {"enum": _ADMIN_STATES}}, closed=True),
    "MemberBody": _object(
        {
            "address": {"type": "string", "description": "ADDRESS:PORT such as 127.0.0.1:9001 or [::1]:9001"},
            "name": {"type": "string", "description": "default: the address"},
            "ratio": {"type": "integer", "minimum": 1, "default": 1},
            "priority_group": {"type": "integer", "default": 0},
            "connection_limit": {"type": "integer", "minimum": 0, "default": 0, "description": "0 = none"},
            "state": {"enum": _ADMIN_STATES, "default": "enabled"},
            "cookie_value": {"type": "string", "description": "the persistence cookie's value for this member"},
        },
        required=["address"],
        closed=True,
    ),
    "AddressBody": _object(
        {"address": {"type": "string", "description": "an IP address such as 127.0.0.34"}}, closed=True
    ),
    "AddressChange": _object(
        {
            "kind": {"type": "string", "description": "snat_pools | address_sets"},
            "name": _STRING,
            "address": {"type": "string", "description": "the address added or removed"},
            "addresses": {"type": "array", "items": _STRING, "description": "its addresses after the change"},
        }
    ),
    "SnatLane": _object(
        {
            "pool": {"type": "string", "description": "the LB pool"},
            "active_connections": _INT,
            "streak": {"type": "integer", "description": "failed connects in a row"},
            "quarantined_until": {"type": ["number", "null"], "description": "Unix seconds; null when usable"},
        }
    ),
    "SnatAddress": _object(
        {
            "address": _STRING,
            "draining": {"type": "boolean", "description": "removed at runtime, connections still open"},
            "active_connections": _INT,
            "total_connections": _INT,
            "failures": _INT,
            "exhausted": {"type": "integer", "description": "times it had no port left toward a member"},
            "pools": {"type": "array", "items": {"$ref": "#/components/schemas/SnatLane"}},
        }
    ),
    "SnatPool": _object(
        {
            "name": _STRING,
            "min_interval": {"type": "number", "description": "seconds"},
            "quarantine": _object({"failures": _INT, "for": {"type": "number", "description": "seconds"}}),
            "static": _BOOL,
            "mutable": _BOOL,
            "used_by": {"type": "array", "items": _STRING, "description": "the LB pools drawing from it"},
            "refused": {"type": "object", "additionalProperties": _INT, "description": "per LB pool"},
            "addresses": {"type": "array", "items": {"$ref": "#/components/schemas/SnatAddress"}},
        }
    ),
    "LastCheck": _object(
        {
            "ok": _BOOL,
            "reason": {"type": "string", "description": "such as `L7 status 503` or `connect refused`"},
            "latency": {"type": "number", "description": "seconds"},
            "at": _TIME,
        }
    ),
    "Member": _object(
        {
            "name": _STRING,
            "address": _STRING,
            "admin_state": {"enum": _ADMIN_STATES},
            "admin_source": {"type": "string", "description": "who set the admin state: config | api | state-file"},
            "health": {"enum": ["up", "down", "unknown", "unchecked"]},
            "available": {"type": "boolean", "description": "may take new traffic: healthy and enabled"},
            "ratio": _INT,
            "priority_group": _INT,
            "connection_limit": {"type": "integer", "description": "0 = none"},
            "active_connections": _INT,
            "total_connections": _INT,
            "requests": _INT,
            "failures": _INT,
            "bytes_in": _INT,
            "bytes_out": _INT,
            "ramp": {"type": "number", "minimum": 0, "maximum": 1, "description": "slow-ramp factor; 1 = full share"},
            "since": {"type": "number", "description": "wall-clock Unix seconds of the last health or admin change"},
            "last_check": _nullable({"$ref": "#/components/schemas/LastCheck"}),
        }
    ),
    "Pool": _object(
        {
            "name": _STRING,
            "method": {
                "enum": [
                    "round_robin",
                    "ratio",
                    "least_connections",
                    "ratio_least_connections",
                    "fastest",
                    "observed",
                    "predictive",
                    "ip_hash",
                ]
            },
            "min_active_members": _INT,
            "static": _BOOL,
            "mutable": _BOOL,
            "available_members": _INT,
            "members": {"type": "array", "items": {"$ref": "#/components/schemas/Member"}},
            "draining": {
                "type": "array",
                "items": {"$ref": "#/components/schemas/Member"},
                "description": "removed by the API, still finishing their connections",
            },
        }
    ),
    "VirtualServer": _object(
        {
            "name": _STRING,
            "mode": {"enum": ["http", "tcp"]},
            "listen": {"type": "array", "items": _STRING, "description": "as configured (ranges unexpanded)"},
            "endpoints": {"type": "integer", "description": "listen addresses after expansion"},
            "pool": _nullable(_STRING),
            "routes": {"type": "array", "items": _STRING, "description": "the pool of each route, in order"},
            "tls": _BOOL,
            "persistence": _nullable({"enum": ["cookie", "source_address"]}),
            "state": {"enum": ["listening", "stopped"]},
        }
    ),
    "Ha": _object(
        {
            "state": {"enum": ["standalone", "init", "backup", "master", "fault"]},
            "priority": _nullable(_INT),
            "peers": {"type": "array", "items": _STRING},
        }
    ),
    "Status": _object(
        {
            "node": _STRING,
            "version": _STRING,
            "time": _TIME,
            "uptime": {"type": "number", "description": "seconds"},
            "config": {"type": "string", "description": "the config file in use"},
            "ha": {"$ref": "#/components/schemas/Ha"},
            "virtual_servers": {"type": "array", "items": {"$ref": "#/components/schemas/VirtualServer"}},
            "pools": {"type": "array", "items": {"$ref": "#/components/schemas/Pool"}},
            "snat_pools": {"type": "array", "items": {"$ref": "#/components/schemas/SnatPool"}},
        }
    ),
    "Event": _object(
        {
            "at": _TIME,
            "kind": {"type": "string", "description": "health | admin | reload | ha | ..."},
            "source": {"type": "string", "description": "monitor | traffic | config | api | ..."},
            "message": _STRING,
        }
    ),
    "Events": _object({"events": {"type": "array", "items": {"$ref": "#/components/schemas/Event"}}}),
    "OpenApi": {"type": "object", "description": "this document"},
}

PARAMETERS: dict[str, str] = {
    "pool": "a pool's name",
    "member": "a member's name; by default its address, such as 127.0.0.1:9001 or [::1]:9001 "
    "(percent-encode reserved characters)",
    "name": "a SNAT pool's or address set's name",
    "address": "an IP address of the SNAT pool or address set",
}

STATUS_TEXT: dict[int, str] = {
    200: "OK",
    201: "Created",
    400: "malformed request: HTTP, JSON, or a body that is not a JSON object",
    401: "no valid `Authorization: Bearer TOKEN`",
    404: "no such object",
    405: "the path exists; the method does not (see `Allow`)",
    409: "the object is immutable (`mutable: false`) or the change collides with what exists",
    413: "the body is over the size limit",
    422: "the body names a value the schema does not allow",
    500: "the appliance failed (see its log), or a change runs but could not be written to the state file",
}

COMMON_ERRORS = (401, 500)  # any route
BODY_ERRORS = (400, 413)  # any route that takes a body
ERROR_SCHEMAS: dict[tuple[str, int], str] = {("reload", 422): "ReloadRejected"}  # (operation, status): else Error


def path_parameters(path: str) -> list[str]:
    """The `{name}` parameters of a path template, in order."""
    return _PARAMETER.findall(path)


def _content(types: Iterable[str], schema: Schema) -> dict[str, Any]:
    return {kind: {"schema": schema} for kind in types}


def _operation(route: Operation) -> dict[str, Any]:
    success: dict[str, Any] = {"description": STATUS_TEXT[route.status]}
    success["content"] = _content(route.produces, _ref(route.response) if route.response else {"type": "string"})
    responses: dict[str, Any] = {str(route.status): success}
    errors = set(COMMON_ERRORS) | set(route.errors) | (set(BODY_ERRORS) if route.request else set())
    for status in sorted(errors):
        schema = _ref(ERROR_SCHEMAS.get((route.operation_id, status), "Error"))
        responses[str(status)] = {"description": STATUS_TEXT[status], "content": _content([JSON], schema)}
    operation: dict[str, Any] = {
        "operationId": route.operation_id,
        "summary": route.summary,
        "parameters": [
            {
                "name": name,
                "in": "path",
                "required": True,
                "description": PARAMETERS[name],
                "schema": {"type": "string"},
            }
            for name in path_parameters(route.path)
        ],
        "responses": responses,
    }
    if route.request is not None:
        operation["requestBody"] = {"required": True, "content": _content([JSON], _ref(route.request))}
    return operation


def build_document(routes: Iterable[Operation], *, version: str) -> dict[str, Any]:
    """The OpenAPI 3.1 document of `routes`.

    Raises:
        KeyError: a route names a schema, parameter or status this module does not describe.
        ValueError: two routes share a method and path.
    """
    paths: dict[str, dict[str, Any]] = {}
    for route in routes:
        item = paths.setdefault(route.path, {})
        method = route.method.lower()
        if method in item:
            raise ValueError(f"two routes for {route.method} {route.path}")
        item[method] = _operation(route)
    return {
        "openapi": OPENAPI_VERSION,
        "info": {
            "title": "appliance admin API",
            "version": version,
            "description": "Reads and steers one running appliance (SPEC §4). "
            "Every request needs `Authorization: Bearer TOKEN`, the token being the first line of `admin.token_file`.",
        },
        "security": [{"bearer": []}],
        "paths": paths,
        "components": {
            "schemas": SCHEMAS,
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer", "description": "the first line of admin.token_file"}
            },
        },
    }
