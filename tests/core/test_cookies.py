"""Cookie header helpers persistence builds on: read, strip, set, and the member's Set-Cookie.

Headers are h11 triples. Cookie names are case-sensitive (RFC 6265 §5.3) and
a client may send several Cookie lines, so each helper is checked against
lookalike names and split lines, not only the happy path.
"""

from __future__ import annotations

import pytest

from appliance.core import cookies
from appliance.core.cookies import Triple

NAME = b"LBSESSION"


def headers(*pairs: tuple[str, str]) -> list[Triple]:
    return [(n.encode(), n.lower().encode(), v.encode()) for n, v in pairs]


# ---------------------------------------------------------------- read


@pytest.mark.parametrize(
    ("lines", "value"),
    [
        pytest.param([("Cookie", "LBSESSION=tok")], b"tok", id="alone"),
        pytest.param([("Cookie", "a=1; LBSESSION=tok; b=2")], b"tok", id="among-others"),
        pytest.param([("Cookie", "a=1;LBSESSION=tok")], b"tok", id="no-space-after-semicolon"),
        pytest.param([("Cookie", "a=1"), ("Cookie", "b=2; LBSESSION=tok")], b"tok", id="second-cookie-line"),
        pytest.param([("cookie", "LBSESSION=tok")], b"tok", id="header-name-any-case"),
        pytest.param([("Cookie", 'LBSESSION="tok"')], b"tok", id="quoted"),
        pytest.param([("Cookie", "LBSESSION=a=b")], b"a=b", id="value-with-equals"),
        pytest.param([("Cookie", "LBSESSION=one; LBSESSION=two")], b"one", id="first-of-two"),
        pytest.param([("Cookie", "LBSESSION=one"), ("Cookie", "LBSESSION=two")], b"one", id="first-of-two-lines"),
        pytest.param([("Cookie", "XLBSESSION=evil; LBSESSION=tok")], b"tok", id="suffix-name-skipped"),
        pytest.param([("Cookie", "XLBSESSION=evil")], None, id="suffix-name-only"),
        pytest.param([("Cookie", "LBSESSIONX=evil")], None, id="prefix-name-only"),
        pytest.param([("Cookie", "lbsession=tok")], None, id="name-case-sensitive"),
        pytest.param([("Cookie", "a=LBSESSION=tok")], None, id="name-inside-a-value"),
        pytest.param([("Cookie", "LBSESSION")], None, id="no-equals"),
        pytest.param([("X-Cookie", "LBSESSION=tok"), ("Set-Cookie", "LBSESSION=tok")], None, id="other-headers"),
        pytest.param([], None, id="no-cookie-header"),
    ],
)
def test_read(lines: list[tuple[str, str]], value: bytes | None) -> None:
    """Only a pair whose name is exactly ours, in a Cookie line, is our cookie."""
    assert cookies.read(headers(*lines), NAME) == value


# ---------------------------------------------------------------- strip


@pytest.mark.parametrize(
    ("lines", "kept"),
    [
        pytest.param(
            [("Host", "h"), ("Cookie", "a=1; LBSESSION=t; b=2"), ("Cookie", "c=3"), ("Accept", "*/*")],
            [("Host", "h"), ("Cookie", "a=1; b=2"), ("Cookie", "c=3"), ("Accept", "*/*")],
            id="others-kept-in-order",
        ),
        pytest.param(
            [("Host", "h"), ("Cookie", "LBSESSION=t"), ("Accept", "*/*")],
            [("Host", "h"), ("Accept", "*/*")],
            id="emptied-line-dropped",
        ),
        pytest.param(
            [("Cookie", "z=9"), ("Cookie", "LBSESSION=t; y=8")],
            [("Cookie", "z=9"), ("Cookie", "y=8")],
            id="second-line",
        ),
        pytest.param(
            [("Cookie", "LBSESSION=1; a=1; LBSESSION=2")],
            [("Cookie", "a=1")],
            id="every-copy-removed",
        ),
        pytest.param(
            [("Cookie", "XLBSESSION=1; LBSESSIONX=2; lbsession=3; LBSESSION=4")],
            [("Cookie", "XLBSESSION=1; LBSESSIONX=2; lbsession=3")],
            id="lookalike-names-kept",
        ),
        pytest.param(
            [("Cookie", "a=LBSESSION=x")],
            [("Cookie", "a=LBSESSION=x")],
            id="name-inside-a-value-kept",
        ),
        pytest.param(
            [("X-Cookie", "LBSESSION=t")],
            [("X-Cookie", "LBSESSION=t")],
            id="other-header-untouched",
        ),
    ],
)
def test_strip(lines: list[tuple[str, str]], kept: list[tuple[str, str]]) -> None:
    """Only our cookie goes; the member still sees the application's cookies, in order."""
    assert cookies.strip(headers(*lines), NAME) == headers(*kept)


def test_strip_keeps_the_raw_header_name() -> None:
    """A rebuilt Cookie line keeps the client's spelling of the header name."""
    out = cookies.strip([(b"COOKIE", b"cookie", b"a=1; LBSESSION=t")], NAME)
    assert out == [(b"COOKIE", b"cookie", b"a=1")]


# ---------------------------------------------------------------- set_cookie


@pytest.mark.parametrize(
    ("secure", "max_age", "extra"),
    [
        pytest.param(False, 0, set(), id="session-plain"),
        pytest.param(True, 0, {b"Secure"}, id="session-tls"),
        pytest.param(False, 3600, {b"Max-Age=3600"}, id="max-age"),
        pytest.param(True, 60, {b"Secure", b"Max-Age=60"}, id="max-age-tls"),
        pytest.param(False, -5, set(), id="negative-max-age-is-session"),
    ],
)
def test_set_cookie_attributes(secure: bool, max_age: int, extra: set[bytes]) -> None:
    """Site-wide, HttpOnly, SameSite=Lax always; Secure only over TLS; Max-Age only when > 0."""
    raw, name, line = cookies.set_cookie(NAME, b"v1", secure=secure, max_age=max_age)
    assert (raw.lower(), name) == (b"set-cookie", b"set-cookie")
    first, *attributes = line.split(b"; ")
    assert first == b"LBSESSION=v1"
    assert sorted(attributes) == sorted({b"Path=/", b"HttpOnly", b"SameSite=Lax"} | extra)


# ---------------------------------------------------------------- the member's Set-Cookie


@pytest.mark.parametrize(
    ("lines", "value"),
    [
        pytest.param([("Set-Cookie", "a=1; Path=/"), ("Set-Cookie", "LBSESSION=srv; Path=/; HttpOnly")], b"srv", id="second"),
        pytest.param([("Set-Cookie", "LBSESSION=srv")], b"srv", id="no-attributes"),
        pytest.param([("set-cookie", 'LBSESSION="srv"; Secure')], b"srv", id="quoted"),
        pytest.param([("Set-Cookie", "LBSESSION=; Max-Age=0")], b"", id="deletion-is-a-value"),
        pytest.param([("Set-Cookie", "XLBSESSION=1"), ("Set-Cookie", "LBSESSIONX=2")], None, id="lookalike-names"),
        pytest.param([("Set-Cookie", "lbsession=1")], None, id="name-case-sensitive"),
        pytest.param([("Cookie", "LBSESSION=1")], None, id="request-cookie-is-not-a-set"),
        pytest.param([("Set-Cookie", "a=1; Path=/LBSESSION=x")], None, id="name-inside-attributes"),
    ],
)
def test_set_by_member(lines: list[tuple[str, str]], value: bytes | None) -> None:
    """What the member sets for our cookie name, as its value only."""
    assert cookies.set_by_member(headers(*lines), NAME) == value


def test_drop_set_removes_every_set_cookie_of_the_name_only() -> None:
    """Ours replaces the member's: both of its lines go, other cookies and headers stay in order."""
    response = headers(
        ("Set-Cookie", "LBSESSION=srv; Path=/"),
        ("Content-Type", "text/html"),
        ("Set-Cookie", "app=1; Path=/; HttpOnly"),
        ("Set-Cookie", "LBSESSION=again"),
        ("Set-Cookie", "XLBSESSION=3"),
    )
    assert cookies.drop_set(response, NAME) == headers(
        ("Content-Type", "text/html"), ("Set-Cookie", "app=1; Path=/; HttpOnly"), ("Set-Cookie", "XLBSESSION=3")
    )


@pytest.mark.parametrize(
    ("before", "after"),
    [
        pytest.param(
            "LBSESSION=srv; Path=/app; Secure; HttpOnly; Max-Age=60",
            "LBSESSION=NEW; Path=/app; Secure; HttpOnly; Max-Age=60",
            id="attributes-kept",
        ),
        pytest.param("LBSESSION=srv", "LBSESSION=NEW", id="no-attributes"),
        pytest.param('LBSESSION="srv"; Path=/', "LBSESSION=NEW; Path=/", id="quoted"),
    ],
)
def test_rewrite_replaces_the_value_and_keeps_attributes(before: str, after: str) -> None:
    """In place, with the other Set-Cookie lines and headers as they were."""
    response = headers(("Set-Cookie", "app=1; Path=/"), ("Set-Cookie", before), ("X-Origin", "a"))
    assert cookies.rewrite(response, NAME, b"NEW") is True
    assert response == headers(("Set-Cookie", "app=1; Path=/"), ("Set-Cookie", after), ("X-Origin", "a"))


def test_rewrite_without_the_cookie_changes_nothing() -> None:
    """False when the member did not set our cookie; lookalike names untouched."""
    response = headers(("Set-Cookie", "XLBSESSION=1; Path=/"), ("Set-Cookie", "lbsession=2"), ("Cookie", "LBSESSION=3"))
    before = list(response)
    assert cookies.rewrite(response, NAME, b"NEW") is False
    assert response == before


def test_rewrite_rewrites_every_line_of_the_name() -> None:
    """A member that sets the cookie twice (two paths) gets both rewritten."""
    response = headers(("Set-Cookie", "LBSESSION=a; Path=/x"), ("Set-Cookie", "LBSESSION=b; Path=/y"))
    assert cookies.rewrite(response, NAME, b"T")
    assert [v for _, _, v in response] == [b"LBSESSION=T; Path=/x", b"LBSESSION=T; Path=/y"]
