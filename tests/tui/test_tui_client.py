"""The asyncio facade over the synchronous admin client, and `appliance-tui`'s start-up."""

from __future__ import annotations

import asyncio
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from tui.__main__ import main
from tui.client import ApiError, AsyncAdminClient, Unreachable, classify


class SyncFake:
    """The shape of appliance.client.AdminClient; records how many calls overlap."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.now = 0
        self.max = 0
        self.threads: set[int] = set()
        self.fail: BaseException | None = None
        self.closed = False

    def _call(self, answer: Any) -> Any:
        with self.lock:
            self.now += 1
            self.max = max(self.max, self.now)
            self.threads.add(threading.get_ident())
        try:
            time.sleep(0.02)
            if self.fail is not None:
                raise self.fail
            return answer
        finally:
            with self.lock:
                self.now -= 1

    def status(self) -> dict[str, Any]:
        return self._call({"node": "n"})

    def events(self) -> list[dict[str, Any]]:
        return self._call([])

    def set_state(self, pool: str, member: str, state: str) -> dict[str, Any]:
        return self._call({"name": member, "admin_state": state})

    def close(self) -> None:
        self.closed = True


def test_calls_run_in_a_thread_one_at_a_time() -> None:
    sync = SyncFake()
    client = AsyncAdminClient(sync)

    async def scenario() -> list[Any]:
        return await asyncio.gather(
            client.status(), client.events(), client.set_state("web", "m1", "disabled"), client.status()
        )

    answers = asyncio.run(scenario())
    assert answers == [{"node": "n"}, [], {"name": "m1", "admin_state": "disabled"}, {"node": "n"}]
    assert sync.max == 1
    assert threading.get_ident() not in sync.threads
    client.close()
    assert sync.closed


def test_the_clients_errors_become_the_two_kinds_the_app_shows() -> None:
    real = pytest.importorskip("appliance.client")
    sync = SyncFake()
    client = AsyncAdminClient(sync)
    sync.fail = real.AdminError(409, "pool api is immutable")
    with pytest.raises(ApiError) as refused:
        asyncio.run(client.set_state("api", "a1", "disabled"))
    assert refused.value.status == 409 and refused.value.message == "pool api is immutable"
    sync.fail = real.AdminUnreachable("cannot reach the admin API at http://127.0.0.1:1: connection refused")
    with pytest.raises(Unreachable, match="connection refused"):
        asyncio.run(client.status())


@pytest.mark.parametrize(
    ("error", "kind", "text"),
    [
        (ConnectionRefusedError(111, "Connection refused"), Unreachable, "Connection refused"),
        (TimeoutError(), Unreachable, "TimeoutError"),
        (ApiError("no member x", 404), ApiError, "404 no member x"),
        (ValueError("odd"), ApiError, "ValueError: odd"),
    ],
)
def test_classify(error: Exception, kind: type, text: str) -> None:
    result = classify(error)
    assert isinstance(result, kind)
    assert text in str(result)


def test_an_unreadable_token_file_exits_1_with_a_message(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("appliance.client")
    missing = tmp_path / "admin.token"
    assert main(["--admin", "http://127.0.0.1:9", "--token-file", str(missing)]) == 1
    err = capsys.readouterr().err
    assert err.startswith("appliance-tui: ") and str(missing) in err and "Traceback" not in err
    missing.write_text("\n")
    assert main(["--admin", "http://127.0.0.1:9", "--token-file", str(missing)]) == 1
    assert "empty" in capsys.readouterr().err


def test_an_unusable_admin_url_exits_1_with_a_message(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("appliance.client")
    token = tmp_path / "admin.token"
    token.write_text("secret\n")
    assert main(["--admin", "https://127.0.0.1:9", "--token-file", str(token)]) == 1
    assert "https://127.0.0.1:9" in capsys.readouterr().err
