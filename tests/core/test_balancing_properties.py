"""Properties every method keeps, over random pools, availability and priority groups."""

from __future__ import annotations

from dataclasses import dataclass

from hypothesis import given, settings
from hypothesis import strategies as st

from appliance.core.balancing import make_balancer
from appliance.core.model import Endpoint, Member, Method, Pool
from appliance.core.priority import PriorityGroups


@dataclass
class M:
    slot: int
    name: str
    ratio: int
    priority_group: int
    available: bool
    active: int = 0
    ramp_start: float | None = None


members_strategy = st.lists(
    st.tuples(st.integers(1, 5), st.integers(0, 2), st.booleans(), st.integers(0, 5), st.sampled_from([None, 95.0, 99.0])),
    min_size=1,
    max_size=12,
)


@settings(max_examples=60, deadline=None)
@given(
    method=st.sampled_from(list(Method)),
    spec=members_strategy,
    min_active=st.integers(0, 4),
    avoid_mask=st.integers(0, 2**12 - 1),
    picks=st.integers(1, 20),
)
def test_every_method_keeps_the_rules(method: Method, spec: list[tuple[int, int, bool, int, float | None]], min_active: int, avoid_mask: int, picks: int) -> None:
    members = [M(i, f"m{i}", r, g, a, c, rs) for i, (r, g, a, c, rs) in enumerate(spec)]
    pool = Pool(
        name="p",
        method=method,
        slow_ramp=10.0,
        members=tuple(Member(address=Endpoint(host="127.0.0.1", port=9000 + m.slot), name=m.name, ratio=m.ratio) for m in members),
    )
    balancer = make_balancer(pool)
    groups = PriorityGroups(members, min_active, limited=True)
    avoid = {m.name for m in members if avoid_mask >> m.slot & 1}
    for step in range(picks):
        candidates = groups.candidates()
        picked = balancer.pick(candidates, f"10.0.0.{step}".encode(), avoid, 100.0 + step)
        able = [m for m in candidates if m.available and m.name not in avoid]
        if not able:
            assert picked is None
            continue
        # Never an unavailable or avoided member, and a member whenever one can take it.
        assert picked is not None and picked in able
        # Never from a lower group while the higher groups have enough available members.
        higher = sorted({m.priority_group for m in members}, reverse=True)
        count = 0
        for level in higher:
            count += sum(1 for m in members if m.priority_group == level and m.available)
            if min_active and count >= min_active:
                assert picked.priority_group >= level
                break
