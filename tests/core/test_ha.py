"""The HA election driven at explicit times: one machine fed by hand, then two over a tiny wire.

Every interval below is a power of two and every priority gives a dyadic skew,
so the times are exact in floating point and compared with ``==``.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass, field

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from appliance.core.ha import (
    MAX_TRANSITIONS,
    Action,
    BecomeBackup,
    BecomeMaster,
    Election,
    EnterFault,
    HaState,
    Heard,
    PeerView,
    SendAdvert,
    master_down_interval,
    skew_time,
)

MASTER, BACKUP, FAULT, INIT = HaState.MASTER, HaState.BACKUP, HaState.FAULT, HaState.INIT


def election(node: str = "lb-a", priority: int = 150, **options: object) -> Election:
    options.setdefault("advert_interval", 1.0)
    return Election(node=node, priority=priority, now=0.0, **options)  # type: ignore[arg-type]


def heard(node: str = "lb-b", priority: int = 100, state: HaState = MASTER, interval: float = 1.0) -> Heard:
    return Heard(node=node, priority=priority, state=state, advert_interval=interval)


def every(start: float, stop: float, advert: Heard, step: float = 1.0) -> list[tuple[float, Heard]]:
    """One advert at start, start + step, ... while <= stop."""
    out, t = [], start
    while t <= stop:
        out.append((t, advert))
        t += step
    return out


Log = list[tuple[float, Action]]


def drive(e: Election, script: list[tuple[float, Heard]], until: float) -> Log:
    """Fires every timer when due and feeds the adverts in time order (a timer due at an advert's time goes first)."""
    log: Log = []

    def timers(upto: float) -> None:
        while e.deadline() <= upto:
            t = e.deadline()
            log.extend((t, a) for a in e.on_timer(t))

    for t, advert in sorted(script, key=lambda item: item[0]):
        timers(t)
        log.extend((t, a) for a in e.on_advert(advert, t))
    timers(until)
    return log


def flips(log: Log) -> list[tuple[float, str]]:
    """The transitions in a log, as (time, action class name)."""
    return [(t, type(a).__name__) for t, a in log if not isinstance(a, SendAdvert)]


# ---------------------------------------------------------------- start-up and takeover


@pytest.mark.parametrize(
    ("priority", "interval", "takeover"),
    [
        (150, 1.0, 3.4140625),  # 3 + 106/256
        (100, 1.0, 3.609375),  # 3 + 156/256
        (254, 1.0, 3.0078125),
        (1, 1.0, 3.99609375),
        (128, 0.5, 1.75),
        (128, 2.0, 7.0),
    ],
)
def test_a_node_alone_becomes_master_at_exactly_the_master_down_interval(
    priority: int, interval: float, takeover: float
) -> None:
    e = election(priority=priority, advert_interval=interval)
    assert e.state is INIT and e.deadline() == math.inf
    assert e.start(0.0) == [
        BecomeBackup(reason=f"started: waiting {takeover:.1f}s for a master"),
        SendAdvert(priority=priority, state=BACKUP),
    ]
    assert master_down_interval(priority, interval) == takeover
    assert e.master_down_at == takeover
    log = drive(e, [], until=math.nextafter(takeover, 0))
    assert e.state is BACKUP
    assert log == [(t, SendAdvert(priority=priority, state=BACKUP)) for t in (interval, 2 * interval, 3 * interval)]
    assert e.on_timer(takeover) == [
        BecomeMaster(reason=f"no master heard for {takeover:.1f}s"),
        SendAdvert(priority=priority, state=MASTER),
    ]
    assert (e.state, e.master, e.since) == (MASTER, "lb-a", takeover)
    assert e.deadline() == takeover + interval  # a master advertises every interval
    assert e.on_timer(takeover + interval) == [SendAdvert(priority=priority, state=MASTER)]


def test_a_live_better_master_keeps_a_starting_node_backup() -> None:
    e = election(priority=150)
    e.start(0.0)
    log = drive(e, every(0.5, 20.5, heard(priority=200)), until=20.5)
    assert flips(log) == []
    assert (e.state, e.master) == (BACKUP, "lb-b")
    assert e.peers == {"lb-b": PeerView(state=MASTER, priority=200, advert_interval=1.0, last_heard=20.5)}


@pytest.mark.parametrize(
    ("priority", "master_priority", "last", "takeover"),
    [
        (150, 200, 20.5, 20.5 + 3.4140625),
        (100, 200, 20.5, 20.5 + 3.609375),
        (100, 101, 7.25, 7.25 + 3.609375),
        (254, 254, 9.5, 9.5 + 3.0078125),  # same priority: lb-b's greater name
    ],
)
def test_takeover_comes_at_exactly_the_master_down_interval_after_the_last_advert(
    priority: int, master_priority: int, last: float, takeover: float
) -> None:
    e = election(priority=priority)
    e.start(0.0)
    script = every(last - 5, last, heard(priority=master_priority))
    drive(e, script, until=math.nextafter(takeover, 0))
    assert e.state is BACKUP and e.deadline() <= takeover
    log = drive(e, [], until=takeover)
    assert flips(log) == [(takeover, "BecomeMaster")]
    assert log[-2][1] == BecomeMaster(reason=f"master lb-b silent {takeover - last:.1f}s")


def test_a_backup_waits_by_the_interval_learned_from_the_master() -> None:
    e = election(priority=128, advert_interval=1.0)
    e.start(0.0)
    drive(e, [(0.5, heard(priority=200, interval=2.0))], until=0.5)
    assert e.master_down_at == 0.5 + 3 * 2.0 + skew_time(128, 2.0) == 7.5


# ---------------------------------------------------------------- preemption


@pytest.mark.parametrize(
    ("preempt", "delay", "takeover"),
    [
        (True, 0.0, 3.4140625),  # the worse master's adverts are ignored from the start
        (False, 0.0, None),  # a working master stays
        (False, 10.0, None),
        (True, 2.25, 2.5 + 3.4140625),  # window [0.5, 2.75): accepted 0.5, 1.5, 2.5
        (True, 10.0, 9.5 + 3.4140625),  # window [0.5, 10.5): the last accepted at 9.5
    ],
)
def test_preemption_of_a_live_worse_master(preempt: bool, delay: float, takeover: float | None) -> None:
    e = election(priority=150, preempt=preempt, preempt_delay=delay)
    e.start(0.0)
    log = drive(e, every(0.5, 30.5, heard(priority=100)), until=30.5)
    if takeover is None:
        assert flips(log) == [] and e.master == "lb-b"
        return
    assert flips(log) == [(takeover, "BecomeMaster")]
    assert takeover >= 0.5 + delay  # never before the window closes
    after = "" if delay == 0 else f" after preempt_delay {delay:g}s"
    assert e.transitions[-1].reason == f"preempting lb-b (priority 100): this node's priority 150 outranks it{after}"
    # Now master, it answers every advert of the worse master at once.
    after_takeover = {t for t, a in log if t > takeover and a == SendAdvert(priority=150, state=MASTER)}
    assert {t for t, _ in every(0.5, 30.5, heard()) if t > takeover} <= after_takeover


def test_a_worse_master_that_dies_inside_the_preempt_window_is_replaced_as_any_dead_master() -> None:
    e = election(priority=150, preempt_delay=10.0)
    e.start(0.0)
    log = drive(e, every(0.5, 4.5, heard(priority=100)), until=30.0)
    assert flips(log) == [(4.5 + 3.4140625, "BecomeMaster")]
    assert e.transitions[-1].reason == "master lb-b silent 3.4s"


def test_a_better_master_closes_the_preempt_window() -> None:
    e = election(priority=150, preempt_delay=3.0)
    e.start(0.0)
    # lb-b worse from 0.5 (window until 3.5), then better at 2.5 (a tracked pool of ours went down, say),
    # then worse again from 5.5: a new window [5.5, 8.5), last accepted 7.5.
    script = every(0.5, 1.5, heard(priority=100)) + [(2.5, heard(priority=160)), (3.5, heard(priority=160))]
    script += every(4.5, 4.5, heard(priority=160)) + every(5.5, 20.5, heard(priority=100))
    log = drive(e, script, until=20.5)
    assert flips(log) == [(7.5 + 3.4140625, "BecomeMaster")]


# ---------------------------------------------------------------- ties


@pytest.mark.parametrize(
    ("me", "them", "expected"),
    [
        ("lb-b", "lb-a", [(3.4140625, "BecomeMaster")]),  # the greater name preempts an equal master
        ("lb-a", "lb-b", []),  # the lesser name follows it
    ],
)
def test_a_backup_breaks_a_priority_tie_by_the_greater_name(me: str, them: str, expected: list[tuple[float, str]]) -> None:
    e = election(node=me, priority=150)
    e.start(0.0)
    assert flips(drive(e, every(0.5, 10.5, heard(node=them, priority=150)), until=10.5)) == expected


def become_master(e: Election) -> float:
    e.start(0.0)
    drive(e, [], until=e.master_down_at)
    assert e.state is MASTER
    return e.since


@pytest.mark.parametrize(
    ("me", "them", "steps_down"),
    [("lb-a", "lb-b", True), ("lb-b", "lb-a", False)],
)
def test_two_masters_at_the_same_priority_keep_the_greater_name(me: str, them: str, steps_down: bool) -> None:
    e = election(node=me, priority=150)
    become_master(e)
    actions = e.on_advert(heard(node=them, priority=150), 4.0)
    if steps_down:
        reason = f"{them} (priority 150) is better: same priority, greater name"
        assert actions == [BecomeBackup(reason=reason), SendAdvert(priority=150, state=BACKUP)]
        assert (e.state, e.master) == (BACKUP, them)
    else:
        assert actions == [SendAdvert(priority=150, state=MASTER)]
        assert (e.state, e.master) == (MASTER, me)


# ---------------------------------------------------------------- split brain


def test_a_master_hearing_a_better_master_steps_down_and_restarts_its_timer() -> None:
    e = election(priority=150)
    become_master(e)
    actions = e.on_advert(heard(priority=200, interval=0.5), 10.0)
    assert actions == [
        BecomeBackup(reason="lb-b (priority 200) is better"),
        SendAdvert(priority=150, state=BACKUP),
    ]
    assert e.master == "lb-b"
    assert e.master_down_at == 10.0 + master_down_interval(150, 0.5)
    assert e.transitions[-1].old is MASTER and e.transitions[-1].new is BACKUP


@pytest.mark.parametrize("priority", [100, 149, 0])
def test_a_master_hearing_a_worse_master_answers_at_once(priority: int) -> None:
    e = election(priority=150)
    become_master(e)
    assert e.on_advert(heard(priority=priority), 10.25) == [SendAdvert(priority=150, state=MASTER)]
    assert e.state is MASTER
    assert e.deadline() == 11.25  # the answer counts as this interval's advert


@pytest.mark.parametrize("state", [BACKUP, FAULT, INIT])
def test_a_master_ignores_adverts_of_non_masters(state: HaState) -> None:
    e = election(priority=150)
    become_master(e)
    deadline = e.deadline()
    assert e.on_advert(heard(priority=200, state=state), 10.0) == []
    assert (e.state, e.deadline()) == (MASTER, deadline)


# ---------------------------------------------------------------- priority 0


@pytest.mark.parametrize("state", [INIT, FAULT, MASTER])
def test_priority_0_from_the_master_means_takeover_after_the_skew_only(state: HaState) -> None:
    e = election(priority=150)
    e.start(0.0)
    drive(e, every(0.5, 5.5, heard(priority=200)), until=5.75)
    assert e.on_advert(heard(priority=0, state=state), 5.75) == []
    takeover = 5.75 + skew_time(150, 1.0)
    assert takeover == 6.1640625 and e.master_down_at == takeover
    assert flips(drive(e, [], until=math.nextafter(takeover, 0))) == []
    assert e.on_timer(takeover) == [
        BecomeMaster(reason="lb-b is leaving (priority 0)"),
        SendAdvert(priority=150, state=MASTER),
    ]


def test_priority_0_from_a_peer_that_is_not_master_changes_nothing() -> None:
    e = election(priority=150)
    e.start(0.0)
    drive(e, every(0.5, 5.5, heard(node="lb-c", priority=200)), until=5.5)
    before = e.master_down_at
    assert e.on_advert(heard(node="lb-b", priority=0, state=BACKUP), 5.75) == []
    assert (e.master_down_at, e.master) == (before, "lb-c")


def test_priority_0_never_postpones_a_takeover_already_due_sooner() -> None:
    e = election(priority=150)
    e.start(0.0)
    drive(e, [(3.3, heard(priority=100))], until=3.3)  # worse master ignored: the timer still runs out at 3.414...
    e.on_advert(heard(priority=0, state=INIT), 3.375)
    assert e.master_down_at == 3.4140625


def test_a_master_stepping_down_is_no_longer_shown_as_master() -> None:
    e = election(priority=150)
    e.start(0.0)
    drive(e, [(0.5, heard(priority=200)), (1.5, heard(priority=200, state=BACKUP))], until=1.5)
    assert e.master is None
    assert e.master_down_at == 0.5 + 3.4140625  # only a master's advert resets the timer


# ---------------------------------------------------------------- tracked pools and fault


def test_a_tracked_pool_lowers_the_priority_and_a_master_says_so_at_once() -> None:
    e = election(priority=150, track={"web": 60, "api": 30})
    t = become_master(e)
    assert e.on_track("web", False, t + 0.25) == [SendAdvert(priority=90, state=MASTER)]
    assert e.on_track("web", False, t + 0.375) == []  # no change, nothing to say
    assert e.on_track("api", False, t + 0.5) == [SendAdvert(priority=60, state=MASTER)]
    assert e.on_track("web", True, t + 0.625) == [SendAdvert(priority=120, state=MASTER)]
    assert (e.state, e.effective_priority) == (MASTER, 120)


def test_a_backup_timer_follows_its_effective_priority() -> None:
    e = election(priority=150, track={"web": 22})
    e.start(0.0)
    drive(e, [(0.5, heard(priority=200))], until=0.5)
    assert e.master_down_at == 0.5 + 3.4140625
    assert e.on_track("web", False, 1.25) == []
    assert e.master_down_at == 0.5 + master_down_interval(128, 1.0) == 4.0


@pytest.mark.parametrize("was", ["master", "backup"])
def test_fault_and_recovery(was: str) -> None:
    e = election(priority=150, track={"web": 150})
    if was == "master":
        become_master(e)
    else:
        e.start(0.0)
    assert e.on_track("web", False, 5.25) == [
        EnterFault(reason="pool web has no available member: priority 150 - 150 leaves 0"),
        SendAdvert(priority=0, state=FAULT),
    ]
    assert (e.state, e.master, e.effective_priority, e.master_down_at) == (FAULT, None, 0, math.inf)
    # Faulted, it keeps telling its peers, and hears them without acting: not even alone for ages.
    log = drive(e, every(5.5, 8.5, heard(priority=100)), until=30.0)
    assert flips(log) == []
    assert [a for _, a in log] == [SendAdvert(priority=0, state=FAULT)] * 24
    assert e.master == "lb-b"
    assert e.on_track("web", True, 30.5) == [
        BecomeBackup(reason="pool web has an available member again: priority 150"),
        SendAdvert(priority=150, state=BACKUP),
    ]
    assert e.master_down_at == 30.5 + 3.4140625


def test_two_tracked_pools_add_up_to_a_fault() -> None:
    e = election(priority=100, track={"web": 50, "api": 60})
    e.start(0.0)
    assert e.on_track("web", False, 1.0) == []
    assert e.effective_priority == 50
    assert e.on_track("api", False, 2.0)[0] == EnterFault(
        reason="pools api, web have no available member: priority 100 - 110 leaves 0"
    )
    assert e.on_track("web", True, 3.0) == [
        BecomeBackup(reason="pool web has an available member again: priority 40"),
        SendAdvert(priority=40, state=BACKUP),
    ]


def test_a_node_starting_with_a_tracked_pool_down_starts_in_fault() -> None:
    e = election(priority=100, track={"web": 100})
    assert e.on_track("web", False, 0.0) == []  # before start: remembered, nothing to do
    assert e.start(0.0) == [
        EnterFault(reason="started with pool web has no available member: priority 0"),
        SendAdvert(priority=0, state=FAULT),
    ]


# ---------------------------------------------------------------- shutdown


@pytest.mark.parametrize("was", ["master", "backup", "fault"])
def test_shutdown_sends_priority_0_and_stops(was: str) -> None:
    e = election(priority=150, track={"web": 150})
    if was == "master":
        become_master(e)
    else:
        e.start(0.0)
    if was == "fault":
        e.on_track("web", False, 4.0)
    assert e.shutdown(5.0) == [SendAdvert(priority=0, state=INIT)]
    assert (e.state, e.master, e.deadline()) == (INIT, None, math.inf)
    assert e.transitions[-1].reason == "shutdown"
    assert e.shutdown(6.0) == []  # stopping a stopped machine does nothing
    with pytest.raises(ValueError, match="before start"):
        e.on_timer(7.0)
    e.on_track("web", True, 7.0)
    assert e.start(8.0)[0] == BecomeBackup(reason="started: waiting 3.4s for a master")


# ---------------------------------------------------------------- illegal input


def _view(e: Election) -> tuple[object, ...]:
    return (e.state, e.since, e.deadline(), e.master_down_at, e.master, e.effective_priority, e.peers, e.transitions)


@pytest.mark.parametrize(
    ("started", "call", "message"),
    [
        (False, lambda e: e.on_timer(1.0), "on_timer before start"),
        (False, lambda e: e.on_advert(heard(), 1.0), "on_advert before start"),
        (True, lambda e: e.start(2.0), "start while backup"),
        (True, lambda e: e.on_timer(0.5), "time went backwards"),
        (True, lambda e: e.on_advert(heard(), 0.5), "time went backwards"),
        (True, lambda e: e.on_track("web", False, 0.5), "time went backwards"),
        (True, lambda e: e.shutdown(0.5), "time went backwards"),
        (True, lambda e: e.on_timer(math.nan), "time went backwards"),
        (True, lambda e: e.on_advert(heard(node="lb-a"), 2.0), "own name"),
        (True, lambda e: e.on_track("api", False, 2.0), "pool 'api' is not tracked"),
    ],
)
def test_illegal_input_raises_and_changes_nothing(started: bool, call: object, message: str) -> None:
    e = election(priority=150, track={"web": 10})
    if started:
        e.start(1.0)
    before = _view(e)
    with pytest.raises(ValueError, match=message):
        call(e)  # type: ignore[operator]
    assert _view(e) == before


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"priority": 0}, "priority must be 1..254"),
        ({"priority": 255}, "priority must be 1..254"),
        ({"advert_interval": 0.0}, "advert_interval must be > 0"),
        ({"advert_interval": math.inf}, "advert_interval must be > 0"),
        ({"preempt_delay": -1.0}, "preempt_delay must be >= 0"),
        ({"track": {"web": 0}}, "track weights must be >= 1"),
        ({"node": ""}, "node name must not be empty"),
    ],
)
def test_bad_settings_are_refused(options: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        election(**options)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"priority": 256}, "priority must be 0..255"),
        ({"priority": -1}, "priority must be 0..255"),
        ({"interval": 0.0}, "advert_interval must be > 0"),
        ({"interval": math.nan}, "advert_interval must be > 0"),
        ({"node": ""}, "needs a node name"),
    ],
)
def test_a_malformed_advert_cannot_be_built(fields: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        heard(**fields)  # type: ignore[arg-type]


def test_the_transition_history_is_bounded() -> None:
    e = election(priority=150)
    t = become_master(e)
    for _ in range(MAX_TRANSITIONS):
        t += 1.0
        e.on_advert(heard(priority=200), t)
        t += 10.0
        e.on_timer(t)
    assert len(e.transitions) == MAX_TRANSITIONS
    assert e.transitions[-1].new is MASTER and e.transitions[-1].at == t


# ---------------------------------------------------------------- the deadline


inputs = st.lists(
    st.tuples(
        st.sampled_from([0.0, 0.125, 0.5, 1.0, 2.0, 3.5, 5.0]),  # wait before the input
        st.one_of(
            st.tuples(st.just("advert"), st.integers(0, 255), st.sampled_from(list(HaState))),
            st.tuples(st.just("track"), st.sampled_from(["web", "api"]), st.booleans()),
            st.tuples(st.just("timer"), st.just(0), st.just(False)),
        ),
    ),
    max_size=40,
)


@settings(max_examples=150, deadline=None)
@given(script=inputs, preempt=st.booleans(), delay=st.sampled_from([0.0, 1.5]))
def test_deadline_is_exactly_the_earliest_time_the_timer_acts(
    script: list[tuple[float, tuple[str, object, object]]], preempt: bool, delay: float
) -> None:
    e = election(priority=120, preempt=preempt, preempt_delay=delay, track={"web": 60, "api": 60})
    e.start(0.0)
    now = 0.0
    for wait, (kind, a, b) in script:
        target = now + wait
        while e.deadline() <= target:  # the shell never sleeps past the deadline
            now = e.deadline()
            e.on_timer(now)
        now = target
        if kind == "advert":
            assert isinstance(a, int) and isinstance(b, HaState)
            e.on_advert(heard(priority=a, state=b), now)
        elif kind == "track":
            assert isinstance(a, str) and isinstance(b, bool)
            e.on_track(a, b, now)
        else:
            e.on_timer(now)
        deadline = e.deadline()
        assert now <= deadline <= now + e.advert_interval  # every running state has an advert due
        early = math.nextafter(deadline, 0)
        if early >= now:
            probe = copy.deepcopy(e)
            assert probe.on_timer(early) == [] and _view(probe) == _view(e)
        assert copy.deepcopy(e).on_timer(deadline) != []


# ---------------------------------------------------------------- two nodes on a wire


@dataclass
class Wire:
    """Two or more elections exchanging adverts with no delay; packets go before timers due at the same time."""

    nodes: dict[str, Election]
    timers_first: bool = False
    now: float = 0.0
    dead: set[str] = field(default_factory=set)
    paused: dict[str, float] = field(default_factory=dict)  # node -> resume time (SIGSTOP: packets wait)
    cut: bool = False
    queue: list[tuple[float, int, str, Heard]] = field(default_factory=list)
    log: list[tuple[float, str, str]] = field(default_factory=list)  # (time, node, action)
    seq: int = 0

    @classmethod
    def of(cls, *elections: Election, timers_first: bool = False) -> Wire:
        return cls(nodes={e.node: e for e in elections}, timers_first=timers_first)

    def start(self) -> None:
        for name, e in self.nodes.items():
            self._execute(name, e.start(self.now))

    def kill(self, name: str) -> None:
        self.dead.add(name)
        self.queue = [p for p in self.queue if p[2] != name]

    def shutdown(self, name: str) -> None:
        self._execute(name, self.nodes[name].shutdown(self.now))
        self.kill(name)

    def track(self, name: str, pool: str, available: bool) -> None:
        self._execute(name, self.nodes[name].on_track(pool, available, self.now))

    def _execute(self, name: str, actions: list[Action]) -> None:
        for action in actions:
            if not isinstance(action, SendAdvert):
                self.log.append((self.now, name, type(action).__name__))
                continue
            advert = Heard(
                node=name, priority=action.priority, state=action.state,
                advert_interval=self.nodes[name].advert_interval,
            )  # fmt: skip
            for other in self.nodes:
                if other != name and other not in self.dead and not self.cut:
                    self.seq += 1
                    self.queue.append((self.now, self.seq, other, advert))

    def _resume(self, name: str) -> float:
        return self.paused.get(name, -math.inf)

    def run(self, until: float) -> None:
        packet_rank, timer_rank = (1, 0) if self.timers_first else (0, 1)
        for _ in range(100_000):
            events: list[tuple[float, int, int, str, Heard | None]] = [
                (max(t, self._resume(dest)), packet_rank, seq, dest, advert) for t, seq, dest, advert in self.queue
            ]
            events += [
                (max(e.deadline(), self._resume(name)), timer_rank, i, name, None)
                for i, (name, e) in enumerate(self.nodes.items())
                if name not in self.dead
            ]
            if not events or min(events)[0] > until:
                self.now = until
                return
            when, _, seq, name, advert = min(events)
            self.now = when
            e = self.nodes[name]
            if advert is None:
                self._execute(name, e.on_timer(when))
            else:
                self.queue = [p for p in self.queue if p[1] != seq]
                self._execute(name, e.on_advert(advert, when))
        raise AssertionError("the wire did not settle")

    def masters(self) -> list[str]:
        return [name for name, e in self.nodes.items() if name not in self.dead and e.state is MASTER]


def pair(**options: object) -> tuple[Election, Election, Wire]:
    a = election("lb-a", 150, **options)
    b = election("lb-b", 100)
    wire = Wire.of(a, b)
    wire.start()
    return a, b, wire


def test_two_nodes_elect_the_better_and_the_other_takes_over_exactly_when_it_dies() -> None:
    a, b, wire = pair()
    wire.run(10.0)
    assert wire.log == [(0.0, "lb-a", "BecomeBackup"), (0.0, "lb-b", "BecomeBackup"), (3.4140625, "lb-a", "BecomeMaster")]
    assert (a.master, b.master) == ("lb-a", "lb-a")
    assert b.peers["lb-a"] == PeerView(state=MASTER, priority=150, advert_interval=1.0, last_heard=9.4140625)
    wire.kill("lb-a")
    wire.run(math.nextafter(13.0234375, 0))
    assert b.state is BACKUP
    wire.run(20.0)
    assert wire.log[-1] == (9.4140625 + 3.609375, "lb-b", "BecomeMaster")
    assert b.transitions[-1].reason == "master lb-a silent 3.6s"


def test_two_nodes_of_equal_priority_started_together_elect_the_greater_name() -> None:
    a, b = election("lb-a", 100), election("lb-b", 100)
    wire = Wire.of(a, b)
    wire.start()
    wire.run(20.0)
    assert wire.masters() == ["lb-b"] and a.master == "lb-b"
    assert [entry for entry in wire.log if entry[2] == "BecomeMaster"][-1] == (3.609375, "lb-b", "BecomeMaster")


@pytest.mark.parametrize("timers_first", [False, True])
@pytest.mark.parametrize("pause", [2.0, 5.0, 30.0])
def test_a_paused_master_resumes_and_one_master_remains_within_two_intervals(timers_first: bool, pause: float) -> None:
    a, b = election("lb-a", 150), election("lb-b", 100)
    wire = Wire.of(a, b, timers_first=timers_first)
    wire.start()
    wire.run(10.0)
    wire.paused["lb-a"] = 10.0 + pause  # SIGSTOP: no timers, packets wait in the socket buffer
    wire.run(10.0 + pause - 0.001)
    assert b.state is (MASTER if pause > 3.609375 else BACKUP)
    wire.run(10.0 + pause + 2 * 1.0)
    assert wire.masters() == ["lb-a"]
    assert (a.master, b.master, b.state) == ("lb-a", "lb-a", BACKUP)
    if pause > 3.609375:
        assert (10.0 + pause, "lb-b", "BecomeBackup") in wire.log


def test_a_healed_partition_has_one_master_again_within_one_interval() -> None:
    _, b, wire = pair()
    wire.run(10.0)
    wire.cut = True
    wire.run(19.875)
    assert wire.masters() == ["lb-a", "lb-b"]  # split brain while the link is down
    wire.cut = False
    wire.run(21.0)
    assert wire.masters() == ["lb-a"]
    # lb-b's first advert after the heal reaches lb-a, which answers at once; lb-b steps down.
    assert wire.log[-1] == (20.0234375, "lb-b", "BecomeBackup")
    assert b.transitions[-1].reason == "lb-a (priority 150) is better"


def test_a_tracked_pool_hands_mastership_to_the_peer_and_takes_it_back() -> None:
    _, b, wire = pair(track={"web": 60})
    wire.run(20.25)
    wire.track("lb-a", "web", False)  # lb-a now 90 < 100: lb-b ignores its adverts from here
    wire.run(30.0)
    assert wire.log[-2:] == [(19.4140625 + 3.609375, "lb-b", "BecomeMaster"), (23.0234375, "lb-a", "BecomeBackup")]
    assert b.transitions[-1].reason == "preempting lb-a (priority 90): this node's priority 100 outranks it"
    wire.track("lb-a", "web", True)  # 150 again: lb-b's adverts become worse; the last one accepted at 29.0234375
    wire.run(40.0)
    assert wire.log[-2:] == [(29.0234375 + 3.4140625, "lb-a", "BecomeMaster"), (32.4375, "lb-b", "BecomeBackup")]
    assert wire.masters() == ["lb-a"]


def test_a_faulted_master_hands_over_after_the_peer_skew_and_recovers() -> None:
    _, b, wire = pair(track={"web": 150})
    wire.run(20.25)
    wire.track("lb-a", "web", False)
    wire.run(25.0)
    assert wire.log[-2:] == [(20.25, "lb-a", "EnterFault"), (20.25 + 0.609375, "lb-b", "BecomeMaster")]
    assert b.transitions[-1].reason == "lb-a is leaving (priority 0)"
    wire.track("lb-a", "web", True)
    wire.run(40.0)
    assert wire.log[-3:] == [
        (25.0, "lb-a", "BecomeBackup"),
        (25.0 + 3.4140625, "lb-a", "BecomeMaster"),  # preempts the worse lb-b
        (28.4140625, "lb-b", "BecomeBackup"),
    ]


def test_a_graceful_shutdown_hands_over_after_the_peer_skew() -> None:
    _, b, wire = pair()
    wire.run(10.25)
    wire.shutdown("lb-a")
    wire.run(20.0)
    assert wire.log[-1] == (10.25 + 0.609375, "lb-b", "BecomeMaster")
    assert b.peers["lb-a"].state is INIT
