"""A trio stream over a raw non-blocking socket that tries the syscall first.

trio's ``SocketStream`` yields to the scheduler around every send and receive,
and waits for readiness before it knows whether it has to. On the proxy's hot
path the data is usually already there, so this stream calls ``recv``/``send``
at once and only parks in ``wait_readable``/``wait_writable`` on EAGAIN. That
means a call may return without a checkpoint: loops that can spin on ready
data (a keep-alive request loop, a body relay) call ``trio.lowlevel.checkpoint``
themselves once per turn, which is where cancellation and fairness come in.

Errors are trio's: ``BrokenResourceError`` for a reset or broken pipe,
``ClosedResourceError`` after ``aclose``; so handlers treat this like any
trio stream, and ``trio.SSLStream`` can wrap it.
"""

from __future__ import annotations

import errno
import socket
from typing import Any, Protocol

import trio

class SocketIO(trio.abc.HalfCloseableStream):
    __slots__ = ("sock", "_closed")

    def __init__(self, sock: socket.socket) -> None:
        sock.setblocking(False)
        if sock.family in (socket.AF_INET, socket.AF_INET6):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.sock = sock
        self._closed = False

    async def receive_some(self, max_bytes: int | None = None) -> bytes:
        sock = self.sock
        while True:
            try:
                return sock.recv(max_bytes or 65536)
            except BlockingIOError:
                pass
            except OSError as exc:
                raise self._mapped(exc) from exc
            await trio.lowlevel.wait_readable(sock)

    async def receive_when_ready(self, max_bytes: int | None = None) -> bytes:
        """Waits for readability first: for answers that cannot be here yet.

        After sending a request the response is never already there, so the
        EAGAIN probe of ``receive_some`` would be a wasted syscall.
        """
        await trio.lowlevel.wait_readable(self.sock)
        return await self.receive_some(max_bytes)

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        sock = self.sock
        try:
            sent = sock.send(data)
        except BlockingIOError:
            sent = 0
        except OSError as exc:
            raise self._mapped(exc) from exc
        if sent == len(data):
            return
        view = memoryview(data)[sent:]
        while view:
            await trio.lowlevel.wait_writable(sock)
            try:
                view = view[sock.send(view) :]
            except BlockingIOError:
                pass
            except OSError as exc:
                raise self._mapped(exc) from exc

    async def wait_send_all_might_not_block(self) -> None:
        await trio.lowlevel.wait_writable(self.sock)

    async def send_eof(self) -> None:
        await trio.lowlevel.checkpoint()
        try:
            self.sock.shutdown(socket.SHUT_WR)
        except OSError as exc:
            if exc.errno != errno.ENOTCONN:
                raise self._mapped(exc) from exc

    async def aclose(self) -> None:
        self.close()
        await trio.lowlevel.checkpoint()

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            trio.lowlevel.notify_closing(self.sock)
            self.sock.close()

    def reset(self) -> None:
        """Closes with an RST instead of a FIN (SO_LINGER 0)."""
        if not self._closed:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
        self.close()

    def getpeername(self) -> Any:
        return self.sock.getpeername()

    def _mapped(self, exc: OSError) -> Exception:
        """A reset, broken pipe or any other socket error is a broken stream, as in trio."""
        if self._closed or exc.errno == errno.EBADF:
            return trio.ClosedResourceError("the stream was closed")
        return trio.BrokenResourceError(exc)

    def __repr__(self) -> str:
        return f"<SocketIO fd={self.sock.fileno()}{' closed' if self._closed else ''}>"


class ByteStream(Protocol):
    """What a connection handler needs of a client or member stream: `SocketIO`,
    or the TLS stream of `dataplane.tls` that wraps one."""

    async def receive_some(self, max_bytes: int | None = None) -> bytes: ...

    async def receive_when_ready(self, max_bytes: int | None = None) -> bytes: ...

    async def send_all(self, data: bytes | bytearray | memoryview) -> None: ...

    async def send_eof(self) -> None: ...

    async def aclose(self) -> None: ...

    def close(self) -> None: ...
