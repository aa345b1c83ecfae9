"""Hop-by-hop removal, X-Forwarded-*, and framing conflicts, as plain data."""

from __future__ import annotations

from appliance.core import headers as hdr


def triples(*pairs: tuple[bytes, bytes]) -> list[hdr.Triple]:
    return [(n, n.lower(), v) for n, v in pairs]


def names(items: list[hdr.Triple]) -> list[bytes]:
    return [n for _, n, _ in items]


def test_hop_by_hop_and_connection_named_headers_are_removed() -> None:
    items = triples(
        (b"Host", b"a"), (b"Connection", b"close, X-Private"), (b"X-Private", b"1"), (b"Expect", b"100-continue"),
        (b"Keep-Alive", b"5"), (b"TE", b"trailers"), (b"Upgrade", b"websocket"), (b"X-Keep", b"1"),
    )
    out, host, body, upgrade = hdr.forward_request(items, client_ip=b"10.0.0.1", proto=b"http")
    assert names(out) == [b"host", b"x-keep", b"x-forwarded-for", b"x-forwarded-proto", b"x-forwarded-host"]
    assert host == b"a" and not body.has_body
    assert upgrade is None  # Connection does not name upgrade


def test_an_upgrade_request_is_recognised_and_its_headers_left_to_the_proxy() -> None:
    items = triples((b"Host", b"a"), (b"Connection", b"Upgrade"), (b"Upgrade", b"websocket"), (b"Sec-WebSocket-Key", b"k"))
    out, _, _, upgrade = hdr.forward_request(items, client_ip=b"1.1.1.1", proto=b"http")
    assert upgrade == b"websocket"
    assert names(out)[:2] == [b"host", b"sec-websocket-key"]


def test_x_forwarded_for_appends_to_every_earlier_value_and_proto_host_are_replaced() -> None:
    items = triples((b"X-Forwarded-For", b"1.1.1.1"), (b"X-Forwarded-For", b"2.2.2.2"), (b"X-Forwarded-Host", b"evil"))
    out, host, _, _ = hdr.forward_request(items, client_ip=b"3.3.3.3", proto=b"https")
    assert host is None
    assert [(n, v) for _, n, v in out] == [
        (b"x-forwarded-for", b"1.1.1.1, 2.2.2.2, 3.3.3.3"),
        (b"x-forwarded-proto", b"https"),
    ]


def test_content_length_beside_chunked_is_dropped_both_ways() -> None:
    items = triples((b"Content-Length", b"10"), (b"Transfer-Encoding", b"chunked"))
    out, _, body, _ = hdr.forward_request(items, client_ip=b"1.1.1.1", proto=b"http")
    assert body.both and body.chunked and body.has_body
    assert b"content-length" not in names(out)
    assert (b"transfer-encoding", b"chunked") in [(n, v) for _, n, v in out]
    response, framing = hdr.forward_response(items)
    assert framing.both and names(response) == [b"transfer-encoding"]


def test_a_connection_token_cannot_remove_host() -> None:
    items = triples((b"Host", b"a"), (b"Connection", b"host"))
    out, host, _, _ = hdr.forward_request(items, client_ip=b"1.1.1.1", proto=b"http")
    assert host == b"a" and b"host" in names(out)


def test_plain_response_headers_pass_untouched() -> None:
    items = triples((b"Content-Type", b"text/plain"), (b"Content-Length", b"3"), (b"Connection", b"keep-alive, X-Hop"), (b"X-Hop", b"1"))
    out, framing = hdr.forward_response(items)
    assert (framing.chunked, framing.content_length, framing.both) == (False, 3, False)
    assert names(out) == [b"content-type", b"content-length"]
