"""The real `appliance` command in a subprocess: check, run, SIGHUP reload, SIGTERM drain."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import httpx
import trio

from helpers import Origin, config_text, free_port

APPLIANCE = [sys.executable, "-m", "appliance"]


async def wait_listening(port: int, limit: float = 10.0) -> None:
    with trio.fail_after(limit):
        while True:
            try:
                stream = await trio.open_tcp_stream("127.0.0.1", port)
            except OSError:
                await trio.sleep(0.05)
                continue
            await stream.aclose()
            return


async def wait_closed(port: int, limit: float = 10.0) -> None:
    with trio.fail_after(limit):
        while True:
            try:
                stream = await trio.open_tcp_stream("127.0.0.1", port)
            except OSError:
                return
            await stream.aclose()
            await trio.sleep(0.05)


def test_check_reports_every_error_with_its_place(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("pools:\n  web:\n    retries: -1\n    members: []\n    colour: blue\n")
    result = subprocess.run([*APPLIANCE, "check", "-c", str(bad)], capture_output=True, text=True, timeout=30)
    assert result.returncode == 1
    lines = result.stdout.splitlines()
    assert any(line.startswith(f"{bad}:3:") and "retries" in line for line in lines)
    assert any(line.startswith(f"{bad}:5:") and "colour" in line for line in lines)
    good = subprocess.run([*APPLIANCE, "check", "-c", "conf/demo.yaml"], capture_output=True, text=True, timeout=30)
    assert (good.returncode, good.stdout.strip()) == (0, "configuration OK")


def test_invalid_config_exits_1_and_binds_nothing(tmp_path: Path) -> None:
    port = free_port()
    conf = tmp_path / "a.yaml"
    conf.write_text(config_text(port, [free_port()]) + "bogus: 1\n")
    result = subprocess.run([*APPLIANCE, "run", "-c", str(conf)], capture_output=True, text=True, timeout=30)
    assert result.returncode == 1
    assert "bogus" in result.stderr and "nothing started" in result.stderr


def test_port_in_use_is_a_start_error_naming_vs_and_address(tmp_path: Path) -> None:
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        conf = tmp_path / "a.yaml"
        conf.write_text(config_text(port, [free_port()]))
        result = subprocess.run([*APPLIANCE, "run", "-c", str(conf)], capture_output=True, text=True, timeout=30)
    assert result.returncode == 1
    assert f"virtual server web: cannot listen on 127.0.0.1:{port}" in result.stderr


async def test_sighup_keeps_old_config_on_error_and_applies_a_good_one(tmp_path: Path, nursery: trio.Nursery) -> None:
    origin = await nursery.start(Origin("o").serve)
    port, port2 = free_port(), free_port()
    conf = tmp_path / "a.yaml"
    conf.write_text(config_text(port, [origin.port]))
    process = await trio.lowlevel.open_process([*APPLIANCE, "run", "-c", str(conf)], stderr=subprocess.PIPE)
    try:
        await wait_listening(port)
        conf.write_text(config_text(port, [origin.port]) + "  broken: [\n")
        process.send_signal(signal.SIGHUP)
        await trio.sleep(0.5)
        async with httpx.AsyncClient() as client:
            assert (await client.get(f"http://127.0.0.1:{port}/echo")).status_code == 200
        conf.write_text(config_text(port2, [origin.port]))
        process.send_signal(signal.SIGHUP)
        await wait_listening(port2)
        await wait_closed(port)
        async with httpx.AsyncClient() as client:
            assert (await client.get(f"http://127.0.0.1:{port2}/echo")).status_code == 200
    finally:
        process.send_signal(signal.SIGTERM)
        with trio.fail_after(10):
            await process.wait()
    stderr = (await process.stderr.receive_some(1 << 20)).decode() if process.stderr else ""
    assert "reload rejected" in stderr
    assert "configuration reloaded" in stderr
    assert process.returncode == 0


async def test_sigterm_lets_a_request_in_flight_finish(tmp_path: Path, nursery: trio.Nursery) -> None:
    origin = await nursery.start(Origin("o").serve)
    port = free_port()
    conf = tmp_path / "a.yaml"
    conf.write_text(config_text(port, [origin.port]))
    process = await trio.lowlevel.open_process([*APPLIANCE, "run", "-c", str(conf)], stderr=subprocess.DEVNULL)
    await wait_listening(port)
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    # Half a request: the handler is busy with it when SIGTERM arrives.
    await stream.send_all(b"POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: 10\r\n\r\nhello")
    await trio.sleep(0.2)
    process.send_signal(signal.SIGTERM)
    await wait_closed(port)  # listeners close at once
    await stream.send_all(b"world")
    answer = b""
    with trio.fail_after(10):
        while chunk := await stream.receive_some(65536):
            answer += chunk
    assert answer.startswith(b"HTTP/1.1 200 ")
    assert b"connection: close" in answer.lower()
    assert b'"body_len": 10' in answer
    with trio.fail_after(10):
        assert await process.wait() == 0


async def test_demo_serves_three_backends_and_stops_on_sigint(tmp_path: Path) -> None:
    ports = [free_port() for _ in range(5)]
    text = Path("conf/demo.yaml").read_text().replace("var/", f"{tmp_path}/var/")
    for old, new in zip(("127.0.0.1:9101", "127.0.0.1:9102", "127.0.0.1:9103", "127.0.0.1:8080", "127.0.0.1:9900"), ports):
        text = text.replace(old, f"127.0.0.1:{new}")
    conf = tmp_path / "demo.yaml"
    conf.write_text(text)
    process = await trio.lowlevel.open_process(
        [*APPLIANCE, "demo", "-c", str(conf)], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL
    )
    try:
        await wait_listening(ports[3])
        async with httpx.AsyncClient() as client:
            # The tcp monitor's first round decides; retry until all three answer.
            seen: set[str] = set()
            with trio.fail_after(10):
                while len(seen) < 3:
                    response = await client.get(f"http://127.0.0.1:{ports[3]}/")
                    if response.status_code == 200:
                        seen.add(response.headers["x-demo-backend"])
                    else:
                        await trio.sleep(0.1)
        assert seen == {"web1", "web2", "web3"}
    finally:
        process.send_signal(signal.SIGINT)
        with trio.fail_after(10):
            await process.wait()
    out = (await process.stdout.receive_some(1 << 16)).decode()
    assert f"curl -s http://127.0.0.1:{ports[3]}/" in out
    assert f"admin: API on 127.0.0.1:{ports[4]}, token in {tmp_path}/var/admin.token" in out
    assert (tmp_path / "var" / "admin.token").exists()
    assert process.returncode == 0
