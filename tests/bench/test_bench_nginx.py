"""bench.run with nginx origins: the generated nginx.conf, the choice of origins and, when nginx is installed, one live origin."""

from __future__ import annotations

import re
import sys
import time
from pathlib import Path

import pytest
import trio

# bench/ is not an installed package: make it importable however pytest is started.
_REPO = str(Path(__file__).resolve().parents[2])
if _REPO not in sys.path:
    sys.path.insert(0, _REPO)

from bench import run as bench_run
from bench.load import LoadResult, run_load
from bench.run import NGINX_HINT, Procs, choose_origins, find_tool, nginx_config, parse_args, start_origin


def _directives(text: str) -> list[str]:
    """The config's statements, comments dropped, whitespace squeezed."""
    body = "\n".join(line.split("#", 1)[0] for line in text.splitlines())
    return [" ".join(stmt.split()) for stmt in re.split(r"[;{}]", body) if stmt.strip()]


def test_nginx_config_text(tmp_path: Path) -> None:
    text = nginx_config("web2", 18081, tmp_path)
    d = str(tmp_path.resolve())
    stmts = _directives(text)
    for expected in (
        "daemon off",
        "master_process off",
        "worker_processes 1",
        f'pid "{d}/nginx.pid"',
        f'error_log "{d}/error.log" warn',
        "access_log off",
        "keepalive_requests 10000000",
        "keepalive_timeout 75s",
        "listen 127.0.0.1:18081",
        "location /",
        "add_header X-Origin web2 always",
        'return 200 "ok\\n"',  # nginx turns the two characters \n into a newline
    ):
        assert expected in stmts, (expected, stmts)
    for temp in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"):
        assert f'{temp}_temp_path "{d}/{temp}"' in stmts
    # Nothing outside the run's directory: every absolute path is under it.
    for path in re.findall(r'"(/[^"]*)"', text):
        assert path.startswith(d + "/"), path
    assert text.count("{") == text.count("}")
    assert "try_files" not in text


def test_nginx_config_large_body_from_file(tmp_path: Path) -> None:
    text = nginx_config("web1", 18082, tmp_path, b"x" * 9999 + b"\n")
    stmts = _directives(text)
    assert f'root "{tmp_path.resolve()}"' in stmts
    assert "try_files /body =500" in stmts
    assert "add_header X-Origin web1 always" in stmts
    assert not any(s.startswith("return") for s in stmts)


def test_nginx_config_rejects_unsafe_input(tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        nginx_config("web 1; evil", 18083, tmp_path)
    with pytest.raises(ValueError):
        nginx_config("web1", 18083, tmp_path, b"$host\n")  # would be interpolated


def test_choose_origins() -> None:
    assert choose_origins(None, "/usr/sbin/nginx")[0] == "nginx"
    assert "/usr/sbin/nginx" in choose_origins(None, "/usr/sbin/nginx")[1]
    kind, why = choose_origins(None, None)
    assert kind == "python"
    assert "apt-get install nginx" in why
    assert choose_origins("python", "/usr/sbin/nginx")[0] == "python"
    assert choose_origins("nginx", "/usr/sbin/nginx")[0] == "nginx"


def test_find_tool_looks_in_sbin(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    exe = tmp_path / "fakenginx"
    exe.write_text("#!/bin/sh\n")
    exe.chmod(0o755)
    monkeypatch.setenv("PATH", "/nonexistent")
    monkeypatch.setattr(bench_run, "SBIN_DIRS", (str(tmp_path),))
    assert find_tool("fakenginx") == str(exe)
    assert find_tool("surely-not-installed-xyz") is None


def test_parse_args_origins(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr(bench_run, "find_tool", lambda name: None)
    assert parse_args([]).origins == "python"
    assert parse_args(["--origins", "python"]).origins == "python"
    with pytest.raises(SystemExit):
        parse_args(["--origins", "nginx"])
    assert "apt-get install nginx" in capsys.readouterr().err
    monkeypatch.setattr(bench_run, "find_tool", lambda name: f"/usr/sbin/{name}")
    args = parse_args([])
    assert args.origins == "nginx"
    assert "/usr/sbin/nginx" in args.origins_why


@pytest.mark.skipif(find_tool("nginx") is None, reason=f"nginx is not installed ({NGINX_HINT})")
def test_live_nginx_origin(tmp_path: Path) -> None:
    """Start one nginx origin, load it briefly, stop it by PID (about 1 s in all)."""
    procs = Procs()
    t0 = time.monotonic()
    try:
        proc, port = start_origin(procs, "nginx", "web7", False, 3, tmp_path)

        async def load() -> LoadResult:
            with trio.fail_after(3):
                return await run_load("127.0.0.1", port, "/", connections=2, duration=0.5, max_requests=200)

        result = trio.run(load)
        assert result.ok == 200, result.errors
        assert result.members == {"web7": 200}
        assert result.total_errors == 0
    finally:
        procs.stop_all()
    assert proc.returncode == 0
    assert not procs.procs
    assert time.monotonic() - t0 < 5
