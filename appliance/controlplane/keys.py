"""The key that signs persistence cookies.

Kept as ``persistence.key`` in the state directory (the directory of
`appliance.state_file`), created there (mode 0600, 32 random bytes as hex) the
first time a virtual server needs it, so cookies stay valid across restarts and
reloads. With `ha` configured it is derived from `ha.secret_file` instead,
which both peers share, so a client keeps its member through a failover.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets

from appliance.core.advert import check_secret
from appliance.core.model import Config
from appliance.core.persistence import needs_key
from appliance.errors import StartError

KEY_FILE = "persistence.key"
KEY_BYTES = 32
_HA_LABEL = b"appliance persistence cookie key v1"  # domain separation from the heartbeat MAC


def persistence_key(config: Config) -> bytes | None:
    """The cookie-signing key, or None when no virtual server signs cookies.

    Raises:
        StartError: the key or secret file cannot be read, created or is malformed.
    """
    if not needs_key(config.virtual_servers):
        return None
    if config.ha is not None:
        return hmac.digest(ha_secret(config.ha.secret_file), _HA_LABEL, hashlib.sha256)
    path = os.path.join(os.path.dirname(config.appliance.state_file) or ".", KEY_FILE)
    if not os.path.exists(path):
        _create(path)
    text = _read(path, "persistence key").strip()
    try:
        key = bytes.fromhex(text.decode("ascii"))
    except (UnicodeDecodeError, ValueError):
        key = b""
    if len(key) < 16:
        raise StartError(f"persistence key {path}: not a hex key of at least 16 bytes; delete it to have a new one made")
    return key


def ha_secret(path: str) -> bytes:
    """The HA peers' shared secret (heartbeat MAC and cookie key are derived from it under their own labels).

    Raises:
        StartError: the file cannot be read, or the secret is empty, short or too regular (``advert.check_secret``).
    """
    data = _read(path, "ha.secret_file", hint="; make one with: head -c 32 /dev/urandom | base64 > FILE")
    try:
        return check_secret(data)
    except ValueError as exc:
        raise StartError(f"ha.secret_file {path}: {exc}") from None


def _read(path: str, what: str, hint: str = "") -> bytes:
    try:
        with open(path, "rb") as stream:
            return stream.read(4096)
    except OSError as exc:
        raise StartError(f"{what} {path}: cannot read: {exc.strerror or exc}{hint.replace('FILE', path)}") from None


def _create(path: str) -> None:
    try:
        os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return  # another process made it first
    except OSError as exc:
        raise StartError(f"persistence key {path}: cannot create: {exc.strerror or exc}") from None
    with os.fdopen(fd, "w") as stream:
        stream.write(secrets.token_hex(KEY_BYTES) + "\n")
        stream.flush()
        os.fsync(stream.fileno())
