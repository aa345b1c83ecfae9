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

`NOT_YET_SUPPORTED` below is the one place that says which accepted keys this
release does not act on yet; `Config.not_yet_supported` lists those found.
"""

from __future__ import annotations

import dataclasses
import difflib
import enum
import math
import re
from collections.abc import Callable
from typing import Any, TypeVar

import yaml

from appliance.core import addresses
from appliance.core.addresses import AddressError
from appliance.core.model import (
    AddressSet,
    AdminSpec,
    AdminState,
    ApplianceSpec,
    Certificate,
    Config,
    CookieEncoding,
    CookieMode,
    Endpoint,
    Ha,
    HaHooks,
    HeaderMatch,
    Limits,
    Listen,
    LogFormat,
    LogSpec,
    Member,
    Method,
    Mode,
    Monitor,
    MonitorExpect,
    MonitorSend,
    MonitorType,
    Persistence,
    PersistenceType,
    Pool,
    QueueSpec,
    Quarantine,
    Route,
    ServerTls,
    ServiceDownAction,
    SnatDraw,
    SnatPool,
    Timeouts,
    UpstreamTls,
    VirtualServer,
)
from appliance.errors import ConfigError, ConfigIssue

# ---------------------------------------------------------------- not yet supported
# Accepted and checked, but not acted on by this release. One row per key:
# (key pattern, the values this release already acts on; None: any use of the key).
# `*` stands for one name, `[*]` for one list index. Delete a row when it lands.
NOT_YET_SUPPORTED: tuple[tuple[str, tuple[object, ...] | None], ...] = (
    ("appliance.workers", (1,)),
    ("admin", None),  # the admin API comes later
    ("monitors.*.type", ("tcp",)),
    ("address_sets", None),
    ("snat_pools", None),
    ("pools.*.method", ("round_robin",)),
    ("pools.*.min_active_members", (0,)),
    ("pools.*.slow_ramp", (0,)),
    ("pools.*.action_on_service_down", ("none",)),
    ("pools.*.queue.size", (0,)),
    ("pools.*.hash_mask", None),
    ("pools.*.snat", None),
    ("pools.*.tls", None),
    ("pools.*.members[*].cookie_value", None),
    ("virtual_servers.*.mode", ("http",)),
    ("virtual_servers.*.tls", None),
    ("virtual_servers.*.routes", None),
    ("virtual_servers.*.persistence", None),
    ("ha", None),
)

# ---------------------------------------------------------------- limits
MAX_SOCKETS = 65_536  # SPEC §2: listen ranges past this in all are a typo; each is a file descriptor
MAX_SOURCE_ADDRESSES = 65_536  # per address set or SNAT pool: each address is rotated and tracked one by one
MAX_WORKERS = 256  # one process per core; more is a typo
MAX_RATIO = 65_535  # F5's ceiling for a member ratio; larger weights are typos
MAX_PRIORITY_GROUP = 65_535  # F5's ceiling for a priority group
HA_PRIORITY = (1, 254)  # VRRP (RFC 5798 §5.2.4): 255 is the address owner, 0 means "stepping down"
MAX_HASH_MASK = 32  # an IPv4 prefix length (F5's and nginx's /24 habit); IPv6 is hashed whole
HEADER_BYTES = (1024, 1 << 20)  # a request line and Host must fit; h11 keeps the whole head in memory
HEADER_COUNT = (1, 10_000)  # at least Host; beyond thousands it is an attack, not a client
HTTP_STATUS = (100, 599)  # RFC 9110 §15: the three-digit status classes
TLS_VERSIONS = ("1.0", "1.1", "1.2", "1.3")  # what ssl.TLSVersion can be asked for
MAX_NAME = 64  # object names appear in URLs, logs and metric labels
MAX_ALPN = 255  # RFC 7301 §3.1: a protocol name is 1..255 bytes

_NAME = re.compile(rf"^[A-Za-z0-9_][A-Za-z0-9_.-]{{0,{MAX_NAME - 1}}}$")
_MEMBER_NAME = re.compile(r"^[^\s/]{1,128}$")  # the default is the address, brackets and colons included
_TOKEN = re.compile(r"^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$")  # RFC 9110 §5.6.2: methods, header and cookie names
_COOKIE_VALUE = re.compile(r"^[\x21\x23-\x2B\x2D-\x3A\x3C-\x5B\x5D-\x7E]+$")  # RFC 6265 §4.1.1 cookie-octet
_HOST = re.compile(r"^(\*\.)?[a-z0-9_]([a-z0-9_-]*)(\.[a-z0-9_-]+)*\.?$")
_DURATION = re.compile(r"^([0-9]+(?:\.[0-9]+)?)(ms|s|m|h)$")
_DURATION_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}
DURATION_FORMS = "250ms, 2s, 5m, 1h or a number of seconds"

_STR = "tag:yaml.org,2002:str"
_INT = "tag:yaml.org,2002:int"
_FLOAT = "tag:yaml.org,2002:float"
_BOOL = "tag:yaml.org,2002:bool"
_NULL = "tag:yaml.org,2002:null"
_TIMESTAMP = "tag:yaml.org,2002:timestamp"
_KINDS = {_STR: "a string", _INT: "an integer", _FLOAT: "a number", _BOOL: "a boolean", _TIMESTAMP: "a date"}

T = TypeVar("T")
Path = tuple[str | int, ...]
Conv = Callable[["_Ctx", yaml.Node, Path], T | None]  # a checked value, or None after reporting


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
    ctx = _Ctx(source)
    _check_duplicate_keys(ctx, root, (), set())
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


# ---------------------------------------------------------------- the walking helpers


class _Ctx:
    """What one parse collects: issues, keys present, defined names, claimed endpoints."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.issues: list[ConfigIssue] = []
        self.present: list[tuple[int, int, Path, object, str]] = []  # line, column, path, value, as written
        self.names: dict[str, list[str]] = {}  # section -> names defined there, in file order
        self.sockets = 0  # listen endpoints counted so far, before any is built
        self.owners: dict[Endpoint, tuple[Path, int]] = {}  # endpoint -> listen entry and its line
        self._constructor = yaml.constructor.SafeConstructor()

    def error(self, node: yaml.Node, path: Path, message: str) -> None:
        mark = node.start_mark
        self.issues.append(ConfigIssue(self.source, mark.line + 1, mark.column + 1, _render(path), message))

    def expected(self, node: yaml.Node, path: Path, what: str, hint: str = "") -> None:
        self.error(node, path, f"expected {what}, got {_describe(node)}{hint}")

    def scalar(self, node: yaml.Node) -> object:
        return self._constructor.construct_object(node)

    def note(self, node: yaml.Node, path: Path, value: object) -> None:
        written = node.value if isinstance(node, yaml.ScalarNode) else ""
        recorded = value.value if isinstance(value, enum.Enum) else value
        self.present.append((node.start_mark.line, node.start_mark.column, path, recorded, written))


class _Map:
    """A checked mapping: known keys only, first occurrence of each, read one field at a time."""

    def __init__(self, ctx: _Ctx, node: yaml.Node, path: Path, allowed: tuple[str, ...]) -> None:
        self.ctx, self.node, self.path, self.allowed = ctx, node, path, allowed
        self.fields: dict[str, tuple[yaml.Node, yaml.Node]] = {}

    def has(self, key: str) -> bool:
        assert key in self.allowed, key
        return key in self.fields

    def value_node(self, key: str) -> yaml.Node:
        return self.fields[key][1]

    def key_node(self, key: str) -> yaml.Node:
        return self.fields[key][0]

    def get(self, key: str, conv: Conv[T], default: T) -> T:
        value = self.opt(key, conv)
        return default if value is None else value

    def opt(self, key: str, conv: Conv[T]) -> T | None:
        if not self.has(key):
            return None
        node, path = self.value_node(key), (*self.path, key)
        value = conv(self.ctx, node, path)
        if value is not None:
            self.ctx.note(node, path, value)
        return value


def _mapping(
    ctx: _Ctx,
    node: yaml.Node,
    path: Path,
    allowed: tuple[str, ...],
    required: tuple[str, ...] = (),
    *,
    null_ok: bool = False,
) -> _Map | None:
    """Check `node` is a mapping of `allowed` keys holding every `required` one."""
    result = _Map(ctx, node, path, allowed)
    if null_ok and _is_null(node):
        items: list[tuple[yaml.Node, yaml.Node]] = []
    elif isinstance(node, yaml.MappingNode):
        items = node.value
    else:
        ctx.expected(node, path, f"a mapping with keys {', '.join(allowed)}")
        return None
    seen: set[str] = set()
    for key_node, value_node in items:
        key = _key(ctx, key_node, path)
        if key is None or key in seen:  # duplicates are reported by _check_duplicate_keys
            continue
        seen.add(key)
        if key not in allowed:
            ctx.error(key_node, (*path, key), f"unknown key{_did_you_mean(key, allowed)}; allowed: {', '.join(allowed)}")
            continue
        result.fields[key] = (key_node, value_node)
    for key in required:
        if key not in result.fields:
            ctx.error(node, path, f"missing required key '{key}'")
    return result


def _named(build: Conv[T], *, what: str = "names") -> Conv[dict[str, T]]:
    """A section of named objects: `{name: body}`, names unique, each body built by `build`."""

    def conv(ctx: _Ctx, node: yaml.Node, path: Path) -> dict[str, T] | None:
        if _is_null(node):
            return {}
        if not isinstance(node, yaml.MappingNode):
            ctx.expected(node, path, f"a mapping of {what} to their settings")
            return None
        out: dict[str, T] = {}
        for key_node, value_node in node.value:
            name = _key(ctx, key_node, path)
            if name is None or name in out:
                continue
            if not _NAME.match(name):
                ctx.error(key_node, (*path, name), f"a name is letters, digits, '_', '.' and '-' (at most {MAX_NAME})")
                continue
            value = build(ctx, value_node, (*path, name))
            if value is not None:
                out[name] = value
        return out

    return conv


def _seq(ctx: _Ctx, node: yaml.Node, path: Path, *, nonempty: bool = False) -> list[tuple[int, yaml.Node]] | None:
    if not isinstance(node, yaml.SequenceNode):
        hint = f" (write [{node.value}])" if isinstance(node, yaml.ScalarNode) and node.tag == _STR else ""
        ctx.expected(node, path, "a list", hint)
        return None
    if nonempty and not node.value:
        ctx.error(node, path, "must not be empty")
        return None
    return list(enumerate(node.value))


def _list_of(item: Conv[T], *, nonempty: bool = False, unique: bool = False) -> Conv[tuple[T, ...]]:
    def conv(ctx: _Ctx, node: yaml.Node, path: Path) -> tuple[T, ...] | None:
        items = _seq(ctx, node, path, nonempty=nonempty)
        if items is None:
            return None
        out: list[T] = []
        for index, item_node in items:
            value = item(ctx, item_node, (*path, index))
            if value is None:
                continue
            if unique and value in out:
                ctx.error(item_node, (*path, index), f"'{value}' is listed twice")
                continue
            out.append(value)
        return tuple(out)

    return conv


def _key(ctx: _Ctx, node: yaml.Node, path: Path) -> str | None:
    if isinstance(node, yaml.ScalarNode) and node.tag == "tag:yaml.org,2002:merge":
        ctx.error(node, path, "YAML merge keys (<<) are not supported; use an alias (*name) for a whole value")
        return None
    if not isinstance(node, yaml.ScalarNode) or node.tag in (_NULL, _BOOL) or not node.value:
        ctx.expected(node, path, "a key that is a name")
        return None
    return str(node.value)


def _check_duplicate_keys(ctx: _Ctx, node: yaml.Node, path: Path, visited: set[int]) -> None:
    """Report every key written twice in one mapping, at the second, anywhere in the document."""
    if id(node) in visited:  # an alias: already walked
        return
    visited.add(id(node))
    if isinstance(node, yaml.MappingNode):
        first: dict[str, yaml.Node] = {}
        for key_node, value_node in node.value:
            key = str(key_node.value) if isinstance(key_node, yaml.ScalarNode) else "?"
            if isinstance(key_node, yaml.ScalarNode) and key in first:
                line = first[key].start_mark.line + 1
                ctx.error(key_node, (*path, key), f"duplicate key '{key}' (first at line {line})")
            first.setdefault(key, key_node)
            _check_duplicate_keys(ctx, value_node, (*path, key), visited)
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            _check_duplicate_keys(ctx, item, (*path, index), visited)


def _render(path: Path) -> str:
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else part)
    return out


def _describe(node: yaml.Node) -> str:
    if isinstance(node, yaml.MappingNode):
        return "a mapping"
    if isinstance(node, yaml.SequenceNode):
        return "a list"
    if _is_null(node):
        return "nothing (null)"
    text = str(node.value)
    text = text if len(text) <= 40 else text[:37] + "..."
    if node.tag == _STR:
        return f"'{text}'"
    return f"{_KINDS.get(node.tag, node.tag)} {text}"


def _is_null(node: yaml.Node) -> bool:
    return isinstance(node, yaml.ScalarNode) and node.tag == _NULL


def _did_you_mean(word: str, choices: tuple[str, ...] | list[str]) -> str:
    close = difflib.get_close_matches(word, choices, n=1)
    return f" '{word}' (did you mean '{close[0]}'?)" if close else f" '{word}'"


def _defaults(cls: type) -> dict[str, Any]:
    """The model's defaults by field name: SPEC §2's values live in model.py only."""
    out: dict[str, Any] = {}
    for spec in dataclasses.fields(cls):
        if spec.default is not dataclasses.MISSING:
            out[spec.name] = spec.default
        elif spec.default_factory is not dataclasses.MISSING:
            out[spec.name] = spec.default_factory()
    return out


# ---------------------------------------------------------------- scalar converters


def _text(ctx: _Ctx, node: yaml.Node, path: Path) -> str | None:
    """Non-empty text; a number is taken as written, a boolean or null is refused."""
    if not isinstance(node, yaml.ScalarNode) or node.tag in (_BOOL, _NULL):
        hint = " (quote it to mean the text)" if isinstance(node, yaml.ScalarNode) and node.tag == _BOOL else ""
        ctx.expected(node, path, "a string", hint)
        return None
    text = str(node.value)
    if not text.strip():
        ctx.error(node, path, "must not be empty")
        return None
    return text


def _matching(pattern: re.Pattern[str], what: str) -> Conv[str]:
    def conv(ctx: _Ctx, node: yaml.Node, path: Path) -> str | None:
        text = _text(ctx, node, path)
        if text is not None and not pattern.match(text):
            ctx.error(node, path, f"expected {what}, got '{text}'")
            return None
        return text

    return conv


_name = _matching(_NAME, f"a name of letters, digits, '_', '.' and '-' (at most {MAX_NAME})")
_token = _matching(_TOKEN, "a token (letters, digits and !#$%&'*+-.^_`|~)")
_url_path = _matching(re.compile(r"^/\S*$"), "a path starting with '/'")


def _bool(ctx: _Ctx, node: yaml.Node, path: Path) -> bool | None:
    if isinstance(node, yaml.ScalarNode) and node.tag == _BOOL:
        return bool(ctx.scalar(node))
    ctx.expected(node, path, "true or false")
    return None


def _int(low: int, high: int | None = None) -> Conv[int]:
    def conv(ctx: _Ctx, node: yaml.Node, path: Path) -> int | None:
        if not (isinstance(node, yaml.ScalarNode) and node.tag == _INT):
            ctx.expected(node, path, "an integer")
            return None
        value = ctx.scalar(node)
        assert isinstance(value, int)
        if value < low or (high is not None and value > high):
            bounds = f">= {low}" if high is None else f"{low}..{high}"
            ctx.error(node, path, f"must be {bounds}, got {value}")
            return None
        return value

    return conv


def _duration(*, positive: bool = False) -> Conv[float]:
    def conv(ctx: _Ctx, node: yaml.Node, path: Path) -> float | None:
        seconds: float | None = None
        if isinstance(node, yaml.ScalarNode) and node.tag in (_INT, _FLOAT):
            number = ctx.scalar(node)
            assert isinstance(number, (int, float))
            seconds = float(number)
        elif isinstance(node, yaml.ScalarNode) and node.tag == _STR:
            match = _DURATION.match(node.value.strip())
            if match:
                seconds = float(match[1]) * _DURATION_UNITS[match[2]]
        if seconds is None or not math.isfinite(seconds):
            ctx.expected(node, path, f"a duration ({DURATION_FORMS})")
            return None
        if seconds < 0 or (positive and seconds == 0):
            ctx.error(node, path, f"must be {'> 0' if positive else '>= 0'}, got {node.value}")
            return None
        return seconds

    return conv


def _choice(choices: tuple[str, ...]) -> Conv[str]:
    def conv(ctx: _Ctx, node: yaml.Node, path: Path) -> str | None:
        if isinstance(node, yaml.ScalarNode) and node.tag not in (_BOOL, _NULL) and node.value in choices:
            return str(node.value)
        ctx.error(node, path, f"must be one of {', '.join(choices)}; got {_describe(node)}")
        return None

    return conv


E = TypeVar("E", bound=enum.Enum)


def _enum(cls: type[E]) -> Conv[E]:
    choose = _choice(tuple(str(member.value) for member in cls))

    def conv(ctx: _Ctx, node: yaml.Node, path: Path) -> E | None:
        text = choose(ctx, node, path)
        return None if text is None else cls(text)

    return conv


def _regex(ctx: _Ctx, node: yaml.Node, path: Path) -> str | None:
    text = _text(ctx, node, path)
    if text is None:
        return None
    try:
        re.compile(text)
    except re.error as exc:
        ctx.error(node, path, f"bad regular expression: {exc}")
        return None
    return text


def _ref(section: str, label: str) -> Conv[str]:
    """A name that must be defined in the top-level `section`."""

    def conv(ctx: _Ctx, node: yaml.Node, path: Path) -> str | None:
        name = _text(ctx, node, path)
        if name is None:
            return None
        defined = ctx.names.get(section, [])
        if name not in defined:
            known = f"defined: {', '.join(defined)}" if defined else f"no {section} are defined"
            ctx.error(node, path, f"undefined {label} '{name}'; {known}")
            return None
        return name

    return conv


def _endpoint(ctx: _Ctx, node: yaml.Node, path: Path) -> Endpoint | None:
    text = _text(ctx, node, path)
    if text is None:
        return None
    try:
        return addresses.parse_endpoint(text)
    except AddressError as exc:
        ctx.error(node, path, str(exc))
        return None


# ---------------------------------------------------------------- the file


_TOP = ("appliance", "admin", "monitors", "address_sets", "snat_pools", "pools", "virtual_servers", "ha")
_NAMED_SECTIONS = ("monitors", "address_sets", "snat_pools", "pools", "virtual_servers")


def _config(ctx: _Ctx, root: yaml.Node) -> Config:
    if not isinstance(root, yaml.MappingNode):
        ctx.expected(root, (), f"a mapping of sections ({', '.join(_TOP)})")
        return Config(source=ctx.source)
    top = _mapping(ctx, root, (), _TOP, required=("virtual_servers",))
    assert top is not None
    for section in _NAMED_SECTIONS:
        node = top.value_node(section) if top.has(section) else None
        ctx.names[section] = _names(node)
    config = Config(
        source=ctx.source,
        appliance=top.get("appliance", _appliance, ApplianceSpec()),
        monitors=top.get("monitors", _named(_monitor), {}),
        address_sets=top.get("address_sets", _named(_address_set), {}),
        snat_pools=top.get("snat_pools", _named(_snat_pool), {}),
        pools=top.get("pools", _named(_pool), {}),
        virtual_servers=top.get("virtual_servers", _virtual_servers, {}),
        admin=top.get("admin", _admin, AdminSpec()),  # after virtual_servers: its endpoint must be free
        ha=top.opt("ha", _ha),
    )
    return dataclasses.replace(config, not_yet_supported=_not_yet_supported(ctx))


def _names(node: yaml.Node | None) -> list[str]:
    if not isinstance(node, yaml.MappingNode):
        return []
    names = [str(key.value) for key, _ in node.value if isinstance(key, yaml.ScalarNode)]
    return list(dict.fromkeys(names))


def _not_yet_supported(ctx: _Ctx) -> tuple[str, ...]:
    rows = [(_pattern(text), supported) for text, supported in NOT_YET_SUPPORTED]
    found: list[str] = []
    for _line, _column, path, value, written in sorted(ctx.present, key=lambda p: (p[0], p[1])):
        for pattern, supported in rows:
            if not _path_matches(pattern, path):
                continue
            if supported is None:
                found.append(_render(path))
            elif value not in supported:
                found.append(f"{_render(path)}: {written}")
    return tuple(dict.fromkeys(found))


def _pattern(text: str) -> tuple[str, ...]:
    return tuple(re.findall(r"\[\*\]|[^.\[\]]+", text))


def _path_matches(pattern: tuple[str, ...], path: Path) -> bool:
    if len(pattern) != len(path):
        return False
    for want, part in zip(pattern, path):
        if want == "[*]":
            if not isinstance(part, int):
                return False
        elif isinstance(part, int) or (want != "*" and want != part):
            return False
    return True


# ---------------------------------------------------------------- appliance, admin


def _appliance(ctx: _Ctx, node: yaml.Node, path: Path) -> ApplianceSpec | None:
    m = _mapping(ctx, node, path, ("name", "workers", "state_file", "shutdown_grace", "log"), null_ok=True)
    if m is None:
        return None
    d = _defaults(ApplianceSpec)
    return ApplianceSpec(
        name=m.get("name", _name, d["name"]),
        workers=m.get("workers", _int(1, MAX_WORKERS), d["workers"]),
        state_file=m.get("state_file", _text, d["state_file"]),
        shutdown_grace=m.get("shutdown_grace", _duration(), d["shutdown_grace"]),
        log=m.get("log", _log, d["log"]),
    )


def _log(ctx: _Ctx, node: yaml.Node, path: Path) -> LogSpec | None:
    m = _mapping(ctx, node, path, ("access", "format"))
    if m is None:
        return None
    d = _defaults(LogSpec)
    return LogSpec(
        access=m.get("access", _text, d["access"]),  # stderr | off | a file path
        format=m.get("format", _enum(LogFormat), d["format"]),
    )


def _admin(ctx: _Ctx, node: yaml.Node, path: Path) -> AdminSpec | None:
    m = _mapping(ctx, node, path, ("listen", "token_file", "allow_remote"), null_ok=True)
    if m is None:
        return None
    d = _defaults(AdminSpec)
    allow_remote = m.get("allow_remote", _bool, d["allow_remote"])
    listen = m.get("listen", _admin_listen, d["listen"])
    if m.has("listen") and not listen.startswith("unix:"):
        endpoint = addresses.parse_endpoint(listen)
        where = m.value_node("listen"), (*path, "listen")
        if not endpoint.is_loopback and not allow_remote:
            ctx.error(*where, f"{endpoint} is not a loopback address; set admin.allow_remote: true to allow it")
        if endpoint in ctx.owners:
            owner, line = ctx.owners[endpoint]
            ctx.error(*where, f"{endpoint} is also a listen endpoint of {_render(owner)} (line {line})")
    return AdminSpec(listen=listen, token_file=m.get("token_file", _text, d["token_file"]), allow_remote=allow_remote)


def _admin_listen(ctx: _Ctx, node: yaml.Node, path: Path) -> str | None:
    text = _text(ctx, node, path)
    if text is None:
        return None
    if text.startswith("unix:"):
        if not text[len("unix:") :].strip():
            ctx.error(node, path, "expected unix:PATH with a path")
            return None
        return text
    endpoint = _endpoint(ctx, node, path)
    return None if endpoint is None else str(endpoint)


# ---------------------------------------------------------------- monitors


def _monitor(ctx: _Ctx, node: yaml.Node, path: Path) -> Monitor | None:
    keys = ("type", "interval", "timeout", "rise", "fall", "send", "expect")
    m = _mapping(ctx, node, path, keys, required=("type",))
    if m is None:
        return None
    d = _defaults(Monitor)
    kind = m.get("type", _enum(MonitorType), MonitorType.TCP)
    interval = m.get("interval", _duration(positive=True), d["interval"])
    timeout = m.get("timeout", _duration(positive=True), min(d["timeout"], interval))
    if timeout > interval:
        interval_text = m.value_node("interval").value if m.has("interval") else f"{interval:g}s"
        ctx.error(m.value_node("timeout"), (*path, "timeout"), f"must be <= interval ({interval_text})")
    if kind is MonitorType.TCP:
        for key in ("send", "expect"):
            if m.has(key):
                ctx.error(m.key_node(key), (*path, key), "applies to http and https monitors only")
    return Monitor(
        name=str(path[-1]),
        type=kind,
        interval=interval,
        timeout=timeout,
        rise=m.get("rise", _int(1), d["rise"]),
        fall=m.get("fall", _int(1), d["fall"]),
        send=m.get("send", _monitor_send, d["send"]),
        expect=m.get("expect", _monitor_expect, d["expect"]),
    )


def _monitor_send(ctx: _Ctx, node: yaml.Node, path: Path) -> MonitorSend | None:
    m = _mapping(ctx, node, path, ("method", "path", "host", "headers"))
    if m is None:
        return None
    d = _defaults(MonitorSend)
    return MonitorSend(
        method=m.get("method", _token, d["method"]),
        path=m.get("path", _url_path, d["path"]),
        host=m.opt("host", _text),
        headers=m.get("headers", _headers, d["headers"]),
    )


def _headers(ctx: _Ctx, node: yaml.Node, path: Path) -> dict[str, str] | None:
    if not isinstance(node, yaml.MappingNode):
        ctx.expected(node, path, "a mapping of header names to values")
        return None
    out: dict[str, str] = {}
    for key_node, value_node in node.value:
        name = _token(ctx, key_node, path)
        value = _text(ctx, value_node, (*path, name or "?"))
        if name is not None and value is not None:
            out.setdefault(name, value)
    return out


def _monitor_expect(ctx: _Ctx, node: yaml.Node, path: Path) -> MonitorExpect | None:
    m = _mapping(ctx, node, path, ("status", "body", "body_regex"))
    if m is None:
        return None
    if m.has("body") and m.has("body_regex"):
        ctx.error(m.key_node("body_regex"), (*path, "body_regex"), "give body or body_regex, not both")
    return MonitorExpect(
        status=m.get("status", _list_of(_int(*HTTP_STATUS), nonempty=True, unique=True), (200,)),
        body=m.opt("body", _text),
        body_regex=m.opt("body_regex", _regex),
    )


# ---------------------------------------------------------------- address sets, SNAT pools


def _address_list(ctx: _Ctx, node: yaml.Node, path: Path) -> tuple[str, ...] | None:
    """Addresses and ranges (no ports), expanded in order; at most MAX_SOURCE_ADDRESSES."""
    items = _seq(ctx, node, path)
    if items is None:
        return None
    out: dict[str, None] = {}
    for index, item in items:
        text = _text(ctx, item, (*path, index))
        if text is None:
            continue
        try:
            span = addresses.parse_addresses(text)
        except AddressError as exc:
            ctx.error(item, (*path, index), str(exc))
            continue
        if len(out) + span.count > MAX_SOURCE_ADDRESSES:
            ctx.error(item, (*path, index), f"expands to {span.count:,} addresses; at most {MAX_SOURCE_ADDRESSES:,} in one list")
            return None
        expanded = [str(address) for address in span]
        repeated = [address for address in expanded if address in out]
        if repeated:
            ctx.error(item, (*path, index), f"{repeated[0]} is already in the list")
        out.update(dict.fromkeys(expanded))
    return tuple(out)


def _address_set(ctx: _Ctx, node: yaml.Node, path: Path) -> AddressSet | None:
    listed = _address_list(ctx, node, path)
    return None if listed is None else AddressSet(name=str(path[-1]), addresses=listed)


def _snat_pool(ctx: _Ctx, node: yaml.Node, path: Path) -> SnatPool | None:
    keys = ("addresses", "draw", "quarantine", "min_interval", "static", "mutable")
    m = _mapping(ctx, node, path, keys)
    if m is None:
        return None
    d = _defaults(SnatPool)
    return SnatPool(
        name=str(path[-1]),
        addresses=m.get("addresses", _address_list, d["addresses"]),
        draw=m.get("draw", _list_of(_snat_draw), d["draw"]),
        quarantine=m.get("quarantine", _quarantine, d["quarantine"]),
        min_interval=m.get("min_interval", _duration(), d["min_interval"]),
        static=m.get("static", _bool, d["static"]),
        mutable=m.get("mutable", _bool, d["mutable"]),
    )


def _snat_draw(ctx: _Ctx, node: yaml.Node, path: Path) -> SnatDraw | None:
    m = _mapping(ctx, node, path, ("from", "count"), required=("from", "count"))
    if m is None:
        return None
    source = m.opt("from", _ref("address_sets", "address set"))
    count = m.opt("count", _int(1))
    return None if source is None or count is None else SnatDraw(source=source, count=count)


def _quarantine(ctx: _Ctx, node: yaml.Node, path: Path) -> Quarantine | None:
    m = _mapping(ctx, node, path, ("failures", "for"))
    if m is None:
        return None
    d = _defaults(Quarantine)
    return Quarantine(
        failures=m.get("failures", _int(1), d["failures"]),
        duration=m.get("for", _duration(positive=True), d["duration"]),
    )


# ---------------------------------------------------------------- pools


def _pool(ctx: _Ctx, node: yaml.Node, path: Path) -> Pool | None:
    keys = (
        "method", "monitors", "min_active_members", "slow_ramp", "action_on_service_down", "retries",
        "retry_non_idempotent", "queue", "hash_mask", "snat", "tls", "static", "mutable", "members",
    )  # fmt: skip
    m = _mapping(ctx, node, path, keys)
    if m is None:
        return None
    d = _defaults(Pool)
    return Pool(
        name=str(path[-1]),
        method=m.get("method", _enum(Method), d["method"]),
        monitors=m.get("monitors", _list_of(_ref("monitors", "monitor"), unique=True), d["monitors"]),
        min_active_members=m.get("min_active_members", _int(0), d["min_active_members"]),
        slow_ramp=m.get("slow_ramp", _duration(), d["slow_ramp"]),
        action_on_service_down=m.get("action_on_service_down", _enum(ServiceDownAction), d["action_on_service_down"]),
        retries=m.get("retries", _int(0), d["retries"]),
        retry_non_idempotent=m.get("retry_non_idempotent", _bool, d["retry_non_idempotent"]),
        queue=m.get("queue", _queue, d["queue"]),
        hash_mask=m.get("hash_mask", _int(0, MAX_HASH_MASK), d["hash_mask"]),
        snat=m.opt("snat", _ref("snat_pools", "SNAT pool")),
        tls=m.opt("tls", _upstream_tls),
        static=m.get("static", _bool, d["static"]),
        mutable=m.get("mutable", _bool, d["mutable"]),
        members=m.get("members", _members, d["members"]),
    )


def _queue(ctx: _Ctx, node: yaml.Node, path: Path) -> QueueSpec | None:
    m = _mapping(ctx, node, path, ("size", "timeout"))
    if m is None:
        return None
    d = _defaults(QueueSpec)
    return QueueSpec(
        size=m.get("size", _int(0), d["size"]),
        timeout=m.get("timeout", _duration(positive=True), d["timeout"]),
    )


def _upstream_tls(ctx: _Ctx, node: yaml.Node, path: Path) -> UpstreamTls | None:
    m = _mapping(ctx, node, path, ("verify", "ca", "server_name"))
    if m is None:
        return None
    return UpstreamTls(
        verify=m.get("verify", _bool, True),
        ca=m.opt("ca", _text),
        server_name=m.opt("server_name", _text),
    )


def _members(ctx: _Ctx, node: yaml.Node, path: Path) -> tuple[Member, ...] | None:
    items = _seq(ctx, node, path)
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


def _member(ctx: _Ctx, node: yaml.Node, path: Path) -> Member | None:
    keys = ("address", "name", "ratio", "priority_group", "connection_limit", "state", "cookie_value")
    m = _mapping(ctx, node, path, keys, required=("address",))
    if m is None:
        return None
    d = _defaults(Member)
    address = m.opt("address", _endpoint)
    name = m.opt("name", _matching(_MEMBER_NAME, "a name without spaces or '/'"))
    ratio = m.get("ratio", _int(1, MAX_RATIO), d["ratio"])
    priority_group = m.get("priority_group", _int(0, MAX_PRIORITY_GROUP), d["priority_group"])
    connection_limit = m.get("connection_limit", _int(0), d["connection_limit"])
    state = m.get("state", _enum(AdminState), d["state"])
    cookie_value = m.opt("cookie_value", _matching(_COOKIE_VALUE, "a cookie value (RFC 6265 cookie-octets)"))
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


# ---------------------------------------------------------------- virtual servers


def _virtual_servers(ctx: _Ctx, node: yaml.Node, path: Path) -> dict[str, VirtualServer] | None:
    servers = _named(_virtual_server)(ctx, node, path)
    if servers is not None and not ctx.names["virtual_servers"]:
        ctx.error(node, path, "no virtual servers defined")
    return servers


def _virtual_server(ctx: _Ctx, node: yaml.Node, path: Path) -> VirtualServer | None:
    keys = ("listen", "mode", "pool", "routes", "tls", "persistence", "connection_limit", "timeouts", "limits")
    m = _mapping(ctx, node, path, keys, required=("listen",))
    if m is None:
        return None
    d = _defaults(VirtualServer)
    mode = m.get("mode", _enum(Mode), d["mode"])
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
        pool=m.opt("pool", _ref("pools", "pool")),
        routes=m.get("routes", _list_of(_route, nonempty=True), d["routes"]),
        tls=m.opt("tls", _server_tls),
        persistence=persistence,
        connection_limit=m.get("connection_limit", _int(0), d["connection_limit"]),
        timeouts=m.get("timeouts", _timeouts, d["timeouts"]),
        limits=m.get("limits", _limits, d["limits"]),
    )


def _listen(ctx: _Ctx, node: yaml.Node, path: Path) -> tuple[Listen, ...] | None:
    """Expand each entry after counting it: the whole file opens at most MAX_SOCKETS sockets."""
    items = _seq(ctx, node, path, nonempty=True)
    if items is None:
        return None
    out: list[Listen] = []
    for index, item in items:
        where = (*path, index)
        text = _text(ctx, item, where)
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


def _claim(ctx: _Ctx, endpoints: tuple[Endpoint, ...], node: yaml.Node, path: Path) -> None:
    """Each endpoint belongs to one listen entry in the whole file."""
    taken = [endpoint for endpoint in endpoints if endpoint in ctx.owners]
    if taken:
        owner, line = ctx.owners[taken[0]]
        more = f" (and {len(taken) - 1} more)" if len(taken) > 1 else ""
        ctx.error(node, path, f"{taken[0]}{more} is already listened on by {_render(owner)} (line {line})")
    for endpoint in endpoints:
        ctx.owners.setdefault(endpoint, (path, node.start_mark.line + 1))


_MATCHES = ("path", "path_prefix", "path_regex", "host", "header", "method")


def _route(ctx: _Ctx, node: yaml.Node, path: Path) -> Route | None:
    m = _mapping(ctx, node, path, (*_MATCHES, "pool"), required=("pool",))
    if m is None:
        return None
    if not any(m.has(key) for key in _MATCHES):
        ctx.error(node, path, f"a route needs at least one of {', '.join(_MATCHES)}")
    pool = m.opt("pool", _ref("pools", "pool"))
    path_ = m.opt("path", _url_path)
    path_prefix = m.opt("path_prefix", _url_path)
    path_regex = m.opt("path_regex", _regex)
    host = m.opt("host", _host)
    header = m.opt("header", _header_match)
    methods = m.get("method", _list_of(_token, nonempty=True, unique=True), _defaults(Route)["method"])
    if pool is None:
        return None
    return Route(
        pool=pool,
        path=path_,
        path_prefix=path_prefix,
        path_regex=path_regex,
        host=host,
        header=header,
        method=methods,
    )


def _host(ctx: _Ctx, node: yaml.Node, path: Path) -> str | None:
    text = _text(ctx, node, path)
    if text is not None and not _HOST.match(text.lower()):
        ctx.error(node, path, f"expected a host name such as app.example.test or *.example.test, got '{text}'")
        return None
    return None if text is None else text.lower()


def _header_match(ctx: _Ctx, node: yaml.Node, path: Path) -> HeaderMatch | None:
    tests = ("equals", "contains", "regex", "present")
    m = _mapping(ctx, node, path, ("name", *tests), required=("name",))
    if m is None:
        return None
    given = [key for key in tests if m.has(key)]
    if len(given) != 1:
        ctx.error(node, path, f"needs exactly one of {', '.join(tests)}; got {', '.join(given) or 'none'}")
    name = m.opt("name", _token)
    equals, contains = m.opt("equals", _text), m.opt("contains", _text)
    regex, present = m.opt("regex", _regex), m.opt("present", _bool)
    if name is None:
        return None
    return HeaderMatch(name=name.lower(), equals=equals, contains=contains, regex=regex, present=present)


def _server_tls(ctx: _Ctx, node: yaml.Node, path: Path) -> ServerTls | None:
    m = _mapping(ctx, node, path, ("certificates", "min_version", "alpn"), required=("certificates",))
    if m is None:
        return None
    d = _defaults(ServerTls)
    certificates = m.opt("certificates", _list_of(_certificate, nonempty=True))
    alpn = _matching(re.compile(rf"^[\x21-\x7e]{{1,{MAX_ALPN}}}$"), "an ALPN protocol name such as http/1.1")
    min_version = m.get("min_version", _choice(TLS_VERSIONS), d["min_version"])
    protocols = m.get("alpn", _list_of(alpn, unique=True), d["alpn"])
    if certificates is None:
        return None
    return ServerTls(certificates=certificates, min_version=min_version, alpn=protocols)


def _certificate(ctx: _Ctx, node: yaml.Node, path: Path) -> Certificate | None:
    m = _mapping(ctx, node, path, ("cert", "key"), required=("cert", "key"))
    if m is None:
        return None
    cert, key = m.opt("cert", _text), m.opt("key", _text)
    return None if cert is None or key is None else Certificate(cert=cert, key=key)


def _persistence(ctx: _Ctx, node: yaml.Node, path: Path) -> Persistence | None:
    keys = ("type", "cookie", "mode", "max_age", "encoding", "timeout")
    m = _mapping(ctx, node, path, keys)
    if m is None:
        return None
    d = _defaults(Persistence)
    persistence = Persistence(
        type=m.get("type", _enum(PersistenceType), d["type"]),
        cookie=m.get("cookie", _matching(_TOKEN, "a cookie name (an RFC 9110 token)"), d["cookie"]),
        mode=m.get("mode", _enum(CookieMode), d["mode"]),
        max_age=m.get("max_age", _duration(), d["max_age"]),
        encoding=m.get("encoding", _enum(CookieEncoding), d["encoding"]),
        timeout=m.get("timeout", _duration(positive=True), d["timeout"]),
    )
    if persistence.encoding is CookieEncoding.F5 and persistence.mode is not CookieMode.INSERT:
        ctx.error(m.value_node("encoding"), (*path, "encoding"), "encoding f5 needs mode insert")
    return persistence


def _timeouts(ctx: _Ctx, node: yaml.Node, path: Path) -> Timeouts | None:
    d = _defaults(Timeouts)
    m = _mapping(ctx, node, path, tuple(d))
    if m is None:
        return None
    return Timeouts(**{key: m.get(key, _duration(positive=True), default) for key, default in d.items()})


def _limits(ctx: _Ctx, node: yaml.Node, path: Path) -> Limits | None:
    m = _mapping(ctx, node, path, ("max_header_bytes", "max_header_count"))
    if m is None:
        return None
    d = _defaults(Limits)
    return Limits(
        max_header_bytes=m.get("max_header_bytes", _int(*HEADER_BYTES), d["max_header_bytes"]),
        max_header_count=m.get("max_header_count", _int(*HEADER_COUNT), d["max_header_count"]),
    )


# ---------------------------------------------------------------- HA


def _ha(ctx: _Ctx, node: yaml.Node, path: Path) -> Ha | None:
    keys = (
        "priority", "preempt", "preempt_delay", "advert_interval", "listen", "peers", "secret_file",
        "virtual_servers", "track", "hooks",
    )  # fmt: skip
    m = _mapping(ctx, node, path, keys, required=("listen", "peers", "secret_file"), null_ok=True)
    if m is None:
        return None
    d = _defaults(Ha)
    listen = m.opt("listen", _endpoint)
    peers = m.opt("peers", _list_of(_endpoint, nonempty=True, unique=True))
    if listen is not None and peers is not None and listen in peers:
        ctx.error(m.value_node("peers"), (*path, "peers"), f"{listen} is this node's own ha.listen")
    secret_file = m.opt("secret_file", _text)
    governed = m.opt("virtual_servers", _ha_virtual_servers)
    priority = m.get("priority", _int(*HA_PRIORITY), d["priority"])
    preempt = m.get("preempt", _bool, d["preempt"])
    preempt_delay = m.get("preempt_delay", _duration(), d["preempt_delay"])
    advert_interval = m.get("advert_interval", _duration(positive=True), d["advert_interval"])
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


def _ha_virtual_servers(ctx: _Ctx, node: yaml.Node, path: Path) -> tuple[str, ...] | str | None:
    """`all` (returned as the string), or a list of virtual server names."""
    if isinstance(node, yaml.ScalarNode) and node.value == "all" and node.tag == _STR:
        return "all"
    if not isinstance(node, yaml.SequenceNode):
        ctx.expected(node, path, "all or a list of virtual server names")
        return None
    return _list_of(_ref("virtual_servers", "virtual server"), unique=True)(ctx, node, path)


def _ha_track(ctx: _Ctx, node: yaml.Node, path: Path) -> dict[str, int] | None:
    m = _mapping(ctx, node, path, ("pools",))
    if m is None:
        return None
    return m.get("pools", _ha_track_pools, dict[str, int]())


def _ha_track_pools(ctx: _Ctx, node: yaml.Node, path: Path) -> dict[str, int] | None:
    if not isinstance(node, yaml.MappingNode):
        ctx.expected(node, path, "a mapping of pool names to priority decrements")
        return None
    out: dict[str, int] = {}
    weight = _int(*HA_PRIORITY)
    for key_node, value_node in node.value:
        name = _ref("pools", "pool")(ctx, key_node, path)
        value = weight(ctx, value_node, (*path, name or "?"))
        if name is not None and value is not None:
            out.setdefault(name, value)
    return out


def _ha_hooks(ctx: _Ctx, node: yaml.Node, path: Path) -> HaHooks | None:
    m = _mapping(ctx, node, path, ("master", "backup", "fault"))
    if m is None:
        return None
    argv = _list_of(_text, nonempty=True)
    argvs = _list_of(argv)
    return HaHooks(master=m.get("master", argvs, ()), backup=m.get("backup", argvs, ()), fault=m.get("fault", argvs, ()))
