"""The access log: one line per request (http) or connection (tcp), written in batches.

Handlers only format a line and append it to a buffer; a background task
writes the buffer out every ``FLUSH_INTERVAL`` or when it grows past
``FLUSH_BYTES``, in a worker thread, so a slow disk or a slow reader of stderr
never stalls the data path.
"""

from __future__ import annotations

import json
import os
import sys
import time
from typing import Any

import trio

from appliance.core.model import LogFormat, LogSpec
from appliance.errors import StartError

FLUSH_INTERVAL = 0.2  # seconds: a tail -f still feels live
FLUSH_BYTES = 64 * 1024  # a full pipe buffer's worth


class AccessLog:
    def __init__(self, spec: LogSpec) -> None:
        self._lines: list[str] = []
        self._size = 0
        self._wake = trio.Event()
        self._stamp_second = -1
        self._stamp = ""
        self._pending: tuple[LogSpec, int] | None = None
        self._apply(spec)

    def _apply(self, spec: LogSpec) -> None:
        self.spec = spec
        self.enabled = spec.access != "off"
        self._json = spec.format is LogFormat.JSON
        self._path = None if spec.access in ("stderr", "off") else spec.access

    def reconfigure(self, spec: LogSpec, fd: int) -> None:
        """Switches to a reloaded `appliance.log` whose target `open_target` opened."""
        self._pending = (spec, fd)
        self._wake.set()

    def write(self, **fields: Any) -> None:
        """Formats one entry; fields in the order given, `None` values left out."""
        if not self.enabled:
            return
        now = time.time()
        second = int(now)
        if second != self._stamp_second:
            self._stamp_second = second
            self._stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
        stamp = f"{self._stamp}.{int((now - second) * 1000):03d}Z"
        if self._json:
            line = json.dumps({"time": stamp, **{k: v for k, v in fields.items() if v is not None}})
        else:
            line = stamp + " " + " ".join(f"{k}={_text(v)}" for k, v in fields.items() if v is not None)
        self._lines.append(line)
        self._size += len(line) + 1
        if self._size >= FLUSH_BYTES:
            self._wake.set()

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Flushes until cancelled, then once more."""
        fd = open_target(self.spec)
        task_status.started()
        try:
            while True:
                with trio.move_on_after(FLUSH_INTERVAL):
                    await self._wake.wait()
                self._wake = trio.Event()
                await self._flush(fd)
                if self._pending is not None:
                    self._close(fd)
                    (spec, fd), self._pending = self._pending, None
                    self._apply(spec)
        finally:
            with trio.CancelScope(shield=True):
                await self._flush(fd)
                self._close(fd)

    def _close(self, fd: int) -> None:
        if self._path is not None:
            os.close(fd)

    async def _flush(self, fd: int) -> None:
        if not self._lines:
            return
        data = ("\n".join(self._lines) + "\n").encode()
        self._lines, self._size = [], 0
        # In a worker thread even for stderr: a slow reader on the other end of
        # the pipe must block that thread, never the event loop.
        await trio.to_thread.run_sync(_write_all, fd, data)


def open_target(spec: LogSpec) -> int:
    """The file descriptor lines go to for `spec` (stderr for "stderr" and "off").

    Raises:
        StartError: the log file cannot be opened, naming it.
    """
    if spec.access in ("stderr", "off"):
        return sys.stderr.fileno()
    try:
        os.makedirs(os.path.dirname(spec.access) or ".", exist_ok=True)
        return os.open(spec.access, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o640)
    except OSError as exc:
        raise StartError(f"appliance.log.access: cannot open {spec.access}: {exc.strerror or exc}") from exc


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        try:
            view = view[os.write(fd, view):]
        except BlockingIOError:
            time.sleep(0.001)


def _text(value: Any) -> str:
    text = str(value)
    if not text or any(c in text for c in ' "\n'):
        return json.dumps(text)
    return text
