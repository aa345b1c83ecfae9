"""Persistence (SPEC §3 "Persistence"): which member a returning client goes back to.

Pools come from a real config and a Runtime (fake clock), so admin state is
changed by reloading a config and health by feeding monitor results, as in
production. Cookies travel as a browser carries them: the `NAME=VALUE` part
of a Set-Cookie line is sent back in a Cookie line. Wall-clock times are
explicit `now` values.
"""

from __future__ import annotations

import itertools

import pytest

from appliance.controlplane.runtime import Runtime
from appliance.core import tokens
from appliance.core.config import parse_config
from appliance.core.health import CheckResult, Health, LastCheck
from appliance.core.model import AdminState, Endpoint, Member
from appliance.core.persistence import CookiePersistence, Persistences, SourcePersistence, SourceTable, honoured
from appliance.core.snapshot import MemberView, PoolView
from appliance.core.stats import MemberStats

Triple = tuple[bytes, bytes, bytes]

KEY = b"k" * 32
NOW = 1_700_000_000  # wall-clock seconds, as the proxy passes them

MEMBERS = {
    "a": "address: 10.1.1.100:80, cookie_value: A1",
    "b": "address: 10.1.1.101:80, cookie_value: B1",
    "c": "address: 10.1.1.102:80, cookie_value: C1",
    "v6": "address: '[2001:db8::1]:8080', cookie_value: V1",
}


class Site:
    """One virtual server `vs` routing to pools `web` (monitored) and `api`, with its persistence."""

    def __init__(self, persistence: str = "{type: cookie}", pool: str = "", **members: str) -> None:
        self.persistence_yaml, self.pool_yaml, self.members = persistence, pool, members
        self.runtime = Runtime(parse_config(self.text(), "t.yaml"), lambda: 100.0)
        for name in MEMBERS:
            self.check(name, ok=True)
        self.persistences = Persistences()
        self.persistences.configure(self.runtime.config.virtual_servers, KEY)

    def text(self) -> str:
        rows = "".join(
            f"      - {{name: {name}, {spec}{', ' + self.members[name] if name in self.members else ''}}}\n"
            for name, spec in MEMBERS.items()
        )
        return (
            "monitors:\n  port: {type: tcp, interval: 1s, timeout: 500ms, rise: 1, fall: 1}\n"
            f"pools:\n  web:\n    monitors: [port]\n{self.pool_yaml}    members:\n{rows}"
            "  api:\n    members:\n      - {address: 10.2.0.1:80, name: x, cookie_value: X1}\n"
            "virtual_servers:\n  vs:\n    listen: [127.0.0.1:8080]\n    pool: web\n"
            f"    routes: [{{path_prefix: /api/, pool: api}}]\n    persistence: {self.persistence_yaml}\n"
        )

    def reload(self, **members: str) -> None:
        """Applies a config in which `members` carry extra keys (state, connection_limit...)."""
        self.members = members
        self.runtime.reload(parse_config(self.text(), "t.yaml"))
        self.persistences.configure(self.runtime.config.virtual_servers, KEY)

    def check(self, member: str, ok: bool) -> None:
        target = next(t for t in self.runtime.monitor_targets() if t.member == member)
        self.runtime.record_check(target, CheckResult(ok=ok, reason="ok" if ok else "refused", latency=0.001, at=101.0))

    @property
    def cookie(self) -> CookiePersistence:
        persistence = self.persistences.by_vs["vs"]
        assert isinstance(persistence, CookiePersistence)
        return persistence

    def pool(self, name: str = "web") -> PoolView:
        return self.runtime.snapshot.pools[name]

    def member(self, name: str, pool: str = "web") -> MemberView:
        member = self.pool(pool).member(name)
        assert member is not None
        return member


def request(*cookies: bytes) -> list[Triple]:
    """A request head carrying `cookies` as Cookie lines, as a browser sends them."""
    return [(b"Host", b"host", b"app.test"), *((b"Cookie", b"cookie", c) for c in cookies)]


def set_cookie(name: str, value: str) -> Triple:
    """A Set-Cookie line as the member's application writes it."""
    return (b"Set-Cookie", b"set-cookie", f"{name}={value}; Path=/".encode())


def set_cookies(headers: list[Triple], name: bytes = b"LBSESSION") -> list[bytes]:
    """The Set-Cookie lines of cookie `name` in a response."""
    return [value for _, lower, value in headers if lower == b"set-cookie" and value.split(b"=", 1)[0] == name]


def returned(line: bytes) -> bytes:
    """What the browser sends back for one Set-Cookie line: its NAME=VALUE part."""
    return line.split(b";", 1)[0]


def picked(pool: PoolView, n: int) -> set[str]:
    """The members the balancer picks for `n` new clients."""
    return {m.name for m in (pool.select(None, NOW) for _ in range(n)) if m is not None}


def first_visit(site: Site, member: str, pool: str = "web") -> bytes:
    """Sends a new client to `member` at NOW and returns the cookie it is given (NAME=VALUE)."""
    sticky = site.cookie.lookup(site.pool(pool), request(), NOW)
    headers: list[Triple] = []
    site.cookie.respond(sticky, site.member(member, pool), headers, secure=False, now=NOW)
    (line,) = [value for _, lower, value in headers if lower == b"set-cookie"]
    return returned(line)


# ---------------------------------------------------------------- which records are honoured


HONOURED = {  # SPEC: enabled or disabled, healthy (up or unchecked), below the connection limit
    (AdminState.ENABLED, Health.UP),
    (AdminState.ENABLED, Health.UNCHECKED),
    (AdminState.DISABLED, Health.UP),
    (AdminState.DISABLED, Health.UNCHECKED),
}


def view(admin: AdminState, health: Health, active: int, limit: int) -> MemberView:
    stats = MemberStats()
    stats.active = active
    config = Member(address=Endpoint(host="10.0.0.1", port=80), name="m", connection_limit=limit, state=admin)
    return MemberView(
        pool="web", config=config, slot=0, admin_state=admin, health=health, since=0.0, checks=LastCheck(), stats=stats
    )


@pytest.mark.parametrize(
    ("admin", "health", "at_limit"), list(itertools.product(AdminState, Health, (False, True)))
)
def test_honoured_table(admin: AdminState, health: Health, at_limit: bool) -> None:
    """Disabled keeps its persistent clients; forced_offline, down, unknown or full does not."""
    member = view(admin, health, active=2 if at_limit else 1, limit=2)
    assert honoured(member) is ((admin, health) in HONOURED and not at_limit)


def test_no_connection_limit_is_never_full() -> None:
    assert honoured(view(AdminState.ENABLED, Health.UP, active=10_000, limit=0))


# ---------------------------------------------------------------- cookie insert


def test_insert_new_clients_are_balanced_then_each_sticks_to_its_member() -> None:
    """No cookie: balanced, and the response sets one; with it, the same member and no new cookie."""
    site = Site()
    pool = site.pool()
    given = {}
    for _ in range(3):
        sticky = site.cookie.lookup(pool, request(), NOW)
        assert sticky.member is None and not sticky.presented
        member = pool.select(None, NOW)
        assert member is not None
        headers: list[Triple] = [(b"Content-Type", b"content-type", b"text/html")]
        assert site.cookie.respond(sticky, member, headers, secure=False, now=NOW) == "new"
        (line,) = set_cookies(headers)
        given[member.name] = returned(line)
    assert len(given) == 3  # round robin spread the new clients
    for name, cookie in given.items():
        sticky = site.cookie.lookup(pool, request(b"theme=dark; " + cookie), NOW + 60)
        assert sticky.member is pool.member(name)
        headers = [(b"Content-Type", b"content-type", b"text/html")]
        assert site.cookie.respond(sticky, site.member(name), headers, secure=False, now=NOW + 60) == "hit"
        assert headers == [(b"Content-Type", b"content-type", b"text/html")]  # nothing added


@pytest.mark.parametrize(
    ("change", "kept"),
    [
        pytest.param("nothing", True, id="enabled"),
        pytest.param("disabled", True, id="disabled-keeps-its-clients"),
        pytest.param("forced_offline", False, id="forced-offline"),
        pytest.param("down", False, id="health-down"),
        pytest.param("at_limit", False, id="at-connection-limit"),
    ],
)
def test_insert_record_for_a_member_that_can_no_longer_serve_is_replaced(change: str, kept: bool) -> None:
    """The client's member changes state; its cookie is honoured or it gets a new member and cookie."""
    site = Site()
    cookie = first_visit(site, "c")
    if change in ("disabled", "forced_offline"):
        site.reload(c=f"state: {change}")
    elif change == "down":
        site.check("c", ok=False)
    elif change == "at_limit":
        site.reload(c="connection_limit: 1")
        site.member("c").stats.opened()
    pool = site.pool()
    sticky = site.cookie.lookup(pool, request(cookie), NOW + 1)
    assert sticky.presented
    headers: list[Triple] = []
    if kept:
        assert sticky.member is pool.member("c")
        assert site.cookie.respond(sticky, site.member("c"), headers, secure=False, now=NOW + 1) == "hit"
        assert headers == []
        return
    assert sticky.member is None
    other = pool.select(None, NOW + 1)
    assert other is not None and other.name != "c"
    assert site.cookie.respond(sticky, other, headers, secure=False, now=NOW + 1) == "replaced"
    (line,) = set_cookies(headers)
    assert site.cookie.lookup(pool, request(returned(line)), NOW + 2).member is other


def test_disabled_member_gets_only_its_persistent_clients() -> None:
    """Disabled: new clients are balanced elsewhere, its cookie holders still reach it."""
    site = Site()
    cookie = first_visit(site, "b")
    site.reload(b="state: disabled")
    pool = site.pool()
    assert "b" not in picked(pool, 9)
    assert site.cookie.lookup(pool, request(cookie), NOW).member is pool.member("b")


def test_persistent_member_in_a_lower_priority_group_is_still_returned() -> None:
    """Persistence outranks priority groups: c (group 0) keeps its client while a and b take new ones."""
    high = "priority_group: 10"
    site = Site(pool="    min_active_members: 1\n", a=high, b=high, v6=high)
    cookie = first_visit(site, "c")
    pool = site.pool()
    assert "c" not in picked(pool, 9)
    assert site.cookie.lookup(pool, request(cookie), NOW).member is pool.member("c")


def test_insert_replaces_the_members_own_cookie_of_the_same_name() -> None:
    """A member that sets LBSESSION itself must not overwrite ours; its other cookies pass."""
    site = Site()
    pool = site.pool()
    sticky = site.cookie.lookup(pool, request(), NOW)
    headers = [set_cookie("LBSESSION", "from-app"), set_cookie("app", "1")]
    assert site.cookie.respond(sticky, site.member("a"), headers, secure=False, now=NOW) == "new"
    (line,) = set_cookies(headers)
    assert b"from-app" not in line
    assert set_cookies(headers, b"app") == [b"app=1; Path=/"]
    assert site.cookie.lookup(pool, request(returned(line)), NOW).member is pool.member("a")


def test_insert_hit_does_not_let_the_member_overwrite_the_token() -> None:
    """Same as above for a client that already holds a valid cookie (HAProxy's insert removes it too)."""
    site = Site()
    cookie = first_visit(site, "a")
    pool = site.pool()
    sticky = site.cookie.lookup(pool, request(cookie), NOW + 1)
    assert sticky.member is pool.member("a")
    headers = [set_cookie("LBSESSION", "from-app")]
    assert site.cookie.respond(sticky, site.member("a"), headers, secure=False, now=NOW + 1) == "hit"
    assert not any(b"from-app" in value for _, _, value in headers)
    # What the browser holds after this response must still lead back to a.
    held = returned(set_cookies(headers)[-1]) if set_cookies(headers) else cookie
    assert site.cookie.lookup(pool, request(held), NOW + 2).member is pool.member("a")


@pytest.mark.parametrize(
    ("mode", "stripped"),
    [("insert", True), ("rewrite", True), ("passive", False)],
)
def test_forwarded_request_loses_our_cookie_except_in_passive_mode(mode: str, stripped: bool) -> None:
    """insert/rewrite: the token is ours, not the application's; passive: it is the application's."""
    site = Site(f"{{type: cookie, mode: {mode}, cookie: SID}}")
    headers = request(b"a=1; SID=tok; b=2", b"c=3")
    out = site.cookie.forwarded(list(headers), "web")
    if stripped:
        assert out == request(b"a=1; b=2", b"c=3")
    else:
        assert out == headers


@pytest.mark.parametrize("secure", [False, True])
def test_secure_attribute_only_over_tls(secure: bool) -> None:
    site = Site()
    headers: list[Triple] = []
    site.cookie.respond(site.cookie.lookup(site.pool(), request(), NOW), site.member("a"), headers, secure=secure, now=NOW)
    (line,) = set_cookies(headers)
    attributes = [a.strip() for a in line.split(b";")[1:]]
    assert (b"Secure" in attributes) is secure
    assert b"HttpOnly" in attributes and b"Path=/" in attributes
    assert not any(a.startswith(b"Max-Age") for a in attributes)  # max_age 0: a session cookie


def test_max_age_is_a_sliding_window_reissued_after_half() -> None:
    """max_age 1h: re-issued once older than 30 min, so an active client never expires."""
    site = Site("{type: cookie, max_age: 1h}")
    pool = site.pool()
    cookie = first_visit(site, "b")
    sticky = site.cookie.lookup(pool, request(cookie), NOW + 1800)  # exactly half: not yet
    headers: list[Triple] = []
    assert site.cookie.respond(sticky, site.member("b"), headers, secure=False, now=NOW + 1800) == "hit"
    assert headers == []
    sticky = site.cookie.lookup(pool, request(cookie), NOW + 1801)  # past half: re-issued, same member
    assert sticky.member is pool.member("b")
    assert site.cookie.respond(sticky, site.member("b"), headers, secure=False, now=NOW + 1801) == "hit"
    (line,) = set_cookies(headers)
    assert b"Max-Age=3600" in line
    renewed = returned(line)
    later = NOW + 1801 + 3600
    assert site.cookie.lookup(pool, request(renewed), later).member is pool.member("b")
    expired = site.cookie.lookup(pool, request(cookie), later)
    assert expired.member is None and expired.presented  # the old one ran out: balanced, "replaced"


def test_two_pools_under_one_cookie_name_keep_both_entries() -> None:
    """A virtual server routing /api/ elsewhere: one LBSESSION keeps the client sticky in both pools."""
    site = Site()
    web_cookie = first_visit(site, "b")
    sticky = site.cookie.lookup(site.pool("api"), request(web_cookie), NOW + 5)
    assert sticky.member is None and not sticky.presented  # nothing for api yet: a new record, not a replaced one
    headers: list[Triple] = []
    assert site.cookie.respond(sticky, site.member("x", "api"), headers, secure=False, now=NOW + 5) == "new"
    (line,) = set_cookies(headers)
    both = returned(line)
    assert site.cookie.lookup(site.pool("web"), request(both), NOW + 6).member is site.member("b")
    assert site.cookie.lookup(site.pool("api"), request(both), NOW + 6).member is site.member("x", "api")


def test_the_inserted_cookie_shows_no_member_address() -> None:
    """The signed default reveals nothing: not the address, not the member's name."""
    site = Site()
    cookie = first_visit(site, "a")
    assert b"10.1.1.100" not in cookie
    assert tokens.f5_decode(cookie.split(b"=", 1)[1]) is None


# ---------------------------------------------------------------- cookie rewrite


REWRITE = "{type: cookie, mode: rewrite, cookie: SID}"


def test_rewrite_replaces_the_members_value_with_a_token_that_lookup_honours() -> None:
    site = Site(REWRITE)
    pool = site.pool()
    sticky = site.cookie.lookup(pool, request(), NOW)
    headers = [(b"Set-Cookie", b"set-cookie", b"SID=app123; Path=/shop; HttpOnly"), set_cookie("other", "1")]
    assert site.cookie.respond(sticky, site.member("b"), headers, secure=False, now=NOW) == "new"
    (line,) = set_cookies(headers, b"SID")
    value, attributes = line.split(b";", 1)
    assert value != b"SID=app123" and attributes == b" Path=/shop; HttpOnly"  # the application's attributes stay
    assert set_cookies(headers, b"other") == [b"other=1; Path=/"]
    assert site.cookie.lookup(pool, request(value), NOW + 1).member is pool.member("b")


def test_rewrite_adds_nothing_when_neither_side_has_the_cookie() -> None:
    """The application decides when a session starts; without its cookie there is nothing to rewrite."""
    site = Site(REWRITE)
    sticky = site.cookie.lookup(site.pool(), request(b"other=1"), NOW)
    headers = [set_cookie("other", "2")]
    assert site.cookie.respond(sticky, site.member("a"), headers, secure=False, now=NOW) is None
    assert headers == [set_cookie("other", "2")]


def test_rewrite_points_a_stale_record_at_the_new_member() -> None:
    """The client's member went forced_offline: the new member's response carries a new token."""
    site = Site(REWRITE)
    sticky = site.cookie.lookup(site.pool(), request(), NOW)
    headers = [set_cookie("SID", "app123")]
    site.cookie.respond(sticky, site.member("c"), headers, secure=False, now=NOW)
    cookie = returned(set_cookies(headers, b"SID")[0])
    site.reload(c="state: forced_offline")
    sticky = site.cookie.lookup(site.pool(), request(cookie), NOW + 1)
    assert sticky.member is None and sticky.presented
    headers = []  # this member sets no cookie of its own
    assert site.cookie.respond(sticky, site.member("a"), headers, secure=False, now=NOW + 1) == "replaced"
    (line,) = set_cookies(headers, b"SID")
    assert site.cookie.lookup(site.pool(), request(returned(line)), NOW + 2).member is site.member("a")


def test_rewrite_with_max_age_keeps_an_active_client_on_its_member() -> None:
    """max_age slides in insert mode (above); a client of a rewrite server that keeps coming back should stay too."""
    site = Site("{type: cookie, mode: rewrite, cookie: SID, max_age: 1h}")
    headers = [set_cookie("SID", "login")]  # the application sets its cookie once, at login
    site.cookie.respond(site.cookie.lookup(site.pool(), request(), NOW), site.member("b"), headers, secure=False, now=NOW)
    held = returned(set_cookies(headers, b"SID")[0])
    for t in (NOW + 1200, NOW + 2400, NOW + 3300):  # a request every 20 minutes, no Set-Cookie from the member
        sticky = site.cookie.lookup(site.pool(), request(held), t)
        assert sticky.member is site.member("b")
        headers = []
        site.cookie.respond(sticky, site.member("b"), headers, secure=False, now=t)
        held = returned(set_cookies(headers, b"SID")[-1]) if set_cookies(headers, b"SID") else held
    assert site.cookie.lookup(site.pool(), request(held), NOW + 3700).member is site.member("b")


# ---------------------------------------------------------------- cookie passive


PASSIVE = "{type: cookie, mode: passive, cookie: SID}"


@pytest.mark.parametrize(
    ("cookie", "member", "presented"),
    [
        (b"SID=B1", "b", True),
        (b'SID="A1"', "a", True),
        (b"SID=nobody", None, True),
        (b"other=B1", None, False),
    ],
)
def test_passive_lookup_by_the_members_cookie_value(cookie: bytes, member: str | None, presented: bool) -> None:
    site = Site(PASSIVE)
    sticky = site.cookie.lookup(site.pool(), request(cookie), NOW)
    assert sticky.member is (site.member(member) if member else None)
    assert sticky.presented is presented


def test_passive_leaves_the_members_own_cookie_alone() -> None:
    """The application sets its cookie; the appliance only reads it, on a first visit and on a hit."""
    site = Site(PASSIVE)
    own = [(b"Set-Cookie", b"set-cookie", b"SID=A1; Path=/app; Secure")]
    headers = list(own)
    site.cookie.respond(site.cookie.lookup(site.pool(), request(), NOW), site.member("a"), headers, secure=False, now=NOW)
    assert headers == own
    sticky = site.cookie.lookup(site.pool(), request(b"SID=A1"), NOW)
    assert site.cookie.respond(sticky, site.member("a"), headers, secure=False, now=NOW) == "hit"
    assert headers == own


def test_passive_record_for_a_forced_offline_member_is_pointed_at_the_new_one() -> None:
    """The new member does not know the client: the appliance sets that member's cookie_value."""
    site = Site(PASSIVE, c="state: forced_offline")
    sticky = site.cookie.lookup(site.pool(), request(b"SID=C1"), NOW)
    assert sticky.member is None and sticky.presented
    headers: list[Triple] = []
    assert site.cookie.respond(sticky, site.member("a"), headers, secure=False, now=NOW) == "replaced"
    (line,) = set_cookies(headers, b"SID")
    assert returned(line) == b"SID=A1"
    assert site.cookie.lookup(site.pool(), request(returned(line)), NOW).member is site.member("a")


OWN = (b"Set-Cookie", b"set-cookie", b"SID=A1; Path=/app; Secure")  # member a's own cookie, as its application sets it


@pytest.mark.parametrize(
    ("presented", "response", "sid_lines"),
    [
        pytest.param(None, [], [], id="new-client-member-sets-none"),
        pytest.param(None, [OWN], [OWN[2]], id="new-client-member-sets-its-own"),
        pytest.param(b"SID=A1", [], [], id="hit-member-sets-none"),
        pytest.param(b"SID=C1", [OWN], [OWN[2]], id="stale-record-member-sets-its-own"),
    ],
)
def test_passive_adds_a_cookie_only_to_point_a_stale_record_elsewhere(
    presented: bytes | None, response: list[Triple], sid_lines: list[bytes]
) -> None:
    """The appliance writes nothing the member already wrote, and nothing for a client it has no record for."""
    site = Site(PASSIVE, c="state: forced_offline")
    sticky = site.cookie.lookup(site.pool(), request(*([presented] if presented else [])), NOW)
    headers = list(response)
    site.cookie.respond(sticky, site.member("a"), headers, secure=False, now=NOW)
    assert set_cookies(headers, b"SID") == sid_lines


# ---------------------------------------------------------------- cookie insert, F5 encoding


F5 = "{type: cookie, encoding: f5}"


def test_f5_cookie_is_named_after_the_pool_and_holds_the_published_address_form() -> None:
    """10.1.1.100:80 is "1677787402.20480.0000" (K6917), under BIGipServer<pool>."""
    site = Site(F5)
    assert first_visit(site, "a") == b"BIGipServerweb=1677787402.20480.0000"
    assert first_visit(site, "x", "api").startswith(b"BIGipServerapi=")


def test_f5_explicit_cookie_name_wins() -> None:
    site = Site("{type: cookie, encoding: f5, cookie: SRV}")
    assert first_visit(site, "a") == b"SRV=1677787402.20480.0000"


def test_f5_ipv6_member() -> None:
    """vi<32 hex>.<port byte-swapped>: 8080 is 36895."""
    site = Site(F5)
    cookie = first_visit(site, "v6")
    assert cookie == b"BIGipServerweb=vi20010db8000000000000000000000001.36895"
    assert site.cookie.lookup(site.pool(), request(cookie), NOW).member is site.member("v6")


@pytest.mark.parametrize(
    ("cookie", "member"),
    [
        (b"BIGipServerweb=1694564618.20480.0000", "b"),  # 10.1.1.101:80
        (b"BIGipServerweb=rd2o00000000000000000000ffff0a010166o80", "c"),  # 10.1.1.102:80, route domain 2
        (b"BIGipServerweb=rd2o20010db8000000000000000000000001o8080", "v6"),
        (b"BIGipServerweb=1694564618.36895.0000", None),  # 10.1.1.101:8080: no such member
        (b"BIGipServerapi=1694564618.20480.0000", None),  # another pool's cookie
    ],
)
def test_f5_cookies_written_by_a_big_ip_are_honoured(cookie: bytes, member: str | None) -> None:
    """A migration from BIG-IP keeps its sessions: every form it writes leads to the member."""
    site = Site(F5)
    assert site.cookie.lookup(site.pool(), request(cookie), NOW).member is (site.member(member) if member else None)


# ---------------------------------------------------------------- source address table


def test_source_record_is_kept_for_timeout_after_last_use() -> None:
    table = SourceTable(timeout=60, size=100)
    table.put("web", b"192.0.2.1", "a", now=100)
    assert table.get("web", b"192.0.2.1", now=159.9) == "a"
    assert table.get("web", b"192.0.2.1", now=160.1) is None


def test_source_put_refreshes_the_record() -> None:
    table = SourceTable(timeout=60, size=100)
    table.put("web", b"192.0.2.1", "a", now=100)
    table.put("web", b"192.0.2.1", "a", now=150)  # used again
    assert table.get("web", b"192.0.2.1", now=209.9) == "a"
    assert table.get("web", b"192.0.2.1", now=210.1) is None


def test_source_table_bound_drops_the_least_recently_used() -> None:
    table = SourceTable(timeout=600, size=2)
    table.put("web", b"c1", "a", now=1)
    table.put("web", b"c2", "b", now=2)
    table.put("web", b"c1", "a", now=3)  # c1 used again: c2 is now the least recent
    table.put("web", b"c3", "c", now=4)
    assert len(table) == 2
    assert [table.get("web", k, now=5) for k in (b"c1", b"c2", b"c3")] == ["a", None, "c"]


def test_source_table_drops_expired_records_before_counting() -> None:
    """Expired records go at the next put even below the bound, so the table does not hold dead records."""
    table = SourceTable(timeout=10, size=100)
    table.put("web", b"c1", "a", now=0)
    table.put("web", b"c2", "b", now=1)
    table.put("web", b"c3", "c", now=20)
    assert len(table) == 1
    assert table.get("web", b"c3", now=21) == "c"


def test_source_table_expiry_follows_a_reloaded_timeout() -> None:
    """A reload that shortens `timeout` shortens the records already there (kept by last use, not by deadline)."""
    table = SourceTable(timeout=100, size=10)
    table.put("web", b"k1", "m1", now=0)
    table.timeout = 10
    assert table.get("web", b"k1", now=9) == "m1"
    assert table.get("web", b"k1", now=10) is None


def test_source_table_keeps_pools_apart() -> None:
    """One client reaching two pools of a virtual server has one record in each."""
    table = SourceTable(timeout=60, size=100)
    table.put("web", b"192.0.2.1", "a", now=0)
    table.put("api", b"192.0.2.1", "x", now=0)
    assert (table.get("web", b"192.0.2.1", now=1), table.get("api", b"192.0.2.1", now=1)) == ("a", "x")
    assert table.get("other", b"192.0.2.1", now=1) is None


# ---------------------------------------------------------------- source address persistence


SOURCE = "{type: source_address, timeout: 30m}"


@pytest.mark.parametrize(
    ("mask", "client", "shared"),
    [
        (24, b"192.0.2.200", True),
        (24, b"::ffff:192.0.2.9", True),  # an IPv4 client on a dual-stack listener
        (24, b"192.0.3.7", False),
        (32, b"192.0.2.200", False),
        (32, b"192.0.2.7", True),
    ],
)
def test_source_persistence_honours_the_pools_hash_mask(mask: int, client: bytes, shared: bool) -> None:
    """With hash_mask 24 a /24 shares one record (clients behind rotating NAT); with 32 each address has its own."""
    site = Site(SOURCE, pool=f"    hash_mask: {mask}\n")
    persistence = site.persistences.by_vs["vs"]
    assert isinstance(persistence, SourcePersistence)
    pool = site.pool()
    persistence.record(pool, b"192.0.2.7", site.member("b"), NOW)
    sticky = persistence.lookup(pool, client, NOW + 1)
    assert sticky.member is (site.member("b") if shared else None)
    assert sticky.presented is shared


def test_source_record_for_a_forced_offline_member_is_not_honoured() -> None:
    site = Site(SOURCE)
    persistence = site.persistences.by_vs["vs"]
    assert isinstance(persistence, SourcePersistence)
    persistence.record(site.pool(), b"192.0.2.7", site.member("c"), NOW)
    site.reload(c="state: forced_offline")
    persistence = site.persistences.by_vs["vs"]
    assert isinstance(persistence, SourcePersistence)
    sticky = persistence.lookup(site.pool(), b"192.0.2.7", NOW + 1)
    assert sticky.member is None and sticky.presented


# ---------------------------------------------------------------- the registry across reloads


def test_reload_keeps_source_records_and_applies_the_new_timeout() -> None:
    site = Site(SOURCE)
    before = site.persistences.by_vs["vs"]
    assert isinstance(before, SourcePersistence)
    before.record(site.pool(), b"192.0.2.7", site.member("b"), NOW)
    site.persistence_yaml = "{type: source_address, timeout: 5m, max_records: 10}"
    site.reload()
    after = site.persistences.by_vs["vs"]
    assert isinstance(after, SourcePersistence)
    assert after.lookup(site.pool(), b"192.0.2.7", NOW + 1).member is site.member("b")
    assert (after.table.timeout, after.table.size) == (300.0, 10)
    after.record(site.pool(), b"192.0.2.8", site.member("a"), NOW + 2)
    assert after.lookup(site.pool(), b"192.0.2.8", NOW + 2 + 299).member is site.member("a")
    assert after.lookup(site.pool(), b"192.0.2.8", NOW + 2 + 301).member is None


def test_changing_the_persistence_type_drops_the_source_records() -> None:
    site = Site(SOURCE)
    source = site.persistences.by_vs["vs"]
    assert isinstance(source, SourcePersistence)
    source.record(site.pool(), b"192.0.2.7", site.member("b"), NOW)
    site.persistence_yaml = "{type: cookie}"
    site.reload()
    assert isinstance(site.persistences.by_vs["vs"], CookiePersistence)
    site.persistence_yaml = SOURCE
    site.reload()
    again = site.persistences.by_vs["vs"]
    assert isinstance(again, SourcePersistence)
    assert len(again.table) == 0
    assert again.lookup(site.pool(), b"192.0.2.7", NOW + 1).member is None
