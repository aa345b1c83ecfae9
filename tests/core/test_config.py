"""Config loading (SPEC §2): every kind of mistake at its line and column, then the good forms.

Plain sync tests: no sockets, no trio. Each bad config is a small file with
exactly one mistake, and the test checks the one issue it yields, rendered as
the operator sees it (`FILE:LINE:COL: path: message`).
"""

from __future__ import annotations

import textwrap
import tracemalloc
from pathlib import Path

import pytest

from appliance.core.config import load_config, parse_config
from appliance.core.config_vs import MAX_SOCKETS
from appliance.core.model import (
    AdminState,
    ApplianceSpec,
    Certificate,
    Config,
    Limits,
    Method,
    Mode,
    MonitorType,
    PersistenceType,
    Timeouts,
)
from appliance.errors import ConfigError

CONF = Path(__file__).resolve().parents[2] / "conf"


def parse(text: str) -> Config:
    return parse_config(textwrap.dedent(text), "t.yaml")


def issues(text: str) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        parse(text)
    return [str(issue) for issue in caught.value.issues]


# A valid pool and virtual server that the bad cases below lean on.
POOL = """
pools:
  web:
    members:
      - address: 127.0.0.1:9001
"""
SERVER = """
virtual_servers:
  web: {listen: [127.0.0.1:8080], pool: web}
"""


BAD = [
    # ---------------------------------------------------------------- YAML itself
    pytest.param("virtual_servers: [1\n", "t.yaml:2:1: invalid YAML: expected ',' or ']', but got '<stream end>' (while parsing a flow sequence at line 1)", id="yaml-unclosed-flow"),
    pytest.param("a: b: c\n", "t.yaml:1:5: invalid YAML: mapping values are not allowed here", id="yaml-mapping-in-scalar"),
    pytest.param("a: 1\n\tb: 2\n", "t.yaml:2:1: invalid YAML: found character '\\t' that cannot start any token (while scanning for the next token)", id="yaml-tab"),
    pytest.param("a: 1\n---\nb: 2\n", "t.yaml:2:1: invalid YAML: found another document (expected a single document in the stream at line 1)", id="yaml-two-documents"),
    pytest.param("", "t.yaml:1:1: empty configuration: no virtual_servers defined", id="empty-file"),
    pytest.param("# nothing here\n", "t.yaml:1:1: empty configuration: no virtual_servers defined", id="comments-only"),
    pytest.param("- web\n", "t.yaml:1:1: expected a mapping of sections (appliance, admin, monitors, address_sets, snat_pools, pools, virtual_servers, ha), got a list", id="top-level-list"),
    pytest.param("appliance: {name: lb}\n", "t.yaml:1:1: missing required key 'virtual_servers'", id="no-virtual-servers-key"),
    pytest.param("virtual_servers: {}\n", "t.yaml:1:18: virtual_servers: no virtual servers defined", id="no-virtual-servers"),
    # ---------------------------------------------------------------- duplicate keys
    pytest.param(
        textwrap.dedent(
            """
            pools:
              web:
                members:
                  - address: 127.0.0.1:9001
                    ratio: 2
                    ratio: 3
            """
        )
        + SERVER,
        "t.yaml:7:9: pools.web.members[0].ratio: duplicate key 'ratio' (first at line 6)",
        id="duplicate-key-in-member",
    ),
    pytest.param(
        POOL + "  web:\n    members: []\n" + SERVER,
        "t.yaml:6:3: pools.web: duplicate key 'web' (first at line 3)",
        id="duplicate-pool-name",
    ),
    pytest.param(
        POOL + SERVER + "appliance: {name: a, name: b}\n",
        "t.yaml:9:22: appliance.name: duplicate key 'name' (first at line 9)",
        id="duplicate-key-in-flow-mapping",
    ),
    # ---------------------------------------------------------------- unknown keys
    pytest.param(
        POOL + "        ratoi: 2\n" + SERVER,
        "t.yaml:6:9: pools.web.members[0].ratoi: unknown key 'ratoi' (did you mean 'ratio'?); allowed: address, name, ratio, priority_group, connection_limit, state, cookie_value",
        id="unknown-member-key",
    ),
    pytest.param(
        POOL + SERVER + "frontends: {}\n",
        "t.yaml:9:1: frontends: unknown key 'frontends'; allowed: appliance, admin, monitors, address_sets, snat_pools, pools, virtual_servers, ha",
        id="unknown-section",
    ),
    pytest.param(
        POOL + SERVER + "base: &b {pool: web}\n",
        "t.yaml:9:1: base: unknown key 'base'; allowed: appliance, admin, monitors, address_sets, snat_pools, pools, virtual_servers, ha",
        id="unknown-anchor-holder",
    ),
    pytest.param(
        POOL + "virtual_servers:\n  web:\n    <<: {pool: web}\n    listen: [127.0.0.1:8080]\n    pool: web\n",
        "t.yaml:8:5: virtual_servers.web: YAML merge keys (<<) are not supported; use an alias (*name) for a whole value",
        id="merge-key",
    ),
    # ---------------------------------------------------------------- wrong types
    pytest.param(
        POOL + "        ratio: true\n" + SERVER,
        "t.yaml:6:16: pools.web.members[0].ratio: expected an integer, got a boolean true",
        id="bool-is-not-an-int",
    ),
    pytest.param(
        POOL + "    retries: 1.5\n" + SERVER,
        "t.yaml:6:14: pools.web.retries: expected an integer, got a number 1.5",
        id="float-is-not-an-int",
    ),
    pytest.param(
        POOL + "        connection_limit: '10'\n" + SERVER,
        "t.yaml:6:27: pools.web.members[0].connection_limit: expected an integer, got '10'",
        id="quoted-number-is-not-an-int",
    ),
    pytest.param(
        POOL + "    retry_non_idempotent: 1\n" + SERVER,
        "t.yaml:6:27: pools.web.retry_non_idempotent: expected true or false, got an integer 1",
        id="int-is-not-a-bool",
    ),
    pytest.param(
        POOL + SERVER + "appliance: {name: yes}\n",
        "t.yaml:9:19: appliance.name: expected a string, got a boolean yes (quote it to mean the text)",
        id="bool-is-not-text",
    ),
    pytest.param(
        POOL + "virtual_servers:\n  web: {listen: 127.0.0.1:8080, pool: web}\n",
        "t.yaml:7:17: virtual_servers.web.listen: expected a list, got '127.0.0.1:8080' (write [127.0.0.1:8080])",
        id="listen-not-a-list",
    ),
    pytest.param(
        "pools:\n  web:\n    members: {address: 127.0.0.1:9002}\n" + SERVER,
        "t.yaml:3:14: pools.web.members: expected a list, got a mapping",
        id="members-not-a-list",
    ),
    pytest.param(
        POOL + "virtual_servers:\n  web: [127.0.0.1:8080]\n",
        "t.yaml:7:8: virtual_servers.web: expected a mapping with keys listen, mode, pool, routes, tls, persistence, connection_limit, timeouts, limits, got a list",
        id="server-not-a-mapping",
    ),
    pytest.param(
        POOL + "virtual_servers:\n  web: {pool: web}\n",
        "t.yaml:7:8: virtual_servers.web: missing required key 'listen'",
        id="missing-listen",
    ),
    pytest.param(
        "pools:\n  web:\n    members:\n      - name: web1\n        ratio: 2\n" + SERVER,
        "t.yaml:4:9: pools.web.members[0]: missing required key 'address'",
        id="missing-member-address",
    ),
    pytest.param(
        POOL + SERVER + "pools2: 1\n",
        "t.yaml:9:1: pools2: unknown key 'pools2' (did you mean 'pools'?); allowed: appliance, admin, monitors, address_sets, snat_pools, pools, virtual_servers, ha",
        id="did-you-mean-section",
    ),
    pytest.param(
        POOL + SERVER + "monitors:\n  bad name: {type: tcp}\n",
        "t.yaml:10:3: monitors.bad name: a name is letters, digits, '_', '.' and '-' (at most 64)",
        id="bad-object-name",
    ),
    # ---------------------------------------------------------------- durations
    pytest.param(
        POOL + "    slow_ramp: 10 sec\n" + SERVER,
        "t.yaml:6:16: pools.web.slow_ramp: expected a duration (250ms, 2s, 5m, 1h or a number of seconds), got '10 sec'",
        id="duration-with-space",
    ),
    pytest.param(
        POOL + SERVER + "appliance: {shutdown_grace: 1d}\n",
        "t.yaml:9:29: appliance.shutdown_grace: expected a duration (250ms, 2s, 5m, 1h or a number of seconds), got '1d'",
        id="duration-unknown-unit",
    ),
    pytest.param(
        POOL + SERVER + "appliance: {shutdown_grace: -1}\n",
        "t.yaml:9:29: appliance.shutdown_grace: must be >= 0, got -1",
        id="duration-negative",
    ),
    pytest.param(
        POOL + SERVER + "appliance: {shutdown_grace: true}\n",
        "t.yaml:9:29: appliance.shutdown_grace: expected a duration (250ms, 2s, 5m, 1h or a number of seconds), got a boolean true",
        id="duration-bool",
    ),
    pytest.param(
        POOL + "virtual_servers:\n  web: {listen: [127.0.0.1:8080], pool: web, timeouts: {connect: 0s}}\n",
        "t.yaml:7:66: virtual_servers.web.timeouts.connect: must be > 0, got 0s",
        id="timeout-zero",
    ),
    pytest.param(
        POOL + SERVER + "monitors:\n  m: {type: tcp, interval: 1s, timeout: 2s}\n",
        "t.yaml:10:41: monitors.m.timeout: must be <= interval (1s), got 2s",
        id="monitor-timeout-above-interval",
    ),
    # ---------------------------------------------------------------- enums
    pytest.param(
        POOL + "    method: rr\n" + SERVER,
        "t.yaml:6:13: pools.web.method: must be one of round_robin, ratio, least_connections, ratio_least_connections, fastest, observed, predictive, ip_hash; got 'rr'",
        id="enum-method",
    ),
    pytest.param(
        POOL + "        state: off\n" + SERVER,
        "t.yaml:6:16: pools.web.members[0].state: must be one of enabled, disabled, forced_offline; got a boolean off",
        id="enum-state-yaml-bool",
    ),
    pytest.param(
        POOL + "virtual_servers:\n  web: {listen: [127.0.0.1:8080], pool: web, mode: udp}\n",
        "t.yaml:7:52: virtual_servers.web.mode: must be one of http, tcp; got 'udp'",
        id="enum-mode",
    ),
    pytest.param(
        POOL + SERVER + "monitors:\n  m: {type: icmp}\n",
        "t.yaml:10:13: monitors.m.type: must be one of tcp, http, https; got 'icmp'",
        id="enum-monitor-type",
    ),
    pytest.param(
        POOL + "    action_on_service_down: kill\n" + SERVER,
        "t.yaml:6:29: pools.web.action_on_service_down: must be one of none, drop, reset, reselect; got 'kill'",
        id="enum-action-on-service-down",
    ),
    pytest.param(
        POOL + "virtual_servers:\n  web: {listen: [127.0.0.1:8080], pool: web, persistence: {type: ssl}}\n",
        "t.yaml:7:66: virtual_servers.web.persistence.type: must be one of cookie, source_address; got 'ssl'",
        id="enum-persistence-type",
    ),
    pytest.param(
        POOL + "virtual_servers:\n  web: {listen: [127.0.0.1:8080], pool: web, persistence: {mode: append}}\n",
        "t.yaml:7:66: virtual_servers.web.persistence.mode: must be one of insert, rewrite, passive; got 'append'",
        id="enum-persistence-mode",
    ),
    pytest.param(
        POOL + "virtual_servers:\n  web: {listen: [127.0.0.1:8080], pool: web, persistence: {encoding: b64}}\n",
        "t.yaml:7:70: virtual_servers.web.persistence.encoding: must be one of signed, f5; got 'b64'",
        id="enum-persistence-encoding",
    ),
    pytest.param(
        POOL + SERVER + "appliance: {log: {format: xml}}\n",
        "t.yaml:9:27: appliance.log.format: must be one of text, json; got 'xml'",
        id="enum-log-format",
    ),
    # ---------------------------------------------------------------- ranges
    pytest.param(
        POOL + "        ratio: 0\n" + SERVER,
        "t.yaml:6:16: pools.web.members[0].ratio: must be 1..65535, got 0",
        id="ratio-zero",
    ),
    pytest.param(POOL + "    retries: -1\n" + SERVER, "t.yaml:6:14: pools.web.retries: must be >= 0, got -1", id="retries-negative"),
    pytest.param(POOL + "    hash_mask: 33\n" + SERVER, "t.yaml:6:16: pools.web.hash_mask: must be 0..32, got 33", id="hash-mask"),
    pytest.param(POOL + "    queue: {size: -1}\n" + SERVER, "t.yaml:6:19: pools.web.queue.size: must be >= 0, got -1", id="queue-size"),
    pytest.param(
        POOL + "        connection_limit: -5\n" + SERVER,
        "t.yaml:6:27: pools.web.members[0].connection_limit: must be 0..10000000, got -5",
        id="member-connection-limit",
    ),
    pytest.param(POOL + SERVER + "appliance: {workers: 0}\n", "t.yaml:9:22: appliance.workers: must be 1..256, got 0", id="workers-zero"),
    pytest.param(
        POOL + SERVER + "monitors:\n  m: {type: tcp, rise: 0}\n",
        "t.yaml:10:24: monitors.m.rise: must be >= 1, got 0",
        id="rise-zero",
    ),
    pytest.param(
        POOL + SERVER + "monitors:\n  m: {type: tcp, fall: 0}\n",
        "t.yaml:10:24: monitors.m.fall: must be >= 1, got 0",
        id="fall-zero",
    ),
    pytest.param(
        POOL + SERVER + "monitors:\n  m: {type: http, expect: {status: [200, 700]}}\n",
        "t.yaml:10:42: monitors.m.expect.status[1]: must be 100..599, got 700",
        id="status-code",
    ),
    pytest.param(
        POOL + "virtual_servers:\n  web: {listen: [127.0.0.1:8080], pool: web, limits: {max_header_bytes: 512}}\n",
        "t.yaml:7:73: virtual_servers.web.limits.max_header_bytes: must be 1024..1048576, got 512",
        id="max-header-bytes",
    ),
    pytest.param(
        POOL + "virtual_servers:\n  web: {listen: [127.0.0.1:8080], pool: web, limits: {max_header_count: 0}}\n",
        "t.yaml:7:73: virtual_servers.web.limits.max_header_count: must be 1..10000, got 0",
        id="max-header-count",
    ),
    pytest.param(
        POOL + "virtual_servers:\n  web: {listen: [127.0.0.1:8080], pool: web, connection_limit: -1}\n",
        "t.yaml:7:64: virtual_servers.web.connection_limit: must be >= 0, got -1",
        id="server-connection-limit",
    ),
    pytest.param(
        POOL + "virtual_servers:\n  web:\n    listen: [127.0.0.1:8080]\n    pool: web\n    tls: {certificates: [{cert: c.pem, key: c.key}], min_version: 1.4}\n",
        "t.yaml:10:67: virtual_servers.web.tls.min_version: must be one of 1.0, 1.1, 1.2, 1.3; got a number 1.4",
        id="tls-min-version",
    ),
    # ---------------------------------------------------------------- addresses and listen entries
    pytest.param(
        POOL + "virtual_servers:\n  web: {listen: [300.0.0.1:80], pool: web}\n",
        "t.yaml:7:18: virtual_servers.web.listen[0]: not an IPv4 address: Octet 300 (> 255) not permitted in '300.0.0.1'",
        id="bad-ipv4",
    ),
    pytest.param(
        POOL + "virtual_servers:\n  web: {listen: [localhost:80], pool: web}\n",
        "t.yaml:7:18: virtual_servers.web.listen[0]: 'localhost' is not an IP address (host names are not resolved)",
        id="host-name",
    ),
    pytest.param(
        POOL + "virtual_servers:\n  web: {listen: [127.0.0.1], pool: web}\n",
        "t.yaml:7:18: virtual_servers.web.listen[0]: expected ADDRESS:PORT such as 127.0.0.1:8080 or \"[::1]:8080\", got '127.0.0.1'",
        id="no-port",
    ),
    pytest.param(
        POOL + "virtual_servers:\n  web: {listen: [127.0.0.1:0], pool: web}\n",
        "t.yaml:7:18: virtual_servers.web.listen[0]: port must be 1..65535, got 0",
        id="port-zero",
    ),
    pytest.param(
        "pools:\n  web:\n    members:\n      - address: 127.0.0.1:70000\n" + SERVER,
        "t.yaml:4:18: pools.web.members[0].address: port must be 1..65535, got 70000",
        id="port-too-big",
    ),
    pytest.param(
        POOL + "virtual_servers:\n  web: {listen: [127.0.0.9-127.0.0.2:80], pool: web}\n",
        "t.yaml:7:18: virtual_servers.web.listen[0]: address range end 127.0.0.2 is before its start 127.0.0.9",
        id="reversed-address-range",
    ),
    pytest.param(
        POOL + "virtual_servers:\n  web: {listen: [127.0.0.1:8084-8081], pool: web}\n",
        "t.yaml:7:18: virtual_servers.web.listen[0]: port range end 8081 is before its start 8084",
        id="reversed-port-range",
    ),
    pytest.param(
        POOL + "virtual_servers:\n  web: {listen: [\"[::1]-[127.0.0.1]:80\"], pool: web}\n",
        "t.yaml:7:18: virtual_servers.web.listen[0]: address range '::1-127.0.0.1' mixes IPv4 and IPv6",
        id="mixed-family-range",
    ),
    pytest.param(
        POOL + "virtual_servers:\n  web: {listen: [127.0.1.5/29:80], pool: web}\n",
        "t.yaml:7:18: virtual_servers.web.listen[0]: '127.0.1.5/29' has host bits set; the block is 127.0.1.0/29",
        id="block-host-bits",
    ),
    pytest.param(
        POOL + "virtual_servers:\n  web: {listen: [\"::1:80\"], pool: web}\n",
        "t.yaml:7:18: virtual_servers.web.listen[0]: an IPv6 address goes in brackets when a port follows: \"[::1]:PORT\"",
        id="ipv6-without-brackets",
    ),
    pytest.param(
        "pools:\n  web:\n    members:\n      - address: 127.0.0.1:9001-9002\n" + SERVER,
        "t.yaml:4:18: pools.web.members[0].address: expected one ADDRESS:PORT such as 127.0.0.1:8080 or \"[::1]:8080\", not a range or block, got '127.0.0.1:9001-9002'",
        id="member-takes-one-address",
    ),
    pytest.param(
        POOL + "virtual_servers:\n  web: {listen: [10.0.0.0/8:80], pool: web}\n",
        "t.yaml:7:18: virtual_servers.web.listen[0]: expands to 16,777,214 sockets; at most 65,536 in all",
        id="slash-8-over-the-cap",
    ),
    pytest.param(
        POOL
        + "virtual_servers:\n"
        + "  a: {listen: [127.0.0.1:1-40000], pool: web}\n"
        + "  b: {listen: [127.0.0.2:1-30000], pool: web}\n",
        "t.yaml:8:16: virtual_servers.b.listen[0]: expands to 30,000 sockets (70,000 with the entries before it); at most 65,536 in all",
        id="cap-crossed-by-a-later-entry",
    ),
    pytest.param(
        POOL + "virtual_servers:\n  a: {listen: [127.0.0.1:8080], pool: web}\n  b: {listen: [127.0.0.0/29:8080], pool: web}\n",
        "t.yaml:8:16: virtual_servers.b.listen[0]: 127.0.0.1:8080 is already listened on by virtual_servers.a.listen[0] (line 7)",
        id="overlap-in-another-server",
    ),
    pytest.param(
        POOL + "virtual_servers:\n  web: {listen: [127.0.0.2-127.0.0.4:80, 127.0.0.0/29:80], pool: web}\n",
        "t.yaml:7:42: virtual_servers.web.listen[1]: 127.0.0.2:80 is already listened on by virtual_servers.web.listen[0] (line 7); 2 more of this entry's endpoints are taken too",
        id="overlap-in-the-same-server",
    ),
    pytest.param(
        POOL + SERVER + "admin: {listen: 10.1.2.3:9900}\n",
        "t.yaml:9:17: admin.listen: 10.1.2.3:9900 is not a loopback address; set admin.allow_remote: true to allow it",
        id="admin-not-loopback",
    ),
    pytest.param(
        POOL + SERVER + "admin: {listen: 127.0.0.1:8080}\n",
        "t.yaml:9:17: admin.listen: 127.0.0.1:8080 is also a listen endpoint of virtual_servers.web.listen[0] (line 8)",
        id="admin-on-a-virtual-server-port",
    ),
    pytest.param(
        POOL + SERVER + "address_sets:\n  big: [10.0.0.0/8]\n",
        "t.yaml:10:9: address_sets.big[0]: expands to 16,777,214 addresses; at most 65,536 in one list",
        id="address-set-over-the-cap",
    ),
    pytest.param(
        POOL + SERVER + "address_sets:\n  s: [127.0.0.1:80]\n",
        "t.yaml:10:7: address_sets.s[0]: '127.0.0.1:80' has a port; only an address is expected here",
        id="address-set-with-port",
    ),
    pytest.param(
        POOL + SERVER + "address_sets:\n  s: [127.0.0.1-127.0.0.4, 127.0.0.3]\n",
        "t.yaml:10:28: address_sets.s[1]: 127.0.0.3 is already in the list",
        id="address-set-repeat",
    ),
    # ---------------------------------------------------------------- references
    pytest.param(
        POOL + "virtual_servers:\n  web: {listen: [127.0.0.1:8080], pool: wbe}\n",
        "t.yaml:7:41: virtual_servers.web.pool: undefined pool 'wbe'; defined: web",
        id="undefined-pool",
    ),
    pytest.param(
        POOL + "    monitors: [health]\n" + SERVER,
        "t.yaml:6:16: pools.web.monitors[0]: undefined monitor 'health'; no monitors are defined",
        id="undefined-monitor",
    ),
    pytest.param(
        POOL + "    snat: outbound\n" + SERVER + "snat_pools:\n  out: {addresses: [127.0.0.30]}\n",
        "t.yaml:6:11: pools.web.snat: undefined SNAT pool 'outbound'; defined: out",
        id="undefined-snat-pool",
    ),
    pytest.param(
        POOL + SERVER + "snat_pools:\n  out: {draw: [{from: dc2, count: 2}]}\n",
        "t.yaml:10:23: snat_pools.out.draw[0].from: undefined address set 'dc2'; no address_sets are defined",
        id="undefined-address-set",
    ),
    pytest.param(
        POOL + "virtual_servers:\n  web: {listen: [127.0.0.1:8080], routes: [{path: /a, pool: api}]}\n",
        "t.yaml:7:61: virtual_servers.web.routes[0].pool: undefined pool 'api'; defined: web",
        id="undefined-route-pool",
    ),
    pytest.param(
        POOL + SERVER + "ha: {listen: 127.0.0.1:9911, peers: [127.0.0.1:9912], secret_file: k, virtual_servers: [api]}\n",
        "t.yaml:9:89: ha.virtual_servers[0]: undefined virtual server 'api'; defined: web",
        id="undefined-ha-virtual-server",
    ),
    pytest.param(
        POOL + SERVER + "ha: {listen: 127.0.0.1:9911, peers: [127.0.0.1:9912], secret_file: k, track: {pools: {api: 10}}}\n",
        "t.yaml:9:87: ha.track.pools.api: undefined pool 'api'; defined: web",
        id="undefined-ha-track-pool",
    ),
    # ---------------------------------------------------------------- regular expressions
    pytest.param(
        POOL + "virtual_servers:\n  web: {listen: [127.0.0.1:8080], routes: [{path_regex: \"(\", pool: web}]}\n",
        "t.yaml:7:57: virtual_servers.web.routes[0].path_regex: bad regular expression: missing ), unterminated subpattern at position 0",
        id="bad-path-regex",
    ),
    pytest.param(
        POOL + "virtual_servers:\n  web: {listen: [127.0.0.1:8080], routes: [{header: {name: X, regex: \"[a\"}, pool: web}]}\n",
        "t.yaml:7:70: virtual_servers.web.routes[0].header.regex: bad regular expression: unterminated character set at position 0",
        id="bad-header-regex",
    ),
    pytest.param(
        POOL + SERVER + "monitors:\n  m: {type: http, expect: {body_regex: \"a{2,1}\"}}\n",
        "t.yaml:10:40: monitors.m.expect.body_regex: bad regular expression: min repeat greater than max repeat at position 2",
        id="bad-body-regex",
    ),
    # ---------------------------------------------------------------- shapes and combinations
    pytest.param(
        POOL + "virtual_servers:\n  web: {listen: [127.0.0.1:8080]}\n",
        "t.yaml:7:8: virtual_servers.web: needs a pool or routes",
        id="server-without-pool-or-routes",
    ),
    pytest.param(
        POOL + "virtual_servers:\n  db: {listen: [127.0.0.1:5432], mode: tcp, routes: [{path: /, pool: web}]}\n",
        "t.yaml:7:45: virtual_servers.db.routes: routes need mode http",
        id="routes-in-tcp-mode",
    ),
    pytest.param(
        POOL + "virtual_servers:\n  db: {listen: [127.0.0.1:5432], mode: tcp, pool: web, persistence: {type: cookie}}\n",
        "t.yaml:7:56: virtual_servers.db.persistence: cookie persistence needs mode http",
        id="cookie-persistence-in-tcp-mode",
    ),
    pytest.param(
        POOL + "virtual_servers:\n  web: {listen: [127.0.0.1:8080], routes: [{pool: web}]}\n",
        "t.yaml:7:44: virtual_servers.web.routes[0]: a route needs at least one of path, path_prefix, path_regex, host, header, method",
        id="route-without-a-match",
    ),
    pytest.param(
        POOL + "virtual_servers:\n  web: {listen: [127.0.0.1:8080], pool: web, routes: []}\n",
        "t.yaml:7:54: virtual_servers.web.routes: must not be empty",
        id="routes-empty",
    ),
    pytest.param(
        POOL + "virtual_servers:\n  web: {listen: [127.0.0.1:8080], routes: [{header: {name: X, equals: a, present: true}, pool: web}]}\n",
        "t.yaml:7:53: virtual_servers.web.routes[0].header: needs exactly one of equals, contains, regex, present; got equals, present",
        id="header-two-tests",
    ),
    pytest.param(
        POOL + "virtual_servers:\n  web: {listen: [127.0.0.1:8080], routes: [{header: {equals: a}, pool: web}]}\n",
        "t.yaml:7:53: virtual_servers.web.routes[0].header: missing required key 'name'",
        id="header-without-name",
    ),
    pytest.param(
        POOL + "virtual_servers:\n  web: {listen: [127.0.0.1:8080], routes: [{path: api/, pool: web}]}\n",
        "t.yaml:7:51: virtual_servers.web.routes[0].path: expected a path starting with '/', got 'api/'",
        id="route-path-without-slash",
    ),
    pytest.param(
        POOL + "virtual_servers:\n  web: {listen: [127.0.0.1:8080], routes: [{host: \"*\", pool: web}]}\n",
        "t.yaml:7:51: virtual_servers.web.routes[0].host: expected a host name such as app.example.test or *.example.test, got '*'",
        id="route-host-bare-star",
    ),
    pytest.param(
        POOL + SERVER + "monitors:\n  m: {type: http, expect: {body: ok, body_regex: ok}}\n",
        "t.yaml:10:38: monitors.m.expect.body_regex: give body or body_regex, not both",
        id="expect-body-and-body-regex",
    ),
    pytest.param(
        POOL + SERVER + "monitors:\n  m: {type: tcp, send: {path: /}}\n",
        "t.yaml:10:18: monitors.m.send: applies to http and https monitors only",
        id="tcp-monitor-with-send",
    ),
    pytest.param(
        POOL + SERVER + "monitors:\n  m: {type: http, send: {method: \"GE T\"}}\n",
        "t.yaml:10:34: monitors.m.send.method: expected a token (letters, digits and !#$%&'*+-.^_`|~), got 'GE T'",
        id="send-method-not-a-token",
    ),
    pytest.param(
        POOL + SERVER + "monitors:\n  m: {type: http, send: {path: health}}\n",
        "t.yaml:10:32: monitors.m.send.path: expected a path starting with '/', got 'health'",
        id="send-path-without-slash",
    ),
    pytest.param(
        POOL + SERVER + "ha: {listen: 127.0.0.1:9911, peers: [127.0.0.1:9912], secret_file: k, virtual_servers: some}\n",
        "t.yaml:9:88: ha.virtual_servers: expected all or a list of virtual server names, got 'some'",
        id="ha-virtual-servers-not-all",
    ),
    pytest.param(
        POOL + SERVER + "ha: {listen: 127.0.0.1:9911, peers: [127.0.0.1:9912], secret_file: k, hooks: {master: [logger]}}\n",
        "t.yaml:9:88: ha.hooks.master[0]: expected a list, got 'logger' (write [logger])",
        id="hook-not-an-argv-list",
    ),
    pytest.param(
        POOL + SERVER + "ha: {listen: 127.0.0.1:9911, peers: [127.0.0.1:9912], secret_file: k, hooks: {fault: [[]]}}\n",
        "t.yaml:9:87: ha.hooks.fault[0]: must not be empty",
        id="hook-empty-argv",
    ),
    pytest.param(
        POOL + SERVER + "ha: {listen: 127.0.0.1:9911, peers: [127.0.0.1:9911], secret_file: k}\n",
        "t.yaml:9:37: ha.peers: 127.0.0.1:9911 is this node's own ha.listen",
        id="ha-peer-is-self",
    ),
    pytest.param(
        POOL + SERVER + "ha: {listen: 127.0.0.1:9911, peers: [127.0.0.1:9912], secret_file: k, priority: 255}\n",
        "t.yaml:9:81: ha.priority: must be 1..254, got 255",
        id="ha-priority",
    ),
    pytest.param(
        POOL + SERVER + "ha: {listen: 127.0.0.1:9911, peers: [127.0.0.1:9912], secret_file: k, advert_interval: 0}\n",
        "t.yaml:9:88: ha.advert_interval: must be > 0, got 0",
        id="ha-advert-interval",
    ),
    pytest.param(
        POOL + SERVER + "ha: {listen: 127.0.0.1:9911, peers: [127.0.0.1:9912]}\n",
        "t.yaml:9:5: ha: missing required key 'secret_file'",
        id="ha-missing-secret-file",
    ),
    pytest.param(
        POOL + "virtual_servers:\n  web: {listen: [127.0.0.1:8080], pool: web, tls: {certificates: []}}\n",
        "t.yaml:7:66: virtual_servers.web.tls.certificates: must not be empty",
        id="tls-no-certificates",
    ),
    pytest.param(
        POOL + "virtual_servers:\n  web: {listen: [127.0.0.1:8080], pool: web, tls: {certificates: [{cert: a.pem}]}}\n",
        "t.yaml:7:67: virtual_servers.web.tls.certificates[0]: missing required key 'key'",
        id="tls-certificate-without-key",
    ),
    pytest.param(
        POOL + "virtual_servers:\n  web: {listen: [127.0.0.1:8080], pool: web, tls: {certificates: [{cert: a.pem, key: a.key}], handshake_timeout: 0}}\n",
        "t.yaml:7:114: virtual_servers.web.tls.handshake_timeout: must be > 0, got 0",
        id="tls-handshake-timeout-zero",
    ),
    pytest.param(
        POOL + "virtual_servers:\n  web: {listen: [127.0.0.1:8080], pool: web, tls: {certificates: [{cert: a.pem, key: a.key, password_file: p}]}}\n",
        "t.yaml:7:93: virtual_servers.web.tls.certificates[0].password_file: unknown key 'password_file' (did you mean 'key_password_file'?); allowed: cert, key, key_password_file",
        id="tls-certificate-unknown-key",
    ),
    pytest.param(
        POOL + "virtual_servers:\n  web: {listen: [127.0.0.1:8080], pool: web, tls: {certificates: [{cert: a.pem, key: a.key, key_password_file: true}]}}\n",
        "t.yaml:7:112: virtual_servers.web.tls.certificates[0].key_password_file: expected a string, got a boolean true (quote it to mean the text)",
        id="tls-key-password-file-not-text",
    ),
    pytest.param(
        POOL + "virtual_servers:\n  web: {listen: [127.0.0.1:8080], pool: web, persistence: {cookie: \"my cookie\"}}\n",
        "t.yaml:7:68: virtual_servers.web.persistence.cookie: expected a cookie name (an RFC 9110 token), got 'my cookie'",
        id="cookie-name",
    ),
    pytest.param(
        POOL + "virtual_servers:\n  web: {listen: [127.0.0.1:8080], pool: web, persistence: {mode: rewrite, encoding: f5}}\n",
        "t.yaml:7:85: virtual_servers.web.persistence.encoding: encoding f5 needs mode insert",
        id="f5-encoding-needs-insert",
    ),
    pytest.param(
        POOL + "virtual_servers:\n  web: {listen: [127.0.0.1:8080], pool: web, persistence: {mode: passive}}\n",
        "t.yaml:7:66: virtual_servers.web.persistence.mode: mode passive needs cookie_value on the members of pool web; none has one",
        id="passive-needs-cookie-values",
    ),
    pytest.param(
        "pools:\n  web:\n    members:\n      - {address: 127.0.0.1:9001, cookie_value: a}\n"
        + "      - {address: 127.0.0.1:9002, cookie_value: a}\n"
        + "virtual_servers:\n  web: {listen: [127.0.0.1:8080], pool: web, persistence: {mode: passive}}\n",
        "t.yaml:5:49: pools.web.members[1].cookie_value: cookie_value 'a' is members[0]'s too; passive needs one per member",
        id="passive-cookie-values-unique",
    ),
    pytest.param(
        POOL + "virtual_servers:\n  web: {listen: [127.0.0.1:8080], pool: web, persistence: {max_records: 0}}\n",
        "t.yaml:7:73: virtual_servers.web.persistence.max_records: must be 1..10000000, got 0",
        id="source-records-bound",
    ),
    pytest.param(
        "pools:\n  web:\n    members:\n      - {address: 127.0.0.1:9001, name: a}\n      - {address: 127.0.0.1:9002, name: a}\n" + SERVER,
        "t.yaml:5:9: pools.web.members[1]: duplicate member name 'a' (members[0], line 4)",
        id="member-names-unique",
    ),
    pytest.param(
        "pools:\n  web:\n    members:\n      - {address: 127.0.0.1:9001}\n      - {address: 127.0.0.1:9001}\n" + SERVER,
        "t.yaml:5:9: pools.web.members[1]: duplicate member name '127.0.0.1:9001' (members[0], line 4)",
        id="member-default-names-unique",
    ),
]


@pytest.mark.parametrize(("text", "expected"), BAD)
def test_each_mistake_is_reported_where_it_is(text: str, expected: str) -> None:
    assert issues(text) == [expected]


def test_every_mistake_is_reported_at_once_in_line_order() -> None:
    found = issues(
        """
        appliance:
          workers: yes
        pools:
          web:
            method: fastest-ish
            members:
              - address: 127.0.0.1:9001
                ratio: 0
              - address: 127.0.0.1:9001
        virtual_servers:
          web:
            listen: [127.0.0.1:99999]
            pool: nope
            bogus: 1
        """
    )
    assert [line.split(": ", 1)[0] for line in found] == [
        "t.yaml:3:12",
        "t.yaml:6:13",
        "t.yaml:9:16",
        "t.yaml:10:9",
        "t.yaml:13:14",
        "t.yaml:14:11",
        "t.yaml:15:5",
    ]
    assert "appliance.workers: expected an integer" in found[0]
    assert "pools.web.method: must be one of" in found[1]
    assert "pools.web.members[0].ratio: must be 1..65535, got 0" in found[2]
    assert "pools.web.members[1]: duplicate member name '127.0.0.1:9001'" in found[3]
    assert "virtual_servers.web.listen[0]: port must be 1..65535, got 99999" in found[4]
    assert "virtual_servers.web.pool: undefined pool 'nope'" in found[5]
    assert "virtual_servers.web.bogus: unknown key 'bogus'" in found[6]


def test_config_error_message_is_one_line_per_issue() -> None:
    with pytest.raises(ConfigError) as caught:
        parse(POOL + "        ratio: 0\n        state: gone\n" + SERVER)
    assert str(caught.value).splitlines() == [
        "t.yaml:6:16: pools.web.members[0].ratio: must be 1..65535, got 0",
        "t.yaml:7:16: pools.web.members[0].state: must be one of enabled, disabled, forced_offline; got 'gone'",
    ]


def test_a_slash_8_is_refused_without_building_it() -> None:
    tracemalloc.start()
    try:
        found = issues(POOL + "virtual_servers:\n  web: {listen: [\"10.0.0.0/8:1-65535\", \"[fd00::/64]:80\"], pool: web}\n")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert found == [
        "t.yaml:7:18: virtual_servers.web.listen[0]: expands to 1,099,494,719,490 sockets; at most 65,536 in all"
    ]
    assert peak < 2_000_000  # bytes: nothing close to one object per address was built


def test_exactly_the_cap_is_allowed() -> None:
    config = parse(
        POOL + "virtual_servers:\n  a: {listen: [127.0.0.1:1-65535], pool: web}\n  b: {listen: [127.0.0.2:1], pool: web}\n"
    )
    total = sum(len(server.endpoints) for server in config.virtual_servers.values())
    assert total == MAX_SOCKETS == 65_536


def test_unreadable_file_is_reported_at_line_one(tmp_path: Path) -> None:
    missing = tmp_path / "nope.yaml"
    with pytest.raises(ConfigError) as caught:
        load_config(str(missing))
    (issue,) = caught.value.issues
    assert (issue.source, issue.line, issue.column, issue.path) == (str(missing), 1, 1, "")
    assert str(issue) == f"{missing}:1:1: cannot read: No such file or directory"


# ---------------------------------------------------------------- good configs


def test_the_full_example_loads() -> None:
    config = load_config(str(CONF / "appliance.yaml"))
    assert config.source.endswith("conf/appliance.yaml")
    assert list(config.pools) == ["web", "api", "canary", "static"]
    assert list(config.virtual_servers) == ["web", "static-tls"]
    web = config.virtual_servers["web"]
    assert len(web.endpoints) == 1 + 8 + 6 + 4 + 1
    assert [route.pool for route in web.routes] == ["api", "canary", "static", "static", "static"]
    assert web.routes[1].header is not None and web.routes[1].header.name == "x-canary"
    assert web.tls is not None and web.tls.certificates[0].cert == "conf/tls/web.pem"
    assert web.persistence is not None and web.persistence.timeout == 1800.0
    assert config.virtual_servers["static-tls"].mode is Mode.TCP
    assert config.virtual_servers["static-tls"].persistence is not None
    assert config.virtual_servers["static-tls"].persistence.type is PersistenceType.SOURCE_ADDRESS
    assert [member.name for member in config.pools["web"].members] == ["web1", "web2", "127.0.0.1:9003"]
    assert config.pools["web"].members[2].state is AdminState.DISABLED
    assert str(config.pools["static"].members[1].address) == "[::1]:9302"
    assert config.monitors["web-health"].expect.body == "ok"
    assert config.address_sets["dc1"].addresses == tuple(f"127.0.0.{n}" for n in range(20, 28))
    assert config.snat_pools["outbound"].draw[0].source == "dc1"
    assert config.ha is not None and config.ha.virtual_servers is None and config.ha.track_pools == {"web": 50}
    assert config.ha.hooks.master == (("logger", "-t", "appliance", "lb-a became master"),)
    assert config.not_yet_supported == ()


def test_the_minimal_example_loads_and_is_fully_supported() -> None:
    config = load_config(str(CONF / "minimal.yaml"))
    assert config.not_yet_supported == ()
    assert config.monitors["port-open"].type is MonitorType.TCP
    assert [member.name for member in config.pools["web"].members] == ["127.0.0.1:9001", "127.0.0.1:9002"]
    assert [str(ep) for ep in config.virtual_servers["web"].endpoints] == ["127.0.0.1:8080"]


def test_defaults_come_from_the_model() -> None:
    config = parse(POOL + SERVER + "monitors:\n  m: {type: tcp, interval: 1s}\n")
    assert config.appliance == ApplianceSpec()
    assert config.admin.listen == "127.0.0.1:9900" and config.admin.allow_remote is False
    assert config.ha is None
    pool = config.pools["web"]
    assert (pool.method, pool.retries, pool.retry_non_idempotent, pool.hash_mask) == (Method.ROUND_ROBIN, 2, False, 32)
    assert (pool.queue.size, pool.queue.timeout, pool.snat, pool.tls) == (0, 5.0, None, None)
    member = pool.members[0]
    assert (member.name, member.ratio, member.priority_group, member.connection_limit) == ("127.0.0.1:9001", 1, 0, 0)
    assert member.state is AdminState.ENABLED
    server = config.virtual_servers["web"]
    assert (server.mode, server.timeouts, server.limits) == (Mode.HTTP, Timeouts(), Limits())
    assert (server.routes, server.tls, server.persistence, server.connection_limit) == ((), None, None, 0)
    monitor = config.monitors["m"]
    assert (monitor.interval, monitor.timeout, monitor.rise, monitor.fall) == (1.0, 1.0, 2, 3)  # timeout <= interval


@pytest.mark.parametrize(
    ("written", "seconds"),
    [("250ms", 0.25), ("2s", 2.0), ("5m", 300.0), ("1h", 3600.0), ("1.5s", 1.5), ("7", 7.0), ("0.5", 0.5), ("0", 0.0)],
)
def test_durations(written: str, seconds: float) -> None:
    config = parse(POOL + SERVER + f"appliance: {{shutdown_grace: {written}}}\n")
    assert config.appliance.shutdown_grace == seconds


@pytest.mark.parametrize(
    ("spec", "endpoints"),
    [
        ("127.0.0.1:8080", ["127.0.0.1:8080"]),
        ("127.0.0.2-127.0.0.4:8080", ["127.0.0.2:8080", "127.0.0.3:8080", "127.0.0.4:8080"]),
        ("127.0.1.0/30:80", ["127.0.1.1:80", "127.0.1.2:80"]),  # network and broadcast left out
        ("127.0.1.0/31:80", ["127.0.1.0:80", "127.0.1.1:80"]),  # RFC 3021: both are hosts
        ("127.0.1.7/32:80", ["127.0.1.7:80"]),
        ("127.0.0.1:8081-8083", ["127.0.0.1:8081", "127.0.0.1:8082", "127.0.0.1:8083"]),
        ("127.0.0.1-127.0.0.2:81-82", ["127.0.0.1:81", "127.0.0.1:82", "127.0.0.2:81", "127.0.0.2:82"]),
        ("[::1]:8080", ["[::1]:8080"]),
        ("[::1]-[::3]:80", ["[::1]:80", "[::2]:80", "[::3]:80"]),
        ("[fd00::/127]:80", ["[fd00::]:80", "[fd00::1]:80"]),  # every address of an IPv6 block
        ("[fd00::]/127:80", ["[fd00::]:80", "[fd00::1]:80"]),
        ("[0:0:0:0:0:0:0:1]:80", ["[::1]:80"]),  # the canonical spelling
    ],
)
def test_listen_expansion(spec: str, endpoints: list[str]) -> None:
    config = parse(POOL + f'virtual_servers:\n  web: {{listen: ["{spec}"], pool: web}}\n')
    (entry,) = config.virtual_servers["web"].listen
    assert entry.spec == spec
    assert [str(endpoint) for endpoint in entry.endpoints] == endpoints


def test_addresses_of_sets_and_snat_pools() -> None:
    config = parse(
        POOL
        + SERVER
        + "address_sets:\n  s: [127.0.0.1-127.0.0.3, \"::1\", \"[::2]\", 127.0.2.0/30]\n"
        + "snat_pools:\n  p: {addresses: [127.0.0.9], draw: [{from: s, count: 2}], quarantine: {failures: 5, for: 1m}}\n"
    )
    assert config.address_sets["s"].addresses == (
        "127.0.0.1", "127.0.0.2", "127.0.0.3", "::1", "::2", "127.0.2.1", "127.0.2.2",
    )  # fmt: skip
    pool = config.snat_pools["p"]
    assert (pool.addresses, pool.draw[0].count, pool.quarantine.failures, pool.quarantine.duration) == (
        ("127.0.0.9",), 2, 5, 60.0,
    )  # fmt: skip


def test_routes_headers_and_hosts() -> None:
    config = parse(
        POOL
        + "virtual_servers:\n  web:\n    listen: [127.0.0.1:8080]\n    routes:\n"
        + "      - {header: {name: X-Canary, present: true}, pool: web}\n"
        + "      - {host: \"*.Static.Test\", method: [GET, HEAD], path_prefix: /s/, pool: web}\n"
    )
    first, second = config.virtual_servers["web"].routes
    assert first.header is not None and (first.header.name, first.header.present) == ("x-canary", True)
    assert (second.host, second.method, second.path_prefix) == ("*.static.test", ("GET", "HEAD"), "/s/")


def test_numbers_are_taken_as_written_where_text_is_expected() -> None:
    config = parse(
        POOL
        + "virtual_servers:\n  web:\n    listen: [127.0.0.1:8080]\n    pool: web\n"
        + "    routes: [{header: {name: X-Canary, equals: 1}, pool: web}]\n"
        + "    tls: {certificates: [{cert: a.pem, key: a.key}], min_version: 1.3}\n"
    )
    server = config.virtual_servers["web"]
    assert server.routes[0].header is not None and server.routes[0].header.equals == "1"
    assert server.tls is not None and server.tls.min_version == "1.3"


def test_tls_passphrase_files_handshake_timeout_and_origins() -> None:
    config = parse(
        """
        pools:
          web:
            tls: {ca: ca.pem}
            members: [{address: 127.0.0.1:9001}]
        virtual_servers:
          web:
            listen: [127.0.0.1:8443]
            pool: web
            tls:
              certificates:
                - {cert: a.pem, key: a.key}
                - cert: b.pem
                  key: b.key
                  key_password_file: b.pass
              handshake_timeout: 2500ms
        """
    )
    tls = config.virtual_servers["web"].tls
    assert tls is not None and tls.handshake_timeout == 2.5
    first, second = tls.certificates
    assert (first.key_password_file, first.origin) == (None, "t.yaml:12:11")
    assert (second.key_password_file, second.origin) == ("b.pass", "t.yaml:13:11")
    assert first == Certificate(cert="a.pem", key="a.key", origin="elsewhere:1:1")  # where it is written is not what it is
    pool_tls = config.pools["web"].tls
    assert pool_tls is not None and (pool_tls.ca, pool_tls.verify, pool_tls.origin) == ("ca.pem", True, "t.yaml:4:10")


def test_tls_defaults_come_from_the_model() -> None:
    config = parse(POOL + "virtual_servers:\n  web: {listen: [127.0.0.1:8443], pool: web, tls: {certificates: [{cert: a, key: b}]}}\n")
    tls = config.virtual_servers["web"].tls
    assert tls is not None
    assert (tls.min_version, tls.alpn, tls.handshake_timeout) == ("1.2", ("http/1.1",), 10.0)


def test_the_full_example_documents_the_tls_keys() -> None:
    web = load_config(str(CONF / "appliance.yaml")).virtual_servers["web"]
    assert web.tls is not None and web.tls.handshake_timeout == 10.0
    assert [c.key_password_file for c in web.tls.certificates] == [None, "conf/tls/shop.pass"]
    assert all(c.origin.startswith(str(CONF / "appliance.yaml") + ":") for c in web.tls.certificates)


def test_ha_section() -> None:
    config = parse(
        POOL
        + SERVER
        + "ha:\n  listen: 127.0.0.1:9911\n  peers: [\"[::1]:9912\"]\n  secret_file: conf/ha.key\n"
        + "  virtual_servers: [web]\n  hooks: {backup: [[/bin/true]]}\n"
    )
    ha = config.ha
    assert ha is not None
    assert (str(ha.listen), [str(peer) for peer in ha.peers]) == ("127.0.0.1:9911", ["[::1]:9912"])
    assert (ha.priority, ha.preempt, ha.advert_interval, ha.virtual_servers) == (100, True, 1.0, ("web",))
    assert ha.hooks.backup == (("/bin/true",),) and ha.hooks.master == ()


def test_admin_may_listen_on_a_unix_socket_or_remotely_when_allowed() -> None:
    assert parse(POOL + SERVER + "admin: {listen: unix:var/admin.sock}\n").admin.listen == "unix:var/admin.sock"
    remote = parse(POOL + SERVER + "admin: {listen: 10.1.2.3:9900, allow_remote: true}\n").admin
    assert (remote.listen, remote.allow_remote) == ("10.1.2.3:9900", True)


def test_aliases_reuse_a_whole_value() -> None:
    config = parse(
        POOL
        + "virtual_servers:\n"
        + "  a: {listen: [127.0.0.1:8080], pool: web, timeouts: &t {connect: 1s, server: 5s}}\n"
        + "  b: {listen: [127.0.0.1:8081], pool: web, timeouts: *t}\n"
    )
    assert config.virtual_servers["a"].timeouts == config.virtual_servers["b"].timeouts
    assert config.virtual_servers["b"].timeouts.connect == 1.0


@pytest.mark.parametrize(
    ("extra", "listed"),
    [
        ("appliance: {workers: 1}\n", ()),
        ("appliance: {workers: 4}\n", ("appliance.workers: 4",)),
        ("monitors:\n  m: {type: https}\n", ()),
        ("address_sets: {a: [127.0.0.20]}\n", ()),
        ("monitors:\n  m: {type: tcp}\n", ()),
        ("admin: {listen: 127.0.0.1:9900}\n", ()),
    ],
)
def test_not_yet_supported_lists_what_the_file_uses(extra: str, listed: tuple[str, ...]) -> None:
    assert parse(POOL + SERVER + extra).not_yet_supported == listed


def test_not_yet_supported_pool_keys() -> None:
    config = parse(
        "pools:\n  web:\n    method: round_robin\n    min_active_members: 0\n    slow_ramp: 0s\n"
        + "    action_on_service_down: none\n    queue: {size: 0}\n    members: [{address: 127.0.0.1:9001}]\n"
        + "  api:\n    method: ratio\n    min_active_members: 1\n    slow_ramp: 5s\n"
        + "    action_on_service_down: reset\n    queue: {size: 10}\n    hash_mask: 24\n"
        + "    members: [{address: 127.0.0.1:9002, cookie_value: a}]\n"
        + SERVER
    )
    assert config.not_yet_supported == ()


def test_passive_failure_detection_keys() -> None:
    config = parse(
        "pools:\n  web:\n    passive: {failures: 3, down_for: 30s}\n    members: [{address: 127.0.0.1:9001}]\n" + SERVER
    )
    assert (config.pools["web"].passive.failures, config.pools["web"].passive.down_for) == (3, 30.0)
    assert parse(POOL + SERVER).pools["web"].passive.failures == 0  # off unless asked
    with pytest.raises(ConfigError) as caught:
        parse("pools:\n  web:\n    passive: {failures: -1, down_for: 0s}\n    members: [{address: 127.0.0.1:9001}]\n" + SERVER)
    text = str(caught.value)
    assert "t.yaml:3:25: pools.web.passive.failures: must be >= 0, got -1" in text
    assert "pools.web.passive.down_for" in text
