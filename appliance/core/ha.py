"""The HA election: which node of an active/passive pair is master.

Theory of operation
-------------------
States (``HaState``): ``INIT`` (not running: before ``start`` and after
``shutdown``), ``BACKUP``, ``MASTER``, ``FAULT`` (a tracked pool took the
effective priority down to 0: this node cannot serve and stands aside).

Inputs, each at an explicit ``now`` that never goes backwards:
``start(now)``, ``on_timer(now)``, ``on_advert(heard, now)``,
``on_track(pool, available, now)``, ``shutdown(now)``. Each returns a
``list[Action]``: ``BecomeMaster``, ``BecomeBackup``, ``EnterFault`` (each with
its operator-facing reason, once per transition), and ``SendAdvert`` (to every
peer). ``deadline()`` is the earliest time ``on_timer`` has something to do;
the shell waits until then or a packet, feeds the machine, executes the
actions in order. ``on_advert`` never fires a timer that is due: the shell
calls ``on_timer`` whenever ``now >= deadline()``.

This is VRRP (RFC 5798 / 9568) as keepalived runs it, over unicast peers:

- Rank. Peers are ordered by ``(effective priority, node name)``: the greater
  pair outranks (SPEC: the highest effective priority is master, a tie goes to
  the greater name; VRRP breaks ties by the greater address).
- Timers. Every running node sends an advert on each transition and then every
  ``advert_interval`` (a backup's and a faulted node's adverts only let peers
  see each other; the election acts on adverts in state ``master`` alone). A
  backup holds a *master-down timer*: it becomes master when the timer runs
  out, ``3 × i + skew`` after it was last reset, ``skew = (256 − p)/256 × i``
  with ``p`` its own effective priority *now* (so a tracked pool changes a
  running timer) and ``i`` the interval learned from the master's adverts
  (RFC 5798 §6.4.2; its own interval at start and after a fault). The timer is
  started on entering ``BACKUP`` (keepalived starts as backup: a node alone
  becomes master after one master-down interval) and reset by every accepted
  master advert.
- Backup hearing a master. An outranking master is accepted (timer reset). A
  worse one is accepted too when ``preempt`` is false (a working master stays).
  With ``preempt`` true a worse master is ignored, so the backup takes over
  when its timer runs out. ``preempt_delay`` (keepalived's rule): the first
  advert of a worse master opens a window ``[t, t + preempt_delay)`` during
  which the worse master's adverts are still accepted; later ones are
  ignored. A live worse master is thus replaced at the last advert accepted
  before ``t + preempt_delay`` plus one master-down interval: never before
  ``t + preempt_delay``, and with ``preempt_delay`` 0 at the RFC's time. If
  the worse master dies inside the window, the timer runs out as for any dead
  master (no node waits for a delay while nobody serves). An outranking
  master's advert closes the window; leaving ``BACKUP`` forgets it.
- Priority 0 means "I am leaving": a node sends it on ``shutdown`` (state
  ``init``) and while faulted (state ``fault``). Heard from the node known as
  master, or from any node claiming state ``master``, it cuts the backup's
  timer to ``now + skew`` (RFC 5798 §6.4.2): the best backup, whose skew is
  the shortest, takes over in under one interval.
- Master hearing a master (split brain healing, RFC 5798 §6.4.3): an
  outranking one makes it step down to ``BACKUP`` (timer reset from that
  advert); a worse one (or one at priority 0) is answered at once with this
  node's own advert, so the worse master hears it and steps down without
  waiting for the next periodic advert: a healed partition has one master
  again within one interval. ``preempt`` plays no part between two masters.
- Tracking. ``track`` maps a pool to a weight; the effective priority is the
  configured one minus the weights of the tracked pools with no available
  member, floored at 0. At 0 the node enters ``FAULT`` (its adverts, now at
  priority 0, make a backup take over after ``skew``); above 0 again it
  returns to ``BACKUP`` with a fresh timer. A master whose effective priority
  changes sends an advert at once, so a backup that now outranks it starts
  preempting it without waiting. keepalived clamps a weighted priority to 1
  and faults only on weight 0; here a weight that can reach the priority is
  how an operator says "fault when this pool is gone".

Illegal input raises ``ValueError`` and changes nothing: time going backwards,
any input but ``start``/``on_track``/``shutdown`` while ``INIT``, ``start``
twice, an untracked pool, an advert carrying this node's own name (the wire
format rejects and counts those, so one reaching here is a bug in the shell).
``shutdown`` of a stopped machine does nothing.
"""

from __future__ import annotations

import enum
import math
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType

MAX_TRANSITIONS = 32  # recent transitions kept for the status API; the log has them all
LEAVING = 0  # the priority of a node that gives up mastership (RFC 5798 §5.2.4)
MIN_PRIORITY, MAX_PRIORITY = 1, 254  # configurable priorities; 255 is VRRP's address owner
MAX_WIRE_PRIORITY = 255  # what an advert can carry


class HaState(enum.Enum):
    INIT = "init"
    BACKUP = "backup"
    MASTER = "master"
    FAULT = "fault"


@dataclass(frozen=True, slots=True, kw_only=True)
class Heard:
    """An authenticated advert from a peer, as the election needs it."""

    node: str
    priority: int
    state: HaState
    advert_interval: float

    def __post_init__(self) -> None:
        if not self.node:
            raise ValueError("an advert needs a node name")
        if not 0 <= self.priority <= MAX_WIRE_PRIORITY:
            raise ValueError(f"advert priority must be 0..{MAX_WIRE_PRIORITY}, got {self.priority}")
        if not (math.isfinite(self.advert_interval) and self.advert_interval > 0):
            raise ValueError(f"advert_interval must be > 0, got {self.advert_interval}")


@dataclass(frozen=True, slots=True, kw_only=True)
class SendAdvert:
    """Send this node's advert to every peer now."""

    priority: int
    state: HaState


@dataclass(frozen=True, slots=True, kw_only=True)
class BecomeMaster:
    """Bind the governed listeners, run the master hooks."""

    reason: str


@dataclass(frozen=True, slots=True, kw_only=True)
class BecomeBackup:
    """Stop accepting on the governed listeners (connections finish), run the backup hooks."""

    reason: str


@dataclass(frozen=True, slots=True, kw_only=True)
class EnterFault:
    """As ``BecomeBackup``, and run the fault hooks instead."""

    reason: str


Action = SendAdvert | BecomeMaster | BecomeBackup | EnterFault


@dataclass(frozen=True, slots=True, kw_only=True)
class PeerView:
    """The last advert heard from one peer."""

    state: HaState
    priority: int
    advert_interval: float
    last_heard: float


@dataclass(frozen=True, slots=True, kw_only=True)
class Transition:
    at: float
    old: HaState
    new: HaState
    reason: str


def skew_time(priority: int, advert_interval: float) -> float:
    """RFC 5798 §6.1: the better the priority, the sooner a backup acts."""
    return (256 - priority) * advert_interval / 256


def master_down_interval(priority: int, advert_interval: float) -> float:
    """RFC 5798 §6.1: how long a backup waits without a master before taking over."""
    return 3 * advert_interval + skew_time(priority, advert_interval)


def _secs(seconds: float) -> str:
    return f"{seconds:.1f}s"


class Election:
    """The election state of this node; one instance per running HA section."""

    __slots__ = (
        "_down",
        "_down_from",
        "_down_full",
        "_down_interval",
        "_followed",
        "_ignored",
        "_leaving",
        "_master",
        "_next_advert",
        "_now",
        "_peers",
        "_preempt_until",
        "_since",
        "_state",
        "_track",
        "_transitions",
        "advert_interval",
        "node",
        "preempt",
        "preempt_delay",
        "priority",
    )

    def __init__(
        self,
        *,
        node: str,
        priority: int,
        advert_interval: float,
        preempt: bool = True,
        preempt_delay: float = 0.0,
        track: Mapping[str, int] | None = None,
        now: float,
    ) -> None:
        track = dict(track or {})
        if not node:
            raise ValueError("node name must not be empty")
        if not MIN_PRIORITY <= priority <= MAX_PRIORITY:
            raise ValueError(f"priority must be {MIN_PRIORITY}..{MAX_PRIORITY}, got {priority}")
        if not (math.isfinite(advert_interval) and advert_interval > 0):
            raise ValueError(f"advert_interval must be > 0, got {advert_interval}")
        if not (math.isfinite(preempt_delay) and preempt_delay >= 0):
            raise ValueError(f"preempt_delay must be >= 0, got {preempt_delay}")
        bad = {pool: weight for pool, weight in track.items() if weight < 1}
        if bad:
            raise ValueError(f"track weights must be >= 1, got {bad}")
        self.node = node
        self.priority = priority
        self.advert_interval = advert_interval
        self.preempt = preempt
        self.preempt_delay = preempt_delay
        self._track = track
        self._state = HaState.INIT
        self._since = now
        self._now = now
        self._down: set[str] = set()  # tracked pools with no available member
        self._next_advert = math.inf
        # The master-down timer (BACKUP only), derived so that it follows the
        # effective priority: _down_from + (3 × i if _down_full) + skew(p, i).
        self._down_from = math.inf
        self._down_interval = advert_interval
        self._down_full = True
        self._followed: str | None = None  # whose advert last reset the timer (for the reason)
        self._leaving: str | None = None  # the master whose priority 0 cut the timer to skew
        self._ignored: str | None = None  # the worse master being preempted
        self._preempt_until: float | None = None
        self._master: str | None = None
        self._peers: dict[str, PeerView] = {}
        self._transitions: deque[Transition] = deque(maxlen=MAX_TRANSITIONS)

    # ------------------------------------------------------------ the view

    @property
    def track(self) -> Mapping[str, int]:
        """Tracked pool -> the priority it takes away while it has no available member."""
        return MappingProxyType(self._track)

    @property
    def state(self) -> HaState:
        return self._state

    @property
    def since(self) -> float:
        """When the current state was entered."""
        return self._since

    @property
    def effective_priority(self) -> int:
        lost = sum(self._track[pool] for pool in self._down)
        return max(0, self.priority - lost)

    @property
    def master(self) -> str | None:
        """The node known to be master: this one, the last to advertise as master, or None."""
        return self._master

    @property
    def peers(self) -> dict[str, PeerView]:
        return dict(self._peers)

    @property
    def transitions(self) -> tuple[Transition, ...]:
        """The recent transitions, oldest first."""
        return tuple(self._transitions)

    @property
    def master_down_at(self) -> float:
        """When this backup takes over unless a master is heard; infinity in other states."""
        if self._state is not HaState.BACKUP:
            return math.inf
        i = self._down_interval
        p = self.effective_priority
        return self._down_from + (master_down_interval(p, i) if self._down_full else skew_time(p, i))

    def deadline(self) -> float:
        """The earliest time ``on_timer`` acts; infinity while ``INIT``."""
        return min(self._next_advert, self.master_down_at)

    # ------------------------------------------------------------ inputs

    def start(self, now: float) -> list[Action]:
        """INIT -> BACKUP with a fresh master-down timer (FAULT if a tracked pool forbids)."""
        self._check_time(now)
        if self._state is not HaState.INIT:
            raise ValueError(f"ha {self.node}: start while {self._state.value}")
        self._now = now
        if self.effective_priority == LEAVING:
            return self._transition(HaState.FAULT, now, f"started with {self._track_text()}: priority 0")
        self._restart_timer(now)
        wait = master_down_interval(self.effective_priority, self.advert_interval)
        return self._transition(HaState.BACKUP, now, f"started: waiting {_secs(wait)} for a master")

    def on_timer(self, now: float) -> list[Action]:
        """Takes over when the master-down timer has run out; sends the periodic advert."""
        self._check_time(now)
        self._check_running("on_timer")
        self._now = now
        if now >= self.master_down_at:
            reason = self._takeover_reason(now)
            return self._transition(HaState.MASTER, now, reason)
        if now >= self._next_advert:
            return [self._advert(now)]
        return []

    def on_advert(self, heard: Heard, now: float) -> list[Action]:
        """One authenticated advert from a peer."""
        self._check_time(now)
        self._check_running("on_advert")
        if heard.node == self.node:
            raise ValueError(f"ha {self.node}: an advert carrying this node's own name reached the election")
        self._now = now
        self._peers[heard.node] = PeerView(
            state=heard.state, priority=heard.priority, advert_interval=heard.advert_interval, last_heard=now
        )
        if self._state is HaState.MASTER:
            return self._master_hears(heard, now)
        leaving = heard.priority == LEAVING and (heard.state is HaState.MASTER or heard.node == self._master)
        if heard.state is HaState.MASTER and heard.priority != LEAVING:
            self._master = heard.node
        elif heard.node == self._master:
            self._master = None  # it says it no longer is
        if self._state is HaState.BACKUP:
            return self._backup_hears(heard, leaving, now)
        return []  # FAULT: watch only

    def on_track(self, pool: str, available: bool, now: float) -> list[Action]:
        """A tracked pool gained its first available member, or lost its last one."""
        self._check_time(now)
        if pool not in self._track:
            raise ValueError(f"ha {self.node}: pool {pool!r} is not tracked")
        self._now = now
        before = self.effective_priority
        if available:
            self._down.discard(pool)
        else:
            self._down.add(pool)
        after = self.effective_priority
        if after == before or self._state is HaState.INIT:
            return []
        if after == LEAVING:
            lost = sum(self._track[down] for down in self._down)
            return self._transition(
                HaState.FAULT, now, f"{self._track_text()}: priority {self.priority} - {lost} leaves 0"
            )
        if self._state is HaState.FAULT:
            self._restart_timer(now)
            return self._transition(
                HaState.BACKUP, now, f"pool {pool} has an available member again: priority {after}"
            )
        if self._state is HaState.MASTER:
            return [self._advert(now)]  # a backup that now outranks this node learns it at once
        if now >= self.master_down_at:  # BACKUP: a higher priority shortened the wait to before now
            return self.on_timer(now)
        return []  # BACKUP: master_down_at follows the new skew by itself

    def shutdown(self, now: float) -> list[Action]:
        """Graceful stop: a last advert at priority 0 so that a backup takes over after its skew."""
        self._check_time(now)
        if self._state is HaState.INIT:
            return []
        self._now = now
        self._record(HaState.INIT, now, "shutdown")
        self._master = None
        self._next_advert = math.inf
        self._down_from = math.inf
        return [SendAdvert(priority=LEAVING, state=HaState.INIT)]

    # ------------------------------------------------------------ the rules

    def _backup_hears(self, heard: Heard, leaving: bool, now: float) -> list[Action]:
        if leaving:
            self._preempt_until = None
            if now + skew_time(self.effective_priority, heard.advert_interval) < self.master_down_at:
                self._down_from, self._down_interval, self._down_full = now, heard.advert_interval, False
                self._leaving, self._ignored = heard.node, None
            return []
        if heard.state is not HaState.MASTER:
            return []  # a backup's or faulted peer's advert: for the view only
        if not self.preempt or self._outranks(heard):
            self._preempt_until = None
            self._follow(heard, now)
            return []
        if self._preempt_until is None:
            self._preempt_until = now + self.preempt_delay
        if now < self._preempt_until:
            self._follow(heard, now)  # preempt_delay: the worse master serves a little longer
        else:
            self._ignored = heard.node
        return []

    def _master_hears(self, heard: Heard, now: float) -> list[Action]:
        if heard.state is not HaState.MASTER:
            return []
        if heard.priority != LEAVING and self._outranks(heard):
            self._follow(heard, now)
            actions = self._transition(HaState.BACKUP, now, f"{heard.node} {self._better_text(heard)}")
            self._master = heard.node
            return actions
        return [self._advert(now)]  # two masters: tell the worse one at once

    def _outranks(self, heard: Heard) -> bool:
        return (heard.priority, heard.node) > (self.effective_priority, self.node)

    def _better_text(self, heard: Heard) -> str:
        if heard.priority == self.effective_priority:
            return f"(priority {heard.priority}) is better: same priority, greater name"
        return f"(priority {heard.priority}) is better"

    def _follow(self, heard: Heard, now: float) -> None:
        self._down_from, self._down_interval, self._down_full = now, heard.advert_interval, True
        self._followed, self._leaving, self._ignored = heard.node, None, None

    def _restart_timer(self, now: float) -> None:
        self._down_from, self._down_interval, self._down_full = now, self.advert_interval, True
        self._followed = self._leaving = self._ignored = None
        self._preempt_until = None

    def _takeover_reason(self, now: float) -> str:
        if self._leaving is not None:
            return f"{self._leaving} is leaving (priority 0)"
        ignored = self._peers.get(self._ignored) if self._ignored is not None else None
        if self._ignored is not None and ignored is not None:
            silent = now - ignored.last_heard
            if silent < 3 * ignored.advert_interval:
                delay = f" after preempt_delay {self.preempt_delay:g}s" if self.preempt_delay else ""
                return (
                    f"preempting {self._ignored} (priority {ignored.priority}):"
                    f" this node's priority {self.effective_priority} outranks it{delay}"
                )
            return f"master {self._ignored} silent {_secs(silent)}"
        silent = now - self._down_from
        if self._followed is not None:
            return f"master {self._followed} silent {_secs(silent)}"
        return f"no master heard for {_secs(silent)}"

    def _track_text(self) -> str:
        down = sorted(self._down)
        if len(down) == 1:
            return f"pool {down[0]} has no available member"
        return f"pools {', '.join(down)} have no available member"

    # ------------------------------------------------------------ mechanics

    def _transition(self, new: HaState, now: float, reason: str) -> list[Action]:
        """Records the transition; returns its action and the advert announcing it."""
        self._record(new, now, reason)
        self._preempt_until, self._ignored, self._leaving = None, None, None
        if new is HaState.MASTER:
            self._master = self.node
        elif self._master == self.node:
            self._master = None
        action: Action
        if new is HaState.MASTER:
            action = BecomeMaster(reason=reason)
        elif new is HaState.BACKUP:
            action = BecomeBackup(reason=reason)
        else:
            action = EnterFault(reason=reason)
        return [action, self._advert(now)]

    def _record(self, new: HaState, now: float, reason: str) -> None:
        self._transitions.append(Transition(at=now, old=self._state, new=new, reason=reason))
        self._state, self._since = new, now

    def _advert(self, now: float) -> SendAdvert:
        self._next_advert = now + self.advert_interval
        return SendAdvert(priority=self.effective_priority, state=self._state)

    def _check_time(self, now: float) -> None:
        if not math.isfinite(now) or now < self._now:
            raise ValueError(f"ha {self.node}: time went backwards: {now} < {self._now}")

    def _check_running(self, what: str) -> None:
        if self._state is HaState.INIT:
            raise ValueError(f"ha {self.node}: {what} before start")

    def __repr__(self) -> str:
        master = f" master={self._master}" if self._master and self._master != self.node else ""
        return (
            f"<Election {self.node} {self._state.value} priority {self.effective_priority}/{self.priority}"
            f" since {self._since:g}{master}>"
        )
