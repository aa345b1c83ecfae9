"""SNAT source-address selection: which local address an upstream connection binds.

Theory of operation
-------------------
Addresses. ``compose`` turns a SNAT pool into its address list: the pool's own
``addresses``, then for each ``draw`` the first ``count`` of that address set in
its declared order (a short set gives what it has). An address listed twice
keeps its first place. The same config gives the same list on every node.

Lanes. Each LB pool that uses the SNAT pool gets a *lane*, made on its first
pick: its own rotation cursor, quarantine, pacing and counters over the shared
addresses (per-target queues, which F5 snatpools and Envoy lack). Nothing one LB
pool's upstream does moves another's rotation or quarantines its sources.

Pick. Round robin over the current addresses in composed order, starting after
the lane's last choice (the cursor is an address, not an index, so it keeps its
place when addresses come and go). An address is skipped when it is

- in ``avoid``: the caller's list for this one connection (an address that
  answered ``EADDRNOTAVAIL``/``EADDRINUSE``, or whose connect just failed);
- quarantined for this lane: until ``now >= until``;
- paced (``min_interval > 0``): its last pick for this lane was less than
  ``min_interval`` ago. A pick reserves its slot at once, so concurrent picks
  never overshoot the interval; the slot stays used even if the connect fails.

Nothing left: ``Wait(until)`` when some address is only paced (``until`` is the
earliest moment one frees up; the shell waits within the pool's queue
timeout and picks again), otherwise ``Refused(reason)``, counted per lane.

Quarantine (Envoy consecutive-failure ejection, scoped per LB pool and address):
``failed`` adds one to the address's streak; at ``quarantine.failures`` in a row
it is quarantined for ``quarantine.duration``. A successful connect resets the
streak (it does not lift a quarantine already in force). Failures during a
quarantine are counted but do not extend it. At release the streak starts from
0 again: the address gets a full ``failures`` more tries, like an ejected host
returning to Envoy's rotation, not a one-shot half-open probe. Exhaustion
(``exhausted``) is local port shortage, not a bad path: it is counted apart and
never moves the streak.

Runtime changes. ``update`` takes the new spec and composed list. New addresses
are usable at once in every lane. Removed ones drain: no new picks; while any
connection from them is open they stay in ``stats`` (after the current ones);
the last ``closed`` makes them disappear. An address re-added while draining
comes back with its counters and quarantine. A connect racing a removal is
tolerated: ``opened`` on an unknown address records it as draining, ``failed``
and ``exhausted`` on one are ignored. ``closed`` without an open connection is a
bug in the caller and raises, changing nothing.
"""

from __future__ import annotations

from collections.abc import Container, Mapping, Sequence
from dataclasses import dataclass

from appliance.core.model import AddressSet, SnatPool


def compose(pool: SnatPool, sets: Mapping[str, AddressSet]) -> tuple[str, ...]:
    """`pool.addresses`, then each draw's first `count` of its set in declared order; a repeat keeps its first place."""
    out = dict.fromkeys(pool.addresses)
    for draw in pool.draw:
        if draw.source not in sets:
            raise ValueError(f"SNAT pool {pool.name!r} draws from unknown address set {draw.source!r}")
        out.update(dict.fromkeys(sets[draw.source].addresses[: draw.count]))  # update() keeps a known key in place
    return tuple(out)


@dataclass(frozen=True, slots=True)
class Chosen:
    address: str


@dataclass(frozen=True, slots=True)
class Wait:
    until: float  # every usable address is inside min_interval; retry at `until`


@dataclass(frozen=True, slots=True)
class Refused:
    reason: str  # every address quarantined, avoided (exhausted or failed) or draining; counted


Pick = Chosen | Wait | Refused


@dataclass(frozen=True, slots=True, kw_only=True)
class LaneStats:
    """One address as one LB pool sees it."""

    lb_pool: str
    quarantined_until: float | None
    streak: int  # consecutive failed connects
    active: int


@dataclass(frozen=True, slots=True, kw_only=True)
class AddressStats:
    address: str
    draining: bool
    active: int
    total: int
    failures: int
    exhausted: int
    lanes: tuple[LaneStats, ...]  # per LB pool, in order of first pick


class _Track:
    """One address in one lane."""

    __slots__ = ("active", "total", "failures", "exhausted", "streak", "until", "last_pick")

    def __init__(self) -> None:
        self.active = 0
        self.total = 0
        self.failures = 0
        self.exhausted = 0
        self.streak = 0
        self.until: float | None = None  # quarantined until
        self.last_pick: float | None = None

    def release_if_due(self, now: float) -> None:
        if self.until is not None and now >= self.until:
            self.until = None
            self.streak = 0


class _Lane:
    """One LB pool's view of the SNAT pool."""

    __slots__ = ("cursor", "tracks", "refused")

    def __init__(self) -> None:
        self.cursor: str | None = None  # the last address chosen; the next pick starts after it
        self.tracks: dict[str, _Track] = {}
        self.refused = 0

    def track(self, address: str) -> _Track:
        found = self.tracks.get(address)
        if found is None:
            found = self.tracks[address] = _Track()
        return found


class SnatSelector:
    """One SNAT pool's addresses and, per LB pool, its rotation, quarantine and pacing."""

    __slots__ = ("_spec", "_current", "_index", "_draining", "_lanes")

    def __init__(self, spec: SnatPool, addresses: Sequence[str]) -> None:
        self._spec = spec
        self._current: tuple[str, ...] = tuple(dict.fromkeys(addresses))
        self._index = {address: i for i, address in enumerate(self._current)}
        self._draining: dict[str, None] = {}  # removed, with connections still open; in order of removal
        self._lanes: dict[str, _Lane] = {}

    @property
    def spec(self) -> SnatPool:
        return self._spec

    @property
    def addresses(self) -> tuple[str, ...]:
        """The addresses new connections may use, in composed order."""
        return self._current

    @property
    def draining(self) -> tuple[str, ...]:
        return tuple(self._draining)

    def update(self, spec: SnatPool, addresses: Sequence[str]) -> None:
        """A runtime change or reload: new addresses join every rotation now, gone ones drain."""
        old, new = self._current, tuple(dict.fromkeys(addresses))
        kept = set(new)
        for lane in self._lanes.values():
            if lane.cursor is not None and lane.cursor not in kept:
                lane.cursor = self._survivor_before(lane.cursor, kept)
        for address in new:
            self._draining.pop(address, None)
        for address in old:
            if address not in kept:
                if self._active(address):
                    self._draining[address] = None
                else:
                    self._forget(address)
        self._spec, self._current = spec, new
        self._index = {address: i for i, address in enumerate(new)}

    def pick(self, lb_pool: str, now: float, avoid: Container[str] = ()) -> Pick:
        """The next source address for one new connection of `lb_pool` (see the module docstring)."""
        lane = self._lane(lb_pool)
        interval = self._spec.min_interval
        count = len(self._current)
        start = 0 if lane.cursor is None else self._index[lane.cursor] + 1
        avoided = quarantined = 0
        free_at: float | None = None
        for offset in range(count):
            address = self._current[(start + offset) % count]
            if address in avoid:
                avoided += 1
                continue
            track = lane.track(address)
            track.release_if_due(now)
            if track.until is not None:
                quarantined += 1
                continue
            if interval > 0.0 and track.last_pick is not None and now < track.last_pick + interval:
                ready = track.last_pick + interval
                free_at = ready if free_at is None else min(free_at, ready)
                continue
            track.last_pick = now
            lane.cursor = address
            return Chosen(address)
        if free_at is not None:
            return Wait(free_at)
        lane.refused += 1
        return Refused(self._refusal(lb_pool, avoided, quarantined))

    def opened(self, lb_pool: str, address: str, now: float) -> None:
        """A connect from `address` succeeded: streak reset, active + 1, total + 1."""
        if not self._known(address):
            self._draining[address] = None  # removed while this connect was under way
        track = self._lane(lb_pool).track(address)
        track.release_if_due(now)
        track.streak = 0
        track.active += 1
        track.total += 1

    def failed(self, lb_pool: str, address: str, now: float) -> bool:
        """A connect from `address` failed; True when this failure put it into quarantine."""
        if not self._known(address):
            return False
        track = self._lane(lb_pool).track(address)
        track.release_if_due(now)
        track.streak += 1
        track.failures += 1
        if track.until is None and track.streak >= self._spec.quarantine.failures:
            track.until = now + self._spec.quarantine.duration
            return True
        return False

    def exhausted(self, lb_pool: str, address: str, now: float) -> None:
        """`address` had no free port (EADDRNOTAVAIL/EADDRINUSE): counted, never a step toward quarantine."""
        del now  # exhaustion carries no timer; `now` keeps the event methods alike
        if self._known(address):
            self._lane(lb_pool).track(address).exhausted += 1

    def closed(self, lb_pool: str, address: str) -> None:
        """A connection from `address` ended; a draining address with none left disappears."""
        lane = self._lanes.get(lb_pool)
        track = None if lane is None else lane.tracks.get(address)
        if track is None or track.active == 0:
            raise ValueError(f"SNAT pool {self._spec.name!r}: no open connection of pool {lb_pool!r} from {address}")
        track.active -= 1
        if address in self._draining and not self._active(address):
            del self._draining[address]
            self._forget(address)

    def refusals(self) -> dict[str, int]:
        """Per LB pool, how many picks were refused."""
        return {name: lane.refused for name, lane in self._lanes.items()}

    def stats(self, now: float) -> list[AddressStats]:
        """Per address (current in composed order, then draining): counters, and per LB pool its state at `now`."""
        out = []
        for address in (*self._current, *self._draining):
            tracks = [(name, lane.tracks.get(address) or _Track()) for name, lane in self._lanes.items()]
            lanes = tuple(_lane_stats(name, track, now) for name, track in tracks)
            out.append(
                AddressStats(
                    address=address,
                    draining=address in self._draining,
                    active=sum(t.active for _, t in tracks),
                    total=sum(t.total for _, t in tracks),
                    failures=sum(t.failures for _, t in tracks),
                    exhausted=sum(t.exhausted for _, t in tracks),
                    lanes=lanes,
                )
            )
        return out

    def _lane(self, lb_pool: str) -> _Lane:
        lane = self._lanes.get(lb_pool)
        if lane is None:
            lane = self._lanes[lb_pool] = _Lane()
        return lane

    def _known(self, address: str) -> bool:
        return address in self._index or address in self._draining

    def _active(self, address: str) -> int:
        return sum(track.active for lane in self._lanes.values() if (track := lane.tracks.get(address)))

    def _forget(self, address: str) -> None:
        for lane in self._lanes.values():
            lane.tracks.pop(address, None)

    def _survivor_before(self, address: str, kept: set[str]) -> str | None:
        """The nearest earlier address that stays, so the rotation resumes where `address` stood."""
        for earlier in reversed(self._current[: self._index[address]]):
            if earlier in kept:
                return earlier
        return None

    def _refusal(self, lb_pool: str, avoided: int, quarantined: int) -> str:
        where = f"SNAT pool {self._spec.name!r} has no source address for pool {lb_pool!r}"
        if not self._current:
            draining = f" ({len(self._draining)} draining)" if self._draining else ""
            return f"{where}: it has no addresses{draining}"
        causes = [f"{quarantined} quarantined"] if quarantined else []
        if avoided:
            causes.append(f"{avoided} out of ports or failed on this connection")
        return f"{where}: {', '.join(causes)}"

    def __repr__(self) -> str:
        active = sum(self._active(address) for address in (*self._current, *self._draining))
        return (
            f"<SnatSelector {self._spec.name} [{len(self._current)} addresses, "
            f"{len(self._draining)} draining | {active} active]>"
        )


def _lane_stats(lb_pool: str, track: _Track, now: float) -> LaneStats:
    quarantined = track.until is not None and now < track.until
    return LaneStats(
        lb_pool=lb_pool,
        quarantined_until=track.until if quarantined else None,
        streak=track.streak if quarantined or track.until is None else 0,
        active=track.active,
    )
