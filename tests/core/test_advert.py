"""The HA heartbeat's wire format, anti-replay guard, log limiter and secret rule, at explicit times."""

from __future__ import annotations

import base64
import hashlib
import hmac
import math
import random
import struct
from typing import Any

import pytest

from appliance.core.advert import (
    LABEL,
    MAC_SIZE,
    MAX_FRAME,
    MAX_NODE,
    MAX_PAYLOAD,
    OTHER,
    STATES,
    U64,
    Advert,
    LogLimiter,
    RejectCounts,
    Rejected,
    ReplayGuard,
    Sequencer,
    Sync,
    check_secret,
    decode,
    default_window,
    derive_key,
    encode,
    new_epoch,
)

SECRET = b"q7Lw2m9XcR4tB8vN1zK6pH3jD5sF0gYa"
KEY = derive_key(SECRET)
E1 = 0x1111_2222_3333_4444
E2 = 0x5555_6666_7777_8888
_ADVERT_HEAD = struct.Struct("!2sBBQQdBBdB")
_SYNC_HEAD = struct.Struct("!2sBBQQdQBH")


def advert(**changes: Any) -> Advert:
    fields: dict[str, Any] = {"node": "lb-a", "priority": 150, "state": "master", "epoch": E1, "counter": 7}
    fields |= {"timestamp": 1_700_000_000.25, "advert_interval": 1.0}
    fields.update(changes)
    return Advert(**fields)


def sync(**changes: Any) -> Sync:
    fields: dict[str, Any] = {"node": "lb-a", "epoch": E1, "counter": 8, "timestamp": 1_700_000_000.5}
    fields |= {"generation": 42, "payload": b'{"members":[]}'}
    fields.update(changes)
    return Sync(**fields)


def sign(body: bytes, key: bytes = KEY) -> bytes:
    return body + hmac.digest(key, body, hashlib.sha256)


def rejected(data: bytes, key: bytes = KEY, **kw: Any) -> str:
    with pytest.raises(Rejected) as info:
        decode(data, key, **kw)
    return info.value.kind


# ---------------------------------------------------------------- round trips


@pytest.mark.parametrize(
    "message",
    [
        advert(),
        advert(node="nœud-α-東京"),  # non-ASCII
        advert(node="a" * MAX_NODE),
        advert(node="é" * (MAX_NODE // 2)),  # 64 bytes of two-byte characters
        advert(priority=0),
        advert(priority=255),
        advert(epoch=0, counter=0),
        advert(epoch=U64, counter=U64),
        advert(timestamp=0.0, advert_interval=0.001),
        advert(timestamp=-1.5, advert_interval=40.95),
        *[advert(state=state) for state in STATES],
        sync(),
        sync(payload=b""),
        sync(node="nœud-α", generation=0),
        sync(generation=U64, epoch=U64, counter=U64),
        sync(node="z" * MAX_NODE, payload=bytes(range(256)) * (MAX_PAYLOAD // 256) + b"x" * (MAX_PAYLOAD % 256)),
    ],
    ids=lambda m: f"{type(m).__name__}-{len(encode(m, KEY))}",
)
def test_round_trip(message: Advert | Sync) -> None:
    data = encode(message, KEY)
    assert len(data) <= MAX_FRAME
    assert decode(data, KEY) == message


def test_the_largest_sync_fills_one_datagram_exactly() -> None:
    big = sync(node="z" * MAX_NODE, payload=b"p" * MAX_PAYLOAD)
    assert len(encode(big, KEY)) == MAX_FRAME


def test_advert_layout_is_pinned() -> None:
    data = encode(advert(), KEY)
    head = struct.pack("!2sBBQQdBBdB", b"HA", 1, 1, E1, 7, 1_700_000_000.25, 150, 2, 1.0, 4)
    assert data == sign(head + b"lb-a")
    assert len(data) == 39 + 4 + 32 == 75


def test_sync_layout_is_pinned() -> None:
    data = encode(sync(payload=b"{}"), KEY)
    head = struct.pack("!2sBBQQdQBH", b"HA", 1, 2, E1, 8, 1_700_000_000.5, 42, 4, 2)
    assert data == sign(head + b"lb-a" + b"{}")


# ---------------------------------------------------------------- what decode refuses


def _flip_expectations(kind: str, node: str, payload: bytes) -> dict[int, str]:
    """Offset -> the rejection a flipped byte there must cause."""
    n = len(node.encode())
    size = 39 + n + len(payload) + MAC_SIZE
    expect = dict.fromkeys(range(size), "mac")
    expect.update({0: "malformed", 1: "malformed", 2: "version", 3: "malformed"})
    if kind == "advert":
        expect[38] = "malformed"  # node length
    else:
        expect.update({36: "malformed", 37: "malformed", 38: "malformed"})  # node length, payload length
    return expect


@pytest.mark.parametrize(
    ("message", "kind"),
    [(advert(), "advert"), (advert(node="nœud"), "advert"), (sync(), "sync"), (sync(payload=b""), "sync")],
)
def test_every_flipped_byte_is_refused(message: Advert | Sync, kind: str) -> None:
    data = encode(message, KEY)
    payload = message.payload if isinstance(message, Sync) else b""
    expect = _flip_expectations(kind, message.node, payload)
    assert len(expect) == len(data)
    for offset in range(len(data)):
        for mask in (0x01, 0x80, 0xFF):
            mutated = bytearray(data)
            mutated[offset] ^= mask
            assert rejected(bytes(mutated)) == expect[offset], (offset, mask)


@pytest.mark.parametrize(
    ("region", "offset"),
    [
        ("header: epoch", 4),
        ("header: counter", 19),
        ("header: timestamp", 27),
        ("header: generation", 30),
        ("node", 39),
        ("payload", 39 + 4 + 3),
        ("mac first byte", -MAC_SIZE),
        ("mac last byte", -1),
    ],
)
def test_a_flipped_region_is_a_mac_failure(region: str, offset: int) -> None:
    mutated = bytearray(encode(sync(), KEY))
    mutated[offset] ^= 0x40
    assert rejected(bytes(mutated)) == "mac"


@pytest.mark.parametrize(
    "key",
    [
        derive_key(b"another-secret-of-32-bytes-xxxxx"),
        SECRET,  # the raw secret, underived
        hmac.digest(SECRET, b"appliance persistence cookie key v1", hashlib.sha256),  # the cookie key
        b"",
    ],
)
@pytest.mark.parametrize("message", [advert(), sync()])
def test_a_wrong_key_is_a_mac_failure(key: bytes, message: Advert | Sync) -> None:
    assert rejected(encode(message, KEY), key) == "mac"


def test_mac_reason_names_a_secret_mismatch() -> None:
    with pytest.raises(Rejected, match="secret files differ"):
        decode(encode(advert(), KEY), derive_key(b"another-secret-of-32-bytes-xxxxx"))


_VALID = encode(sync(), KEY)


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"H",
        b"HA",
        b"HA\x01",
        b"GET / HTTP/1.1\r\n\r\n",
        bytes(random.Random(1).randbytes(100)),
        b"HA\x01\x03" + bytes(80),  # unknown kind
        b"HA\x01\x00" + bytes(80),
        b"HA\x01\x01" + bytes(40),  # an advert head shorter than head + MAC
        _VALID + b"\x00",  # trailing byte
        _VALID[:-1],
        _VALID[:39],
        b"HA\x01\x02" + bytes(MAX_FRAME),  # oversized
        sign(b"HA\x01\x02" + bytes(MAX_FRAME)),
    ],
)
def test_garbage_and_truncation_are_malformed(data: bytes) -> None:
    assert rejected(data) == "malformed"


@pytest.mark.parametrize("message", [advert(), sync()])
def test_every_truncation_is_malformed(message: Advert | Sync) -> None:
    data = encode(message, KEY)
    for size in range(len(data)):
        assert rejected(data[:size]) == "malformed", size


@pytest.mark.parametrize("version", [0, 2, 255])
def test_unknown_version_is_refused_even_when_signed(version: int) -> None:
    body = bytearray(_VALID[:-MAC_SIZE])
    body[2] = version
    assert rejected(sign(bytes(body))) == "version"
    assert rejected(bytes(body) + _VALID[-MAC_SIZE:]) == "version"


def _signed_advert(
    *, node: bytes = b"lb-b", state: int = 1, timestamp: float = 100.0, interval: float = 1.0, priority: int = 100
) -> bytes:
    head = _ADVERT_HEAD.pack(b"HA", 1, 1, E1, 1, timestamp, priority, state, interval, len(node))
    return sign(head + node)


def _signed_sync(*, node: bytes = b"lb-b", timestamp: float = 100.0) -> bytes:
    head = _SYNC_HEAD.pack(b"HA", 1, 2, E1, 1, timestamp, 1, len(node), 0)
    return sign(head + node)


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (_signed_advert(state=4), "unknown state code 4"),
        (_signed_advert(state=255), "unknown state code"),
        (_signed_advert(timestamp=math.nan), "timestamp must be finite"),
        (_signed_advert(timestamp=math.inf), "timestamp must be finite"),
        (_signed_advert(interval=0.0), "advert_interval"),
        (_signed_advert(interval=-1.0), "advert_interval"),
        (_signed_advert(interval=math.nan), "advert_interval"),
        (_signed_advert(node=b""), "node name"),
        (_signed_advert(node=b"\xff\xfe"), "utf-8"),
        (_signed_advert(node=b"lb\nINFO forged log line"), "node name"),
        (_signed_advert(node=b"x" * 65), "node name"),
        (_signed_sync(timestamp=math.nan), "timestamp must be finite"),
        (_signed_sync(node=b"\xc3"), "utf-8"),
    ],
)
def test_signed_nonsense_is_malformed(data: bytes, reason: str) -> None:
    with pytest.raises(Rejected, match=reason) as info:
        decode(data, KEY)
    assert info.value.kind == "malformed"


def test_our_own_name_is_refused() -> None:
    for message in (advert(node="lb-a"), sync(node="lb-a")):
        assert rejected(encode(message, KEY), own_node="lb-a") == "self"
        assert decode(encode(message, KEY), KEY, own_node="lb-b") == message


def test_self_is_decided_after_the_mac() -> None:
    forged = bytearray(encode(advert(node="lb-a"), KEY))
    forged[-1] ^= 1
    assert rejected(bytes(forged), own_node="lb-a") == "mac"


def test_decode_raises_only_rejected() -> None:
    rng = random.Random(7)
    seeds = [encode(advert(), KEY), encode(sync(), KEY), encode(advert(node="é" * 32), KEY)]
    for _ in range(3000):
        data = bytearray(rng.choice(seeds))
        for _ in range(rng.randint(1, 4)):
            action = rng.randrange(3)
            if action == 0 and data:
                data[rng.randrange(len(data))] = rng.randrange(256)
            elif action == 1 and data:
                del data[rng.randrange(len(data)) :]
            else:
                data += rng.randbytes(rng.randint(1, 8))
        try:
            decode(bytes(data), KEY)
        except Rejected as exc:
            assert exc.kind in ("malformed", "version", "mac")


@pytest.mark.parametrize(
    ("make", "match"),
    [
        (lambda: advert(priority=256), "priority"),
        (lambda: advert(priority=-1), "priority"),
        (lambda: advert(state="primary"), "state"),
        (lambda: advert(node=""), "node name"),
        (lambda: advert(node="a" * (MAX_NODE + 1)), "node name"),
        (lambda: advert(node="é" * 33), "node name"),
        (lambda: advert(node="lb\n-a"), "node name"),
        (lambda: advert(counter=U64 + 1), "counter"),
        (lambda: advert(epoch=-1), "epoch"),
        (lambda: advert(timestamp=math.nan), "timestamp"),
        (lambda: advert(advert_interval=0.0), "advert_interval"),
        (lambda: sync(generation=-1), "generation"),
        (lambda: sync(payload=b"x" * (MAX_PAYLOAD + 1)), "one datagram"),
    ],
)
def test_messages_refuse_values_the_wire_cannot_carry(make: Any, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        make()


# ---------------------------------------------------------------- anti-replay


def msg(node: str, epoch: int, counter: int, ts: float, kind: str = "advert") -> Advert | Sync:
    if kind == "advert":
        return advert(node=node, epoch=epoch, counter=counter, timestamp=ts)
    return sync(node=node, epoch=epoch, counter=counter, timestamp=ts)


# (node, epoch, counter, timestamp, now, expected rejection or None), fed in order to one guard
_STORY: list[tuple[str, int, int, float, float, str | None]] = [
    ("lb-b", E1, 5, 100.0, 100.2, None),  # first sight: any counter
    ("lb-b", E1, 5, 100.0, 100.4, "replay"),  # the same packet again
    ("lb-b", E1, 6, 101.0, 101.1, None),
    ("lb-b", E1, 4, 101.5, 101.6, "replay"),  # a lower counter, fresh timestamp
    ("lb-b", E1, 6, 101.9, 102.0, "replay"),  # the same counter
    ("lb-b", E1, 9, 102.0, 102.1, None),  # gaps are fine (lost datagrams)
    ("lb-b", E1, 8, 101.8, 102.2, "replay"),  # reordered: the older one loses
    ("lb-c", E1, 1, 102.0, 102.2, None),  # another node has its own counters
    ("lb-b", E2, 1, 105.0, 105.1, None),  # lb-b restarted: a new epoch, counter from 1
    ("lb-b", E2, 2, 106.0, 106.1, None),
    ("lb-b", E1, 10, 102.5, 106.5, "replay"),  # the old process's packet, replayed within the window
    ("lb-b", E1, 10, 90.0, 106.5, "stale"),
    ("lb-b", E2, 3, 107.0, 107.0, None),  # still following E2
]


def test_replay_story() -> None:
    guard = ReplayGuard(10.0)
    outcomes: list[str | None] = []
    for node, epoch, counter, ts, now, _ in _STORY:
        try:
            guard.check(msg(node, epoch, counter, ts), now)
            outcomes.append(None)
        except Rejected as exc:
            outcomes.append(exc.kind)
    assert outcomes == [expected for *_, expected in _STORY]
    assert guard.epoch_of("lb-b") == E2
    assert guard.epoch_of("lb-c") == E1
    assert guard.epoch_of("lb-z") is None


@pytest.mark.parametrize(
    ("ts", "now", "expected"),
    [
        (100.0, 100.0, None),
        (90.0, 100.0, None),  # exactly the window behind
        (110.0, 100.0, None),  # exactly the window ahead
        (89.9, 100.0, "stale"),  # old
        (110.1, 100.0, "stale"),  # from the future: the peer's clock runs ahead
        (0.0, 100.0, "stale"),
        (100.0, math.nan, "stale"),
    ],
)
def test_stale_in_both_directions(ts: float, now: float, expected: str | None) -> None:
    guard = ReplayGuard(10.0)
    for kind in ("advert", "sync"):
        if expected is None:
            guard.check(msg("lb-b", E1, 1, ts, kind), now)
        else:
            with pytest.raises(Rejected, match="window") as info:
                guard.check(msg("lb-b", E1, 1, ts, kind), now)
            assert info.value.kind == expected


def test_an_old_epochs_packet_with_its_old_timestamp_is_stale() -> None:
    guard = ReplayGuard(10.0)
    captured = msg("lb-b", E1, 40, 100.0)
    guard.check(captured, 100.0)
    guard.check(msg("lb-b", E2, 1, 200.0), 200.0)  # peer restarted
    with pytest.raises(Rejected) as info:
        guard.check(captured, 300.0)
    assert info.value.kind == "stale"
    fresh_guard = ReplayGuard(10.0)  # even to a node that restarted and forgot everything
    with pytest.raises(Rejected) as info:
        fresh_guard.check(captured, 300.0)
    assert info.value.kind == "stale"


def test_a_restarted_peer_is_believed_at_once() -> None:
    guard = ReplayGuard(10.0)
    guard.check(msg("lb-b", E1, 1_000_000, 100.0), 100.0)
    guard.check(msg("lb-b", E2, 1, 100.5), 100.6)  # a lower counter, but a new epoch and a later time
    guard.check(msg("lb-b", E2, 2, 101.5), 101.6)
    assert guard.epoch_of("lb-b") == E2


def test_a_rejection_changes_nothing() -> None:
    guard = ReplayGuard(10.0)
    guard.check(msg("lb-b", E1, 5, 100.0), 100.0)
    for bad, now in [(msg("lb-b", E1, 1000, 50.0), 100.0), (msg("lb-b", E2, 1, 99.0), 100.0)]:
        with pytest.raises(Rejected):
            guard.check(bad, now)
    guard.check(msg("lb-b", E1, 6, 100.5), 100.5)  # neither the stale counter nor the refused epoch stuck
    assert guard.epoch_of("lb-b") == E1


def test_adverts_and_syncs_are_ordered_apart() -> None:
    guard = ReplayGuard(10.0)
    sender = Sequencer(node="lb-b", epoch=E1)
    first = sender.advert(priority=200, state="master", advert_interval=1.0, now_wall=100.0)
    change = sender.sync(generation=3, payload=b"{}", now_wall=100.1)
    second = sender.advert(priority=200, state="master", advert_interval=1.0, now_wall=100.2)
    assert (first.counter, change.counter, second.counter) == (1, 2, 3)
    guard.check(first, 100.3)
    guard.check(second, 100.3)
    guard.check(change, 100.3)  # overtaken on the wire by an advert, still taken
    with pytest.raises(Rejected) as info:
        guard.check(change, 100.4)
    assert info.value.kind == "replay"


def test_sequencer_stream_passes_the_wire_and_the_guard() -> None:
    sender = Sequencer(node="lb-b", epoch=E2, counter=U64 - 3)
    guard = ReplayGuard(default_window(1.0))
    for i in range(3):
        message = sender.advert(priority=100, state="backup", advert_interval=1.0, now_wall=50.0 + i)
        guard.check(decode(encode(message, KEY), KEY, own_node="lb-a"), 50.0 + i)
    assert sender.counter == U64
    with pytest.raises(ValueError, match="counter"):
        sender.advert(priority=100, state="backup", advert_interval=1.0, now_wall=60.0)


@pytest.mark.parametrize(("interval", "window"), [(0.1, 10.0), (1.0, 10.0), (2.5, 25.0), (10.0, 100.0)])
def test_default_window(interval: float, window: float) -> None:
    assert default_window(interval) == window


@pytest.mark.parametrize("window", [0.0, -1.0, math.nan, math.inf])
def test_guard_window_must_be_positive(window: float) -> None:
    with pytest.raises(ValueError, match="window"):
        ReplayGuard(window)


# ---------------------------------------------------------------- counting and logging


def test_reject_counts() -> None:
    counts = RejectCounts(max_sources=2)
    assert counts.add("10.0.0.2:9912", "mac") == 1
    assert counts.add("10.0.0.2:9912", "mac") == 2
    counts.add("10.0.0.2:9912", "replay")
    counts.add("10.0.0.3:9912", "stale")
    counts.add("10.0.0.9:1", "malformed")  # beyond the cap: pooled
    counts.add("10.0.0.8:1", "malformed")
    assert counts.get("10.0.0.2:9912", "mac") == 2
    assert counts.get(OTHER, "malformed") == 2
    assert counts.get("10.0.0.9:1", "malformed") == 0
    assert counts.by_kind() == {"malformed": 2, "version": 0, "mac": 2, "replay": 1, "stale": 1, "self": 0}
    assert counts.items()[("10.0.0.3:9912", "stale")] == 1


# (source, now, admit's answer): interval 5 s
_LOG: list[tuple[str, float, int | None]] = [
    ("a", 0.0, 0),
    ("a", 1.0, None),
    ("a", 4.99, None),
    ("b", 2.0, 0),  # another source is not held back by a
    ("a", 5.0, 2),  # the next line says two were suppressed
    ("b", 6.0, None),
    ("a", 9.0, None),
    ("a", 10.0, 1),
    ("b", 100.0, 1),
    ("a", 100.0, 0),
]


def test_log_limiter_at_explicit_times() -> None:
    limiter = LogLimiter(5.0)
    assert [limiter.admit(source, now) for source, now, _ in _LOG] == [answer for *_, answer in _LOG]
    assert limiter.suppressed == 4
    assert limiter.allow("a", 100.1) is False
    assert limiter.allow("a", 105.0) is True
    assert limiter.suppressed == 5


def test_log_limiter_bounds_its_sources() -> None:
    limiter = LogLimiter(5.0, max_sources=2)
    assert limiter.allow("a", 0.0) and limiter.allow("b", 0.0)
    assert limiter.allow("c", 1.0) is True  # the first of the overflow, under OTHER
    assert limiter.allow("d", 2.0) is False  # shares OTHER's interval
    assert limiter.allow("e", 10.0) is True  # idle sources were forgotten: e has its own slot
    assert limiter.allow("e", 11.0) is False


# ---------------------------------------------------------------- secret, key, epoch


_RANDOM32 = random.Random(2024).randbytes(32)


@pytest.mark.parametrize(
    ("data", "secret"),
    [
        (_RANDOM32, _RANDOM32.strip()),
        (base64.b64encode(_RANDOM32) + b"\n", base64.b64encode(_RANDOM32)),
        (_RANDOM32[:16].hex().encode() + b"\r\n", _RANDOM32[:16].hex().encode()),
        (b"  correct horse battery staple\n", b"correct horse battery staple"),  # passes; not advised
        (b"0123456789abcdef", b"0123456789abcdef"),  # 16 bytes, 16 values: the least accepted
    ],
)
def test_check_secret_accepts(data: bytes, secret: bytes) -> None:
    assert len(_RANDOM32.strip()) >= 16
    assert check_secret(data) == secret


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"", "is empty"),
        (b" \n\t\r\n", "is empty"),
        (b"hunter2\n", "too short: 7 bytes"),
        (b"0123456789abcde", "too short: 15 bytes"),
        (b"a" * 64, "too regular: 1 distinct"),
        (b"ab" * 16, "too regular: 2 distinct"),
        (b"0" * 31 + b"1", "too regular: 2 distinct"),
        (b"1234567" * 5, "too regular: 7 distinct"),
    ],
)
def test_check_secret_refuses(data: bytes, reason: str) -> None:
    with pytest.raises(ValueError, match=reason) as info:
        check_secret(data)
    assert "/dev/urandom" in str(info.value)


def test_key_is_domain_separated() -> None:
    key = derive_key(SECRET)
    assert key == hmac.digest(SECRET, LABEL, hashlib.sha256)
    assert LABEL == b"appliance ha advert v1"
    assert key != hmac.digest(SECRET, b"appliance persistence cookie key v1", hashlib.sha256)
    assert len(key) == 32


def test_new_epoch_takes_the_shells_random_bytes() -> None:
    assert new_epoch(bytes(range(1, 9))) == 0x0102030405060708
    assert new_epoch(b"\xff" * 8) == U64
    with pytest.raises(ValueError, match="8 random bytes"):
        new_epoch(b"\x00" * 7)
