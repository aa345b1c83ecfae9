"""Admin state x health -> may a member take new traffic (SPEC §3 member state)."""

from __future__ import annotations

import pytest

from appliance.core.health import CheckResult, Health, LastCheck
from appliance.core.model import AdminState, Endpoint, Member
from appliance.core.snapshot import MemberView
from appliance.core.stats import MemberStats


def view(admin: AdminState, health: Health, limit: int = 0, active: int = 0) -> MemberView:
    stats = MemberStats()
    stats.active = active
    return MemberView(
        pool="p",
        config=Member(address=Endpoint(host="127.0.0.1", port=9001), name="m", connection_limit=limit),
        slot=0,
        admin_state=admin,
        health=health,
        since=0.0,
        checks=LastCheck(),
        stats=stats,
    )


@pytest.mark.parametrize("admin", list(AdminState))
@pytest.mark.parametrize("health", list(Health))
def test_only_enabled_and_healthy_members_take_new_traffic(admin: AdminState, health: Health) -> None:
    expected = admin is AdminState.ENABLED and health in (Health.UP, Health.UNCHECKED)
    assert view(admin, health).available is expected


def test_a_member_at_its_connection_limit_is_not_available() -> None:
    assert view(AdminState.ENABLED, Health.UP, limit=2, active=1).available
    assert not view(AdminState.ENABLED, Health.UP, limit=2, active=2).available
    assert view(AdminState.ENABLED, Health.UP, limit=0, active=10_000).available  # 0: no limit


def test_the_last_check_is_shared_not_copied() -> None:
    member = view(AdminState.ENABLED, Health.UP)
    member.checks.result = CheckResult(ok=False, reason="L7 status 503", latency=0.002, at=5.0)
    assert member.last_check is not None and member.last_check.reason == "L7 status 503"
