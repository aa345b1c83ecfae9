"""The HTTP cookie syntax persistence needs: read one cookie, strip it, set or rewrite it.

Headers are h11's triples ``(raw name, lower-case name, value)``. Cookie names
are case-sensitive (RFC 6265 §5.3); a client may send several `Cookie` lines
(HTTP/2 gateways split them), so every line is looked at.
"""

from __future__ import annotations

from collections.abc import Sequence

Triple = tuple[bytes, bytes, bytes]


def read(headers: Sequence[Triple], name: bytes) -> bytes | None:
    """The value of the first cookie called `name` in the request's Cookie lines."""
    for _, header, value in headers:
        if header == b"cookie" and name in value:
            for pair in value.split(b";"):
                key, eq, found = pair.strip().partition(b"=")
                if eq and key == name:
                    return found.strip().strip(b'"')
    return None


def strip(headers: list[Triple], name: bytes) -> list[Triple]:
    """The request's headers without cookie `name` (a Cookie line left empty goes)."""
    out: list[Triple] = []
    for item in headers:
        if item[1] != b"cookie" or name not in item[2]:
            out.append(item)
            continue
        kept = [pair.strip() for pair in item[2].split(b";") if pair.strip().partition(b"=")[0] != name]
        if any(kept):
            out.append((item[0], item[1], b"; ".join(p for p in kept if p)))
    return out


def set_cookie(name: bytes, value: bytes, *, secure: bool, max_age: int) -> Triple:
    """A `Set-Cookie` for the whole site: HttpOnly, SameSite=Lax, Secure over TLS."""
    line = b"%s=%s; Path=/; HttpOnly; SameSite=Lax" % (name, value)
    if secure:
        line += b"; Secure"
    if max_age > 0:
        line += b"; Max-Age=%d" % max_age
    return (b"Set-Cookie", b"set-cookie", line)


def set_by_member(headers: Sequence[Triple], name: bytes) -> bytes | None:
    """The value the member's response sets for cookie `name`, or None."""
    for _, header, line in headers:
        if header == b"set-cookie":
            key, eq, rest = line.partition(b"=")
            if eq and key.strip() == name:
                return rest.split(b";", 1)[0].strip().strip(b'"')
    return None


def drop_set(headers: list[Triple], name: bytes) -> list[Triple]:
    """The response's headers without any `Set-Cookie` of `name`."""
    return [item for item in headers if item[1] != b"set-cookie" or set_by_member((item,), name) is None]


def rewrite(headers: list[Triple], name: bytes, value: bytes) -> bool:
    """Replaces, in place, the value of every `Set-Cookie` of `name`; its attributes stay.

    Returns whether the member set that cookie at all.
    """
    found = False
    for i, (raw, header, line) in enumerate(headers):
        if header != b"set-cookie":
            continue
        key, eq, rest = line.partition(b"=")
        if eq and key.strip() == name:
            _, semi, attributes = rest.partition(b";")
            headers[i] = (raw, header, name + b"=" + value + semi + attributes)
            found = True
    return found
