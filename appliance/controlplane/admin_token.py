"""The admin API's bearer token file, apart from the server that checks it.

Reading the token is start-up file handling, not HTTP: the first line of
``admin.token_file``; a missing file is created mode 0600 with a random token,
and an existing one readable by group or others is used with a warning. Every
problem is a ``StartError`` naming the file.
"""

from __future__ import annotations

import logging
import os
import secrets
import stat
from pathlib import Path

from appliance.errors import StartError

LOGGER = logging.getLogger("appliance.admin")

TOKEN_BYTES = 32  # secrets.token_urlsafe(32): 256 bits, 43 characters


def load_or_create_token(path: str | os.PathLike[str]) -> str:
    """The admin token: the first line of `path`, created (mode 0600, random) when missing.

    Raises:
        StartError: the file is empty, unreadable, or cannot be created.
    """
    file = Path(path)
    try:
        with file.open(encoding="utf-8") as handle:
            first = handle.readline().strip()
            mode = os.fstat(handle.fileno()).st_mode
    except FileNotFoundError:
        return _create_token(file)
    except (OSError, UnicodeDecodeError) as exc:
        raise StartError(f"admin token file {file}: cannot read it: {_why(exc)}") from exc
    if not first:
        raise StartError(f"admin token file {file}: the first line is empty; write a token there or delete the file")
    if mode & 0o077:
        LOGGER.warning("admin token file %s is readable by others (mode %o); chmod 600 it", file, stat.S_IMODE(mode))
    return first


def _create_token(file: Path) -> str:
    token = secrets.token_urlsafe(TOKEN_BYTES)
    try:
        file.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:  # another process made it between our read and our create
        return load_or_create_token(file)
    except OSError as exc:
        raise StartError(f"admin token file {file}: cannot create it: {_why(exc)}") from exc
    try:
        os.fchmod(fd, 0o600)  # exactly 0600 whatever the umask
        os.write(fd, (token + "\n").encode())
    except OSError as exc:
        raise StartError(f"admin token file {file}: cannot write it: {_why(exc)}") from exc
    finally:
        os.close(fd)
    LOGGER.info("created admin token file %s", file)
    return token


def _why(exc: BaseException) -> str:
    return (exc.strerror if isinstance(exc, OSError) else None) or str(exc)
