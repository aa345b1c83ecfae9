"""Hop-by-hop removal, X-Forwarded-*, and framing conflicts, as plain data."""

from __future__ import annotations

from appliance.core import headers as hdr


def triples(*pairs: tuple[bytes, bytes]) -> list[hdr.Triple]:
    return [(n, n.lower(), v) for n, v in pairs]


def names(items: list[hdr.Triple]) -> list[bytes]:
    return [n for _, n, _ in items]


def test_hop_by_hop_and_connection_named_headers_are_removed() -> None:
    items = triples(
        (b"Host", b"a"), (b"Connection", b"close, X-Private"), (b"X-Private", b"1"),
        (b"Keep-Alive", b"5"), (b"TE", b"trailers"), (b"Upgrade", b"websocket"), (b"X-Keep", b"1"),
    )
    body = hdr.framing(items)
    out = hdr.request_headers(items, client_ip=b"10.0.0.1", proto=b"http", host=b"a", body=body)
    assert names(out) == [b"host", b"x-keep", b"x-forwarded-for", b"x-forwarded-proto", b"x-forwarded-host"]


def test_x_forwarded_for_appends_to_every_earlier_value() -> None:
    items = triples((b"X-Forwarded-For", b"1.1.1.1"), (b"X-Forwarded-For", b"2.2.2.2"), (b"X-Forwarded-Host", b"evil"))
    out = hdr.request_headers(items, client_ip=b"3.3.3.3", proto=b"https", host=None, body=hdr.framing(items))
    assert [(n, v) for _, n, v in out] == [
        (b"x-forwarded-for", b"1.1.1.1, 2.2.2.2, 3.3.3.3"),
        (b"x-forwarded-proto", b"https"),
    ]


def test_content_length_beside_chunked_is_dropped() -> None:
    items = triples((b"Content-Length", b"10"), (b"Transfer-Encoding", b"chunked"))
    body = hdr.framing(items)
    assert body.both and body.chunked and body.has_body
    out = hdr.request_headers(items, client_ip=b"1.1.1.1", proto=b"http", host=None, body=body)
    assert b"content-length" not in names(out)
    assert (b"transfer-encoding", b"chunked") in [(n, v) for _, n, v in out]
    response = hdr.response_headers(items, body)
    assert names(response) == [b"transfer-encoding"]


def test_plain_headers_pass_untouched() -> None:
    items = triples((b"Content-Type", b"text/plain"), (b"Content-Length", b"3"))
    body = hdr.framing(items)
    assert (body.chunked, body.content_length, body.both) == (False, 3, False)
    assert hdr.response_headers(items, body) == items
