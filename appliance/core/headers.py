"""Header rewriting between client and member: hop-by-hop removal and X-Forwarded-*.

Headers travel as h11's parsed triples ``(raw_name, lower_name, value)`` so the
data plane can hand the result back to h11 without re-validating what h11 just
parsed (the research profile found that re-validation alone at ~10 % of CPU).
Everything we add is built from values that were already valid on input.
"""

from __future__ import annotations

from dataclasses import dataclass

Triple = tuple[bytes, bytes, bytes]

# RFC 9110 §7.6.1 plus the legacy names every proxy strips (HAProxy, nginx).
HOP_BY_HOP = frozenset(
    {
        b"connection",
        b"keep-alive",
        b"proxy-connection",
        b"te",
        b"trailer",
        b"transfer-encoding",
        b"upgrade",
        b"proxy-authenticate",
        b"proxy-authorization",
    }
)
# Set by us from what we saw; a client's own values would be spoofable.
_REPLACED = frozenset({b"x-forwarded-proto", b"x-forwarded-host"})
_XFF = b"x-forwarded-for"
_CHUNKED = (b"Transfer-Encoding", b"transfer-encoding", b"chunked")


@dataclass(frozen=True, slots=True)
class Framing:
    """How a message's body is delimited, as read from its headers."""

    chunked: bool
    content_length: int | None
    both: bool  # Content-Length beside chunked: a smuggling vector, close after

    @property
    def has_body(self) -> bool:
        return self.chunked or bool(self.content_length)


_NO_BODY = Framing(chunked=False, content_length=None, both=False)
# Names that need a look on the way through; every other header passes untouched.
_REQUEST_SPECIAL = HOP_BY_HOP | _REPLACED | {_XFF, b"host", b"content-length", b"expect"}
_RESPONSE_SPECIAL = HOP_BY_HOP | {b"content-length"}


def _framing(chunked: bool, length: bytes | None) -> Framing:
    if not chunked and length is None:
        return _NO_BODY
    size = None if length is None else int(length)
    return Framing(chunked=chunked, content_length=size, both=chunked and size is not None)


def _tokens(value: bytes) -> set[bytes]:
    return {t.strip().lower() for t in value.split(b",") if t.strip()}


def forward_request(
    items: list[Triple], *, client_ip: bytes, proto: bytes
) -> tuple[list[Triple], bytes | None, Framing, bytes | None]:
    """The headers forwarded to a member for one client request, in one pass.

    Returns the headers, the Host the client sent (None if absent), the body's
    framing, and the protocol the client asks to upgrade to (the `Upgrade`
    value when `Connection` names it; None otherwise), which the proxy
    forwards itself when it allows the upgrade. X-Forwarded-For gets the client address appended to all
    earlier values (one header); X-Forwarded-Proto and -Host are set from what
    the appliance saw. Hop-by-hop headers, those named in Connection, and
    Expect (the appliance answers it) are dropped. A chunked body stays chunked
    and any Content-Length beside it is dropped.
    """
    out: list[Triple] = []
    host = length = None
    chunked = False
    xff: list[bytes] = []
    named: set[bytes] | None = None
    upgrade = None
    for item in items:
        name = item[1]
        if name not in _REQUEST_SPECIAL:
            out.append(item)
        elif name == b"upgrade":
            upgrade = item[2]
        elif name == b"host":
            host = item[2]
            out.append(item)
        elif name == b"content-length":
            length = item[2]
            out.append(item)
        elif name == b"transfer-encoding":
            chunked = True  # h11 accepts nothing but "chunked"
        elif name == b"connection":
            named = _tokens(item[2]) | (named or set())
        elif name == _XFF:
            xff.append(item[2])
    if named:
        out = [item for item in out if item[1] not in named or item[1] == b"host"]
    if chunked and length is not None:
        out = [item for item in out if item[1] != b"content-length"]
    xff.append(client_ip)
    out.append((b"X-Forwarded-For", _XFF, b", ".join(xff)))
    out.append((b"X-Forwarded-Proto", b"x-forwarded-proto", proto))
    if host is not None:
        out.append((b"X-Forwarded-Host", b"x-forwarded-host", host))
    if chunked:
        out.append(_CHUNKED)
    if upgrade is not None and (named is None or b"upgrade" not in named):
        upgrade = None  # Upgrade without "Connection: upgrade" is not a request to upgrade
    return out, host, _framing(chunked, length), upgrade


def forward_response(items: list[Triple]) -> tuple[list[Triple], Framing]:
    """The headers sent to the client for a member's response, and its framing."""
    out: list[Triple] = []
    length = None
    chunked = False
    named: set[bytes] | None = None
    for item in items:
        name = item[1]
        if name not in _RESPONSE_SPECIAL:
            out.append(item)
        elif name == b"content-length":
            length = item[2]
            out.append(item)
        elif name == b"transfer-encoding":
            chunked = True
        elif name == b"connection":
            named = _tokens(item[2]) | (named or set())
    if named:
        out = [item for item in out if item[1] not in named]
    if chunked:
        if length is not None:
            out = [item for item in out if item[1] != b"content-length"]
        out.append(_CHUNKED)
    return out, _framing(chunked, length)
