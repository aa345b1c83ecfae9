"""An HA pair in network namespaces: real `ip addr` hooks move a VIP between two nodes.

Where loopback tests (`test_ha_pair.py`) only show that the listener moves, this
one moves an address. The test builds, with `ip netns`, three namespaces of its
own (`apl-ha-<pid>-a`, `-b` and `-c`) on one L2 segment: a bridge `br0` in the
client namespace `-c` (10.123.0.10/24) with a veth to `eth0` in each node
namespace (node a 10.123.0.1/24, node b 10.123.0.2/24). Each node namespace
runs its own origin on its own loopback (127.0.0.1:9001, `X-Origin:
origin-a` or `origin-b`) and its own `appliance run`: the virtual server on the
VIP 10.123.0.100:8080 (bound with IP_FREEBIND before the address is there), HA
adverts on the node's address with the other node as peer, the admin API on a
unix socket (a path in the file system, so the test reaches it from outside the
namespace), and these hooks (the operator's block, addresses filled in):

    master: [ip, addr, replace, 10.123.0.100/24, dev, eth0]
            [arping, -q, -c, "1", -U, -I, eth0, 10.123.0.100]  (where arping, iputils', is installed)
    backup: [sh, -c, "ip addr del 10.123.0.100/24 dev eth0 || true"]
    fault:  the same

`replace`, not `add`: it succeeds when the address is already there (`add`
fails with "Address already assigned"). One gratuitous ARP, in the foreground:
iputils' arping sends its first packet at once but lasts `-c` seconds (whole
seconds; `-i 0` never ends), and hooks run one at a time, so a longer arping
holds back the next transition's hooks (the VIP stays on a node that stepped
down that long). Run in the background it would outlive the node's
mastership: a killed node's orphaned arping kept announcing the VIP with its
own MAC and pulled the client back (seen while writing this test). Before
killing node a the test waits for a's arping to finish, so that no orphan is
left behind; the teardown also waits (bounded) until no process is left in its
namespaces before deleting them.

The client is `ip netns exec <-c> python` with http.client, one request per
run. Where `arping` (iputils) is installed the new master's gratuitous ARP is
what moves the client's neighbour entry to the new owner, and the test leaves
that entry alone. Where it is not, nothing would tell the client (its entry for
the VIP stays on the old MAC for tens of seconds), so the test flushes the
client's neighbour entry for the VIP before each request, as a fresh ARP
resolution would after the entry fails; the process-crash test needs the
gratuitous ARP and is skipped there.

Nothing leaves the namespaces the test creates; every process is stopped by its
PID, every namespace deleted, in `finally`; every wait is bounded. Without root,
`ip`, or a working `ip netns add` the tests are skipped with the reason.
"""

from __future__ import annotations

import http.client
import json
import os
import select
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from helpers import stop_process

ROOT = Path(__file__).resolve().parents[2]
IFACE = "eth0"
VIP = "10.123.0.100"
VIP_PORT = 8080
CLIENT_ADDRESS = "10.123.0.10"
NODE_ADDRESS = {"a": "10.123.0.1", "b": "10.123.0.2"}
PRIORITY = {"a": 150, "b": 100}
HA_PORT = 9911
ORIGIN_PORT = 9001
INTERVAL = 0.2
MASTER_DOWN_B = 3 * INTERVAL + (256 - PRIORITY["b"]) / 256 * INTERVAL  # ≈ 0.72 s
# A request is a fresh `ip netns exec ... python` (tens of ms) and one aimed at a
# gone MAC waits out its connect timeout: the client's view lags the takeover.
CLIENT_SLACK = 2.0
ARPING = shutil.which("arping") is not None

# One request from inside the client namespace: prints "STATUS X-ORIGIN" or "error ...".
CLIENT_GET = """\
import http.client, sys
c = http.client.HTTPConnection(sys.argv[1], int(sys.argv[2]), timeout=float(sys.argv[3]))
try:
    c.request("GET", "/")
    r = c.getresponse()
    r.read()
    print(r.status, r.getheader("X-Origin", ""))
except OSError as e:
    print("error", type(e).__name__, e)
"""


def _unavailable() -> str | None:
    if not sys.platform.startswith("linux"):
        return "network namespaces are Linux only"
    if os.geteuid() != 0:
        return "needs root to create network namespaces (ip netns add); run as root to include this test"
    if shutil.which("ip") is None:
        return "needs iproute2's `ip` on PATH"
    if shutil.which("sh") is None:
        return "needs `sh` for the backup hooks"
    return None


pytestmark = pytest.mark.skipif(_unavailable() is not None, reason=_unavailable() or "")


def run(*argv: str, timeout: float = 10) -> subprocess.CompletedProcess[str]:
    """A short command, bounded; never raises on its exit code."""
    return subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False)


def must(*argv: str) -> str:
    result = run(*argv)
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)}: exit {result.returncode}: {result.stderr.strip()}")
    return result.stdout


def wait_for(check: Callable[[], object], what: str, timeout: float, step: float = 0.05) -> float:
    """Polls `check` until true (bounded); the seconds it took."""
    began = time.monotonic()
    while not check():
        if time.monotonic() - began > timeout:
            raise AssertionError(f"not within {timeout}s: {what}")
        time.sleep(step)
    return time.monotonic() - began


class UnixHTTPConnection(http.client.HTTPConnection):
    def __init__(self, path: str, timeout: float) -> None:
        super().__init__("localhost", timeout=timeout)
        self.path = path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        try:
            sock.connect(self.path)
        except OSError:
            sock.close()
            raise
        self.sock = sock


@dataclass
class Node:
    name: str
    ns: str
    conf: Path
    admin: Path  # unix socket
    token: Path
    log: Path
    process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with self.log.open("ab") as sink:
            self.process = subprocess.Popen(
                ["ip", "netns", "exec", self.ns, sys.executable, "-m", "appliance", "run", "-c", str(self.conf)],
                stdout=sink, stderr=sink, cwd=ROOT,
            )  # fmt: skip

    def stop(self, sig: int = signal.SIGTERM) -> None:
        """Signals our own process (`ip netns exec` execs python: the PID is the appliance's)."""
        stop_process(self.process, sig)

    def ha_state(self) -> str | None:
        try:
            connection = UnixHTTPConnection(str(self.admin), timeout=2)
            try:
                connection.request(
                    "GET", "/api/v1/status", headers={"Authorization": f"Bearer {self.token.read_text().strip()}"}
                )
                body = connection.getresponse().read()
            finally:
                connection.close()
            return str(json.loads(body)["ha"]["state"])
        except (OSError, ValueError, KeyError, http.client.HTTPException):
            return None

    def has_vip(self) -> bool:
        return f" {VIP}/24 " in must("ip", "-n", self.ns, "-4", "-o", "addr", "show", "dev", IFACE)

    def link(self, state: str) -> None:
        must("ip", "-n", self.ns, "link", "set", "dev", IFACE, state)

    def hooks_done(self, state: str, program: str) -> int:
        """How many `program` hooks for `state` have finished (from the appliance's log)."""
        try:
            text = self.log.read_text(errors="replace")
        except OSError:
            return 0
        return sum(f"ha hook {program} " in line and f" for {state} exited " in line for line in text.splitlines())

    def kill(self) -> None:
        """kill -9, once its announcing hook is over (an arping that outlived it would speak for it)."""
        if ARPING:
            wait_for(lambda: self.hooks_done("master", "arping") >= 1, f"{self.name}'s arping hook done", 5)
        assert self.process is not None
        self.process.kill()
        self.process.wait(timeout=10)

    def log_tail(self) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-30:])
        except OSError:
            return ""


@dataclass
class Net:
    client_ns: str
    a: Node
    b: Node

    def get(self, timeout: float = 0.5) -> str | None:
        """One request to the VIP from the client namespace: the answering origin's name, or None."""
        if not ARPING:
            # Nothing announces the new owner: resolve the VIP afresh (see the module docstring).
            run("ip", "-n", self.client_ns, "neigh", "flush", "to", VIP)
        result = run(
            "ip", "netns", "exec", self.client_ns, sys.executable, "-I", "-S", "-c", CLIENT_GET,
            VIP, str(VIP_PORT), str(timeout), timeout=timeout + 5,
        )  # fmt: skip
        words = result.stdout.split()
        if len(words) == 2 and words[0] == "200":
            return words[1]
        return None

    def reaches(self, origin: str) -> bool:
        return self.get() == origin

    def diagnostics(self) -> str:
        parts = []
        for node in (self.a, self.b):
            parts.append(f"--- {node.name}: {run('ip', '-n', node.ns, '-4', '-o', 'addr').stdout}")
            parts.append(node.log_tail())
        parts.append(f"--- client neigh: {run('ip', '-n', self.client_ns, 'neigh').stdout}")
        return "\n".join(parts)


def hooks_yaml() -> str:
    master = [f"      - [ip, addr, replace, {VIP}/24, dev, {IFACE}]"]
    if ARPING:
        master.append(f'      - [arping, -q, -c, "1", -U, -I, {IFACE}, {VIP}]')
    release = f'      - [sh, -c, "ip addr del {VIP}/24 dev {IFACE} || true"]'
    return "\n".join(["  hooks:", "    master:", *master, "    backup:", release, "    fault:", release])


def node_config(folder: Path, name: str, peer: str, secret: Path) -> str:
    return f"""\
appliance: {{name: lb-{name}, state_file: {folder}/state.json, shutdown_grace: 1s, log: {{access: "off"}}}}
admin: {{listen: "unix:{folder}/admin.sock", token_file: {folder}/admin.token}}
pools:
  web:
    members: [{{address: 127.0.0.1:{ORIGIN_PORT}, name: local}}]
virtual_servers:
  web: {{listen: [{VIP}:{VIP_PORT}], pool: web}}
ha:
  priority: {PRIORITY[name]}
  advert_interval: {int(INTERVAL * 1000)}ms
  listen: {NODE_ADDRESS[name]}:{HA_PORT}
  peers: [{NODE_ADDRESS[peer]}:{HA_PORT}]
  secret_file: {secret}
{hooks_yaml()}
"""


def wait_line(process: subprocess.Popen[bytes], timeout: float) -> bytes:
    """The first line the process prints, waited for at most `timeout` seconds."""
    assert process.stdout is not None
    ready, _, _ = select.select([process.stdout], [], [], timeout)
    if not ready:
        raise AssertionError(f"no output within {timeout}s from {process.args!r}")
    return process.stdout.readline()


@pytest.fixture
def net(tmp_path: Path) -> Iterator[Net]:
    base = f"apl-ha-{os.getpid()}"
    names = {"a": f"{base}-a", "b": f"{base}-b", "c": f"{base}-c"}
    created: list[str] = []
    processes: list[subprocess.Popen[bytes]] = []
    nodes: list[Node] = []
    # The admin sockets live in a short folder: tmp_path can exceed a unix socket path's 107 bytes.
    short = Path(tempfile.mkdtemp(prefix="apl-ha-"))
    try:
        probe = run("ip", "netns", "add", names["a"])
        if probe.returncode != 0:
            pytest.skip(f"cannot create a network namespace here (ip netns add: {probe.stderr.strip()})")
        created.append(names["a"])
        try:
            for key in ("b", "c"):
                must("ip", "netns", "add", names[key])
                created.append(names[key])
            c = names["c"]
            must("ip", "-n", c, "link", "add", "br0", "type", "bridge")
            for key in ("a", "b"):
                ns = names[key]
                must("ip", "-n", c, "link", "add", f"v{key}", "type", "veth", "peer", "name", IFACE, "netns", ns)
                must("ip", "-n", c, "link", "set", f"v{key}", "master", "br0", "up")
                must("ip", "-n", ns, "link", "set", "lo", "up")
                must("ip", "-n", ns, "addr", "add", f"{NODE_ADDRESS[key]}/24", "dev", IFACE)
                must("ip", "-n", ns, "link", "set", IFACE, "up")
            must("ip", "-n", c, "addr", "add", f"{CLIENT_ADDRESS}/24", "dev", "br0")
            must("ip", "-n", c, "link", "set", "br0", "up")
            must("ip", "-n", c, "link", "set", "lo", "up")
        except RuntimeError as exc:
            pytest.skip(f"cannot build the test network (veth, bridge) here: {exc}")

        secret = tmp_path / "ha.key"
        secret.write_bytes(os.urandom(32).hex().encode())
        for key, peer in (("a", "b"), ("b", "a")):
            origin = subprocess.Popen(
                ["ip", "netns", "exec", names[key], sys.executable, "-m", "bench.origin",
                 "--port", str(ORIGIN_PORT), "--name", f"origin-{key}"],
                stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, cwd=ROOT,
            )  # fmt: skip
            processes.append(origin)
            assert wait_line(origin, 10).startswith(b"listening on"), f"origin-{key} did not start"
            folder = short / key
            folder.mkdir()
            conf = tmp_path / f"{key}.yaml"
            conf.write_text(node_config(folder, key, peer, secret))
            nodes.append(
                Node(key, names[key], conf, folder / "admin.sock", folder / "admin.token", tmp_path / f"{key}.log")
            )
        a, b = nodes
        for node in nodes:
            node.start()
        network = Net(names["c"], a, b)
        try:
            wait_for(lambda: a.ha_state() == "master" and b.ha_state() == "backup", "a master, b backup", 10)
            # b may start first and be master for a moment (its VIP then goes with its backup hook).
            wait_for(lambda: a.has_vip() and not b.has_vip(), "the VIP on a only", 5)
        except AssertionError as exc:
            raise AssertionError(f"{exc}\n{network.diagnostics()}") from None
        yield network
    finally:
        for node in nodes:
            node.stop(signal.SIGTERM)
        for process in processes:
            if process.poll() is None:
                process.kill()
            process.wait(timeout=10)
            if process.stdout is not None:
                process.stdout.close()
        for ns in reversed(created):
            # Our processes are gone; anything the hooks left (an arping) ends by itself within 1 s.
            deadline = time.monotonic() + 5
            while run("ip", "netns", "pids", ns).stdout.strip() and time.monotonic() < deadline:
                time.sleep(0.1)
            run("ip", "netns", "del", ns)
        shutil.rmtree(short, ignore_errors=True)


def test_node_a_lost_the_vip_moves_to_b_and_back_when_a_returns(net: Net) -> None:
    """kill -9 of a's appliance and its link down (the node is gone): b's master hook takes the VIP and the
    client reaches b; a back (link up, restarted): its backup hook at start drops the stale VIP, it preempts,
    its master hook takes the VIP, b's backup hook releases it, and the client reaches a again."""
    a, b = net.a, net.b
    try:
        assert not b.has_vip()
        wait_for(lambda: net.reaches("origin-a"), "the client reaches a at the VIP", 5)

        # Node a is lost: its appliance killed (no hook runs) and its link gone.
        a.kill()
        lost = time.monotonic()
        a.link("down")
        wait_for(lambda: b.ha_state() == "master", "b master", 5)
        wait_for(b.has_vip, "b's master hook added the VIP", 5)
        wait_for(lambda: net.reaches("origin-b"), "the client reaches b at the VIP", 5, step=0.01)
        gap = time.monotonic() - lost
        print(f"the client reached b {gap:.2f}s after a was lost (master-down interval {MASTER_DOWN_B:.2f}s)")
        assert gap <= MASTER_DOWN_B + CLIENT_SLACK, gap
        assert a.has_vip()  # still configured on a's dead link: nothing ran a's hooks

        # Node a returns: its backup hook at start drops the stale VIP, then it preempts.
        a.link("up")
        a.start()
        wait_for(lambda: a.hooks_done("backup", "sh") >= 2, "a's backup hook at its restart", 5)
        wait_for(lambda: a.ha_state() == "master" and b.ha_state() == "backup", "a master again, b backup", 5)
        wait_for(lambda: a.has_vip() and not b.has_vip(), "the VIP back on a only", 5)
        wait_for(lambda: net.reaches("origin-a"), "the client reaches a again", 5, step=0.01)
    except AssertionError as exc:
        raise AssertionError(f"{exc}\n{net.diagnostics()}") from None


@pytest.mark.skipif(
    not ARPING, reason="needs arping (iputils-arping): the gratuitous ARP is what steers the client here"
)
def test_kill_9_of_a_the_gratuitous_arp_steers_the_client_to_b(net: Net) -> None:
    """kill -9 of a's appliance alone (its kernel and link live on): b's master hook takes the VIP and its
    gratuitous ARP moves the client's neighbour entry, untouched by the test, to b, and it stays there."""
    a, b = net.a, net.b
    try:
        wait_for(lambda: net.reaches("origin-a"), "the client reaches a at the VIP", 5)
        a.kill()
        wait_for(b.has_vip, "b's master hook added the VIP", 5)
        wait_for(lambda: net.reaches("origin-b"), "the client reaches b at the VIP (gratuitous ARP)", 5, step=0.01)
        # kill -9 runs no hook: a's kernel keeps the address (a duplicate on the segment) until a restarts.
        assert a.has_vip()
        for _ in range(5):
            assert net.get() == "origin-b"
    except AssertionError as exc:
        raise AssertionError(f"{exc}\n{net.diagnostics()}") from None
