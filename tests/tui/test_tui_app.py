"""The TUI over a fake admin API, driven with Textual's Pilot.

Textual runs on asyncio and pytest-trio's trio_mode would claim `async def`
tests, so each test is a plain `def` that runs its scenario with
`asyncio.run` (tests/conftest.py). Every wait is bounded (`wait_for`).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from textual.widgets import Static
from tui_fakes import (
    QUARANTINED_UNTIL,
    FakeAdmin,
    cell_style,
    cell_text,
    member,
    notifications,
    row_keys,
    snat_keys,
    snat_text,
    wait_for,
)

from tui import format as fmt
from tui.app import NO_SNAT, ApplianceApp, make_app
from tui.client import ApiError, Unreachable
from tui.widgets import HELP, ConfirmScreen, HelpScreen

SIZE = (140, 40)
FAST = 0.2  # poll interval in these tests (faster only slows Pilot, which waits for an idle screen)


def run(scenario: Callable[[], Awaitable[None]]) -> None:
    asyncio.run(scenario())


def header(app: ApplianceApp) -> str:
    return str(app.query_one("#header", Static).content)


async def started(app: ApplianceApp, pilot: Any, polls: int = 1) -> None:
    await wait_for(pilot, lambda: app.polls >= polls and app.connected, what=f"{polls} answered polls")


def test_the_table_shows_members_with_health_and_admin_as_text_and_colour() -> None:
    async def scenario() -> None:
        app = make_app(FakeAdmin(), interval=FAST)
        async with app.run_test(size=SIZE) as pilot:
            await started(app, pilot, polls=2)
            assert row_keys(app) == ["web/web1", "web/web2", "web/web3", "api/api1"]
            assert cell_text(app, "web/web1", "health") == "up" and "green" in cell_style(app, "web/web1", "health")
            assert cell_text(app, "web/web3", "health") == "down" and "red" in cell_style(app, "web/web3", "health")
            assert cell_text(app, "api/api1", "health") == "unchecked"
            assert cell_text(app, "web/web1", "admin") == "enabled"
            assert cell_text(app, "web/web1", "address") == "127.0.0.1:9001"
            assert cell_text(app, "web/web1", "active") == "3"
            assert cell_text(app, "web/web1", "total") == "40"
            assert cell_text(app, "web/web1", "ramp") == "100%"
            assert cell_text(app, "web/web1", "check") == "ok 0.4ms"
            assert cell_text(app, "web/web3", "check") == "L7 status 503 12ms"
            assert cell_text(app, "api/api1", "check") == "no monitor"
            assert cell_text(app, "web/web1", "since").endswith("s")  # 2m0Ns: since vs the answer's time
            assert list(app.vs_table.shown) == ["web", "db"]
            assert app.vs_table.get_cell("web", "listen").plain == "127.0.0.1:8080"
            assert app.vs_table.get_cell("web", "state").plain == "listening"
            text = header(app)
            assert "lb-a" in text and "0.9.0" in text and "HA master" in text and "live" in text
            assert len(app.event_lines) == 1 and "web/web3 up -> down" in app.event_lines[0]
            assert app.display_errors == []

    run(scenario)


def test_d_disables_the_selected_member_and_the_next_poll_shows_it() -> None:
    async def scenario() -> None:
        fake = FakeAdmin()
        app = make_app(fake, interval=FAST)
        async with app.run_test(size=SIZE) as pilot:
            await started(app, pilot)
            await pilot.press("down")
            assert app.members_table.selected_key == "web/web2"
            await pilot.press("d")
            await wait_for(pilot, lambda: fake.calls, what="set_state")
            assert fake.calls == [("set_state", "web", "web2", "disabled")]
            await wait_for(pilot, lambda: cell_text(app, "web/web2", "admin") == "disabled (api)", what="disabled cell")
            assert "yellow" in cell_style(app, "web/web2", "admin")
            assert ("web/web2: disabled", "information") in notifications(app)
            assert app.status_line == "web/web2: disabled"
            assert app.members_table.selected_key == "web/web2"  # the cursor stayed on the member
            await wait_for(pilot, lambda: any("web/web2 -> disabled" in line for line in app.event_lines))
            await pilot.press("e")
            await wait_for(pilot, lambda: cell_text(app, "web/web2", "admin") == "enabled (api)", what="enabled cell")
            assert fake.calls[-1] == ("set_state", "web", "web2", "enabled")
            lines = list(app.event_lines)
            await started(app, pilot, polls=app.polls + 3)
            assert app.event_lines == lines  # events already shown are not written again

    run(scenario)


def test_f_asks_before_forcing_offline_and_n_leaves_the_member_alone() -> None:
    async def scenario() -> None:
        fake = FakeAdmin()
        app = make_app(fake, interval=FAST)
        async with app.run_test(size=SIZE) as pilot:
            await started(app, pilot)
            await pilot.press("f")
            await wait_for(pilot, lambda: isinstance(app.screen, ConfirmScreen), what="the confirmation")
            assert "web/web1" in app.screen.question
            await pilot.pause(0.2)
            assert fake.calls == []  # nothing before the answer
            await pilot.press("n")
            await wait_for(pilot, lambda: not isinstance(app.screen, ConfirmScreen), what="the dialog to close")
            await pilot.pause(0.2)
            assert fake.calls == []
            assert cell_text(app, "web/web1", "admin") == "enabled"

            await pilot.press("f")
            await wait_for(pilot, lambda: isinstance(app.screen, ConfirmScreen), what="the confirmation")
            await pilot.press("y")
            await wait_for(pilot, lambda: fake.calls, what="set_state")
            assert fake.calls == [("set_state", "web", "web1", "forced_offline")]
            await wait_for(pilot, lambda: cell_text(app, "web/web1", "admin") == "forced_offline (api)")
            assert "red" in cell_style(app, "web/web1", "admin")

    run(scenario)


def test_escape_also_answers_no() -> None:
    async def scenario() -> None:
        fake = FakeAdmin()
        app = make_app(fake, interval=FAST)
        async with app.run_test(size=SIZE) as pilot:
            await started(app, pilot)
            await pilot.press("f")
            await wait_for(pilot, lambda: isinstance(app.screen, ConfirmScreen))
            await pilot.press("escape")
            await wait_for(pilot, lambda: not isinstance(app.screen, ConfirmScreen))
            await pilot.pause(0.1)
            assert fake.calls == []

    run(scenario)


@pytest.mark.parametrize("real_class", [False, True], ids=["tui-ApiError", "appliance.client-AdminError"])
def test_a_refused_action_shows_the_api_reason(real_class: bool) -> None:
    reason = "pool api is immutable (mutable: false)"
    if real_class:
        client = pytest.importorskip("appliance.client")
        refusal: Exception = client.AdminError(409, reason)
    else:
        refusal = ApiError(reason, 409)

    async def scenario() -> None:
        fake = FakeAdmin()
        fake.refuse = refusal
        app = make_app(fake, interval=FAST)
        async with app.run_test(size=SIZE) as pilot:
            await started(app, pilot)
            await pilot.press("down", "down", "down")
            assert app.members_table.selected_key == "api/api1"
            await pilot.press("d")
            await wait_for(pilot, lambda: reason in app.status_line, what="the reason on the status line")
            assert app.status_line == f"api/api1: disabled failed: {reason}"
            errors = [message for message, severity in notifications(app) if severity == "error"]
            assert errors and reason in errors[0]
            assert reason in str(app.query_one("#status", Static).content)
            assert app.is_running and app.connected
            assert cell_text(app, "api/api1", "admin") == "enabled"

    run(scenario)


def test_an_unreachable_api_shows_disconnected_keeps_the_data_dimmed_and_recovers() -> None:
    async def scenario() -> None:
        fake = FakeAdmin()
        app = make_app(fake, interval=FAST, max_backoff=0.2)
        async with app.run_test(size=SIZE) as pilot:
            await started(app, pilot)
            fake.unreachable = True
            await wait_for(pilot, lambda: app.failures >= 3, what="three failed polls")
            assert "DISCONNECTED" in header(app) and "retrying" in header(app)
            assert app.status_line == "admin API: connection refused"  # the reason, in full
            assert app.query_one("#body").has_class("-stale")
            assert row_keys(app) == ["web/web1", "web/web2", "web/web3", "api/api1"]  # the last data stays
            assert isinstance(app.last_error, Unreachable)

            await pilot.press("d")  # an action while disconnected fails with a message, not a crash
            await wait_for(pilot, lambda: "failed" in app.status_line)
            assert "unreachable" in app.status_line

            fake.unreachable = False
            fake.refuse = None
            await wait_for(pilot, lambda: app.connected, what="the reconnection")
            assert "DISCONNECTED" not in header(app) and "live" in header(app)
            assert "failed" in app.status_line  # the last action's result stays; the connection message went
            assert not app.query_one("#body").has_class("-stale")
            assert app.failures == 0 and app.is_running

    run(scenario)


def test_backoff_doubles_up_to_the_maximum() -> None:
    async def scenario() -> None:
        app = make_app(FakeAdmin(), interval=1.0, max_backoff=5.0)
        async with app.run_test(size=SIZE) as pilot:
            await started(app, pilot)
            delays = [app._lost(Unreachable("connection refused")) for _ in range(6)]
            assert delays == [1.0, 2.0, 4.0, 5.0, 5.0, 5.0]
            assert "retrying in 5s" in header(app)

    run(scenario)


def test_an_api_error_on_status_is_shown_and_retried() -> None:
    async def scenario() -> None:
        fake = FakeAdmin()
        app = make_app(fake, interval=FAST, max_backoff=0.1)
        refuse = {"on": True}

        async def before() -> None:
            if refuse["on"]:
                raise ApiError("missing or wrong bearer token", 401)

        fake.before_status = before
        async with app.run_test(size=SIZE) as pilot:
            await wait_for(pilot, lambda: app.failures >= 2)
            assert "API ERROR" in header(app) and app.status_line == "admin API: 401 missing or wrong bearer token"
            assert app.members_table.row_count == 0
            refuse["on"] = False
            await wait_for(pilot, lambda: app.connected)
            assert app.members_table.row_count == 4

    run(scenario)


def test_polls_never_overlap() -> None:
    async def scenario() -> None:
        fake = FakeAdmin()
        state = {"now": 0, "max": 0}

        async def slow() -> None:
            state["now"] += 1
            state["max"] = max(state["max"], state["now"])
            try:
                await asyncio.sleep(0.05)
            finally:
                state["now"] -= 1

        fake.before_status = slow
        app = make_app(fake, interval=0.0)
        async with app.run_test(size=SIZE) as pilot:
            await started(app, pilot)
            for _ in range(5):  # refresh and actions ask for early polls while one is in flight
                await pilot.press("r")
                await pilot.press("d")
                app.poll_now()
                await pilot.pause(0.01)
            await wait_for(pilot, lambda: fake.status_calls >= 10)
            assert state["max"] == 1

    run(scenario)


def test_the_filter_narrows_the_rows_and_escape_clears_it() -> None:
    async def scenario() -> None:
        app = make_app(FakeAdmin(), interval=FAST)
        async with app.run_test(size=SIZE) as pilot:
            await started(app, pilot)
            await pilot.press("slash", "a", "p", "i")
            assert app.filter_text == "api"
            assert row_keys(app) == ["api/api1"]
            await started(app, pilot, polls=app.polls + 2)
            assert row_keys(app) == ["api/api1"]  # polls keep the filter
            assert "filter: api" in header(app)
            await pilot.press("escape")
            assert app.filter_text == "" and len(row_keys(app)) == 4
            assert app.focused is app.members_table

            await pilot.press("slash", *"9002", "enter")  # by address; Enter keeps the filter
            assert row_keys(app) == ["web/web2"]
            assert app.focused is app.members_table
            await pilot.press("d")  # acts on the one row shown
            await wait_for(pilot, lambda: app.status_line == "web/web2: disabled")
            await pilot.press("escape")
            assert len(row_keys(app)) == 4

            await pilot.press("slash", "W", "E", "B", "3", "q")  # case-insensitive; q types, not quits
            assert app.is_running and app.filter_text == "WEB3q" and row_keys(app) == []
            await pilot.press("backspace")
            assert row_keys(app) == ["web/web3"]

    run(scenario)


def test_an_unchanged_poll_leaves_the_table_untouched_and_a_change_writes_one_cell() -> None:
    async def scenario() -> None:
        fake = FakeAdmin(tick=0.0)  # the clock stands still: nothing changes between answers
        app = make_app(fake, interval=FAST)
        async with app.run_test(size=SIZE) as pilot:
            await started(app, pilot, polls=2)
            table = app.members_table
            writes: list[tuple[str, str]] = []
            structural: list[str] = []
            update_cell = table.update_cell

            def counting(row_key: Any, column_key: Any, value: Any, **kw: Any) -> None:
                writes.append((str(row_key), str(column_key)))
                update_cell(row_key, column_key, value, **kw)

            table.update_cell = counting  # type: ignore[method-assign]
            for name in ("add_row", "remove_row", "clear"):
                original = getattr(table, name)

                def spy(*a: Any, _name: str = name, _original: Any = original, **kw: Any) -> Any:
                    structural.append(_name)
                    return _original(*a, **kw)

                setattr(table, name, spy)
            polls = app.polls
            await started(app, pilot, polls=polls + 4)
            assert writes == [] and structural == [] and app.cells_written == 0

            fake.bump("web", "web1", active_connections=7)
            await wait_for(pilot, lambda: writes, what="a cell write")
            await started(app, pilot, polls=app.polls + 2)
            assert writes == [("web/web1", "active")]
            assert structural == []
            assert cell_text(app, "web/web1", "active") == "7"

    run(scenario)


def test_rows_follow_membership_and_the_cursor_stays_on_its_member() -> None:
    async def scenario() -> None:
        fake = FakeAdmin()
        app = make_app(fake, interval=FAST)
        async with app.run_test(size=SIZE) as pilot:
            await started(app, pilot)
            await pilot.press("down", "down")
            assert app.members_table.selected_key == "web/web3"
            web = fake.data["pools"][0]
            removed = web["members"].pop(1)  # web2 goes (drains)
            web["draining"].append(removed)
            await wait_for(pilot, lambda: "web/web2" not in row_keys(app), what="web2 to leave")
            assert row_keys(app) == ["web/web1", "web/web3", "web/web2 (draining)", "api/api1"]
            assert app.members_table.selected_key == "web/web3"
            assert cell_text(app, "web/web2 (draining)", "admin") == "removed (draining)"
            web["members"].append(member("web9", "127.0.0.1:9009"))
            await wait_for(pilot, lambda: "web/web9" in row_keys(app), what="web9 to arrive")
            assert row_keys(app) == ["web/web1", "web/web3", "web/web9", "web/web2 (draining)", "api/api1"]
            assert app.members_table.selected_key == "web/web3"  # the rows were rebuilt; the cursor followed

            await pilot.press("down", "down")  # the draining row: no action on a removed member
            assert app.members_table.selected_key == "web/web2 (draining)"
            await pilot.press("d")
            await pilot.pause(0.1)
            assert fake.calls == []
            assert any("draining" in message for message, _ in notifications(app))

    run(scenario)


def test_requests_per_second_come_from_the_counter_delta_over_the_server_time() -> None:
    async def scenario() -> None:
        fake = FakeAdmin(tick=2.0)  # two seconds between answers
        app = make_app(fake, interval=3600)  # polls only when asked
        async with app.run_test(size=SIZE) as pilot:
            await started(app, pilot)
            assert cell_text(app, "web/web1", "rate") == "-"  # no previous answer yet
            fake.bump("web", "web1", requests=100 + 50)
            app.poll_now()
            await started(app, pilot, polls=2)
            assert cell_text(app, "web/web1", "rate") == "25.0"
            assert cell_text(app, "web/web2", "rate") == "0"
            fake.bump("web", "web1", requests=10)  # a restarted counter: no negative rate
            app.poll_now()
            await started(app, pilot, polls=3)
            assert cell_text(app, "web/web1", "rate") == "-"

    run(scenario)


def test_help_opens_and_closes_and_q_quits() -> None:
    async def scenario() -> None:
        app = make_app(FakeAdmin(), interval=FAST)
        async with app.run_test(size=SIZE) as pilot:
            await started(app, pilot)
            await pilot.press("question_mark")
            await wait_for(pilot, lambda: isinstance(app.screen, HelpScreen))
            await pilot.press("escape")
            await wait_for(pilot, lambda: not isinstance(app.screen, HelpScreen))
            await pilot.press("q")
            await wait_for(pilot, lambda: not app.is_running, what="the app to quit")

    run(scenario)


def test_an_answer_of_an_unknown_shape_is_reported_not_raised() -> None:
    async def scenario() -> None:
        fake = FakeAdmin()
        fake.data["pools"][0]["members"][0]["last_check"] = {"ok": True, "latency": "fast"}
        app = make_app(fake, interval=FAST)
        async with app.run_test(size=SIZE) as pilot:
            await started(app, pilot, polls=2)
            assert app.is_running
            assert app.display_errors and "cannot show the answer" in app.status_line

    run(scenario)


# ------------------------------------------------------------------ the SNAT view (`s`)


def snat_summary(app: ApplianceApp) -> str:
    return str(app.query_one("#snat-pools", Static).content)


def test_s_shows_the_snat_addresses_with_their_states_and_s_again_the_members() -> None:
    async def scenario() -> None:
        app = make_app(FakeAdmin(), interval=FAST)
        async with app.run_test(size=SIZE) as pilot:
            await started(app, pilot)
            assert app.view == "members" and app.members_table.display and not app.snat_table.display
            assert app.check_action("view", ("snat",)) and not app.check_action("view", ("members",))  # footer: SNAT
            await pilot.press("s")
            assert app.view == "snat" and app.snat_table.display and not app.members_table.display
            assert app.focused is app.snat_table
            assert app.check_action("view", ("members",)) and not app.check_action("view", ("snat",))  # footer: Members
            assert app.check_action("set_state", ("enabled",)) is None  # greyed out in the footer
            assert snat_keys(app) == ["out/10.9.0.1", "out/10.9.0.2", "out/10.9.0.3", "egress/10.9.1.1"]

            now = float(app.last_status["time"])  # type: ignore[index]
            assert snat_text(app, "out/10.9.0.1", "state") == "usable"
            assert "green" in str(app.snat_table.get_cell("out/10.9.0.1", "state").style)
            assert snat_text(app, "out/10.9.0.1", "active") == "4"
            assert snat_text(app, "out/10.9.0.1", "total") == "120"
            assert snat_text(app, "out/10.9.0.1", "pools") == "web (4)"  # web has 4 open through it
            quarantined = snat_text(app, "out/10.9.0.2", "state")  # for which pool, until when, how long still
            left = fmt.duration(QUARANTINED_UNTIL - now)
            assert quarantined == f"quarantined for web until {fmt.clock(QUARANTINED_UNTIL)} ({left})"
            assert "red" in str(app.snat_table.get_cell("out/10.9.0.2", "state").style)
            assert snat_text(app, "out/10.9.0.2", "failures") == "3"
            assert snat_text(app, "out/10.9.0.3", "state") == "draining"
            assert snat_text(app, "out/10.9.0.3", "active") == "1"
            assert snat_text(app, "egress/10.9.1.1", "exhausted") == "2"
            assert snat_text(app, "egress/10.9.1.1", "pools") == "api"
            summary = snat_summary(app).splitlines()
            assert len(summary) == 2
            assert "out: 2 addresses (+1 draining), 1 quarantined" in summary[0]
            assert "min_interval off" in summary[0] and "refused web 2" in summary[0] and "used by web" in summary[0]
            assert "min_interval 500ms" in summary[1] and "refused 0" in summary[1] and "immutable" in summary[1]

            await pilot.press("s")
            assert app.view == "members" and app.members_table.display and not app.snat_table.display
            assert app.focused is app.members_table
            assert app.display_errors == []

    run(scenario)


def test_the_snat_counters_update_on_the_next_poll_by_their_changed_cells_only() -> None:
    async def scenario() -> None:
        fake = FakeAdmin(tick=0.0)  # the clock stands still: the quarantine countdown does not move
        app = make_app(fake, interval=FAST)
        async with app.run_test(size=SIZE) as pilot:
            await started(app, pilot, polls=2)
            await pilot.press("s")
            table = app.snat_table
            writes: list[tuple[str, str]] = []
            structural: list[str] = []
            update_cell = table.update_cell

            def counting(row_key: Any, column_key: Any, value: Any, **kw: Any) -> None:
                writes.append((str(row_key), str(column_key)))
                update_cell(row_key, column_key, value, **kw)

            table.update_cell = counting  # type: ignore[method-assign]
            for name in ("add_row", "remove_row", "clear"):
                original = getattr(table, name)

                def spy(*a: Any, _name: str = name, _original: Any = original, **kw: Any) -> Any:
                    structural.append(_name)
                    return _original(*a, **kw)

                setattr(table, name, spy)
            await started(app, pilot, polls=app.polls + 3)
            assert writes == [] and structural == [] and app.snat_cells_written == 0

            fake.snat("out", "10.9.0.1").update(active_connections=5, total_connections=121)
            await wait_for(pilot, lambda: writes, what="a cell write")
            await started(app, pilot, polls=app.polls + 2)
            assert sorted(writes) == [("out/10.9.0.1", "active"), ("out/10.9.0.1", "total")]
            assert snat_text(app, "out/10.9.0.1", "active") == "5" and snat_text(app, "out/10.9.0.1", "total") == "121"

            writes.clear()
            fake.data["time"] = QUARANTINED_UNTIL + 1  # the quarantine has run out
            await wait_for(pilot, lambda: snat_text(app, "out/10.9.0.2", "state") == "usable", what="the release")
            assert writes == [("out/10.9.0.2", "state")]
            assert structural == []
            assert "quarantined" not in snat_summary(app)

    run(scenario)


def test_member_actions_do_nothing_in_the_snat_view_but_say_how_to_switch_back() -> None:
    async def scenario() -> None:
        fake = FakeAdmin()
        app = make_app(fake, interval=FAST)
        async with app.run_test(size=SIZE) as pilot:
            await started(app, pilot)
            await pilot.press("s", "e", "d", "f")
            await pilot.pause(0.2)
            assert fake.calls == [] and not isinstance(app.screen, ConfirmScreen)
            messages = [message for message, severity in notifications(app) if severity == "warning"]
            assert messages and all("press s for the members view" in message for message in messages)
            await pilot.press("s", "d")  # back in the members view, d acts again
            await wait_for(pilot, lambda: fake.calls, what="set_state")
            assert fake.calls == [("set_state", "web", "web1", "disabled")]

    run(scenario)


def test_without_snat_pools_the_view_says_none_are_configured() -> None:
    async def scenario() -> None:
        for snat_pools in (None, []):
            fake = FakeAdmin()
            if snat_pools is None:
                del fake.data["snat_pools"]  # an appliance that does not report them
            else:
                fake.data["snat_pools"] = snat_pools
            app = make_app(fake, interval=FAST)
            async with app.run_test(size=SIZE) as pilot:
                await started(app, pilot)
                await pilot.press("s")
                await started(app, pilot, polls=app.polls + 1)
                assert snat_summary(app) == NO_SNAT == "no SNAT pools configured"
                assert app.snat_table.row_count == 0 and app.display_errors == []
                await pilot.press("d")  # no row and no member action: a message, not a crash
                await pilot.pause(0.1)
                assert fake.calls == [] and app.is_running

    run(scenario)


def test_switching_views_keeps_each_cursor() -> None:
    async def scenario() -> None:
        fake = FakeAdmin()
        app = make_app(fake, interval=FAST)
        async with app.run_test(size=SIZE) as pilot:
            await started(app, pilot)
            await pilot.press("down", "down")
            assert app.members_table.selected_key == "web/web3"
            await pilot.press("s", "down")
            assert app.snat_table.selected_key == "out/10.9.0.2"
            await started(app, pilot, polls=app.polls + 2)  # polls in the SNAT view move neither cursor
            await pilot.press("s")
            assert app.focused is app.members_table and app.members_table.selected_key == "web/web3"
            await pilot.press("d")  # acts on the member the cursor was left on
            await wait_for(pilot, lambda: fake.calls, what="set_state")
            assert fake.calls == [("set_state", "web", "web3", "disabled")]
            await pilot.press("s")
            assert app.snat_table.selected_key == "out/10.9.0.2"

    run(scenario)


def test_the_filter_narrows_the_snat_rows_too() -> None:
    async def scenario() -> None:
        app = make_app(FakeAdmin(), interval=FAST)
        async with app.run_test(size=SIZE) as pilot:
            await started(app, pilot)
            await pilot.press("s", "slash", *"egress")  # by SNAT pool; an s typed in the box is text, not a switch
            assert app.view == "snat" and app.filter_text == "egress"
            assert snat_keys(app) == ["egress/10.9.1.1"]
            assert "showing 1 of 4 (filter: egress)" in snat_summary(app)
            await pilot.press(*["backspace"] * 6, *"api")  # by the LB pool drawing from it
            assert snat_keys(app) == ["egress/10.9.1.1"]
            assert row_keys(app) == ["api/api1"]  # the members are narrowed as well, for the way back
            await pilot.press("enter")
            assert app.focused is app.snat_table
            await pilot.press("escape")
            assert len(snat_keys(app)) == 4 and app.focused is app.snat_table
            await pilot.press("slash", *"0.2", "enter")  # by address
            assert snat_keys(app) == ["out/10.9.0.2"]

    run(scenario)


def test_the_help_lists_the_snat_view_key() -> None:
    assert ("s", "switch between the members and the SNAT view (each keeps its cursor)") in HELP
