"""The rise/fall machine driven step by step at explicit times."""

from __future__ import annotations

import pytest

from appliance.core.health import Health, HealthMachine, combine


def feed(machine: HealthMachine, results: str, start: float = 0.0) -> list[tuple[float, Health]]:
    """Feeds 'o' (ok) / 'x' (fail) one per second; returns (time, new state) per flip."""
    flips = []
    for i, r in enumerate(results):
        flip = machine.observe(r == "o", start + i, "connect refused" if r == "x" else "ok")
        if flip:
            flips.append((flip.at, flip.new))
    return flips


@pytest.mark.parametrize(
    ("rise", "fall", "results", "expected"),
    [
        (2, 3, "o", [(0, Health.UP)]),  # first verdict decides at once
        (2, 3, "x", [(0, Health.DOWN)]),
        (2, 3, "oxxx", [(0, Health.UP), (3, Health.DOWN)]),
        (2, 3, "oxxoxx", [(0, Health.UP)]),  # a success resets the failure streak
        (2, 3, "xoo", [(0, Health.DOWN), (2, Health.UP)]),
        (2, 3, "xoxoo", [(0, Health.DOWN), (4, Health.UP)]),
        (1, 1, "oxoxo", [(0, Health.UP), (1, Health.DOWN), (2, Health.UP), (3, Health.DOWN), (4, Health.UP)]),
    ],
)
def test_rise_and_fall(rise: int, fall: int, results: str, expected: list[tuple[float, Health]]) -> None:
    machine = HealthMachine(rise=rise, fall=fall, now=0.0)
    assert machine.state is Health.UNKNOWN
    assert feed(machine, results) == expected


def test_flip_reason_counts_the_streak() -> None:
    machine = HealthMachine(rise=2, fall=3, now=0.0)
    machine.observe(True, 1.0, "ok")
    machine.observe(False, 2.0, "connect refused")
    machine.observe(False, 3.0, "connect refused")
    flip = machine.observe(False, 4.0, "timeout after 1s")
    assert flip is not None
    assert (flip.old, flip.new, flip.reason) == (Health.UP, Health.DOWN, "3/3 failed: timeout after 1s")
    assert machine.since == 4.0


def test_invalid_thresholds_are_refused() -> None:
    with pytest.raises(ValueError, match="rise and fall"):
        HealthMachine(rise=0, fall=3, now=0.0)


@pytest.mark.parametrize(
    ("states", "expected"),
    [
        ([], Health.UNCHECKED),
        ([Health.UP, Health.UP], Health.UP),
        ([Health.UP, Health.UNKNOWN], Health.UNKNOWN),
        ([Health.UNKNOWN, Health.DOWN], Health.DOWN),
    ],
)
def test_several_monitors_all_must_pass(states: list[Health], expected: Health) -> None:
    assert combine(states) is expected
