"""Layer-7 routing: which pool one HTTP request goes to.

A virtual server's `routes` are compiled once per configuration into a
``Router``; each request is matched on its own, so one keep-alive connection
can reach several pools. Rules are tried in order and the first whose every
field matches wins; without a match the virtual server's `pool` serves, and
without one of those the request is answered 503.

What each field sees (HAProxy's `path`, `hdr(host)` and `hdr(name)`):
- `path`, `path_prefix`, `path_regex`: the request target's path as sent,
  without its query string, not percent-decoded (`/a%2Fb` stays as it is);
  `path_regex` searches (anchor it with `^` and `$` to match the whole path);
- `host`: the Host header, case-insensitive, port and a trailing dot ignored;
  `*.example.test` matches any name below example.test, not example.test;
- `header`: every line of that name is tried; `equals` and `contains` compare
  the whole line's value (case-sensitive), `regex` searches it, `present:
  false` matches when no line of that name is there;
- `method`: one of the listed methods, case-sensitive as RFC 9110 says.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from appliance.core.model import HeaderMatch, Route, VirtualServer

Triple = tuple[bytes, bytes, bytes]  # h11's (raw name, lower-case name, value)

DEFAULT = "default"  # the route name of the virtual server's own pool in the access log


@dataclass(frozen=True, slots=True)
class _Rule:
    name: str  # "routes[N]", as in the config
    pool: str
    path: str | None
    prefix: str | None
    path_regex: re.Pattern[str] | None
    host: str | None  # exact, lower case, no trailing dot
    host_suffix: str | None  # ".example.test" for "*.example.test"
    header: bytes | None  # lower-case name
    test: HeaderMatch | None
    header_regex: re.Pattern[str] | None
    methods: frozenset[bytes]

    def matches(self, method: bytes, path: str, host: str | None, headers: Sequence[Triple]) -> bool:
        if self.methods and method not in self.methods:
            return False
        if self.path is not None and path != self.path:
            return False
        if self.prefix is not None and not path.startswith(self.prefix):
            return False
        if self.path_regex is not None and self.path_regex.search(path) is None:
            return False
        if self.host is not None and host != self.host:
            return False
        if self.host_suffix is not None and (host is None or not host.endswith(self.host_suffix)):
            return False
        return self.header is None or self._header_matches(headers)

    def _header_matches(self, headers: Sequence[Triple]) -> bool:
        test = self.test
        assert test is not None
        values = [value.decode("latin-1") for _, name, value in headers if name == self.header]
        if test.present is not None:
            return bool(values) is test.present
        if test.equals is not None:
            return test.equals in values
        if test.contains is not None:
            return any(test.contains in value for value in values)
        assert self.header_regex is not None
        return any(self.header_regex.search(value) for value in values)


def _compile(index: int, route: Route) -> _Rule:
    host = suffix = None
    if route.host is not None:
        name = route.host.rstrip(".")
        if name.startswith("*."):
            suffix = name[1:]
        else:
            host = name
    header = route.header
    return _Rule(
        name=f"routes[{index}]",
        pool=route.pool,
        path=route.path,
        prefix=route.path_prefix,
        path_regex=re.compile(route.path_regex) if route.path_regex is not None else None,
        host=host,
        host_suffix=suffix,
        header=header.name.encode("latin-1") if header is not None else None,
        test=header,
        header_regex=re.compile(header.regex) if header is not None and header.regex is not None else None,
        methods=frozenset(m.encode("ascii") for m in route.method),
    )


class Router:
    """The compiled `routes` of one virtual server."""

    def __init__(self, vs: VirtualServer) -> None:
        self.default = vs.pool
        self._rules = tuple(_compile(i, route) for i, route in enumerate(vs.routes))

    def route(self, method: bytes, target: bytes, host: bytes | None, headers: Sequence[Triple]) -> tuple[str | None, str]:
        """The pool for one request (None: no route, 503) and the name of the route taken."""
        path = target.split(b"?", 1)[0].decode("latin-1")
        name = host_name(host)
        for rule in self._rules:
            if rule.matches(method, path, name, headers):
                return rule.pool, rule.name
        return self.default, DEFAULT


def host_name(host: bytes | None) -> str | None:
    """The Host header's name: lower case, without port or trailing dot."""
    if host is None:
        return None
    text = host.decode("latin-1").strip().lower()
    if text.startswith("["):  # an IPv6 literal, maybe with a port
        return text.split("]", 1)[0] + "]"
    return text.split(":", 1)[0].rstrip(".")
