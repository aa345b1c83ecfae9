"""The HA peer heartbeat on the wire: adverts and state sync, signed and checked.

Theory of operation
-------------------
Peers send each other UDP datagrams of two kinds in one versioned frame:
``Advert`` (every ``advert_interval``: who I am, my priority, my state) and
``Sync`` (runtime admin changes made on the master, as an opaque JSON payload
with the sender's increasing change number, ``generation``). Every frame ends
in an HMAC-SHA256 over all the bytes before it.

Frame (network byte order, no padding; ``n`` = node length, ``p`` = payload length)::

    offset  size  field
    0       2     magic b"HA"
    2       1     version (1)
    3       1     kind: 1 = ADVERT, 2 = SYNC
    4       8     epoch (u64)
    12      8     counter (u64)
    20      8     timestamp (f64, sender's wall clock, seconds)
    ADVERT:
    28      1     priority (u8, 0..255)
    29      1     state (u8: 0 init, 1 backup, 2 master, 3 fault)
    30      8     advert_interval (f64, seconds)
    38      1     n (u8, 1..64)
    39      n     node name (UTF-8)
    39+n    32    HMAC-SHA256 of all the bytes before it
    SYNC:
    28      8     generation (u64)
    36      1     n (u8, 1..64)
    37      2     p (u16, <= MAX_PAYLOAD)
    39      n     node name (UTF-8)
    39+n    p     payload
    39+n+p  32    HMAC-SHA256 of all the bytes before it

Both kinds have a 39-byte fixed head; an advert from node "lb-a" is 75 bytes.
The MAC is always the datagram's last 32 bytes, whatever the version.

Key. ``derive_key(check_secret(file bytes))`` = HMAC-SHA256(secret, LABEL): the
same ``ha.secret_file`` also keys persistence cookies, under another label
(``controlplane/keys.py``), so neither use can be turned against the other.

Decoding (``decode``) checks size and magic, then version, then kind and
length, then the MAC, then field values, then the sender's name; the first
failure raises ``Rejected`` of one kind:

- ``malformed``: larger than ``MAX_FRAME``, wrong magic, unknown kind, length
  not what the head says (truncated, trailing bytes), and, once the MAC holds,
  fields out of range (state code, NaN or infinite times, bad UTF-8, empty node);
- ``version``: the magic is ours but the version is not (a peer on another
  release). Checked before the MAC, so it can be unauthenticated: count it, log it;
- ``mac``: the MAC does not match: a forgery, corruption, or **the peers' secrets
  differ**;
- ``self``: the sender uses our own node name: our packet reflected back to us,
  or two nodes configured with one name.

Anti-replay (``ReplayGuard``, after a successful decode), per sender node and
message kind (so a sync overtaken by an advert on the wire is not lost):

- ``stale``: ``|now - timestamp| > window``. This bounds how long a captured
  packet stays useful, and lets a restarted peer (a new random ``epoch``) be
  believed. **The two peers' wall clocks must agree within the window** (run
  NTP on both); the shell picks it, ``default_window`` suggests
  ``max(10 s, 10 x advert_interval)``.
- ``replay``: within the current epoch, a counter not above the highest seen;
  from another epoch, a timestamp not after the latest accepted one (the old
  process's packets replayed after a restart).

A rejected message changes nothing in the guard. Every rejection is counted
(``RejectCounts``) and logged through ``LogLimiter`` (once per interval per
source). Log ``mac`` and ``stale`` loudly: a secret mismatch or clock skew
makes each peer drop the other's adverts, and *both* become master (RFC 5798
§9's reason for dropping VRRP authentication; keepalived's auth_hmac advice).

What this does not do: hide anything (frames are signed, not encrypted), or
stop a flood of garbage (each costs one HMAC; the counters and log limiter keep
memory and logs bounded).

The core holds no source of randomness or time: the shell passes ``epoch``
(``new_epoch(os.urandom(8))``) and every ``now``.
"""

from __future__ import annotations

import hashlib
import hmac
import math
import struct
from dataclasses import dataclass, field
from typing import Literal, TypeAlias

MAGIC = b"HA"
VERSION = 1
ADVERT = 1  # kind byte
SYNC = 2
LABEL = b"appliance ha advert v1"  # domain separation: the cookie key uses another label
MAC_SIZE = 32  # HMAC-SHA256, untruncated
MAX_NODE = 64  # bytes of UTF-8; config names are at most 64 characters of ASCII
MAX_FRAME = 65_507  # the largest UDP payload over IPv4
_ADVERT = struct.Struct("!2sBBQQdBBdB")  # magic, version, kind, epoch, counter, timestamp, priority, state, interval, node len
_SYNC = struct.Struct("!2sBBQQdQBH")  # magic, version, kind, epoch, counter, timestamp, generation, node len, payload len
MAX_PAYLOAD = MAX_FRAME - _SYNC.size - MAX_NODE - MAC_SIZE  # 65,372: one sync fits one datagram
U64 = 2**64 - 1
STATES = ("init", "backup", "master", "fault")  # wire code = index
_STATE_CODE = {name: code for code, name in enumerate(STATES)}
EPOCH_BYTES = 8
MIN_SECRET = 16  # bytes after stripping whitespace: 128 bits if random
MIN_DISTINCT = 8  # distinct byte values: refuses "aaaa..." and "abab..." style fillers
MIN_WINDOW = 10.0  # seconds: NTP-synced peers agree far better; a captured packet lives no longer
WINDOW_ADVERTS = 10  # adverts per window at long intervals
MAX_SOURCES = 256  # sources tracked by RejectCounts and LogLimiter; further ones share OTHER
OTHER = "other"

RejectKind: TypeAlias = Literal["malformed", "version", "mac", "replay", "stale", "self"]
REJECT_KINDS: tuple[RejectKind, ...] = ("malformed", "version", "mac", "replay", "stale", "self")


class Rejected(Exception):
    """A datagram that is dropped; ``kind`` is what the counters count, ``reason`` what the log says."""

    def __init__(self, reason: str, kind: RejectKind) -> None:
        super().__init__(f"{kind}: {reason}")
        self.reason = reason
        self.kind = kind


def _check_common(node: str, epoch: int, counter: int, timestamp: float) -> None:
    raw = node.encode("utf-8")
    if not raw or len(raw) > MAX_NODE or not node.isprintable():
        raise ValueError(f"node name must be 1..{MAX_NODE} bytes of printable UTF-8, got {node!r}")
    for name, value in (("epoch", epoch), ("counter", counter)):
        if not 0 <= value <= U64:
            raise ValueError(f"{name} must fit in 64 unsigned bits, got {value}")
    if not math.isfinite(timestamp):
        raise ValueError(f"timestamp must be finite, got {timestamp}")


@dataclass(frozen=True, slots=True, kw_only=True)
class Advert:
    """I am ``node``, at ``priority`` in ``state``; I send every ``advert_interval`` seconds."""

    node: str
    priority: int  # 0..255 on the wire; 0 = a master stepping down (VRRP)
    state: str  # one of STATES
    epoch: int  # random per process start
    counter: int  # increases with every message the process sends
    timestamp: float  # sender's wall clock, seconds since the epoch
    advert_interval: float

    def __post_init__(self) -> None:
        _check_common(self.node, self.epoch, self.counter, self.timestamp)
        if not 0 <= self.priority <= 255:
            raise ValueError(f"priority must be 0..255, got {self.priority}")
        if self.state not in _STATE_CODE:
            raise ValueError(f"state must be one of {', '.join(STATES)}, got {self.state!r}")
        if not (math.isfinite(self.advert_interval) and self.advert_interval > 0):
            raise ValueError(f"advert_interval must be a positive number of seconds, got {self.advert_interval}")


@dataclass(frozen=True, slots=True, kw_only=True)
class Sync:
    """Runtime changes from ``node``, its change number ``generation``; ``payload`` is opaque JSON here."""

    node: str
    epoch: int
    counter: int
    timestamp: float
    generation: int  # the sender's change number, increasing
    payload: bytes = field(repr=False)

    def __post_init__(self) -> None:
        _check_common(self.node, self.epoch, self.counter, self.timestamp)
        if not 0 <= self.generation <= U64:
            raise ValueError(f"generation must fit in 64 unsigned bits, got {self.generation}")
        if len(self.payload) > MAX_PAYLOAD:
            raise ValueError(f"sync payload is {len(self.payload)} bytes; at most {MAX_PAYLOAD} fit one datagram")


Message: TypeAlias = Advert | Sync


# ---------------------------------------------------------------- the secret and the key


def check_secret(data: bytes) -> bytes:
    """The shared secret: the file's content without surrounding whitespace.

    The rule is a guard against mistakes, not a measure of entropy: at least
    ``MIN_SECRET`` (16) bytes, of at least ``MIN_DISTINCT`` (8) distinct values.
    It refuses an empty file, a short password, and fillers like ``aaaa...`` or
    ``0000...0001``; a long memorable phrase passes it and is still guessable.
    Make secrets with ``head -c 32 /dev/urandom | base64`` (hex works too).

    Raises:
        ValueError: why the secret is refused; the shell names the file.
    """
    secret = data.strip()
    hint = "; make one with: head -c 32 /dev/urandom | base64 > FILE"
    if not secret:
        raise ValueError(f"is empty{hint}")
    if len(secret) < MIN_SECRET:
        raise ValueError(f"is too short: {len(secret)} bytes, at least {MIN_SECRET} are needed{hint}")
    distinct = len(set(secret))
    if distinct < MIN_DISTINCT:
        raise ValueError(
            f"is too regular: {distinct} distinct byte values, at least {MIN_DISTINCT} are needed{hint}"
        )
    return secret


def derive_key(secret: bytes) -> bytes:
    """The MAC key: HMAC-SHA256(secret, LABEL); pass ``check_secret``'s result."""
    return hmac.digest(secret, LABEL, hashlib.sha256)


def new_epoch(raw: bytes) -> int:
    """An epoch from ``EPOCH_BYTES`` random bytes the shell draws (``os.urandom(8)``) at start."""
    if len(raw) != EPOCH_BYTES:
        raise ValueError(f"an epoch takes {EPOCH_BYTES} random bytes, got {len(raw)}")
    return int.from_bytes(raw, "big")


def default_window(advert_interval: float) -> float:
    """A sensible anti-replay window: ``max(MIN_WINDOW, WINDOW_ADVERTS x advert_interval)``."""
    return max(MIN_WINDOW, WINDOW_ADVERTS * advert_interval)


# ---------------------------------------------------------------- encode / decode


def encode(message: Message, key: bytes) -> bytes:
    """The signed datagram for ``message``."""
    node = message.node.encode("utf-8")
    if isinstance(message, Advert):
        head = _ADVERT.pack(
            MAGIC, VERSION, ADVERT, message.epoch, message.counter, message.timestamp,
            message.priority, _STATE_CODE[message.state], message.advert_interval, len(node),
        )
        body = head + node
    else:
        head = _SYNC.pack(
            MAGIC, VERSION, SYNC, message.epoch, message.counter, message.timestamp,
            message.generation, len(node), len(message.payload),
        )
        body = head + node + message.payload
    return body + hmac.digest(key, body, hashlib.sha256)


def decode(data: bytes, key: bytes, *, own_node: str | None = None) -> Message:
    """The message in ``data`` if it is well formed, ours to read, and signed with ``key``.

    ``own_node``: this node's name; a message claiming it is refused as ``self``.
    The shell should always pass it.

    Raises:
        Rejected: with kind malformed, version, mac or self (see the module's notes).
    """
    size = len(data)
    if size > MAX_FRAME:
        raise Rejected(f"{size} bytes, larger than any frame ({MAX_FRAME})", "malformed")
    if size < 4 or data[:2] != MAGIC:
        raise Rejected(f"not a heartbeat frame ({size} bytes, starts {bytes(data[:4])!r})", "malformed")
    if data[2] != VERSION:
        raise Rejected(f"frame version {data[2]}, this node speaks {VERSION}", "version")
    kind = data[3]
    if kind not in (ADVERT, SYNC):
        raise Rejected(f"unknown message kind {kind}", "malformed")
    layout = _ADVERT if kind == ADVERT else _SYNC
    if size < layout.size + MAC_SIZE:
        raise Rejected(f"truncated: {size} bytes, a frame of kind {kind} has at least {layout.size + MAC_SIZE}", "malformed")
    fields = layout.unpack_from(data)
    if kind == ADVERT:
        node_len, payload_len = fields[-1], 0
    else:
        node_len, payload_len = fields[-2], fields[-1]
    expected = layout.size + node_len + payload_len + MAC_SIZE
    if size != expected:
        raise Rejected(f"{size} bytes where its head announces {expected}", "malformed")
    body = data[: size - MAC_SIZE]
    if not hmac.compare_digest(hmac.digest(key, body, hashlib.sha256), data[size - MAC_SIZE :]):
        raise Rejected("bad MAC: forged, corrupted, or the peers' secret files differ", "mac")
    node_raw = data[layout.size : layout.size + node_len]
    try:
        node = bytes(node_raw).decode("utf-8")
        message: Message
        if kind == ADVERT:
            _, _, _, epoch, counter, timestamp, priority, state, interval, _ = fields
            if state >= len(STATES):
                raise ValueError(f"unknown state code {state}")
            message = Advert(
                node=node, priority=priority, state=STATES[state], epoch=epoch,
                counter=counter, timestamp=timestamp, advert_interval=interval,
            )
        else:
            _, _, _, epoch, counter, timestamp, generation, _, _ = fields
            payload = bytes(data[layout.size + node_len : size - MAC_SIZE])
            message = Sync(
                node=node, epoch=epoch, counter=counter, timestamp=timestamp,
                generation=generation, payload=payload,
            )
    except ValueError as exc:  # UnicodeDecodeError is a ValueError
        raise Rejected(f"signed but invalid: {exc}", "malformed") from None
    if own_node is not None and node == own_node:
        raise Rejected(f"sender uses our own node name {node!r} (a reflected packet, or two nodes share a name)", "self")
    return message


# ---------------------------------------------------------------- anti-replay


@dataclass(frozen=True, slots=True)
class _Seen:
    epoch: int
    counter: int  # highest accepted in this epoch
    timestamp: float  # latest accepted timestamp in this epoch


class ReplayGuard:
    """Drops stale and replayed messages; remembers, per sender node and kind, its epoch and highest counter.

    Memory grows only with nodes that passed the MAC, that is with the peers.
    """

    def __init__(self, window: float) -> None:
        if not (math.isfinite(window) and window > 0):
            raise ValueError(f"window must be a positive number of seconds, got {window}")
        self.window = window
        self._seen: dict[tuple[str, type[Advert | Sync]], _Seen] = {}

    def check(self, message: Message, now_wall: float) -> None:
        """Accepts ``message`` (and remembers it) or raises; a rejection changes nothing.

        Raises:
            Rejected: kind ``stale`` or ``replay``.
        """
        skew = message.timestamp - now_wall
        if not abs(skew) <= self.window:
            raise Rejected(
                f"timestamp from {message.node} is {skew:+.1f}s from our clock, outside the ±{self.window:g}s window "
                "(are both peers' clocks synchronised?)",
                "stale",
            )
        key = (message.node, type(message))
        seen = self._seen.get(key)
        if seen is not None and message.epoch == seen.epoch:
            if message.counter <= seen.counter:
                raise Rejected(
                    f"counter {message.counter} from {message.node} not above {seen.counter} already seen "
                    f"in epoch {message.epoch:016x}",
                    "replay",
                )
            self._seen[key] = _Seen(message.epoch, message.counter, max(seen.timestamp, message.timestamp))
            return
        if seen is not None and message.timestamp <= seen.timestamp:
            raise Rejected(
                f"epoch {message.epoch:016x} from {message.node} dated {-skew:.1f}s ago, not after the "
                f"latest of its current epoch {seen.epoch:016x}",
                "replay",
            )
        self._seen[key] = _Seen(message.epoch, message.counter, message.timestamp)  # first sight, or a restart

    def epoch_of(self, node: str) -> int | None:
        """The epoch last accepted from ``node``'s adverts (a change means the peer restarted)."""
        seen = self._seen.get((node, Advert))
        return None if seen is None else seen.epoch


class Sequencer:
    """Stamps this process's outgoing messages: one epoch, one counter across both kinds."""

    def __init__(self, *, node: str, epoch: int, counter: int = 0) -> None:
        _check_common(node, epoch, counter, 0.0)
        self.node = node
        self.epoch = epoch
        self.counter = counter  # the last one used

    def _next(self) -> int:
        self.counter += 1
        return self.counter

    def advert(self, *, priority: int, state: str, advert_interval: float, now_wall: float) -> Advert:
        return Advert(
            node=self.node, priority=priority, state=state, epoch=self.epoch, counter=self._next(),
            timestamp=now_wall, advert_interval=advert_interval,
        )

    def sync(self, *, generation: int, payload: bytes, now_wall: float) -> Sync:
        return Sync(
            node=self.node, epoch=self.epoch, counter=self._next(), timestamp=now_wall,
            generation=generation, payload=payload,
        )


# ---------------------------------------------------------------- counting and logging rejections


class RejectCounts:
    """Rejections per (source, kind); source is the sender's address as the shell writes it.

    Sources beyond ``max_sources`` (spoofed addresses are free) are counted
    together under ``OTHER``, so memory stays bounded.
    """

    def __init__(self, max_sources: int = MAX_SOURCES) -> None:
        self.max_sources = max_sources
        self._counts: dict[tuple[str, RejectKind], int] = {}
        self._sources: set[str] = set()

    def add(self, source: str, kind: RejectKind) -> int:
        """Counts one rejection; returns the new count for (source, kind)."""
        if source not in self._sources:
            if len(self._sources) >= self.max_sources:
                source = OTHER
            self._sources.add(source)
        count = self._counts.get((source, kind), 0) + 1
        self._counts[(source, kind)] = count
        return count

    def get(self, source: str, kind: RejectKind) -> int:
        return self._counts.get((source, kind), 0)

    def by_kind(self) -> dict[RejectKind, int]:
        """Totals per kind, every kind present (for metrics)."""
        totals: dict[RejectKind, int] = dict.fromkeys(REJECT_KINDS, 0)
        for (_, kind), count in self._counts.items():
            totals[kind] += count
        return totals

    def items(self) -> dict[tuple[str, RejectKind], int]:
        return dict(self._counts)


@dataclass(slots=True)
class _LogSlot:
    last: float
    suppressed: int = 0


class LogLimiter:
    """Lets one log line per ``interval`` through per source; counts the rest.

    Pass a monotonic ``now``. Sources idle for an interval are forgotten when
    more than ``max_sources`` are tracked; new sources beyond that share ``OTHER``.
    """

    def __init__(self, interval: float, max_sources: int = MAX_SOURCES) -> None:
        if not (math.isfinite(interval) and interval >= 0):
            raise ValueError(f"interval must be a non-negative number of seconds, got {interval}")
        self.interval = interval
        self.max_sources = max_sources
        self.suppressed = 0  # lines held back in all, ever
        self._slots: dict[str, _LogSlot] = {}

    def admit(self, source: str, now: float) -> int | None:
        """None: suppress this line. Else log it, noting the count suppressed for this source since its last line."""
        slot = self._slots.get(source)
        if slot is None:
            if len(self._slots) >= self.max_sources:
                self._slots = {s: v for s, v in self._slots.items() if now - v.last < self.interval}
            if len(self._slots) >= self.max_sources and source != OTHER:
                return self.admit(OTHER, now)
            self._slots[source] = _LogSlot(now)
            return 0
        if now - slot.last < self.interval:
            slot.suppressed += 1
            self.suppressed += 1
            return None
        held, slot.last, slot.suppressed = slot.suppressed, now, 0
        return held

    def allow(self, source: str, now: float) -> bool:
        """Whether to log this line for ``source`` now."""
        return self.admit(source, now) is not None
