"""The `virtual_servers` section of the config: listen expansion, routes, TLS, persistence.

Part of `core.config` (which see for the conventions). Listen entries are
counted before they are expanded, across the whole file, so a `/8` is refused
without building sixteen million endpoints; each endpoint may be claimed by
one listen entry only.
"""

from __future__ import annotations

import re

import yaml

from appliance.core import addresses
from appliance.core.addresses import AddressError
from appliance.core.model import (
    Certificate,
    CookieEncoding,
    CookieMode,
    Endpoint,
    HeaderMatch,
    Limits,
    Listen,
    Mode,
    Persistence,
    PersistenceType,
    Route,
    ServerTls,
    Timeouts,
    VirtualServer,
)
from appliance.core.yamlnodes import (
    TOKEN,
    Path,
    Walk,
    as_bool,
    as_duration,
    as_enum,
    as_int,
    as_ref,
    as_regex,
    as_text,
    as_token,
    as_url_path,
    defaults,
    list_of,
    mapping,
    matching,
    named,
    one_of,
    render,
    seq,
)

MAX_SOCKETS = 65_536  # SPEC §2: listen ranges past this in all are a typo; each is a file descriptor
HEADER_BYTES = (1024, 1 << 20)  # a request line and Host must fit; h11 keeps the whole head in memory
HEADER_COUNT = (1, 10_000)  # at least Host; beyond thousands it is an attack, not a client
SOURCE_RECORDS = (1, 10_000_000)  # a record is ~200 bytes: ten million is ~2 GB, more is a typo
TLS_VERSIONS = ("1.0", "1.1", "1.2", "1.3")  # what ssl.TLSVersion can be asked for
MAX_ALPN = 255  # RFC 7301 §3.1: a protocol name is 1..255 bytes
_HOST = re.compile(r"(\*\.)?[a-z0-9_][a-z0-9_-]*(\.[a-z0-9_-]+)*\.?")  # a name, or *.name for its subdomains
_ALPN = re.compile(rf"[\x21-\x7e]{{1,{MAX_ALPN}}}")
_MATCHES = ("path", "path_prefix", "path_regex", "host", "header", "method")  # a route needs one of these


def virtual_servers(ctx: Walk, node: yaml.Node, path: Path) -> dict[str, VirtualServer] | None:
    """The whole section; at least one virtual server, and listen endpoints claimed in file order."""
    servers = named(_virtual_server)(ctx, node, path)
    if servers is not None and not ctx.names["virtual_servers"]:
        ctx.error(node, path, "no virtual servers defined")
    return servers


def _virtual_server(ctx: Walk, node: yaml.Node, path: Path) -> VirtualServer | None:
    keys = ("listen", "mode", "pool", "routes", "tls", "persistence", "connection_limit", "timeouts", "limits")
    m = mapping(ctx, node, path, keys, required=("listen",))
    if m is None:
        return None
    d = defaults(VirtualServer)
    mode = m.get("mode", as_enum(Mode), d["mode"])
    if not m.has("pool") and not m.has("routes"):
        ctx.error(node, path, "needs a pool or routes")
    if mode is Mode.TCP and m.has("routes"):
        ctx.error(m.key_node("routes"), (*path, "routes"), "routes need mode http")
    persistence = m.opt("persistence", _persistence)
    if mode is Mode.TCP and persistence is not None and persistence.type is PersistenceType.COOKIE:
        ctx.error(m.key_node("persistence"), (*path, "persistence"), "cookie persistence needs mode http")
    return VirtualServer(
        name=str(path[-1]),
        listen=m.get("listen", _listen, ()),
        mode=mode,
        pool=m.opt("pool", as_ref("pools", "pool")),
        routes=m.get("routes", list_of(_route, nonempty=True), d["routes"]),
        tls=m.opt("tls", _server_tls),
        persistence=persistence,
        connection_limit=m.get("connection_limit", as_int(0), d["connection_limit"]),
        timeouts=m.get("timeouts", _timeouts, d["timeouts"]),
        limits=m.get("limits", _limits, d["limits"]),
    )


def _listen(ctx: Walk, node: yaml.Node, path: Path) -> tuple[Listen, ...] | None:
    """Expand each entry after counting it: the whole file opens at most MAX_SOCKETS sockets."""
    items = seq(ctx, node, path, nonempty=True)
    if items is None:
        return None
    out: list[Listen] = []
    for index, item in items:
        where = (*path, index)
        text = as_text(ctx, item, where)
        if text is None:
            continue
        try:
            spec = addresses.parse_listen(text)
        except AddressError as exc:
            ctx.error(item, where, str(exc))
            continue
        before, ctx.sockets = ctx.sockets, ctx.sockets + spec.count
        if ctx.sockets > MAX_SOCKETS:
            if before <= MAX_SOCKETS:  # report only the entry that crosses the cap
                total = f" ({ctx.sockets:,} with the entries before it)" if before else ""
                ctx.error(item, where, f"expands to {spec.count:,} sockets{total}; at most {MAX_SOCKETS:,} in all")
            continue
        endpoints = tuple(spec.endpoints())
        _claim(ctx, endpoints, item, where)
        out.append(Listen(spec=text.strip(), endpoints=endpoints))
    return tuple(out)


def _claim(ctx: Walk, endpoints: tuple[Endpoint, ...], node: yaml.Node, path: Path) -> None:
    """Each endpoint belongs to one listen entry in the whole file."""
    taken = [endpoint for endpoint in endpoints if endpoint in ctx.owners]
    if taken:
        owner, line = ctx.owners[taken[0]]
        more = f"; {len(taken) - 1} more of this entry's endpoints are taken too" if len(taken) > 1 else ""
        ctx.error(node, path, f"{taken[0]} is already listened on by {render(owner)} (line {line}){more}")
    for endpoint in endpoints:
        ctx.owners.setdefault(endpoint, (path, node.start_mark.line + 1))


def _route(ctx: Walk, node: yaml.Node, path: Path) -> Route | None:
    m = mapping(ctx, node, path, (*_MATCHES, "pool"), required=("pool",))
    if m is None:
        return None
    if not any(m.has(key) for key in _MATCHES):
        ctx.error(node, path, f"a route needs at least one of {', '.join(_MATCHES)}")
    pool = m.opt("pool", as_ref("pools", "pool"))
    exact_path = m.opt("path", as_url_path)
    path_prefix = m.opt("path_prefix", as_url_path)
    path_regex = m.opt("path_regex", as_regex)
    host = m.opt("host", _host)
    header = m.opt("header", _header_match)
    methods = m.get("method", list_of(as_token, nonempty=True, unique=True), defaults(Route)["method"])
    if pool is None:
        return None
    return Route(
        pool=pool,
        path=exact_path,
        path_prefix=path_prefix,
        path_regex=path_regex,
        host=host,
        header=header,
        method=methods,
    )


def _host(ctx: Walk, node: yaml.Node, path: Path) -> str | None:
    text = as_text(ctx, node, path)
    if text is not None and not _HOST.fullmatch(text.lower()):
        ctx.error(node, path, f"expected a host name such as app.example.test or *.example.test, got '{text}'")
        return None
    return None if text is None else text.lower()


def _header_match(ctx: Walk, node: yaml.Node, path: Path) -> HeaderMatch | None:
    tests = ("equals", "contains", "regex", "present")
    m = mapping(ctx, node, path, ("name", *tests), required=("name",))
    if m is None:
        return None
    given = [key for key in tests if m.has(key)]
    if len(given) != 1:
        ctx.error(node, path, f"needs exactly one of {', '.join(tests)}; got {', '.join(given) or 'none'}")
    name = m.opt("name", as_token)
    equals, contains = m.opt("equals", as_text), m.opt("contains", as_text)
    regex, present = m.opt("regex", as_regex), m.opt("present", as_bool)
    if name is None:
        return None
    return HeaderMatch(name=name.lower(), equals=equals, contains=contains, regex=regex, present=present)


def _server_tls(ctx: Walk, node: yaml.Node, path: Path) -> ServerTls | None:
    keys = ("certificates", "min_version", "alpn", "handshake_timeout")
    m = mapping(ctx, node, path, keys, required=("certificates",))
    if m is None:
        return None
    d = defaults(ServerTls)
    certificates = m.opt("certificates", list_of(_certificate, nonempty=True))
    alpn = matching(_ALPN, "an ALPN protocol name such as http/1.1")
    min_version = m.get("min_version", one_of(TLS_VERSIONS), d["min_version"])
    protocols = m.get("alpn", list_of(alpn, unique=True), d["alpn"])
    handshake_timeout = m.get("handshake_timeout", as_duration(positive=True), d["handshake_timeout"])
    if certificates is None:
        return None
    return ServerTls(
        certificates=certificates, min_version=min_version, alpn=protocols, handshake_timeout=handshake_timeout
    )


def _certificate(ctx: Walk, node: yaml.Node, path: Path) -> Certificate | None:
    """One cert/key pair; its origin is kept so that load errors (at start, on reload) name the line."""
    m = mapping(ctx, node, path, ("cert", "key", "key_password_file"), required=("cert", "key"))
    if m is None:
        return None
    cert, key = m.opt("cert", as_text), m.opt("key", as_text)
    password_file = m.opt("key_password_file", as_text)
    mark = node.start_mark
    origin = f"{ctx.source}:{mark.line + 1}:{mark.column + 1}"
    if cert is None or key is None:
        return None
    return Certificate(cert=cert, key=key, key_password_file=password_file, origin=origin)


def _persistence(ctx: Walk, node: yaml.Node, path: Path) -> Persistence | None:
    keys = ("type", "cookie", "mode", "max_age", "encoding", "timeout", "max_records")
    m = mapping(ctx, node, path, keys)
    if m is None:
        return None
    d = defaults(Persistence)
    persistence = Persistence(
        type=m.get("type", as_enum(PersistenceType), d["type"]),
        cookie=m.get("cookie", matching(TOKEN, "a cookie name (an RFC 9110 token)"), d["cookie"]),
        mode=m.get("mode", as_enum(CookieMode), d["mode"]),
        max_age=m.get("max_age", as_duration(), d["max_age"]),
        encoding=m.get("encoding", as_enum(CookieEncoding), d["encoding"]),
        timeout=m.get("timeout", as_duration(positive=True), d["timeout"]),
        max_records=m.get("max_records", as_int(*SOURCE_RECORDS), d["max_records"]),
    )
    if persistence.encoding is CookieEncoding.F5 and persistence.mode is not CookieMode.INSERT:
        ctx.error(m.value_node("encoding"), (*path, "encoding"), "encoding f5 needs mode insert")
    return persistence


def _timeouts(ctx: Walk, node: yaml.Node, path: Path) -> Timeouts | None:
    d = defaults(Timeouts)
    m = mapping(ctx, node, path, tuple(d))
    if m is None:
        return None
    return Timeouts(**{key: m.get(key, as_duration(positive=True), default) for key, default in d.items()})


def _limits(ctx: Walk, node: yaml.Node, path: Path) -> Limits | None:
    m = mapping(ctx, node, path, ("max_header_bytes", "max_header_count"))
    if m is None:
        return None
    d = defaults(Limits)
    return Limits(
        max_header_bytes=m.get("max_header_bytes", as_int(*HEADER_BYTES), d["max_header_bytes"]),
        max_header_count=m.get("max_header_count", as_int(*HEADER_COUNT), d["max_header_count"]),
    )


