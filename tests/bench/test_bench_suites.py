"""The tcp and tls bench suites: generated configs (appliance YAML, haproxy.cfg), parsers and helpers. No load runs here."""

from __future__ import annotations

import json
import re
import socket
import ssl
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import yaml

# bench/ is not an installed package: make it importable however pytest is started.
_REPO = str(Path(__file__).resolve().parents[2])
if _REPO not in sys.path:
    sys.path.insert(0, _REPO)

from appliance.cli import main as appliance_cli
from appliance.core.config import parse_config
from bench import run as bench_run
from bench.bulk import BulkResult, parse_iperf3, send_bulk, serve_sink
from bench.run import Scenario, appliance_config, find_tool, haproxy_config, parse_args
from bench.scenarios_tcp import choose_bulk_tool, goal_note, iperf3_argv, l4_specs
from bench.scenarios_tls import (
    ab_argv,
    choose_handshake_tool,
    make_certificate,
    openssl_req_argv,
    parse_ab,
    stall_notes,
    tls_specs,
)
from bench.table import Column, fill_ratios, format_table

HAPROXY = find_tool("haproxy")
OPENSSL = find_tool("openssl")


def _haproxy_lines(text: str) -> list[str]:
    return [" ".join(line.split()) for line in text.splitlines() if line.strip()]


def _haproxy_check(text: str, tmp_path: Path) -> None:
    """``haproxy -c``: HAProxy itself parses the config (and loads the certificate)."""
    assert HAPROXY is not None
    cfg = tmp_path / "haproxy.cfg"
    cfg.write_text(text)
    p = subprocess.run([HAPROXY, "-c", "-f", str(cfg)], capture_output=True, text=True, timeout=20)
    assert p.returncode == 0, p.stdout + p.stderr


def _appliance_check(text: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """``appliance check``: the config loader and, for TLS, the certificate and key as ``run`` reads them."""
    path = tmp_path / "appliance.yaml"
    path.write_text(text)
    assert appliance_cli(["check", "-c", str(path)]) == 0, capsys.readouterr()
    assert "configuration OK" in capsys.readouterr().out


# ---------------------------------------------------------------------------
# appliance YAML


def test_appliance_config_tcp_mode(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    text = appliance_config(8100, [5201], access_log=False, mode="tcp")
    doc = yaml.safe_load(text)
    assert doc["appliance"]["log"] == {"access": "off"}  # the string, not a YAML boolean
    vs = doc["virtual_servers"]["bench"]
    assert vs == {"listen": ["127.0.0.1:8100"], "mode": "tcp", "pool": "bench"}
    assert doc["pools"]["bench"] == {"method": "round_robin", "members": [{"address": "127.0.0.1:5201"}]}
    config = parse_config(text, "bench.yaml")
    assert config.virtual_servers["bench"].mode.value == "tcp"
    _appliance_check(text, tmp_path, capsys)


def test_appliance_config_http_unchanged() -> None:
    # The http suite's config is what it always was (the README shows it).
    text = appliance_config(8080, [9001, 9002, 9003], access_log=False)
    assert text == (
        'appliance: {name: bench, log: {access: "off"}}\n'
        "pools:\n  bench:\n    method: round_robin\n    members:\n"
        "      - {address: 127.0.0.1:9001}\n      - {address: 127.0.0.1:9002}\n      - {address: 127.0.0.1:9003}\n"
        "virtual_servers:\n  bench:\n    listen: [127.0.0.1:8080]\n    mode: http\n    pool: bench\n"
    )


def test_appliance_config_tls(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cert = make_certificate(tmp_path / "cert", "ec", OPENSSL)
    text = appliance_config(8443, [9001, 9002, 9003], access_log=False, mode="http", tls=(cert.cert, cert.key))
    vs = yaml.safe_load(text)["virtual_servers"]["bench"]
    assert vs["mode"] == "http"
    assert vs["tls"] == {"certificates": [{"cert": str(cert.cert), "key": str(cert.key)}]}
    _appliance_check(text, tmp_path, capsys)


def test_appliance_config_tls_path_is_quoted(tmp_path: Path) -> None:
    odd = tmp_path / "a: b #c"
    text = appliance_config(8443, [9001], access_log=False, tls=(odd / "cert.pem", odd / "key.pem"))
    cert = yaml.safe_load(text)["virtual_servers"]["bench"]["tls"]["certificates"][0]
    assert cert == {"cert": str(odd / "cert.pem"), "key": str(odd / "key.pem")}


def test_appliance_config_rejects_unknown_mode() -> None:
    with pytest.raises(ValueError):
        appliance_config(8080, [9001], access_log=False, mode="udp")


# ---------------------------------------------------------------------------
# haproxy.cfg


def test_haproxy_config_http_unchanged() -> None:
    lines = _haproxy_lines(haproxy_config(8001, [9001, 9002]))
    assert lines[lines.index("defaults") : lines.index("frontend bench")] == [
        "defaults", "mode http", "option http-keep-alive", "http-reuse safe",
        "timeout connect 5s", "timeout client 30s", "timeout server 30s",
    ]  # fmt: skip
    assert "bind 127.0.0.1:8001" in lines
    assert "server web1 127.0.0.1:9001" in lines and "server web2 127.0.0.1:9002" in lines
    assert not any("splice" in line or "ssl" in line for line in lines)


def test_haproxy_config_tcp() -> None:
    lines = _haproxy_lines(haproxy_config(8002, [5201], mode="tcp"))
    assert "mode tcp" in lines
    assert "nbthread 1" in lines
    assert "balance roundrobin" in lines
    assert "server web1 127.0.0.1:5201" in lines
    for http_only in ("option http-keep-alive", "http-reuse safe", "option splice-auto"):
        assert http_only not in lines


def test_haproxy_config_tcp_splice() -> None:
    lines = _haproxy_lines(haproxy_config(8112, [5201], mode="tcp", splice=True))
    assert "mode tcp" in lines
    assert "option splice-auto" in lines
    # in defaults, so it applies to both the frontend and the backend
    assert lines.index("option splice-auto") < lines.index("frontend bench")


def test_haproxy_config_tls() -> None:
    lines = _haproxy_lines(haproxy_config(8443, [9001], mode="http", tls_pem=Path("/tmp/x/haproxy.pem")))
    assert 'bind 127.0.0.1:8443 ssl crt "/tmp/x/haproxy.pem" alpn http/1.1' in lines
    assert "mode http" in lines and "option http-keep-alive" in lines
    with pytest.raises(ValueError):
        haproxy_config(8443, [9001], tls_pem=Path('/tmp/"evil'))
    with pytest.raises(ValueError):
        haproxy_config(8443, [9001], mode="health")


@pytest.mark.skipif(HAPROXY is None, reason="haproxy is not installed (apt-get install haproxy)")
@pytest.mark.parametrize("mode,splice", [("http", False), ("tcp", False), ("tcp", True)])
def test_haproxy_accepts_config(tmp_path: Path, mode: str, splice: bool) -> None:
    _haproxy_check(haproxy_config(18002, [19001, 19002], mode=mode, splice=splice), tmp_path)


@pytest.mark.skipif(HAPROXY is None, reason="haproxy is not installed (apt-get install haproxy)")
def test_haproxy_accepts_tls_config(tmp_path: Path) -> None:
    cert = make_certificate(tmp_path / "cert", "ec", OPENSSL)
    _haproxy_check(haproxy_config(18443, [19001], mode="http", tls_pem=cert.pem), tmp_path)


# ---------------------------------------------------------------------------
# certificates


def test_openssl_req_argv(tmp_path: Path) -> None:
    rsa = openssl_req_argv("openssl", "rsa", tmp_path / "c", tmp_path / "k")
    assert rsa[rsa.index("-newkey") + 1] == "rsa:2048"
    assert "-nodes" in rsa and "-x509" in rsa
    assert "subjectAltName=DNS:localhost,IP:127.0.0.1" in rsa
    ec = openssl_req_argv("openssl", "ec", tmp_path / "c", tmp_path / "k")
    assert ec[ec.index("-newkey") + 1] == "ec" and "ec_paramgen_curve:prime256v1" in ec
    with pytest.raises(ValueError):
        openssl_req_argv("openssl", "dsa", tmp_path / "c", tmp_path / "k")


@pytest.mark.parametrize("maker", ["openssl", "trustme"])
@pytest.mark.parametrize("kind", ["rsa", "ec"])
def test_make_certificate(tmp_path: Path, maker: str, kind: str) -> None:
    if maker == "openssl" and OPENSSL is None:
        pytest.skip("openssl is not installed")
    cert = make_certificate(tmp_path, kind, OPENSSL if maker == "openssl" else None)
    assert cert.made_by == maker
    assert cert.pem.read_text() == cert.cert.read_text() + cert.key.read_text()
    assert cert.key.stat().st_mode & 0o077 == 0
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert.cert, cert.key)  # the key matches the certificate
    ctx.load_cert_chain(cert.pem)  # and the combined file is usable on its own
    key_text = cert.key.read_text()
    if kind == "ec":
        assert "EC" in key_text or "PRIVATE KEY" in key_text
    assert cert.label == ("RSA-2048" if kind == "rsa" else "ECDSA P-256")


# ---------------------------------------------------------------------------
# bulk


IPERF3_JSON = {
    "start": {"test_start": {"protocol": "TCP", "num_streams": 1}},
    "end": {
        "sum_sent": {"start": 0, "end": 3.0, "seconds": 3.0, "bytes": 6_000_000_000, "retransmits": 12},
        "sum_received": {"start": 0, "end": 3.0001, "seconds": 3.0001, "bytes": 5_999_000_000},
    },
}


def test_parse_iperf3() -> None:
    r = parse_iperf3(json.dumps(IPERF3_JSON))
    assert r.tool == "iperf3"
    assert r.bytes == 5_999_000_000
    assert r.retransmits == 12
    assert abs(r.gbps - 5_999_000_000 / 3.0001 / 1e9) < 1e-9
    assert r.to_dict()["gbps"] == r.gbps


def test_parse_iperf3_errors() -> None:
    with pytest.raises(RuntimeError, match="busy"):
        parse_iperf3(json.dumps({"start": {}, "end": {}, "error": "the server is busy running a test. try again later"}))
    with pytest.raises(ValueError):
        parse_iperf3("iperf3: error - unable to connect to server")
    with pytest.raises(ValueError):
        parse_iperf3(json.dumps({"end": {}}))


def test_iperf3_argv_bounded() -> None:
    argv = iperf3_argv("iperf3", 5201, 3)
    assert argv[argv.index("-t") + 1] == "3"
    assert "-J" in argv and argv[argv.index("-c") + 1] == "127.0.0.1"
    assert "--connect-timeout" in argv
    assert "-O" not in argv
    argv = iperf3_argv("iperf3", 5201, 3, omit=6)
    assert argv[argv.index("-O") + 1] == "6"


def test_choose_bulk_tool() -> None:
    assert choose_bulk_tool("auto", "/usr/bin/iperf3") == "iperf3"
    assert choose_bulk_tool("auto", None) == "python"
    assert choose_bulk_tool("python", "/usr/bin/iperf3") == "python"


def test_bulk_sender_and_sink() -> None:
    """The fallback pair moves a few MiB intact, and a probe that connects and leaves does not stop the sink."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(4)
        port = listener.getsockname()[1]
        sink = threading.Thread(target=serve_sink, args=(listener, 3), daemon=True)
        sink.start()
        socket.create_connection(("127.0.0.1", port)).close()  # like wait_listening's probe
        r = send_bulk("127.0.0.1", port, 5 * 1024 * 1024 + 7, duration=10)
        assert r == BulkResult(tool="bench.bulk", bytes=5 * 1024 * 1024 + 7, seconds=r.seconds)
        assert r.gbps > 0
        r = send_bulk("127.0.0.1", port, 1 << 40, duration=0.2)  # the time bound ends it
        assert 0 < r.bytes < 1 << 40
        sink.join(timeout=5)
        assert not sink.is_alive()


# ---------------------------------------------------------------------------
# ab


AB_OUTPUT = """Server Software:        nginx
Server Hostname:        127.0.0.1
Server Port:            8443
SSL/TLS Server Name:    127.0.0.1
SSL/TLS Protocol:       TLSv1.3,TLS_AES_256_GCM_SHA384,2048,256
Server Temp Key:        X25519 253 bits

Document Path:          /
Document Length:        3 bytes

Concurrency Level:      20
Time taken for tests:   3.001 seconds
Complete requests:      4200
Failed requests:        3
   (Connect: 0, Receive: 1, Length: 2, Exceptions: 0)
Non-2xx responses:      5
Total transferred:      848400 bytes
HTML transferred:       12600 bytes
Requests per second:    1399.52 [#/sec] (mean)
Time per request:       14.291 [ms] (mean)
Time per request:       0.715 [ms] (mean, across all concurrent requests)
Transfer rate:          276.08 [Kbytes/sec] received

Connection Times (ms)
              min  mean[+/-sd] median   max
Connect:        5   10   1.6     10      21
Processing:     1    4   1.6      4      15
Waiting:        1    4   1.5      4      15
Total:          7   14   1.8     14      29

Percentage of the requests served within a certain time (ms)
  50%     14
  66%     14
  75%     15
  80%     15
  90%     16
  95%     17
  98%     18
  99%     19
 100%     29 (longest request)
"""


def test_parse_ab() -> None:
    r, tls = parse_ab(AB_OUTPUT, "https://127.0.0.1:8443/", 20, 3)
    assert tls == "TLSv1.3,TLS_AES_256_GCM_SHA384,2048,256"
    assert r.tool == "ab"
    assert r.requests == 4200
    assert r.ok == 4200 - 5 - 2
    assert abs(r.rps - r.ok / 3.001) < 1e-6
    assert r.latency_ms == {"p50": 14.0, "p90": 16.0, "p99": 19.0, "max": 29.0, "mean": 14.291}
    assert r.errors == {"connect": 0, "read": 1, "length": 2, "status": 5}


def test_parse_ab_clean_run_and_garbage() -> None:
    clean = re.sub(r"Failed requests:.*\n.*\(Connect.*\n", "Failed requests:        0\n", AB_OUTPUT)
    clean = clean.replace("Non-2xx responses:      5\n", "")
    r, _ = parse_ab(clean, "u", 20, 3)
    assert r.ok == 4200 and r.total_errors == 0
    with pytest.raises(ValueError):
        parse_ab("apr_socket_connect(): Connection refused (111)", "u", 20, 3)


def test_ab_argv_no_keepalive_and_bounded() -> None:
    argv = ab_argv("ab", 8443, 20, 10)
    assert "-k" not in argv
    # -t before -n, else -t would reset the request bound to 50,000
    assert argv.index("-t") < argv.index("-n")
    assert argv[argv.index("-t") + 1] == "10" and argv[argv.index("-n") + 1] == "100000000"
    assert argv[argv.index("-c") + 1] == "20"
    assert argv[-1] == "https://127.0.0.1:8443/"


def test_choose_handshake_tool() -> None:
    assert choose_handshake_tool("auto", "/usr/bin/ab", True) == "ab"
    assert choose_handshake_tool("auto", None, True) == "wrk"
    assert choose_handshake_tool("auto", None, False) is None
    assert choose_handshake_tool("wrk", "/usr/bin/ab", True) == "wrk"


def test_stall_notes() -> None:
    fast = Scenario("appliance", extra={"seq_mean_ms": 2.4, "seq_connections": 300})
    ref = Scenario("haproxy", extra={"seq_mean_ms": 1.3, "seq_connections": 300})
    (note,) = stall_notes([fast, ref], "ab")
    assert note.startswith("no stall") and "appliance 2.40 ms" in note
    slow = Scenario("appliance", extra={"seq_mean_ms": 44.6, "seq_connections": 68})
    (note,) = stall_notes([slow, ref], "ab")
    assert note.startswith("STALL") and "appliance at or above" in note
    assert stall_notes([Scenario("appliance", status="failed")], "ab") == []


# ---------------------------------------------------------------------------
# ratios, tables, options


def _bulk_row(name: str, gbps: float) -> Scenario:
    return Scenario(name, bulk=BulkResult("iperf3", int(gbps * 1e9), 1.0))


def test_ratios_and_table() -> None:
    rows = [
        _bulk_row("direct", 3.0),
        _bulk_row("appliance", 2.0),
        _bulk_row("haproxy", 1.0),
        Scenario("haproxy-splice", status="skipped", reason="haproxy is not installed"),
    ]
    refs = {"direct": "direct", "haproxy": "haproxy", "splice": "haproxy-splice"}
    fill_ratios(rows, refs, lambda sc: sc.bulk.gbps if sc.bulk else None)
    assert rows[1].ratios == {"direct": pytest.approx(2 / 3), "haproxy": pytest.approx(2.0)}
    assert "splice" not in rows[0].ratios  # its reference did not run
    text = format_table(rows, [Column("GB/s", 6, lambda sc: f"{sc.bulk.gbps:.2f}" if sc.bulk else "-")])
    lines = text.splitlines()
    assert lines[0].split() == ["scenario", "GB/s"]
    assert lines[3].split() == ["appliance", "2.00"]
    assert lines[5].startswith("haproxy-splice SKIPPED: haproxy is not installed")
    assert goal_note(rows, "haproxy", 1.0, "bulk") == "issue 3 goal, bulk >= 1.0x: appliance 2.00x (met)"
    assert goal_note(rows, "splice", 1.0, "bulk") is None


def test_parse_args_suites(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr(bench_run, "find_tool", lambda name: None)
    monkeypatch.setattr(bench_run, "wrk_installed", lambda: False)
    args = parse_args([])
    assert args.suite == "http" and args.suites == ["http"]
    assert args.http_tool == "python" and args.l4_tool == "python"  # no wrk
    assert parse_args(["--suite", "all"]).suites == ["http", "tcp", "tls"]
    args = parse_args(["--suite", "tcp", "--quick", "--scenarios", "appliance,haproxy-splice"])
    assert args.duration == 3.0 and args.scenarios == ["appliance", "haproxy-splice"]
    for argv, hint in (
        (["--bulk-tool", "iperf3"], "apt-get install iperf3"),
        (["--handshake-tool", "ab"], "apt-get install apache2-utils"),
        (["--scenarios", "nginx"], "unknown scenario"),
    ):
        with pytest.raises(SystemExit):
            parse_args(argv)
        assert hint in capsys.readouterr().err


def test_parse_args_tools_with_wrk(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(bench_run, "find_tool", lambda name: f"/usr/bin/{name}")
    monkeypatch.setattr(bench_run, "wrk_installed", lambda: True)
    args = parse_args(["--suite", "tcp"])
    assert args.http_tool == "python"  # the http suite's default is unchanged
    assert args.l4_tool == "wrk"
    assert parse_args(["--tool", "python"]).l4_tool == "python"
    assert parse_args(["--cert", "ec"]).cert == "ec"


# ---------------------------------------------------------------------------
# CPU accounting


def test_cpu_meter_tells_the_proxy_from_foreign_processes() -> None:
    """A busy child of ours counts as the proxy, a busy orphan (not started by us) as foreign. ~1 s of CPU."""
    from bench.run import CpuMeter, idle_cpu_notes

    spin = "import time; t = time.monotonic() + 0.8\nwhile time.monotonic() < t: pass"
    ours = subprocess.Popen([sys.executable, "-c", spin])
    # Orphaned at once: reparented away from this process tree, like another session's test run.
    subprocess.run(["sh", "-c", f'{sys.executable} -c "{spin}" >/dev/null 2>&1 &'], check=True)
    try:
        with CpuMeter(ours.pid) as meter:
            time.sleep(0.5)  # both spin meanwhile (the proxy must be alive at the end, as in the bench)
    finally:
        ours.wait(timeout=10)
    assert meter.proxy_pct is not None and meter.proxy_pct > 40
    assert meter.foreign_pct is not None and meter.foreign_pct > 30
    sc = Scenario("appliance")
    meter.fill(sc)
    (note,) = idle_cpu_notes([sc], pin=False, what="bulk")
    assert "appliance" in note and "disturbed" in note
    assert idle_cpu_notes([Scenario("appliance", foreign_cpu_pct=2.0)], pin=False, what="bulk") == []


def test_specs_per_row(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Which relays each suite starts, with which config; a missing HAProxy is a skipped row with the hint."""
    monkeypatch.setattr(bench_run, "find_tool", lambda name: None)
    monkeypatch.setattr(bench_run, "wrk_installed", lambda: False)
    args = parse_args(["--suite", "tcp", "--appliance", "/opt/appliance"])
    specs = l4_specs(args, "/usr/sbin/haproxy", [5201])
    assert [s.name for s in specs] == ["appliance", "haproxy", "haproxy-splice"]
    app, hap, spl = specs
    assert not isinstance(app, Scenario) and not isinstance(hap, Scenario) and not isinstance(spl, Scenario)
    assert app.argv == ["/opt/appliance", "run", "-c", "{CONF}"] and app.config_name == "appliance.yaml"
    assert f"listen: [127.0.0.1:{app.port}]" in app.config_text and "mode: tcp" in app.config_text
    assert hap.argv == ["/usr/sbin/haproxy", "-db", "-f", "{CONF}"]
    assert "option splice-auto" not in hap.config_text and "option splice-auto" in spl.config_text
    assert len({app.port, hap.port, spl.port}) == 3

    (skipped,) = l4_specs(parse_args(["--scenarios", "direct,haproxy-splice"]), None, [5201])
    assert isinstance(skipped, Scenario)
    assert (skipped.name, skipped.status) == ("haproxy-splice", "skipped")
    assert "apt-get install haproxy" in skipped.reason

    cert = make_certificate(tmp_path, "ec", None)
    tls = tls_specs(parse_args(["--suite", "tls", "--appliance", "/opt/appliance"]), "/usr/sbin/haproxy", [9001], cert)
    assert [s.name for s in tls] == ["appliance", "haproxy"]  # no direct, no splice variant for TLS
    app_tls, hap_tls = tls
    assert not isinstance(app_tls, Scenario) and not isinstance(hap_tls, Scenario)
    assert str(cert.key) in app_tls.config_text and "mode: http" in app_tls.config_text
    assert f'ssl crt "{cert.pem}"' in hap_tls.config_text
