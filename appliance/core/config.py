"""YAML text -> `Config` (SPEC §2), with every problem reported at once.

The document is composed to PyYAML nodes (SafeLoader) and walked here, so each
value keeps its line and column, and a duplicated key is seen (PyYAML's
constructor would silently keep the last one). Every problem becomes a
`ConfigIssue` (`FILE:LINE:COL: path: message`, 1-based); walking goes on after a
problem, with the default in its place, and one `ConfigError` carrying all of
them is raised at the end.

Decisions where SPEC §2 is silent:
- An empty file (or one of comments only) is an error, "no virtual_servers
  defined": an appliance that listens on nothing is never what was meant.
- A top-level section written with nothing under it (`monitors:` with all its
  entries commented out) is an empty section, not a type error.
- Where a list is expected, a list must be written (`listen: [127.0.0.1:80]`);
  the error says how.
- Where text is expected, a number is taken as written (`min_version: 1.2`,
  `equals: 1`); a YAML boolean or null is an error (`yes` is not text).
- Durations: `250ms`, `2s`, `5m`, `1h` (a decimal like `1.5s` too) or a bare
  non-negative number of seconds.
- A monitor without `timeout` uses min(2s, interval), as HAProxy's check timeout
  defaults to its interval; a `timeout` above `interval` is an error.
- `hash_mask` is an IPv4 prefix length (0..32); IPv6 clients are hashed whole.
- YAML anchors and aliases work; merge keys (`<<`) are refused.
- Host names are not resolved: every address is an IPv4 or IPv6 literal.
- A listen endpoint belongs to one entry of one virtual server, and
  `admin.listen` may not take one either; a non-loopback `admin.listen` needs
  `admin.allow_remote: true` (our addition to SPEC §2, default false).
- `send` and `expect` belong to http and https monitors; a route needs at least
  one match field; `encoding: f5` needs cookie `mode: insert`; cookie
  persistence and routes need `mode: http`.

Layout: `core.yamlnodes` holds the node-walking helpers and scalar checks,
`core.config_vs` the `virtual_servers` section, `core.addresses` the address,
range and listen-spec parsing. `NOT_YET_SUPPORTED` below is the one place that
says which accepted keys this release does not act on yet;
`Config.not_yet_supported` lists those the file uses.
"""

from __future__ import annotations

import dataclasses
import json
import re

import yaml

from appliance.core import addresses
from appliance.core.addresses import AddressError
from appliance.core.config_vs import virtual_servers
from appliance.core.model import (
    AddressSet,
    AdminSpec,
    AdminState,
    ApplianceSpec,
    Config,
    CookieMode,
    Ha,
    HaHooks,
    LogFormat,
    LogSpec,
    Member,
    Method,
    Monitor,
    MonitorExpect,
    MonitorSend,
    MonitorType,
    PassiveCheck,
    PersistenceType,
    Pool,
    Quarantine,
    QueueSpec,
    ServiceDownAction,
    SnatDraw,
    SnatPool,
    UpstreamTls,
)
from appliance.core.yamlnodes import (
    STR_TAG,
    Path,
    Walk,
    as_bool,
    as_duration,
    as_endpoint,
    as_enum,
    as_int,
    as_name,
    as_ref,
    as_regex,
    as_text,
    as_token,
    as_url_path,
    check_duplicate_keys,
    defaults,
    list_of,
    mapping,
    matching,
    named,
    render,
    seq,
)
from appliance.errors import ConfigError, ConfigIssue

# ---------------------------------------------------------------- not yet supported
# Accepted and checked, but not acted on by this release. One row per key:
# (key pattern, the values this release already acts on; None: any use of the key).
# `*` stands for one name, `[*]` for one list index. Delete a row when it lands.
NOT_YET_SUPPORTED: tuple[tuple[str, tuple[object, ...] | None], ...] = (
    ("appliance.workers", (1,)),
)

# ---------------------------------------------------------------- limits (those of virtual servers: config_vs)
MAX_SOURCE_ADDRESSES = 65_536  # per address set or SNAT pool: each address is rotated and tracked one by one
MAX_WORKERS = 256  # one process per core; more is a typo
MAX_RATIO = 65_535  # F5 caps ratio lower still; weights beyond this are a typo and overflow float maths
MAX_PRIORITY_GROUP = 65_535  # F5's range
MAX_CONNECTION_LIMIT = 10_000_000  # more than a process has file descriptors; 0 means none
HA_PRIORITY = (1, 254)  # VRRP (RFC 5798 §5.2.4): 255 is the address owner, 0 means "stepping down"
MAX_HASH_MASK = 32  # an IPv4 prefix length (F5's and nginx's /24 habit); IPv6 is hashed whole
HTTP_STATUS = (100, 599)  # RFC 9110 §15: the three-digit status classes

_MEMBER_NAME = re.compile(r"^[!-.0-~]{1,128}$")  # printable ASCII but '/' (the default is the address: brackets, colons)
_COOKIE_VALUE = re.compile(r"^[\x21\x23-\x2B\x2D-\x3A\x3C-\x5B\x5D-\x7E]+$")  # RFC 6265 §4.1.1 cookie-octet


# ---------------------------------------------------------------- public API


def load_config(path: str) -> Config:
    """Read and parse `path`; an unreadable file is a `ConfigError` at line 1, column 1."""
    try:
        with open(path, encoding="utf-8") as stream:
            text = stream.read()
    except OSError as exc:
        raise ConfigError([ConfigIssue(path, 1, 1, "", f"cannot read: {exc.strerror or exc}")]) from None
    except UnicodeDecodeError as exc:
        raise ConfigError([ConfigIssue(path, 1, 1, "", f"not UTF-8 text: {exc.reason}")]) from None
    return parse_config(text, path)


def parse_config(text: str, source: str) -> Config:
    """Check `text` (named `source` in messages) against SPEC §2; raise `ConfigError` with every issue."""
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as exc:
        raise ConfigError([_yaml_issue(exc, text, source)]) from None
    if root is None:
        raise ConfigError([ConfigIssue(source, 1, 1, "", "empty configuration: no virtual_servers defined")])
    ctx = Walk(source)
    check_duplicate_keys(ctx, root, (), set())
    config = _config(ctx, root)
    if ctx.issues:
        raise ConfigError(ctx.issues)
    return config


def _yaml_issue(exc: yaml.YAMLError, text: str, source: str) -> ConfigIssue:
    if isinstance(exc, yaml.MarkedYAMLError):
        mark = exc.problem_mark or exc.context_mark
        message = (exc.problem or "malformed").removeprefix("but ")
        if exc.context:
            where = f" at line {exc.context_mark.line + 1}" if exc.context_mark else ""
            message += f" ({exc.context}{where})"
        line, column = (mark.line + 1, mark.column + 1) if mark else (1, 1)
        return ConfigIssue(source, line, column, "", f"invalid YAML: {message}")
    position = getattr(exc, "position", 0)  # a ReaderError: a character YAML does not allow
    before = text[:position]
    line, column = before.count("\n") + 1, position - (before.rfind("\n") + 1) + 1
    return ConfigIssue(source, line, column, "", f"invalid YAML: {exc}")


# ---------------------------------------------------------------- the file


_TOP = ("appliance", "admin", "monitors", "address_sets", "snat_pools", "pools", "virtual_servers", "ha")
_NAMED_SECTIONS = ("monitors", "address_sets", "snat_pools", "pools", "virtual_servers")


def _config(ctx: Walk, root: yaml.Node) -> Config:
    if not isinstance(root, yaml.MappingNode):
        ctx.expected(root, (), f"a mapping of sections ({', '.join(_TOP)})")
        return Config(source=ctx.source)
    top = mapping(ctx, root, (), _TOP, required=("virtual_servers",))
    assert top is not None
    for section in _NAMED_SECTIONS:
        node = top.value_node(section) if top.has(section) else None
        ctx.names[section] = _names(node)
    config = Config(
        source=ctx.source,
        appliance=top.get("appliance", _appliance, ApplianceSpec()),
        monitors=top.get("monitors", named(_monitor), {}),
        address_sets=top.get("address_sets", named(_address_set), {}),
        snat_pools=top.get("snat_pools", named(_snat_pool), {}),
        pools=top.get("pools", named(_pool), {}),
        virtual_servers=top.get("virtual_servers", virtual_servers, {}),
        admin=top.get("admin", _admin, AdminSpec()),  # after virtual_servers: its endpoint must be free
        ha=top.opt("ha", _ha),
    )
    _check_passive_cookies(ctx, config)
    return dataclasses.replace(config, not_yet_supported=_not_yet_supported(ctx))


def _check_passive_cookies(ctx: Walk, config: Config) -> None:
    """Cookie persistence `passive` reads members' `cookie_value`s: each pool reached needs them, unique."""
    checked: set[str] = set()
    for vs in config.virtual_servers.values():
        spec = vs.persistence
        if spec is None or spec.type is not PersistenceType.COOKIE or spec.mode is not CookieMode.PASSIVE:
            continue
        mode_path = ("virtual_servers", vs.name, "persistence", "mode")
        for name in dict.fromkeys([*([vs.pool] if vs.pool else []), *(route.pool for route in vs.routes)]):
            pool = config.pools.get(name)
            if pool is None:
                continue
            if all(m.cookie_value is None for m in pool.members):
                ctx.error_at(mode_path, f"mode passive needs cookie_value on the members of pool {name}; none has one")
            if name in checked:
                continue
            checked.add(name)
            first: dict[str, int] = {}
            for index, member in enumerate(pool.members):
                value = member.cookie_value
                if value is not None and first.setdefault(value, index) != index:
                    at = ("pools", name, "members", index, "cookie_value")
                    ctx.error_at(at, f"cookie_value '{value}' is members[{first[value]}]'s too; passive needs one per member")


def _names(node: yaml.Node | None) -> list[str]:
    if not isinstance(node, yaml.MappingNode):
        return []
    names = [str(key.value) for key, _ in node.value if isinstance(key, yaml.ScalarNode)]
    return list(dict.fromkeys(names))


def _not_yet_supported(ctx: Walk) -> tuple[str, ...]:
    rows = [(_pattern(text), supported) for text, supported in NOT_YET_SUPPORTED]
    found: list[str] = []
    for _line, _column, path, value, written in sorted(ctx.present, key=lambda p: (p[0], p[1])):
        for pattern, supported in rows:
            if not _path_matches(pattern, path):
                continue
            if supported is None:
                found.append(render(path))
            elif value not in supported:
                found.append(f"{render(path)}: {written}")
    return tuple(dict.fromkeys(found))


def _pattern(text: str) -> tuple[str, ...]:
    return tuple(re.findall(r"\[\*\]|[^.\[\]]+", text))


def _path_matches(pattern: tuple[str, ...], path: Path) -> bool:
    if len(pattern) != len(path):
        return False
    for want, part in zip(pattern, path, strict=True):
        if want == "[*]":
            if not isinstance(part, int):
                return False
        elif isinstance(part, int) or (want != "*" and want != part):
            return False
    return True


# ---------------------------------------------------------------- appliance, admin


def _appliance(ctx: Walk, node: yaml.Node, path: Path) -> ApplianceSpec | None:
    m = mapping(ctx, node, path, ("name", "workers", "state_file", "shutdown_grace", "log"), null_ok=True)
    if m is None:
        return None
    d = defaults(ApplianceSpec)
    return ApplianceSpec(
        name=m.get("name", as_name, d["name"]),
        workers=m.get("workers", as_int(1, MAX_WORKERS), d["workers"]),
        state_file=m.get("state_file", as_text, d["state_file"]),
        shutdown_grace=m.get("shutdown_grace", as_duration(), d["shutdown_grace"]),
        log=m.get("log", _log, d["log"]),
    )


def _log(ctx: Walk, node: yaml.Node, path: Path) -> LogSpec | None:
    m = mapping(ctx, node, path, ("access", "format"))
    if m is None:
        return None
    d = defaults(LogSpec)
    return LogSpec(
        access=m.get("access", _log_access, d["access"]),  # stderr | off | a file path
        format=m.get("format", as_enum(LogFormat), d["format"]),
    )


def _log_access(ctx: Walk, node: yaml.Node, path: Path) -> str | None:
    """`stderr`, `off` or a path; YAML reads a bare `off` as false, which means "off" here."""
    if isinstance(node, yaml.ScalarNode) and node.tag == "tag:yaml.org,2002:bool" and node.value.lower() in ("off", "false", "no"):
        return "off"
    return as_text(ctx, node, path)


def _admin(ctx: Walk, node: yaml.Node, path: Path) -> AdminSpec | None:
    m = mapping(ctx, node, path, ("listen", "token_file", "allow_remote"), null_ok=True)
    if m is None:
        return None
    d = defaults(AdminSpec)
    allow_remote = m.get("allow_remote", as_bool, d["allow_remote"])
    listen = m.opt("listen", _admin_listen)
    if listen is not None and not listen.startswith("unix:"):
        endpoint = addresses.parse_endpoint(listen)
        where = m.value_node("listen"), (*path, "listen")
        if not endpoint.is_loopback and not allow_remote:
            ctx.error(*where, f"{endpoint} is not a loopback address; set admin.allow_remote: true to allow it")
        if endpoint in ctx.owners:
            owner, line = ctx.owners[endpoint]
            ctx.error(*where, f"{endpoint} is also a listen endpoint of {render(owner)} (line {line})")
    return AdminSpec(
        listen=listen or d["listen"],
        token_file=m.get("token_file", as_text, d["token_file"]),
        allow_remote=allow_remote,
        enabled=True,
    )


def _admin_listen(ctx: Walk, node: yaml.Node, path: Path) -> str | None:
    text = as_text(ctx, node, path)
    if text is None:
        return None
    if text.startswith("unix:"):
        if not text[len("unix:") :].strip():
            ctx.error(node, path, "expected unix:PATH with a path")
            return None
        return text
    endpoint = as_endpoint(ctx, node, path)
    return None if endpoint is None else str(endpoint)


# ---------------------------------------------------------------- monitors


def _monitor(ctx: Walk, node: yaml.Node, path: Path) -> Monitor | None:
    keys = ("type", "interval", "timeout", "rise", "fall", "send", "expect", "snat")
    m = mapping(ctx, node, path, keys, required=("type",))
    if m is None:
        return None
    d = defaults(Monitor)
    kind = m.opt("type", as_enum(MonitorType))
    interval = m.get("interval", as_duration(positive=True), d["interval"])
    timeout = m.get("timeout", as_duration(positive=True), min(d["timeout"], interval))
    if timeout > interval:
        interval_text = m.value_node("interval").value if m.has("interval") else f"{interval:g}s"
        message = f"must be <= interval ({interval_text}), got {m.value_node('timeout').value}"
        ctx.error(m.value_node("timeout"), (*path, "timeout"), message)
    if kind is MonitorType.TCP:
        for key in ("send", "expect"):
            if m.has(key):
                ctx.error(m.key_node(key), (*path, key), "applies to http and https monitors only")
    return Monitor(
        name=str(path[-1]),
        type=kind or MonitorType.TCP,
        interval=interval,
        timeout=timeout,
        rise=m.get("rise", as_int(1), d["rise"]),
        fall=m.get("fall", as_int(1), d["fall"]),
        send=m.get("send", _monitor_send, d["send"]),
        expect=m.get("expect", _monitor_expect, d["expect"]),
        snat=m.get("snat", as_bool, d["snat"]),
    )


def _monitor_send(ctx: Walk, node: yaml.Node, path: Path) -> MonitorSend | None:
    m = mapping(ctx, node, path, ("method", "path", "host", "headers"))
    if m is None:
        return None
    d = defaults(MonitorSend)
    return MonitorSend(
        method=m.get("method", as_token, d["method"]),
        path=m.get("path", as_url_path, d["path"]),
        host=m.opt("host", as_text),
        headers=m.get("headers", _headers, d["headers"]),
    )


def _headers(ctx: Walk, node: yaml.Node, path: Path) -> tuple[tuple[str, str], ...] | None:
    if not isinstance(node, yaml.MappingNode):
        ctx.expected(node, path, "a mapping of header names to values")
        return None
    out: dict[str, str] = {}
    for key_node, value_node in node.value:
        where = (*path, str(key_node.value))
        name, value = as_token(ctx, key_node, where), as_text(ctx, value_node, where)
        if name is not None and value is not None:
            out.setdefault(name, value)
    return tuple(out.items())


def _monitor_expect(ctx: Walk, node: yaml.Node, path: Path) -> MonitorExpect | None:
    m = mapping(ctx, node, path, ("status", "body", "body_regex"))
    if m is None:
        return None
    if m.has("body") and m.has("body_regex"):
        ctx.error(m.key_node("body_regex"), (*path, "body_regex"), "give body or body_regex, not both")
    statuses = list_of(as_int(*HTTP_STATUS), nonempty=True, unique=True)
    return MonitorExpect(
        status=m.get("status", statuses, defaults(MonitorExpect)["status"]),
        body=m.opt("body", as_text),
        body_regex=m.opt("body_regex", as_regex),
    )


# ---------------------------------------------------------------- address sets, SNAT pools


def _address_list(ctx: Walk, node: yaml.Node, path: Path) -> tuple[str, ...] | None:
    """Addresses and ranges (no ports), expanded in order; at most MAX_SOURCE_ADDRESSES."""
    items = seq(ctx, node, path)
    if items is None:
        return None
    out: dict[str, None] = {}
    for index, item in items:
        text = as_text(ctx, item, (*path, index))
        if text is None:
            continue
        try:
            span = addresses.parse_addresses(text)
        except AddressError as exc:
            ctx.error(item, (*path, index), str(exc))
            continue
        if len(out) + span.count > MAX_SOURCE_ADDRESSES:
            message = f"expands to {span.count:,} addresses; at most {MAX_SOURCE_ADDRESSES:,} in one list"
            ctx.error(item, (*path, index), message)
            return None
        expanded = [str(address) for address in span]
        repeated = [address for address in expanded if address in out]
        if repeated:
            ctx.error(item, (*path, index), f"{repeated[0]} is already in the list")
        out.update(dict.fromkeys(expanded))
    return tuple(out)


def _address_set(ctx: Walk, node: yaml.Node, path: Path) -> AddressSet | None:
    listed = _address_list(ctx, node, path)
    return None if listed is None else AddressSet(name=str(path[-1]), addresses=listed)


def _snat_pool(ctx: Walk, node: yaml.Node, path: Path) -> SnatPool | None:
    keys = ("addresses", "draw", "quarantine", "min_interval", "static", "mutable")
    m = mapping(ctx, node, path, keys)
    if m is None:
        return None
    d = defaults(SnatPool)
    return SnatPool(
        name=str(path[-1]),
        addresses=m.get("addresses", _address_list, d["addresses"]),
        draw=m.get("draw", list_of(_snat_draw), d["draw"]),
        quarantine=m.get("quarantine", _quarantine, d["quarantine"]),
        min_interval=m.get("min_interval", as_duration(), d["min_interval"]),
        static=m.get("static", as_bool, d["static"]),
        mutable=m.get("mutable", as_bool, d["mutable"]),
    )


def _snat_draw(ctx: Walk, node: yaml.Node, path: Path) -> SnatDraw | None:
    m = mapping(ctx, node, path, ("from", "count"), required=("from", "count"))
    if m is None:
        return None
    source = m.opt("from", as_ref("address_sets", "address set"))
    count = m.opt("count", as_int(1))
    return None if source is None or count is None else SnatDraw(source=source, count=count)


def _quarantine(ctx: Walk, node: yaml.Node, path: Path) -> Quarantine | None:
    m = mapping(ctx, node, path, ("failures", "for"))
    if m is None:
        return None
    d = defaults(Quarantine)
    return Quarantine(
        failures=m.get("failures", as_int(1), d["failures"]),
        duration=m.get("for", as_duration(positive=True), d["duration"]),
    )


# ---------------------------------------------------------------- pools


def _pool(ctx: Walk, node: yaml.Node, path: Path) -> Pool | None:
    keys = (
        "method", "monitors", "min_active_members", "slow_ramp", "action_on_service_down", "retries",
        "retry_non_idempotent", "queue", "passive", "hash_mask", "snat", "tls", "static", "mutable", "members",
    )  # fmt: skip
    m = mapping(ctx, node, path, keys)
    if m is None:
        return None
    d = defaults(Pool)
    return Pool(
        name=str(path[-1]),
        method=m.get("method", as_enum(Method), d["method"]),
        monitors=m.get("monitors", list_of(as_ref("monitors", "monitor"), unique=True), d["monitors"]),
        min_active_members=m.get("min_active_members", as_int(0), d["min_active_members"]),
        slow_ramp=m.get("slow_ramp", as_duration(), d["slow_ramp"]),
        action_on_service_down=m.get(
            "action_on_service_down", as_enum(ServiceDownAction), d["action_on_service_down"]
        ),
        retries=m.get("retries", as_int(0), d["retries"]),
        retry_non_idempotent=m.get("retry_non_idempotent", as_bool, d["retry_non_idempotent"]),
        queue=m.get("queue", _queue, d["queue"]),
        passive=m.get("passive", _passive, d["passive"]),
        hash_mask=m.get("hash_mask", as_int(0, MAX_HASH_MASK), d["hash_mask"]),
        snat=m.opt("snat", as_ref("snat_pools", "SNAT pool")),
        tls=m.opt("tls", _upstream_tls),
        static=m.get("static", as_bool, d["static"]),
        mutable=m.get("mutable", as_bool, d["mutable"]),
        members=m.get("members", _members, d["members"]),
    )


def _queue(ctx: Walk, node: yaml.Node, path: Path) -> QueueSpec | None:
    m = mapping(ctx, node, path, ("size", "timeout"))
    if m is None:
        return None
    d = defaults(QueueSpec)
    return QueueSpec(
        size=m.get("size", as_int(0), d["size"]),
        timeout=m.get("timeout", as_duration(positive=True), d["timeout"]),
    )


def _passive(ctx: Walk, node: yaml.Node, path: Path) -> PassiveCheck | None:
    m = mapping(ctx, node, path, ("failures", "down_for"))
    if m is None:
        return None
    d = defaults(PassiveCheck)
    return PassiveCheck(
        failures=m.get("failures", as_int(0), d["failures"]),
        down_for=m.get("down_for", as_duration(positive=True), d["down_for"]),
    )


def _upstream_tls(ctx: Walk, node: yaml.Node, path: Path) -> UpstreamTls | None:
    m = mapping(ctx, node, path, ("verify", "ca", "server_name"))
    if m is None:
        return None
    mark = node.start_mark
    return UpstreamTls(
        verify=m.get("verify", as_bool, defaults(UpstreamTls)["verify"]),
        ca=m.opt("ca", as_text),
        server_name=m.opt("server_name", as_text),
        origin=f"{ctx.source}:{mark.line + 1}:{mark.column + 1}",  # where client-context errors point
    )


def _members(ctx: Walk, node: yaml.Node, path: Path) -> tuple[Member, ...] | None:
    items = seq(ctx, node, path)
    if items is None:
        return None
    out: list[Member] = []
    first_at: dict[str, tuple[int, int]] = {}  # name -> index, line
    for index, item in items:
        member = _member(ctx, item, (*path, index))
        if member is None:
            continue
        if member.name in first_at:
            other, line = first_at[member.name]
            ctx.error(item, (*path, index), f"duplicate member name '{member.name}' (members[{other}], line {line})")
            continue
        first_at[member.name] = (index, item.start_mark.line + 1)
        out.append(member)
    return tuple(out)


def _member(ctx: Walk, node: yaml.Node, path: Path) -> Member | None:
    keys = ("address", "name", "ratio", "priority_group", "connection_limit", "state", "cookie_value")
    m = mapping(ctx, node, path, keys, required=("address",))
    if m is None:
        return None
    d = defaults(Member)
    address = m.opt("address", as_endpoint)
    name = m.opt("name", matching(_MEMBER_NAME, "a name of printable ASCII without spaces or '/'"))
    ratio = m.get("ratio", as_int(1, MAX_RATIO), d["ratio"])
    priority_group = m.get("priority_group", as_int(0, MAX_PRIORITY_GROUP), d["priority_group"])
    connection_limit = m.get("connection_limit", as_int(0, MAX_CONNECTION_LIMIT), d["connection_limit"])
    state = m.get("state", as_enum(AdminState), d["state"])
    cookie_value = m.opt("cookie_value", matching(_COOKIE_VALUE, "a cookie value (RFC 6265 cookie-octets)"))
    if address is None:
        return None
    return Member(
        address=address,
        name=name if name is not None else str(m.value_node("address").value).strip(),
        ratio=ratio,
        priority_group=priority_group,
        connection_limit=connection_limit,
        state=state,
        cookie_value=cookie_value,
    )


def parse_member(data: object, source: str = "member") -> Member:
    """One member given as JSON data (the admin API's body, the state file's entry), checked as in a file.

    JSON is YAML, so the same checks and messages apply; positions are dropped
    (the issues' `path` says which field).

    Raises:
        ConfigError: every problem found.
    """
    try:
        root = yaml.compose(json.dumps(data), Loader=yaml.SafeLoader)
    except RecursionError:
        raise ConfigError([ConfigIssue(source, 1, 1, "", "nested too deeply to be a member")]) from None
    ctx = Walk(source)
    member = _member(ctx, root, ()) if root is not None else None
    if ctx.issues or member is None:
        raise ConfigError(ctx.issues or [ConfigIssue(source, 1, 1, "", "expected a member")])
    return member


# ---------------------------------------------------------------- HA


def _ha(ctx: Walk, node: yaml.Node, path: Path) -> Ha | None:
    keys = (
        "priority", "preempt", "preempt_delay", "advert_interval", "listen", "peers", "secret_file",
        "virtual_servers", "track", "hooks",
    )  # fmt: skip
    m = mapping(ctx, node, path, keys, required=("listen", "peers", "secret_file"), null_ok=True)
    if m is None:
        return None
    d = defaults(Ha)
    listen = m.opt("listen", as_endpoint)
    peers = m.opt("peers", list_of(as_endpoint, nonempty=True, unique=True))
    if listen is not None and peers is not None and listen in peers:
        ctx.error(m.value_node("peers"), (*path, "peers"), f"{listen} is this node's own ha.listen")
    secret_file = m.opt("secret_file", as_text)
    governed = m.opt("virtual_servers", _ha_virtual_servers)
    priority = m.get("priority", as_int(*HA_PRIORITY), d["priority"])
    preempt = m.get("preempt", as_bool, d["preempt"])
    preempt_delay = m.get("preempt_delay", as_duration(), d["preempt_delay"])
    advert_interval = m.get("advert_interval", as_duration(positive=True), d["advert_interval"])
    track_pools = m.get("track", _ha_track, d["track_pools"])
    hooks = m.get("hooks", _ha_hooks, d["hooks"])
    if listen is None or peers is None or secret_file is None:
        return None
    return Ha(
        priority=priority,
        preempt=preempt,
        preempt_delay=preempt_delay,
        advert_interval=advert_interval,
        listen=listen,
        peers=peers,
        secret_file=secret_file,
        virtual_servers=governed if isinstance(governed, tuple) else None,
        track_pools=track_pools,
        hooks=hooks,
    )


def _ha_virtual_servers(ctx: Walk, node: yaml.Node, path: Path) -> tuple[str, ...] | str | None:
    """`all` (returned as the string), or a list of virtual server names."""
    if isinstance(node, yaml.ScalarNode) and node.value == "all" and node.tag == STR_TAG:
        return "all"
    if not isinstance(node, yaml.SequenceNode):
        ctx.expected(node, path, "all or a list of virtual server names")
        return None
    return list_of(as_ref("virtual_servers", "virtual server"), unique=True)(ctx, node, path)


def _ha_track(ctx: Walk, node: yaml.Node, path: Path) -> dict[str, int] | None:
    m = mapping(ctx, node, path, ("pools",))
    if m is None:
        return None
    return m.get("pools", _ha_track_pools, dict[str, int]())


def _ha_track_pools(ctx: Walk, node: yaml.Node, path: Path) -> dict[str, int] | None:
    if not isinstance(node, yaml.MappingNode):
        ctx.expected(node, path, "a mapping of pool names to priority decrements")
        return None
    out: dict[str, int] = {}
    weight = as_int(*HA_PRIORITY)
    for key_node, value_node in node.value:
        where = (*path, str(key_node.value))
        name, value = as_ref("pools", "pool")(ctx, key_node, where), weight(ctx, value_node, where)
        if name is not None and value is not None:
            out.setdefault(name, value)
    return out


def _ha_hooks(ctx: Walk, node: yaml.Node, path: Path) -> HaHooks | None:
    m = mapping(ctx, node, path, ("master", "backup", "fault"))
    if m is None:
        return None
    argv = list_of(as_text, nonempty=True)
    argvs = list_of(argv)
    d = defaults(HaHooks)
    return HaHooks(
        master=m.get("master", argvs, d["master"]),
        backup=m.get("backup", argvs, d["backup"]),
        fault=m.get("fault", argvs, d["fault"]),
    )
