"""Cookie values that name a member: the signed token and BIG-IP's address encoding.

The signed token must be useless to anyone without the key (no forging,
moving between pools, re-dating, or reading an address out of it) and must
expire at the explicit `now` values given. The F5 encoding is checked against
the worked examples published for BIG-IP (K6917, research note §2.7), not
against values computed by the code under test.
"""

from __future__ import annotations

import base64
import ipaddress
import string

import pytest

from appliance.core import tokens
from appliance.core.model import Endpoint
from appliance.core.tokens import MAX_ENTRIES, TokenSigner

KEY = b"k" * 32
NOW = 1_700_000_000
DAY = 86_400
ALPHABET = string.ascii_uppercase + string.ascii_lowercase + string.digits + "-_"  # base64url


def raw(entry: bytes) -> bytes:
    return base64.urlsafe_b64decode(entry + b"=" * (-len(entry) % 4))


# ---------------------------------------------------------------- signed tokens


def test_issue_then_read_names_the_member_and_its_date() -> None:
    """The entry comes back for its pool, naming the member it was issued for."""
    signer = TokenSigner(KEY)
    value = signer.issue("web", "a", NOW)
    assert len(value) == 32 and b"." not in value
    entry, others = signer.read(value, "web", NOW + 10, 0)
    assert entry is not None and others == []
    assert entry.issued == NOW
    assert entry.member_id == signer.member_id("web", "a") != signer.member_id("web", "b")


def test_another_process_with_the_same_key_honours_it() -> None:
    """Nothing is stored: a fresh signer (another worker, the HA peer) reads the same token."""
    value = TokenSigner(KEY).issue("web", "a", NOW)
    entry, _ = TokenSigner(bytes(KEY)).read(value, "web", NOW, 0)
    assert entry is not None and entry.member_id == TokenSigner(KEY).member_id("web", "a")


def test_a_different_key_rejects() -> None:
    value = TokenSigner(KEY).issue("web", "a", NOW)
    entry, _ = TokenSigner(b"another key").read(value, "web", NOW, 0)
    assert entry is None


def test_a_token_for_one_pool_is_not_valid_for_another() -> None:
    """Pool B does not accept A's entry, and keeps it untouched as another pool's entry."""
    signer = TokenSigner(KEY)
    value = signer.issue("pool-a", "a", NOW)
    entry, others = signer.read(value, "pool-b", NOW, 0)
    assert entry is None and others == [value]


def test_same_member_name_in_two_pools_gets_different_ids() -> None:
    """A member id cannot be replayed into another pool that has a member of the same name."""
    signer = TokenSigner(KEY)
    assert signer.member_id("pool-a", "m1") != signer.member_id("pool-b", "m1")


@pytest.mark.parametrize("position", range(32))
def test_any_single_character_tamper_is_rejected(position: int) -> None:
    """Changing any one base64 character changes the signed bytes, and the MAC catches it."""
    signer = TokenSigner(KEY)
    value = signer.issue("web", "a", NOW).decode()
    old = value[position]
    for new in (ALPHABET[(ALPHABET.index(old) + 1) % 64], ALPHABET[(ALPHABET.index(old) + 32) % 64], "!"):
        tampered = (value[:position] + new + value[position + 1 :]).encode()
        entry, _ = signer.read(tampered, "web", NOW, 0)
        assert entry is None, (position, new)


def test_an_entry_is_not_valid_in_a_pool_whose_tag_collides() -> None:
    """The pool tag is only 3 bytes; the MAC covers the pool's full name, so a collision moves nothing."""
    signer = TokenSigner(KEY)
    value = signer.issue("pool-1960", "m", NOW)
    assert raw(value)[1:4] == raw(signer.issue("pool-3702", "m", NOW))[1:4]  # found by search under KEY
    assert signer.read(value, "pool-3702", NOW, 0)[0] is None
    assert signer.read(value, "pool-1960", NOW, 0)[0] is not None


@pytest.mark.parametrize(
    ("ahead", "valid"),
    [
        pytest.param(0, True, id="now"),
        pytest.param(300, True, id="clock-skew-minutes"),
        pytest.param(DAY, True, id="exactly-a-day"),
        pytest.param(DAY + 1, False, id="more-than-a-day"),
        pytest.param(30 * DAY, False, id="a-month"),
    ],
)
def test_an_entry_dated_more_than_a_day_ahead_is_refused(ahead: int, valid: bool) -> None:
    signer = TokenSigner(KEY)
    value = signer.issue("web", "a", NOW + ahead)
    assert (signer.read(value, "web", NOW, 0)[0] is not None) is valid


@pytest.mark.parametrize(
    ("max_age", "age", "valid"),
    [
        pytest.param(3600, 0, True, id="fresh"),
        pytest.param(3600, 3599, True, id="just-before"),
        pytest.param(3600, 3600, True, id="exactly-at-the-limit"),
        pytest.param(3600, 3601, False, id="just-past"),
        pytest.param(3600, 10 * DAY, False, id="long-past"),
        pytest.param(0, 365 * DAY, True, id="zero-never-expires"),
    ],
)
def test_max_age_expiry_at_explicit_times(max_age: int, age: int, valid: bool) -> None:
    signer = TokenSigner(KEY)
    value = signer.issue("web", "a", NOW)
    entry, others = signer.read(value, "web", NOW + age, max_age)
    assert (entry is not None) is valid
    assert others == []  # an expired entry of this pool is dropped, not carried along


@pytest.mark.parametrize(
    ("pool", "member", "host"),
    [
        ("web", "10.1.1.100:80", "10.1.1.100"),  # a member's default name is its address
        ("web", "app-server-7", None),
        ("v6", "[2001:db8::7]:8080", "2001:db8::7"),
    ],
)
def test_the_token_reveals_no_address_and_no_name(pool: str, member: str, host: str | None) -> None:
    """Neither the names nor the address, as text or as packed bytes, are in the cookie."""
    value = TokenSigner(KEY).issue(pool, member, NOW)
    secrets = [member.encode(), pool.encode()]
    if host is not None:
        secrets += [host.encode(), ipaddress.ip_address(host).packed]
    for secret in secrets:
        assert secret not in raw(value) and secret not in value


def test_entries_of_other_pools_come_back_and_stay_valid() -> None:
    """One cookie for a virtual server routing to two pools: each pool finds its own entry."""
    signer = TokenSigner(KEY)
    web, api = signer.issue("web", "a", NOW), signer.issue("api", "x", NOW)
    value = tokens.join(web, [api])
    assert value == web + b"." + api  # the newest entry first
    entry, others = signer.read(value, "api", NOW, 0)
    assert entry is not None and entry.member_id == signer.member_id("api", "x") and others == [web]
    entry, others = signer.read(value, "web", NOW, 0)
    assert entry is not None and entry.member_id == signer.member_id("web", "a") and others == [api]


def test_a_client_visiting_many_pools_keeps_the_most_recent_ones_newest_first() -> None:
    """Each visit re-issues its pool's entry in front; beyond MAX_ENTRIES the least recent go."""
    signer = TokenSigner(KEY)
    pools = [f"p{i}" for i in range(MAX_ENTRIES + 3)] + ["p5"]  # p5 revisited last
    value = b""
    for t, pool in enumerate(pools):
        _, others = signer.read(value, pool, NOW + t, 0)
        value = tokens.join(signer.issue(pool, "m", NOW + t), others)
    parts = value.split(b".")
    assert len(parts) == MAX_ENTRIES
    holder = [next(p for p in set(pools) if signer.read(part, p, NOW + 99, 0)[0] is not None) for part in parts]
    distinct_newest_first = list(dict.fromkeys(reversed(pools)))
    assert holder == distinct_newest_first[:MAX_ENTRIES]
    assert holder[0] == "p5" and holder.count("p5") == 1


def test_join_keeps_at_most_max_entries() -> None:
    signer = TokenSigner(KEY)
    others = [signer.issue(f"p{i}", "m", NOW) for i in range(2 * MAX_ENTRIES)]
    new = signer.issue("web", "a", NOW)
    assert tokens.join(new, others).split(b".") == [new, *others[: MAX_ENTRIES - 1]]


def test_garbage_entries_are_ignored_and_not_carried_along() -> None:
    """Junk around a valid entry neither hides it nor survives into the next cookie."""
    signer = TokenSigner(KEY)
    good = signer.issue("web", "a", NOW)
    junk = [b"junk", b"", b"A" * 32, b"!" * 32, good[:-1], good + b"A", base64.urlsafe_b64encode(b"\x02" + raw(good)[1:])]
    value = b".".join([*junk[:4], good, *junk[4:]])
    entry, others = signer.read(value, "web", NOW, 0)
    assert entry is not None and entry.member_id == signer.member_id("web", "a")
    assert others == []


# ---------------------------------------------------------------- F5 BIG-IP encoding (K6917)


@pytest.mark.parametrize(
    ("value", "address"),
    [
        pytest.param(b"1677787402.20480.0000", ("10.1.1.100", 80), id="k6917-v4-port-80"),
        pytest.param(b"1677787402.36895.0000", ("10.1.1.100", 8080), id="k6917-v4-port-8080"),
        pytest.param(b"vi20010db8000000000000000000000001.20480", ("2001:db8::1", 80), id="v6"),
        pytest.param(b"vi20010DB8000000000000000000000001.36895", ("2001:db8::1", 8080), id="v6-upper-hex"),
        pytest.param(b"rd5o00000000000000000000ffff0a010164o80", ("10.1.1.100", 80), id="route-domain-v4"),
        pytest.param(b"rd12o00000000000000000000ffff0a010164o8080", ("10.1.1.100", 8080), id="route-domain-v4-8080"),
        pytest.param(b"rd3o20010db8000000000000000000000001o443", ("2001:db8::1", 443), id="route-domain-v6"),
        pytest.param(b"rd2o00000000000000000000FFFF0a010166o80", ("10.1.1.102", 80), id="route-domain-v4-upper-case"),
        pytest.param(b"vi00000000000000000000ffff0a010166.20480", ("10.1.1.102", 80), id="ipv4-mapped-in-the-v6-form"),
    ],
)
def test_f5_decode_published_forms(value: bytes, address: tuple[str, int]) -> None:
    """Every form BIG-IP writes: IPv4 bytes reversed and port byte-swapped; route domains plain."""
    assert tokens.f5_decode(value) == address


@pytest.mark.parametrize(
    ("host", "port", "value"),
    [
        ("10.1.1.100", 80, b"1677787402.20480.0000"),
        ("10.1.1.100", 8080, b"1677787402.36895.0000"),
        ("2001:db8::1", 80, b"vi20010db8000000000000000000000001.20480"),
    ],
)
def test_f5_encode_matches_the_published_examples(host: str, port: int, value: bytes) -> None:
    assert tokens.f5_encode(Endpoint(host=host, port=port)) == value


@pytest.mark.parametrize(
    ("host", "port"),
    [
        ("0.0.0.1", 1),
        ("1.2.3.4", 256),
        ("192.168.0.1", 443),
        ("255.255.255.255", 65535),
        ("127.0.0.1", 9001),
        ("::1", 80),
        ("2001:db8::abcd", 8443),
        ("fe80::1:2:3:4", 255),
        ("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", 65280),
    ],
)
def test_f5_round_trip(host: str, port: int) -> None:
    """What we write for a member reads back as that member."""
    assert tokens.f5_decode(tokens.f5_encode(Endpoint(host=host, port=port))) == (host, port)


@pytest.mark.parametrize(
    "value",
    [
        pytest.param(b"4294967296.20480.0000", id="v4-number-over-32-bits"),
        pytest.param(b"99999999999.20480.0000", id="v4-number-too-long"),
        pytest.param(b"1677787402.65536.0000", id="v4-port-over-16-bits"),
        pytest.param(b"1677787402.0.0000", id="v4-port-zero"),
        pytest.param(b"1677787402.20480.0001", id="v4-reserved-not-zero"),
        pytest.param(b"1677787402.20480", id="v4-no-reserved-field"),
        pytest.param(b"-1677787402.20480.0000", id="v4-negative"),
        pytest.param(b" 1677787402.20480.0000", id="leading-space"),
        pytest.param(b"1677787402.20480.0000x", id="trailing-junk"),
        pytest.param(b"vi20010db8.20480", id="v6-short-hex"),
        pytest.param(b"vi20010db800000000000000000000000g.20480", id="v6-not-hex"),
        pytest.param(b"vi20010db8000000000000000000000001.70000", id="v6-port-over-16-bits"),
        pytest.param(b"vi20010db8000000000000000000000001.0", id="v6-port-zero"),
        pytest.param(b"rd5o00000000000000000000ffff0a010164o0", id="rd-v4-port-zero"),
        pytest.param(b"rd5o00000000000000000000ffff0a010164o65536", id="rd-v4-port-over-16-bits"),
        pytest.param(b"rd5o00000000000000000000ffff0a0101o80", id="rd-v4-short-hex"),
        pytest.param(b"rdo00000000000000000000ffff0a010164o80", id="rd-no-domain-number"),
        pytest.param(b"rd3o20010db8000000000000000000000001o", id="rd-v6-no-port"),
        pytest.param(b"", id="empty"),
        pytest.param(b"junk", id="junk"),
        pytest.param(b"AbCdEfGhIjKlMnOpQrStUvWxYz012345", id="a-signed-token"),
    ],
)
def test_f5_decode_rejects_malformed_values(value: bytes) -> None:
    assert tokens.f5_decode(value) is None
