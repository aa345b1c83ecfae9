"""The TCP relay's parts that need no member: the splice pipe pool and error naming."""

from __future__ import annotations

import errno
import fcntl
import os

import pytest
import trio

from appliance.dataplane import tcp_relay
from appliance.dataplane.tcp_relay import PipePool, _SideError

pytestmark = pytest.mark.skipif(not tcp_relay.SPLICE_AVAILABLE, reason="os.splice is not available here")


def is_open(fd: int) -> bool:
    try:
        os.fstat(fd)
    except OSError:
        return False
    return True


async def test_pipes_are_enlarged_reused_and_closed() -> None:
    pool = PipePool(size=256 * 1024, keep=1)
    first = pool.take()
    assert first is not None and first.size == 256 * 1024
    pool.give(first)
    again = pool.take()
    assert again is first  # reused, not made again
    second = pool.take()
    assert second is not None and second is not first
    pool.give(again)
    pool.give(second)  # over `keep`: closed
    assert len(pool) == 1 and not is_open(second.r) and not is_open(second.w)
    pool.close()
    assert len(pool) == 0 and not is_open(first.r)
    assert pool.created == 2


async def test_a_pipe_with_bytes_left_in_it_is_closed_not_kept() -> None:
    pool = PipePool()
    pipe = pool.take()
    assert pipe is not None
    os.write(pipe.w, b"left over")
    pipe.pending = 9
    pool.give(pipe)
    assert len(pool) == 0 and not is_open(pipe.r)


async def test_a_refused_enlargement_keeps_the_kernel_size(monkeypatch: pytest.MonkeyPatch) -> None:
    real = fcntl.fcntl

    def refusing(fd: int, cmd: int, arg: int = 0) -> int:
        if cmd == tcp_relay._F_SETPIPE_SZ:
            raise PermissionError(errno.EPERM, "Operation not permitted")
        return real(fd, cmd, arg)

    monkeypatch.setattr(tcp_relay.fcntl, "fcntl", refusing)
    pool = PipePool()
    pipe = pool.take()
    assert pipe is not None and pipe.size == 64 * 1024  # the default: still worth splicing
    pool.give(pipe)
    assert len(pool) == 0  # smaller than the pool's size: not kept, a later one may be larger


async def test_no_usable_pipe_means_copy_and_a_pause_before_trying_again(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []
    real = os.pipe2

    def exhausted(flags: int) -> tuple[int, int]:
        calls.append(flags)
        raise OSError(errno.EMFILE, "Too many open files")

    monkeypatch.setattr(tcp_relay.os, "pipe2", exhausted)
    pool = PipePool()
    assert pool.take() is None
    assert pool.take() is None
    assert len(calls) == 1  # within PIPE_RETRY nothing is tried
    monkeypatch.setattr(tcp_relay.os, "pipe2", real)
    assert pool.take() is None
    await trio.sleep(tcp_relay.PIPE_RETRY)
    pipe = pool.take()
    assert pipe is not None
    pool.give(pipe)
    pool.close()


async def test_an_undersized_pipe_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tcp_relay, "MIN_PIPE_SIZE", 1 << 40)  # as past the per-user quota (8 KiB pipes)
    pool = PipePool()
    assert pool.take() is None and pool.created == 0


@pytest.mark.parametrize(
    ("exc", "reason"),
    [
        (ConnectionResetError(errno.ECONNRESET, "reset"), "client reset"),
        (BrokenPipeError(errno.EPIPE, "broken pipe"), "client reset"),
        (TimeoutError(errno.ETIMEDOUT, "timed out"), "client timed out"),
        (OSError(errno.EHOSTUNREACH, "No route to host"), "client error: No route to host"),
    ],
)
def test_side_errors_name_the_side_and_what_happened(exc: OSError, reason: str) -> None:
    """Raw (splice) and trio-mapped (SocketIO) errors read the same in the access log."""
    assert _SideError("client", exc).reason == reason
    try:
        raise trio.BrokenResourceError(exc) from exc  # as SocketIO maps it
    except trio.BrokenResourceError as broken:
        assert _SideError("client", broken).reason == reason


def test_a_tls_error_is_named() -> None:
    import ssl

    cause = ssl.SSLError(1, "[SSL: DECRYPTION_FAILED_OR_BAD_RECORD_MAC] decryption failed")
    try:
        raise trio.BrokenResourceError from cause
    except trio.BrokenResourceError as broken:
        assert _SideError("client", broken).reason.startswith("client error: [SSL: DECRYPTION_FAILED")
