"""The admin API's listening socket: where the server listens, apart from what it says.

``admin.listen`` is ``HOST:PORT`` (port 0: any free port) or ``unix:PATH``. A
unix socket is made mode 0600 before ``listen()``; a socket file left by a dead
process is removed, a live one or a path that is not a socket is refused; on
shutdown the file is unlinked only if it is still ours. Every problem is a
``StartError`` naming the address.
"""

from __future__ import annotations

import ipaddress
import logging
import os
import socket
import stat
from collections.abc import Callable

from appliance.core.addresses import AddressError, parse_endpoint
from appliance.core.model import Endpoint
from appliance.errors import StartError

LOGGER = logging.getLogger("appliance.admin")

BACKLOG = 128


def bind(listen: str) -> tuple[socket.socket, str, Callable[[], None]]:
    """A listening socket on `listen`, its address, and what to do once it is closed.

    Raises:
        StartError: naming the address.
    """
    if listen.startswith("unix:"):
        return _bind_unix(listen[len("unix:") :])
    endpoint = _endpoint(listen)
    family = socket.AF_INET6 if endpoint.is_ipv6 else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        sock.bind((endpoint.host, endpoint.port))
        sock.listen(BACKLOG)
    except OSError as exc:
        sock.close()
        raise StartError(f"admin API: cannot listen on {endpoint}: {exc.strerror or exc}") from exc
    host, port = sock.getsockname()[:2]
    return sock, str(Endpoint(host=host, port=port)), lambda: None


def _endpoint(listen: str) -> Endpoint:
    """`HOST:PORT` or `[V6]:PORT`; port 0 (any free port) allowed, unlike in the config file."""
    host, _, port = listen.rpartition(":")
    host = host.removeprefix("[").removesuffix("]")
    try:
        return Endpoint(host=str(ipaddress.ip_address(host)), port=int(port))
    except ValueError:
        pass
    try:
        return parse_endpoint(listen)  # its message says what was expected
    except AddressError as exc:
        raise StartError(f"admin.listen {listen!r}: {exc}") from None


def _bind_unix(path: str) -> tuple[socket.socket, str, Callable[[], None]]:
    address = f"unix:{path}"
    _remove_stale_socket(path, address)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        parent = os.path.dirname(path)
        if parent:
            os.makedirs(parent, exist_ok=True)
        sock.bind(path)
        os.chmod(path, 0o600)  # before listen(): nobody can connect yet
        sock.listen(BACKLOG)
        inode = os.stat(path).st_ino
    except OSError as exc:
        sock.close()
        raise StartError(f"admin API: cannot listen on {address}: {exc.strerror or exc}") from exc

    def cleanup() -> None:
        try:
            if os.stat(path).st_ino == inode:  # still ours, not a successor's
                os.unlink(path)
        except OSError:
            pass

    return sock, address, cleanup


def _remove_stale_socket(path: str, address: str) -> None:
    """Removes a socket file nobody listens on; refuses a live one or a file that is not a socket."""
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        return
    except OSError as exc:
        raise StartError(f"admin API: cannot listen on {address}: {exc.strerror or exc}") from exc
    if not stat.S_ISSOCK(mode):
        raise StartError(f"admin API: cannot listen on {address}: the path exists and is not a socket")
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    probe.settimeout(0.5)
    try:
        probe.connect(path)
    except ConnectionRefusedError:
        pass  # nobody listens: stale
    except (BlockingIOError, TimeoutError):
        raise StartError(f"admin API: cannot listen on {address}: another process is listening there") from None
    except OSError as exc:
        raise StartError(f"admin API: cannot listen on {address}: {exc.strerror or exc}") from exc
    else:
        raise StartError(f"admin API: cannot listen on {address}: another process is listening there")
    finally:
        probe.close()
    LOGGER.info("removing stale admin socket %s", path)
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
    except OSError as exc:
        raise StartError(f"admin API: cannot remove the stale socket {address}: {exc.strerror or exc}") from exc
