"""The health state machine of one member under one monitor.

Theory of operation
-------------------
States: ``UNKNOWN`` (monitored, no verdict yet), ``UP``, ``DOWN``; a member with
no monitor is ``UNCHECKED`` and never enters this machine.

Input: one probe result at a time, ``observe(ok, now, reason)``.

- ``UNKNOWN``: the first result decides at once (F5: a monitored member is
  unknown until its first probe answers), so a fresh appliance serves as soon as
  its first round of checks is back instead of after ``rise`` intervals.
- ``UP``: ``fall`` consecutive failures flip it to ``DOWN``; a success resets
  the count.
- ``DOWN``: ``rise`` consecutive successes flip it to ``UP``; a failure resets
  the count.

One integer (``streak``) counts the results that argue against the current
state, as HAProxy's single health counter does; SPEC's ``rise``/``fall`` are
"consecutive", so an opposite result resets it. Every flip is returned as a
``Flip`` carrying its reason for the single log line and event it produces.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass


class Health(enum.Enum):
    UP = "up"
    DOWN = "down"
    UNKNOWN = "unknown"
    UNCHECKED = "unchecked"

    @property
    def serves(self) -> bool:
        """Whether new traffic may go to a member in this state."""
        return self is Health.UP or self is Health.UNCHECKED


@dataclass(frozen=True, slots=True, kw_only=True)
class Flip:
    old: Health
    new: Health
    at: float
    reason: str


@dataclass(frozen=True, slots=True, kw_only=True)
class CheckResult:
    """The last probe of a member, for the snapshot and the API."""

    ok: bool
    reason: str
    latency: float
    at: float


class LastCheck:
    """The latest probe result of a member, shared by every snapshot that shows it.

    Probes run every few seconds on every member; publishing a new snapshot
    for each would cost O(members) per probe, so the result is written here and
    snapshots are rebuilt only when health flips.
    """

    __slots__ = ("result",)

    def __init__(self) -> None:
        self.result: CheckResult | None = None


class HealthMachine:
    """Rise/fall verdicts of one monitor on one member."""

    __slots__ = ("rise", "fall", "state", "streak", "since")

    def __init__(self, *, rise: int, fall: int, now: float) -> None:
        if rise < 1 or fall < 1:
            raise ValueError(f"rise and fall must be >= 1, got rise={rise} fall={fall}")
        self.rise = rise
        self.fall = fall
        self.state = Health.UNKNOWN
        self.streak = 0
        self.since = now

    def observe(self, ok: bool, now: float, reason: str) -> Flip | None:
        """Feed one probe result; returns the flip it caused, if any."""
        if self.state is Health.UNKNOWN:
            return self._flip(Health.UP if ok else Health.DOWN, now, f"first check: {reason}")
        against = (self.state is Health.UP) != ok
        if not against:
            self.streak = 0
            return None
        self.streak += 1
        if self.state is Health.UP and self.streak >= self.fall:
            return self._flip(Health.DOWN, now, f"{self.streak}/{self.fall} failed: {reason}")
        if self.state is Health.DOWN and self.streak >= self.rise:
            return self._flip(Health.UP, now, f"{self.streak}/{self.rise} succeeded: {reason}")
        return None

    def force_down(self, now: float, reason: str) -> Flip | None:
        """Passive failure detection: down at once; then `rise` successes bring it back."""
        if self.state is Health.DOWN:
            return None
        return self._flip(Health.DOWN, now, reason)

    def _flip(self, new: Health, now: float, reason: str) -> Flip:
        flip = Flip(old=self.state, new=new, at=now, reason=reason)
        self.state, self.streak, self.since = new, 0, now
        return flip

    def __repr__(self) -> str:
        return f"<HealthMachine {self.state.value} streak={self.streak} rise={self.rise} fall={self.fall}>"


def combine(states: list[Health]) -> Health:
    """A member's health under several monitors: up only when every monitor passes."""
    if not states:
        return Health.UNCHECKED
    if Health.DOWN in states:
        return Health.DOWN
    if Health.UNKNOWN in states:
        return Health.UNKNOWN
    return Health.UP
