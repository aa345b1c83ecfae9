"""Layer-7 routing (SPEC §2 `routes`) as a plain sync table: which pool, by which route.

Each row is a virtual server's `routes` written as the operator writes them,
one request, and the pool and route name the access log should show. Routes
are parsed by the real config loader, so the table also checks that the
config spelling reaches the router unchanged.
"""

from __future__ import annotations

import textwrap

import pytest

from appliance.core.config import parse_config
from appliance.core.routing import Router, Triple, host_name
from appliance.errors import ConfigError

POOLS = """\
pools:
  web: {members: [{address: 127.0.0.1:9001}]}
  api: {members: [{address: 127.0.0.1:9002}]}
  static: {members: [{address: 127.0.0.1:9003}]}
  canary: {members: [{address: 127.0.0.1:9004}]}
"""


def router(routes: str, pool: str | None = "web") -> Router:
    """The Router of a virtual server with `routes` (YAML list items) and default `pool`."""
    vs = "virtual_servers:\n  vs:\n    listen: [127.0.0.1:8080]\n"
    if pool is not None:
        vs += f"    pool: {pool}\n"
    vs += "    routes:\n" + textwrap.indent(textwrap.dedent(routes).strip() + "\n", "      ")
    config = parse_config(POOLS + vs, "t.yaml")
    return Router(config.virtual_servers["vs"])


def headers(*pairs: tuple[str, str]) -> list[Triple]:
    """h11's triples: the raw name as sent, its lower-case form, the value."""
    return [(n.encode(), n.lower().encode(), v.encode()) for n, v in pairs]


PATH = "- {path: /login, pool: api}"
PATH_ENCODED = "- {path: /a%2Fb, pool: api}"
PREFIX = "- {path_prefix: /api/, pool: api}"
REGEX_END = r"- {path_regex: '\.css$', pool: static}"
REGEX_START = "- {path_regex: '^/v[0-9]+/', pool: api}"
HOST = "- {host: app.test, pool: api}"
HOST_CONFIG_CASE = "- {host: App.TEST., pool: api}"
WILDCARD = "- {host: '*.static.test', pool: static}"
EQUALS = '- {header: {name: X-Canary, equals: "1"}, pool: canary}'
CONTAINS = "- {header: {name: User-Agent, contains: Mobile}, pool: static}"
HREGEX = "- {header: {name: Accept-Language, regex: '^fr'}, pool: api}"
PRESENT = "- {header: {name: Authorization, present: true}, pool: api}"
ABSENT = "- {header: {name: Authorization, present: false}, pool: api}"
METHODS = "- {method: [GET, HEAD], pool: static}"
ALL = "- {path_prefix: /api/, host: api.test, method: [POST], header: {name: X-Key, present: true}, pool: api}"
BROAD_FIRST = "- {path_prefix: /, pool: canary}\n- {path_prefix: /api/, pool: api}"
NARROW_FIRST = "- {path_prefix: /api/, pool: api}\n- {path_prefix: /, pool: canary}"

H = headers  # short, for the table

# routes, method, target, Host, other headers, expected pool, expected route name
CASES = [
    # ---------------------------------------------------------------- path: exact, query ignored, not decoded
    pytest.param(PATH, b"GET", b"/login", b"a", [], "api", "routes[0]", id="path-exact"),
    pytest.param(PATH, b"GET", b"/login?next=/x", b"a", [], "api", "routes[0]", id="path-query-ignored"),
    pytest.param(PATH, b"GET", b"/login/", b"a", [], "web", "default", id="path-trailing-slash-differs"),
    pytest.param(PATH, b"GET", b"/Login", b"a", [], "web", "default", id="path-case-sensitive"),
    pytest.param(PATH, b"GET", b"/login/x", b"a", [], "web", "default", id="path-is-not-a-prefix"),
    pytest.param(PATH_ENCODED, b"GET", b"/a%2Fb", b"a", [], "api", "routes[0]", id="path-percent-as-sent"),
    pytest.param(PATH_ENCODED, b"GET", b"/a/b", b"a", [], "web", "default", id="path-not-decoded"),
    # ---------------------------------------------------------------- path_prefix
    pytest.param(PREFIX, b"GET", b"/api/v1/users", b"a", [], "api", "routes[0]", id="prefix"),
    pytest.param(PREFIX, b"GET", b"/api/?q=1", b"a", [], "api", "routes[0]", id="prefix-with-query"),
    pytest.param(PREFIX, b"GET", b"/api", b"a", [], "web", "default", id="prefix-shorter-path"),
    pytest.param(PREFIX, b"GET", b"/apix/", b"a", [], "web", "default", id="prefix-other-segment"),
    pytest.param(PREFIX, b"GET", b"/%61pi/x", b"a", [], "web", "default", id="prefix-not-decoded"),
    pytest.param(PREFIX, b"GET", b"/x?r=/api/", b"a", [], "web", "default", id="prefix-not-in-query"),
    # ---------------------------------------------------------------- path_regex: search, query removed first
    pytest.param(REGEX_END, b"GET", b"/s/app.css", b"a", [], "static", "routes[0]", id="regex-searches"),
    pytest.param(REGEX_END, b"GET", b"/s/app.css?v=3", b"a", [], "static", "routes[0]", id="regex-query-removed"),
    pytest.param(REGEX_END, b"GET", b"/s/app.cssx", b"a", [], "web", "default", id="regex-anchored-end"),
    pytest.param(REGEX_START, b"GET", b"/v2/users", b"a", [], "api", "routes[0]", id="regex-anchored-start"),
    pytest.param(REGEX_START, b"GET", b"/x/v2/users", b"a", [], "web", "default", id="regex-anchor-holds"),
    # ---------------------------------------------------------------- host: exact
    pytest.param(HOST, b"GET", b"/", b"app.test", [], "api", "routes[0]", id="host-exact"),
    pytest.param(HOST, b"GET", b"/", b"APP.Test", [], "api", "routes[0]", id="host-case-insensitive"),
    pytest.param(HOST, b"GET", b"/", b"app.test:8080", [], "api", "routes[0]", id="host-port-ignored"),
    pytest.param(HOST, b"GET", b"/", b"app.test.", [], "api", "routes[0]", id="host-trailing-dot"),
    pytest.param(HOST, b"GET", b"/", b"app.test.:8443", [], "api", "routes[0]", id="host-trailing-dot-and-port"),
    pytest.param(HOST, b"GET", b"/", b"www.app.test", [], "web", "default", id="host-subdomain-not-exact"),
    pytest.param(HOST, b"GET", b"/", b"app.testx", [], "web", "default", id="host-longer-name"),
    pytest.param(HOST, b"GET", b"/", b"[::1]:8080", [], "web", "default", id="host-ipv6-literal"),
    pytest.param(HOST, b"GET", b"/", None, [], "web", "default", id="host-missing"),
    pytest.param(HOST_CONFIG_CASE, b"GET", b"/", b"app.test", [], "api", "routes[0]", id="host-config-case-and-dot"),
    # ---------------------------------------------------------------- host: *. wildcard
    pytest.param(WILDCARD, b"GET", b"/", b"img.static.test", [], "static", "routes[0]", id="wildcard-one-label"),
    pytest.param(WILDCARD, b"GET", b"/", b"A.B.Static.TEST:80", [], "static", "routes[0]", id="wildcard-deeper-case-port"),
    pytest.param(WILDCARD, b"GET", b"/", b"img.static.test.", [], "static", "routes[0]", id="wildcard-trailing-dot"),
    pytest.param(WILDCARD, b"GET", b"/", b"static.test", [], "web", "default", id="wildcard-not-bare-domain"),
    pytest.param(WILDCARD, b"GET", b"/", b"xstatic.test", [], "web", "default", id="wildcard-label-boundary"),
    pytest.param(WILDCARD, b"GET", b"/", b"[::1]", [], "web", "default", id="wildcard-ipv6-literal"),
    pytest.param(WILDCARD, b"GET", b"/", None, [], "web", "default", id="wildcard-host-missing"),
    # ---------------------------------------------------------------- header tests
    pytest.param(EQUALS, b"GET", b"/", b"a", H(("X-Canary", "1")), "canary", "routes[0]", id="equals"),
    pytest.param(EQUALS, b"GET", b"/", b"a", H(("x-CANARY", "1")), "canary", "routes[0]", id="equals-name-any-case"),
    pytest.param(EQUALS, b"GET", b"/", b"a", H(("X-Canary", "11")), "web", "default", id="equals-whole-value"),
    pytest.param(EQUALS, b"GET", b"/", b"a", H(("X-Canary", "0, 1")), "web", "default", id="equals-whole-line"),
    pytest.param(EQUALS, b"GET", b"/", b"a", H(("X-Canary", "0"), ("X-Canary", "1")), "canary", "routes[0]", id="equals-any-line"),
    pytest.param(EQUALS, b"GET", b"/", b"a", H(("X-Canary-2", "1")), "web", "default", id="equals-other-header"),
    pytest.param(CONTAINS, b"GET", b"/", b"a", H(("User-Agent", "Foo Mobile/1")), "static", "routes[0]", id="contains"),
    pytest.param(CONTAINS, b"GET", b"/", b"a", H(("User-Agent", "foo mobile/1")), "web", "default", id="contains-case-sensitive"),
    pytest.param(CONTAINS, b"GET", b"/", b"a", H(("User-Agent", "A"), ("user-agent", "Mobile")), "static", "routes[0]", id="contains-second-line"),
    pytest.param(HREGEX, b"GET", b"/", b"a", H(("Accept-Language", "fr-CH, en")), "api", "routes[0]", id="regex"),
    pytest.param(HREGEX, b"GET", b"/", b"a", H(("Accept-Language", "en, fr")), "web", "default", id="regex-anchored"),
    pytest.param(HREGEX, b"GET", b"/", b"a", H(("Accept-Language", "en"), ("ACCEPT-LANGUAGE", "fr")), "api", "routes[0]", id="regex-second-line"),
    pytest.param(PRESENT, b"GET", b"/", b"a", H(("authorization", "Bearer x")), "api", "routes[0]", id="present-true"),
    pytest.param(PRESENT, b"GET", b"/", b"a", H(("Authorization", "")), "api", "routes[0]", id="present-empty-value"),
    pytest.param(PRESENT, b"GET", b"/", b"a", H(("X-Other", "1")), "web", "default", id="present-true-missing"),
    pytest.param(ABSENT, b"GET", b"/", b"a", H(("X-Other", "1")), "api", "routes[0]", id="present-false"),
    pytest.param(ABSENT, b"GET", b"/", b"a", H(("AUTHORIZATION", "x")), "web", "default", id="present-false-but-there"),
    # ---------------------------------------------------------------- method: listed, case-sensitive
    pytest.param(METHODS, b"GET", b"/", b"a", [], "static", "routes[0]", id="method-get"),
    pytest.param(METHODS, b"HEAD", b"/", b"a", [], "static", "routes[0]", id="method-head"),
    pytest.param(METHODS, b"POST", b"/", b"a", [], "web", "default", id="method-not-listed"),
    pytest.param(METHODS, b"get", b"/", b"a", [], "web", "default", id="method-case-sensitive"),
    # ---------------------------------------------------------------- every field of a rule must match
    pytest.param(ALL, b"POST", b"/api/x", b"api.test", H(("X-Key", "k")), "api", "routes[0]", id="and-all-match"),
    pytest.param(ALL, b"GET", b"/api/x", b"api.test", H(("X-Key", "k")), "web", "default", id="and-method-off"),
    pytest.param(ALL, b"POST", b"/x", b"api.test", H(("X-Key", "k")), "web", "default", id="and-path-off"),
    pytest.param(ALL, b"POST", b"/api/x", b"web.test", H(("X-Key", "k")), "web", "default", id="and-host-off"),
    pytest.param(ALL, b"POST", b"/api/x", b"api.test", [], "web", "default", id="and-header-off"),
    # ---------------------------------------------------------------- first match wins
    pytest.param(BROAD_FIRST, b"GET", b"/api/x", b"a", [], "canary", "routes[0]", id="first-match-broad-first"),
    pytest.param(NARROW_FIRST, b"GET", b"/api/x", b"a", [], "api", "routes[0]", id="first-match-narrow-first"),
    pytest.param(NARROW_FIRST, b"GET", b"/other", b"a", [], "canary", "routes[1]", id="second-rule-named-by-index"),
    pytest.param(f"{HOST}\n{PREFIX}", b"GET", b"/api/", b"other", [], "api", "routes[1]", id="earlier-miss-later-hit"),
]


@pytest.mark.parametrize(("routes", "method", "target", "host", "more", "pool", "name"), CASES)
def test_route_table(
    routes: str, method: bytes, target: bytes, host: bytes | None, more: list[Triple], pool: str, name: str
) -> None:
    """The request reaches `pool`, and the log names the route that sent it there."""
    all_headers = (headers(("Host", host.decode())) if host is not None else []) + more
    assert router(routes).route(method, target, host, all_headers) == (pool, name)


def test_without_a_default_pool_an_unmatched_request_has_no_pool() -> None:
    """No route and no `pool`: None, which the proxy answers with 503."""
    rules = router(PREFIX, pool=None)
    assert rules.route(b"GET", b"/api/x", b"a", []) == ("api", "routes[0]")
    assert rules.route(b"GET", b"/other", b"a", []) == (None, "default")


@pytest.mark.parametrize(
    ("host", "name"),
    [
        (b"Example.TEST:8080", "example.test"),
        (b"example.test.", "example.test"),
        (b"[::1]:8080", "[::1]"),
        (b"[2001:DB8::1]", "[2001:db8::1]"),
        (b"192.0.2.1:80", "192.0.2.1"),
        (None, None),
    ],
)
def test_host_name_normalises_case_port_and_dot(host: bytes | None, name: str | None) -> None:
    """An IPv6 literal keeps its brackets and colons: only the port after `]` goes."""
    assert host_name(host) == name


BAD_REGEX = [
    pytest.param("- {path_regex: '(unclosed', pool: web}", "'(unclosed'", "routes[0].path_regex", id="path_regex"),
    pytest.param(
        "- {path: /, pool: web}\n- {header: {name: X-A, regex: '[a-'}, pool: web}",
        "'[a-'",
        "routes[1].header.regex",
        id="header-regex",
    ),
]


@pytest.mark.parametrize(("routes", "value", "where"), BAD_REGEX)
def test_a_bad_regex_is_a_config_error_at_its_line(routes: str, value: str, where: str) -> None:
    """A regex that does not compile is refused at load time, pointing at the value in the file."""
    with pytest.raises(ConfigError) as caught:
        router(routes)
    messages = [str(issue) for issue in caught.value.issues]
    assert len(messages) == 1
    # Where the value is in the text the loader saw (POOLS + the virtual server), 1-based.
    text = POOLS + "virtual_servers:\n  vs:\n    listen: [127.0.0.1:8080]\n    pool: web\n    routes:\n"
    text += textwrap.indent(textwrap.dedent(routes).strip() + "\n", "      ")
    line = next(i for i, row in enumerate(text.splitlines(), 1) if value in row)
    column = text.splitlines()[line - 1].index(value) + 1
    assert messages[0].startswith(f"t.yaml:{line}:{column}: virtual_servers.vs.{where}: bad regular expression")
