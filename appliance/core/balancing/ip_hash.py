"""ip_hash: consistent hashing of the client address, weighted by ratio (Maglev).

Theory of operation
-------------------
*The table.* When the balancer is built, a weighted Maglev lookup table
(Eisenbud et al., NSDI 2016; Envoy's ``MaglevLoadBalancer`` with its weighted
fill) is filled over the pool's FULL member list, whatever their health: a
prime number ``M`` of entries (65537, or the first prime >= 100 x members for
larger pools), each naming one member. Member ``i`` walks its own permutation
of the entries, ``(offset_i + j * skip_i) mod M`` with ``offset`` and ``skip``
taken from a hash of its *name* (not its position, so adding a member to the
config moves few keys), and the members take turns claiming their next free
entry; member ``i`` takes its ``k``-th turn once ``iteration * ratio_i >=
k * max_ratio``, so every member owns ``ratio_i / sum(ratio)`` of the table
to within one entry. The table depends only on the members' names and ratios;
it is cached by them, so a reload that keeps the pool's members reuses it.

*A key's preference list.* The key (``masked_key``) is hashed once with
blake2b into 128 bits: ``h1`` (64 bits), then ``h2``, whose low 32 bits give a
probe step and whose high 32 bits give the ramp fraction ``u`` in [0, 1).
The key's members in order of preference are the owners of the entries

    e_0 = h1 mod M,  e_p = (e_0 + p * step) mod M,  step = 1 + (h2 mod (M - 1))

for p = 0 .. MAX_PROBES - 1 (double hashing over a prime table: a probe
lands on a member with probability proportional to its ratio), then, if all
of those failed, every candidate in slot order starting at slot ``h1 mod
members`` and wrapping (so a member is found whenever any can take the key).

*A pick* returns the first member of the key's preference list that is a
candidate, ``available`` and not in ``avoid`` and, if it is ramping, accepts
the key (below). Because the list is fixed for a key, the consistency is
exact, not Maglev's "about": when a member leaves (down, disabled, at its
connection limit, avoided), only the keys it was serving move, each to the
next member of its own list, weighted by ratio; every other key stays; when it
returns, exactly those keys come back. A member at its connection limit spills
its keys to their next choice and takes them back once below it.

*Slow ramp.* A ramping member with factor ``f`` (``core.ramp``) accepts a key
only when the key's ``u < f``; otherwise the key goes on down its list, which
is exactly where it was served while that member was away. So a returning
member gets ``f`` of its keys, the same ones at every pick, and as ``f`` grows
keys only move onto it, never back and forth. When every candidate is
ramping (a whole pool coming back), ``f`` is taken relative to the most
advanced candidate (``f / f_top``, with ``f_top`` from the earliest
``ramp_start`` among the candidates), so a pool of equally new members
behaves as if none were ramping instead of refusing most keys (the Envoy
caveat). If only ramping members that refused it could take the key, the
first of them in its list takes it: better them than nobody.

*Costs.* Building the table: about ``M * ln M`` probe steps, once per pool
member list (cached). A new candidates tuple: O(members), once (the tuple is
identity-stable; a reference is kept). A pick: one blake2b and O(1) table
probes when most of the ratio-weighted pool can take the key; the expected
probe count is 1 / (share of the weight that can), and the slot-order walk,
which scans candidates, is reached only when MAX_PROBES probes all miss
(probability (1 - share) ** MAX_PROBES): nearly every candidate at its
connection limit, avoided or refusing by ramp.

*Keys.* ``key`` is the client address as text bytes (``b"203.0.113.7"``,
``b"2001:db8::1"``). ``hash_mask`` (0..32) is an IPv4 prefix length: with
24, every client of a /24 hashes as one. IPv6 clients are hashed whole (the
config's rule); an IPv4-mapped IPv6 address (``::ffff:203.0.113.7``, a
dual-stack listener) is treated as the IPv4 address it carries. A key that is
not an address, or None, is hashed as given (None as empty).
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Container, Sequence
from functools import lru_cache
from hashlib import blake2b

from appliance.core import ramp
from appliance.core.balancing import Candidate, LoadBlind
from appliance.core.model import Pool

MIN_TABLE_SIZE = 65537  # Envoy's Maglev default: a prime, ~1.5 % granularity of a member's share at 655 members
ENTRIES_PER_MEMBER = 100  # Maglev paper: M >= 100 N keeps each member's share within ~1 % of its weight
MAX_PROBES = 32  # table probes before the slot-order walk; a miss needs (1 - eligible share) ** 32
TABLE_CACHE = 8  # tables kept by (names, ratios): a reload that keeps a pool's members does not rebuild

_IPV4_MAPPED = b"::ffff:"
_KEY_PERSON = b"ip_hash.key"
_MEMBER_PERSON = b"ip_hash.member"


def masked_key(key: bytes, hash_mask: int) -> bytes:
    """The bytes `ip_hash` hashes for client address `key` under `hash_mask`.

    IPv4 (also IPv4-mapped IPv6): the address with all but the first
    `hash_mask` bits cleared, as dotted text (32: the address as given).
    IPv6 and anything that is not an IPv4 address: `key` as given.
    """
    if key[:7].lower() == _IPV4_MAPPED and b"." in key:
        key = key[7:]
    elif b":" in key:
        return key
    if hash_mask >= 32:
        return key
    try:
        a, b, c, d = map(int, key.split(b"."))
    except ValueError:  # not four numbers
        return key
    if not 0 <= a | b | c | d <= 255:  # the OR is above 255 if one is, negative if one is
        return key
    value = (a << 24) | (b << 16) | (c << 8) | d
    value &= (0xFFFFFFFF << (32 - max(hash_mask, 0))) & 0xFFFFFFFF
    return b"%d.%d.%d.%d" % (value >> 24, (value >> 16) & 255, (value >> 8) & 255, value & 255)


def table_size(members: int) -> int:
    """The prime number of table entries for a pool of `members`."""
    size = max(MIN_TABLE_SIZE, ENTRIES_PER_MEMBER * members)
    while not _is_prime(size):
        size += 1
    return size


def _is_prime(n: int) -> bool:
    if n < 2 or n % 2 == 0:
        return n == 2
    d = 3
    while d * d <= n:
        if n % d == 0:
            return False
        d += 2
    return True


@lru_cache(maxsize=TABLE_CACHE)
def maglev_table(members: tuple[tuple[str, int], ...], size: int) -> tuple[int, ...]:
    """Weighted Maglev: entry -> index into `members` ((name, ratio) pairs); `size` must be prime."""
    count = len(members)
    if count == 0:
        return ()
    weights = [max(1, ratio) for _, ratio in members]
    top = max(weights)
    position: list[int] = []
    skip: list[int] = []
    for name, _ in members:
        digest = blake2b(name.encode(), digest_size=16, person=_MEMBER_PERSON).digest()
        position.append(int.from_bytes(digest[:8], "little") % size)
        skip.append(int.from_bytes(digest[8:], "little") % (size - 1) + 1)
    turns = [0] * count  # entries taken so far
    table = [-1] * size
    filled = 0
    iteration = 0
    while True:
        for i in range(count):
            if iteration * weights[i] < turns[i] * top:
                continue  # not this member's turn yet: it takes ratio/top of the rounds
            turns[i] += 1
            c = position[i]
            step = skip[i]
            while table[c] >= 0:
                c += step
                if c >= size:
                    c -= size
            table[c] = i
            c += step
            position[i] = c - size if c >= size else c
            filled += 1
            if filled == size:
                return tuple(table)
        iteration += 1


class IpHash(LoadBlind):
    __slots__ = (
        "_by_slot", "_candidates", "_hash_mask", "_names", "_size", "_slots", "_slow_ramp", "_table", "_top_start",
    )  # fmt: skip

    def __init__(self, pool: Pool) -> None:
        self._names = tuple(m.name for m in pool.members)
        self._hash_mask = pool.hash_mask
        self._slow_ramp = pool.slow_ramp
        self._size = table_size(len(pool.members))
        self._table = maglev_table(tuple((m.name, m.ratio) for m in pool.members), self._size)
        # Per candidates tuple (identity): pool slot -> candidate, candidates' slots, earliest ramp start.
        self._candidates: Sequence[Candidate] | None = None
        self._by_slot: list[Candidate | None] = []
        self._slots: list[int] = []
        self._top_start: float | None = None

    def _see(self, candidates: Sequence[Candidate]) -> None:
        by_slot: list[Candidate | None] = [None] * len(self._names)
        starts: list[float] = []
        never_ramped = False
        for c in candidates:
            if 0 <= c.slot < len(by_slot) and self._names[c.slot] == c.name:
                by_slot[c.slot] = c  # a stranger is reachable through the walk only
            if c.ramp_start is None:
                never_ramped = True
            else:
                starts.append(c.ramp_start)
        self._candidates = candidates
        self._by_slot = by_slot
        self._slots = [c.slot for c in candidates]
        self._top_start = None if never_ramped or not starts else min(starts)

    def pick(
        self, candidates: Sequence[Candidate], key: bytes | None, avoid: Container[str], now: float
    ) -> Candidate | None:
        if not candidates:
            return None
        if candidates is not self._candidates:
            self._see(candidates)
        digest = blake2b(masked_key(key or b"", self._hash_mask), digest_size=16, person=_KEY_PERSON).digest()
        h1 = int.from_bytes(digest[:8], "little")
        h2 = int.from_bytes(digest[8:], "little")
        share = (h2 >> 32) / 4294967296.0  # u in [0, 1): this key's place in every member's ramp
        fallback: Candidate | None = None  # the first ramping member that refused the key
        size = self._size
        if size:
            table = self._table
            by_slot = self._by_slot
            entry = h1 % size
            step = (h2 & 0xFFFFFFFF) % (size - 1) + 1
            for _ in range(MAX_PROBES):
                member = by_slot[table[entry]]
                if member is not None and member.available and member.name not in avoid:
                    if member.ramp_start is None or self._accepts(member, share, now):
                        return member
                    if fallback is None:
                        fallback = member
                entry += step
                if entry >= size:
                    entry -= size
        count = len(candidates)
        start = bisect_left(self._slots, h1 % max(1, len(self._names)))
        for offset in range(count):
            member = candidates[(start + offset) % count]
            if member.available and member.name not in avoid:
                if member.ramp_start is None or self._accepts(member, share, now):
                    return member
                if fallback is None:
                    fallback = member
        return fallback

    def _accepts(self, member: Candidate, share: float, now: float) -> bool:
        """Whether a ramping member takes a key whose ramp fraction is `share`."""
        factor = ramp.factor(member.ramp_start, self._slow_ramp, now)
        if factor < 1.0 and self._top_start is not None:  # every candidate ramps: relative to the most advanced
            factor /= ramp.factor(self._top_start, self._slow_ramp, now)
        return share < factor

    def __repr__(self) -> str:
        return f"<IpHash {len(self._names)} members, table {self._size}, hash_mask /{self._hash_mask}>"
