"""Header rewriting between client and member: hop-by-hop removal and X-Forwarded-*.

Headers travel as h11's parsed triples ``(raw_name, lower_name, value)`` so the
data plane can hand the result back to h11 without re-validating what h11 just
parsed (the research profile found that re-validation alone at ~10 % of CPU).
Everything we add is built from values that were already valid on input.
"""

from __future__ import annotations

from collections.abc import Iterable
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


def framing(items: Iterable[Triple]) -> Framing:
    chunked = False
    length: int | None = None
    for _, name, value in items:
        if name == b"transfer-encoding":
            chunked = True  # h11 accepts nothing but "chunked"
        elif name == b"content-length":
            length = int(value)
    return Framing(chunked=chunked, content_length=length, both=chunked and length is not None)


def _connection_tokens(items: list[Triple]) -> frozenset[bytes]:
    tokens: set[bytes] = set()
    for _, name, value in items:
        if name == b"connection":
            tokens.update(t.strip().lower() for t in value.split(b",") if t.strip())
    return frozenset(tokens)


def _end_to_end(items: list[Triple], extra_drop: frozenset[bytes]) -> list[Triple]:
    """Drops hop-by-hop headers, those named in Connection, and `extra_drop`."""
    if not any(n in HOP_BY_HOP or n in extra_drop for _, n, _ in items):
        return list(items)
    drop = HOP_BY_HOP | extra_drop | _connection_tokens(items)
    return [t for t in items if t[1] not in drop]


def request_headers(
    items: list[Triple], *, client_ip: bytes, proto: bytes, host: bytes | None, body: Framing
) -> list[Triple]:
    """The headers forwarded to a member for one client request.

    X-Forwarded-For gets the client address appended (all earlier values kept,
    joined in one header); X-Forwarded-Proto and -Host are set from what the
    appliance saw. Expect is answered by the appliance itself, so it is dropped.
    A chunked body stays chunked and any Content-Length beside it is dropped.
    """
    out = _end_to_end(items, _REPLACED | {_XFF, b"expect"} | ({b"content-length"} if body.both else set()))
    previous = [v for _, n, v in items if n == _XFF]
    xff = b", ".join([*previous, client_ip])
    out.append((b"X-Forwarded-For", _XFF, xff))
    out.append((b"X-Forwarded-Proto", b"x-forwarded-proto", proto))
    if host is not None:
        out.append((b"X-Forwarded-Host", b"x-forwarded-host", host))
    if body.chunked:
        out.append(_CHUNKED)
    return out


def response_headers(items: list[Triple], body: Framing) -> list[Triple]:
    """The headers sent to the client for a member's response."""
    out = _end_to_end(items, frozenset({b"content-length"}) if body.both else frozenset())
    if body.chunked:
        out.append(_CHUNKED)
    return out
