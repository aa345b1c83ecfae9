"""Walking composed YAML nodes with their locations: the helper layer of `core.config`.

A `Walk` collects what one parse finds (issues, keys present, names defined,
listen endpoints claimed). `mapping()` checks a mapping's keys and gives a
`Fields` to read them from one at a time; each reader is a converter
`(walk, node, path) -> value | None` that checks one value and, when it is
wrong, reports it at the node's line and column and returns None, so the
caller falls back to a default and goes on. Paths are tuples (`("pools",
"web", "members", 2, "ratio")`) rendered as `pools.web.members[2].ratio`.
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
from appliance.core.model import Endpoint
from appliance.errors import ConfigIssue

MAX_NAME = 64  # object names appear in URLs, logs and metric labels
_NAME = re.compile(rf"^[A-Za-z0-9_][A-Za-z0-9_.-]{{0,{MAX_NAME - 1}}}$")
TOKEN = re.compile(r"^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$")  # RFC 9110 §5.6.2: methods, header and cookie names
_DURATION = re.compile(r"^([0-9]+(?:\.[0-9]+)?)(ms|s|m|h)$")
_DURATION_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}
DURATION_FORMS = "250ms, 2s, 5m, 1h or a number of seconds"
STR_TAG = "tag:yaml.org,2002:str"
_INT = "tag:yaml.org,2002:int"
_FLOAT = "tag:yaml.org,2002:float"
_BOOL = "tag:yaml.org,2002:bool"
_NULL = "tag:yaml.org,2002:null"
_TIMESTAMP = "tag:yaml.org,2002:timestamp"
_KINDS = {STR_TAG: "a string", _INT: "an integer", _FLOAT: "a number", _BOOL: "a boolean", _TIMESTAMP: "a date"}

T = TypeVar("T")
E = TypeVar("E", bound=enum.Enum)
Path = tuple[str | int, ...]
Conv = Callable[["Walk", yaml.Node, Path], T | None]  # a checked value, or None after reporting


# ---------------------------------------------------------------- the walk, checked mappings and lists


class Walk:
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
        self.issues.append(ConfigIssue(self.source, mark.line + 1, mark.column + 1, render(path), message))

    def error_at(self, path: Path, message: str) -> None:
        """An issue found after the walk, at the line where `path` was written (1:1 if it was not)."""
        line, column = next(((ln + 1, col + 1) for ln, col, at, _, _ in self.present if at == path), (1, 1))
        self.issues.append(ConfigIssue(self.source, line, column, render(path), message))

    def expected(self, node: yaml.Node, path: Path, what: str, hint: str = "") -> None:
        self.error(node, path, f"expected {what}, got {describe(node)}{hint}")

    def scalar(self, node: yaml.Node) -> object:
        return self._constructor.construct_object(node)

    def note(self, node: yaml.Node, path: Path, value: object) -> None:
        written = node.value if isinstance(node, yaml.ScalarNode) else ""
        recorded = value.value if isinstance(value, enum.Enum) else value
        self.present.append((node.start_mark.line, node.start_mark.column, path, recorded, written))


class Fields:
    """A checked mapping: known keys only, first occurrence of each, read one field at a time."""

    def __init__(self, ctx: Walk, node: yaml.Node, path: Path, allowed: tuple[str, ...]) -> None:
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


def mapping(
    ctx: Walk,
    node: yaml.Node,
    path: Path,
    allowed: tuple[str, ...],
    required: tuple[str, ...] = (),
    *,
    null_ok: bool = False,
) -> Fields | None:
    """Check `node` is a mapping of `allowed` keys holding every `required` one."""
    result = Fields(ctx, node, path, allowed)
    if null_ok and is_null(node):
        items: list[tuple[yaml.Node, yaml.Node]] = []
    elif isinstance(node, yaml.MappingNode):
        items = node.value
    else:
        ctx.expected(node, path, f"a mapping with keys {', '.join(allowed)}")
        return None
    seen: set[str] = set()
    for key_node, value_node in items:
        key = _key(ctx, key_node, path)
        if key is None or key in seen:  # duplicates are reported by check_duplicate_keys
            continue
        seen.add(key)
        if key not in allowed:
            message = f"unknown key{_did_you_mean(key, allowed)}; allowed: {', '.join(allowed)}"
            ctx.error(key_node, (*path, key), message)
            continue
        result.fields[key] = (key_node, value_node)
    for key in required:
        if key not in result.fields:
            ctx.error(node, path, f"missing required key '{key}'")
    return result


def named(build: Conv[T]) -> Conv[dict[str, T]]:
    """A section of named objects: `{name: body}`, names unique, each body built by `build`."""

    def conv(ctx: Walk, node: yaml.Node, path: Path) -> dict[str, T] | None:
        if is_null(node):
            return {}
        if not isinstance(node, yaml.MappingNode):
            ctx.expected(node, path, "a mapping of names to their settings")
            return None
        out: dict[str, T] = {}
        for key_node, value_node in node.value:
            name = _key(ctx, key_node, path)
            if name is None or name in out:
                continue
            if not _NAME.fullmatch(name):
                ctx.error(key_node, (*path, name), f"a name is letters, digits, '_', '.' and '-' (at most {MAX_NAME})")
                continue
            value = build(ctx, value_node, (*path, name))
            if value is not None:
                out[name] = value
        return out

    return conv


def seq(ctx: Walk, node: yaml.Node, path: Path, *, nonempty: bool = False) -> list[tuple[int, yaml.Node]] | None:
    if not isinstance(node, yaml.SequenceNode):
        hint = f" (write [{node.value}])" if isinstance(node, yaml.ScalarNode) and node.tag == STR_TAG else ""
        ctx.expected(node, path, "a list", hint)
        return None
    if nonempty and not node.value:
        ctx.error(node, path, "must not be empty")
        return None
    return list(enumerate(node.value))


def list_of(item: Conv[T], *, nonempty: bool = False, unique: bool = False) -> Conv[tuple[T, ...]]:
    def conv(ctx: Walk, node: yaml.Node, path: Path) -> tuple[T, ...] | None:
        items = seq(ctx, node, path, nonempty=nonempty)
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


def _key(ctx: Walk, node: yaml.Node, path: Path) -> str | None:
    if isinstance(node, yaml.ScalarNode) and node.tag == "tag:yaml.org,2002:merge":
        ctx.error(node, path, "YAML merge keys (<<) are not supported; use an alias (*name) for a whole value")
        return None
    if not isinstance(node, yaml.ScalarNode) or node.tag in (_NULL, _BOOL) or not node.value:
        ctx.expected(node, path, "a key that is a name")
        return None
    return str(node.value)


def check_duplicate_keys(ctx: Walk, node: yaml.Node, path: Path, visited: set[int]) -> None:
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
            check_duplicate_keys(ctx, value_node, (*path, key), visited)
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            check_duplicate_keys(ctx, item, (*path, index), visited)


def render(path: Path) -> str:
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else part)
    return out


def describe(node: yaml.Node) -> str:
    if isinstance(node, yaml.MappingNode):
        return "a mapping"
    if isinstance(node, yaml.SequenceNode):
        return "a list"
    if is_null(node):
        return "nothing (null)"
    text = str(node.value)
    text = text if len(text) <= 40 else text[:37] + "..."
    if node.tag == STR_TAG:
        return f"'{text}'"
    return f"{_KINDS.get(node.tag, node.tag)} {text}"


def is_null(node: yaml.Node) -> bool:
    return isinstance(node, yaml.ScalarNode) and node.tag == _NULL


def _did_you_mean(word: str, choices: tuple[str, ...] | list[str]) -> str:
    close = difflib.get_close_matches(word, choices, n=1)
    return f" '{word}' (did you mean '{close[0]}'?)" if close else f" '{word}'"


def defaults(cls: type) -> dict[str, Any]:
    """The model's defaults by field name: SPEC §2's values live in model.py only."""
    out: dict[str, Any] = {}
    for spec in dataclasses.fields(cls):
        if spec.default is not dataclasses.MISSING:
            out[spec.name] = spec.default
        elif spec.default_factory is not dataclasses.MISSING:
            out[spec.name] = spec.default_factory()
    return out


# ---------------------------------------------------------------- scalar converters


def as_text(ctx: Walk, node: yaml.Node, path: Path) -> str | None:
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


def matching(pattern: re.Pattern[str], what: str) -> Conv[str]:
    def conv(ctx: Walk, node: yaml.Node, path: Path) -> str | None:
        text = as_text(ctx, node, path)
        if text is not None and not pattern.fullmatch(text):
            ctx.error(node, path, f"expected {what}, got '{text}'")
            return None
        return text

    return conv


as_name = matching(_NAME, f"a name of letters, digits, '_', '.' and '-' (at most {MAX_NAME})")
as_token = matching(TOKEN, "a token (letters, digits and !#$%&'*+-.^_`|~)")
as_url_path = matching(re.compile(r"^/\S*$"), "a path starting with '/'")


def as_bool(ctx: Walk, node: yaml.Node, path: Path) -> bool | None:
    if isinstance(node, yaml.ScalarNode) and node.tag == _BOOL:
        return bool(ctx.scalar(node))
    ctx.expected(node, path, "true or false")
    return None


def as_int(low: int, high: int | None = None) -> Conv[int]:
    def conv(ctx: Walk, node: yaml.Node, path: Path) -> int | None:
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


def as_duration(*, positive: bool = False) -> Conv[float]:
    def conv(ctx: Walk, node: yaml.Node, path: Path) -> float | None:
        seconds: float | None = None
        if isinstance(node, yaml.ScalarNode) and node.tag in (_INT, _FLOAT):
            number = ctx.scalar(node)
            assert isinstance(number, (int, float))
            seconds = float(number)
        elif isinstance(node, yaml.ScalarNode) and node.tag == STR_TAG:
            match = _DURATION.fullmatch(node.value.strip())
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


def one_of(choices: tuple[str, ...]) -> Conv[str]:
    def conv(ctx: Walk, node: yaml.Node, path: Path) -> str | None:
        if isinstance(node, yaml.ScalarNode) and node.tag not in (_BOOL, _NULL) and node.value in choices:
            return str(node.value)
        ctx.error(node, path, f"must be one of {', '.join(choices)}; got {describe(node)}")
        return None

    return conv


def as_enum(cls: type[E]) -> Conv[E]:
    choose = one_of(tuple(str(member.value) for member in cls))

    def conv(ctx: Walk, node: yaml.Node, path: Path) -> E | None:
        text = choose(ctx, node, path)
        return None if text is None else cls(text)

    return conv


def as_regex(ctx: Walk, node: yaml.Node, path: Path) -> str | None:
    text = as_text(ctx, node, path)
    if text is None:
        return None
    try:
        re.compile(text)
    except re.error as exc:
        ctx.error(node, path, f"bad regular expression: {exc}")
        return None
    return text


def as_ref(section: str, label: str) -> Conv[str]:
    """A name that must be defined in the top-level `section`."""

    def conv(ctx: Walk, node: yaml.Node, path: Path) -> str | None:
        name = as_text(ctx, node, path)
        if name is None:
            return None
        defined = ctx.names.get(section, [])
        if name not in defined:
            known = f"defined: {', '.join(defined)}" if defined else f"no {section} are defined"
            ctx.error(node, path, f"undefined {label} '{name}'; {known}")
            return None
        return name

    return conv


def as_endpoint(ctx: Walk, node: yaml.Node, path: Path) -> Endpoint | None:
    text = as_text(ctx, node, path)
    if text is None:
        return None
    try:
        return addresses.parse_endpoint(text)
    except AddressError as exc:
        ctx.error(node, path, str(exc))
        return None


