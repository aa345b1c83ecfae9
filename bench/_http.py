"""Tiny shared HTTP/1.1 helpers for the bench fixtures (not the product).

Hand-rolled on purpose: the origin and the load generator must cost as little
CPU as possible, so they avoid h11 and only do the few bytes operations they
need.
"""

from __future__ import annotations

import errno
import os
import socket

import trio

MAX_HEAD = 64 * 1024
MAX_LINE = 8 * 1024


class ProtocolError(Exception):
    """The peer sent something the bench fixtures cannot make sense of."""


class ChunkedSkipper:
    """Consumes (and discards) a chunked body fed in pieces.

    ``feed(data, start)`` returns the offset just past the end of the body
    (after the trailer section) when the body ends inside ``data``, else -1
    (everything from ``start`` on was consumed).
    """

    __slots__ = ("need", "line", "in_trailer")

    def __init__(self) -> None:
        self.need = 0  # bytes of chunk data (+ its CRLF) still to skip
        self.line = b""  # partial size/trailer line carried between feeds
        self.in_trailer = False

    def feed(self, data: bytes, start: int = 0) -> int:
        i = start
        n = len(data)
        while True:
            if self.need:
                take = n - i
                if take >= self.need:
                    i += self.need
                    self.need = 0
                else:
                    self.need -= take
                    return -1
            j = data.find(b"\n", i)
            if j < 0:
                self.line += data[i:]
                if len(self.line) > MAX_LINE:
                    raise ProtocolError("chunk line too long")
                return -1
            line = self.line + data[i:j] if self.line else data[i:j]
            self.line = b""
            i = j + 1
            if line.endswith(b"\r"):
                line = line[:-1]
            if self.in_trailer:
                if not line:
                    return i
                continue
            semi = line.find(b";")
            if semi >= 0:
                line = line[:semi]
            try:
                size = int(line.strip(), 16)
            except ValueError:
                raise ProtocolError(f"bad chunk size {line[:40]!r}") from None
            if size < 0:
                raise ProtocolError("negative chunk size")
            if size == 0:
                self.in_trailer = True
            else:
                self.need = size + 2  # data + CRLF (not validated)


def header_value(lower_head: bytes, head: bytes, name: bytes) -> bytes | None:
    """Value of header ``name`` (lowercase, with trailing colon, e.g. b"x-origin:").

    ``lower_head`` is ``head.lower()``; the value is cut from ``head`` so its
    case is kept. Only the first occurrence is returned.
    """
    key = b"\r\n" + name
    i = lower_head.find(key)
    if i < 0:
        return None
    i += len(key)
    j = lower_head.find(b"\r\n", i)
    return head[i : j if j >= 0 else len(head)].strip()


# Raw non-blocking stdlib sockets driven by trio's I/O waits. trio's own socket
# methods add two scheduler checkpoints to every call that succeeds at once;
# skipping them roughly halves the per-request cost of these fixtures. To keep
# the scheduler fair, a task still yields every YIELD_EVERY immediate successes.

YIELD_EVERY = 16


class RawConn:
    """A connected non-blocking stdlib socket with cheap trio-aware recv/send."""

    __slots__ = ("sock", "_streak", "yield_after_send")

    def __init__(self, sock: socket.socket, yield_after_send: bool = True) -> None:
        sock.setblocking(False)
        self.sock = sock
        self._streak = 0
        self.yield_after_send = yield_after_send

    async def _yield_sometimes(self) -> None:
        self._streak += 1
        if self._streak >= YIELD_EVERY:
            self._streak = 0
            await trio.lowlevel.checkpoint()

    async def recv(self, size: int = 65536) -> bytes:
        sock = self.sock
        try:
            data = sock.recv(size)
        except BlockingIOError:
            self._streak = 0
            while True:
                await trio.lowlevel.wait_readable(sock)
                try:
                    return sock.recv(size)
                except BlockingIOError:
                    pass
        await self._yield_sometimes()
        return data

    async def send_all(self, data: bytes) -> None:
        sock = self.sock
        try:
            n = sock.send(data)
        except BlockingIOError:
            n = 0
        if n == len(data):
            if self.yield_after_send:
                # Yield once: by the time this task runs again the peer has often
                # answered, so the next recv succeeds without an epoll round trip.
                await trio.lowlevel.checkpoint()
            else:
                await self._yield_sometimes()
            return
        view = memoryview(data)
        while n < len(view):
            await trio.lowlevel.wait_writable(sock)
            try:
                n += sock.send(view[n:])
            except BlockingIOError:
                pass

    def close(self) -> None:
        self.sock.close()


async def open_raw(host: str, port: int) -> RawConn:
    """Connect (non-blocking) to host:port; raises OSError like connect()."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.setblocking(False)
        set_nodelay(sock)
        err = sock.connect_ex((host, port))
        if err not in (0, errno.EINPROGRESS, errno.EAGAIN):
            raise OSError(err, os.strerror(err))
        if err:
            await trio.lowlevel.wait_writable(sock)
            err = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
            if err:
                raise OSError(err, os.strerror(err))
    except BaseException:
        sock.close()
        raise
    return RawConn(sock)


async def accept_raw(listener: socket.socket) -> socket.socket:
    """Accept one connection from a non-blocking stdlib listener."""
    while True:
        try:
            sock, _addr = listener.accept()
        except BlockingIOError:
            await trio.lowlevel.wait_readable(listener)
            continue
        await trio.lowlevel.checkpoint()  # a flood of connects must not starve the others
        return sock


def set_nodelay(sock: socket.socket | trio.socket.SocketType) -> None:
    try:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    except OSError:
        pass
