"""The state file: runtime changes kept across restarts, written atomically.

Written after every runtime change (temp file in the same directory, fsync,
rename, fsync of the directory), so a crash leaves the old file or the new
one, never half of one. Read once at start: a missing file is a first start;
a corrupt one, or one of another format version, is reported and ignored
(the appliance starts from its config); entries naming pools or members the
config no longer has are reported and dropped. Changes to `static` pools are
kept in the file but not re-applied: the config re-seeds them.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Callable, Mapping
from typing import Any

from appliance.core.config import parse_member
from appliance.core.model import Config, Member, Pool, SnatPool
from appliance.core.overrides import Overrides, from_json
from appliance.errors import ConfigError

LOGGER = logging.getLogger("appliance.state")


def load(path: str, config: Config) -> Overrides:
    """The runtime changes to re-apply at start (empty when there are none or the file is unusable)."""
    try:
        with open(path, encoding="utf-8") as stream:
            data = json.load(stream)
        if not isinstance(data, dict):
            raise ValueError("not a JSON object")
        overrides = from_json(data, _member)
    except FileNotFoundError:
        return Overrides()
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        LOGGER.error("state file %s ignored: %s; starting from the configuration", path, exc)
        return Overrides()
    pools = _reseeded("pool", config.pools, overrides.for_pool)
    snat_pools = _reseeded("SNAT pool", config.snat_pools, lambda name: overrides.for_snat("snat_pools", name))
    return overrides.without_pools(pools, snat_pools)


def _reseeded(kind: str, table: Mapping[str, Pool | SnatPool], changes: Callable[[str], int]) -> set[str]:
    """The objects the config re-seeds (static, or not mutable) that the file has changes for; each one logged."""
    names = set()
    for name, entry in table.items():
        count = changes(name)
        if count and (entry.static or not entry.mutable):
            why = "static" if entry.static else "not mutable"
            LOGGER.warning(
                "state file: %s %s is %s: its %d runtime change(s) are not re-applied (the config re-seeds it)",
                kind, name, why, count,
            )  # fmt: skip
            names.add(name)
    return names


def save_json(path: str, overrides: dict[str, Any], node: str) -> None:
    """Writes runtime changes (``Overrides.to_json()``) atomically. Raises OSError."""
    data: dict[str, Any] = {**overrides, "node": node, "saved_at": round(time.time(), 3)}
    directory = os.path.dirname(path) or "."
    os.makedirs(directory, exist_ok=True)
    temporary = f"{path}.tmp.{os.getpid()}"
    try:
        with open(temporary, "w", encoding="utf-8") as stream:
            json.dump(data, stream, indent=1)
            stream.write("\n")
            stream.flush()
            os.fsync(stream.fileno())
        os.replace(temporary, path)
    except BaseException:
        try:
            os.unlink(temporary)
        except OSError:
            pass
        raise
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _member(data: Any) -> Member:
    try:
        return parse_member(data, "state file")
    except ConfigError as exc:
        raise ValueError("; ".join(f"{issue.path}: {issue.message}" for issue in exc.issues)) from None
