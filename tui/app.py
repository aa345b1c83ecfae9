"""The live TUI: one screen over the admin API (SPEC §5).

Theory of operation. The app polls `status()` and `events()` about once a
second with a one-shot timer that is re-armed only after a poll has finished,
so polls never overlap; an action asks for an early poll, which waits for the
one in flight. Each answer is turned into rows of plain `(text, style)` cells
(`tui.format`) and `KeyedTable.sync` writes only the cells that changed. When
the API does not answer, the last data stays on screen, dimmed, under a
DISCONNECTED header, and the poll is retried with backoff (1, 2, 4, 5, 5 ... s).
Nothing a poll or an action raises ends the app: errors are shown, never raised.

Two views share the body: the members (the default) and the SNAT addresses;
`s` switches between them. Both tables are kept current on every poll, so a
switch shows fresh data at once and each table keeps its own cursor. The
member actions (e, d, f) work in the members view only.

Requests per second are the difference of a member's `requests` between two
answers over the difference of their `time` (the server's clock, so the
client's scheduling jitter does not show); time in state is `time - since`.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

from rich.text import Text
from textual import on
from textual.app import App, ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical
from textual.timer import Timer
from textual.widgets import Footer, Input, RichLog, Static

from appliance.humanize import duration
from tui import format as fmt
from tui.client import AdminApi, ApiError, Unreachable, classify
from tui.widgets import ConfirmScreen, FilterInput, HelpScreen, KeyedTable

Json = dict[str, Any]

POLL_INTERVAL = 1.0  # SPEC §5: refresh about once a second
MAX_BACKOFF = 5.0  # a lost appliance is retried at least this often
MIN_DELAY = 0.01  # between the end of one poll and the start of the next, at the least
EVENT_LINES = 500  # the events pane keeps this many lines
NO_SNAT = "no SNAT pools configured"

View = Literal["members", "snat"]


@dataclass(frozen=True, slots=True)
class MemberRow:
    key: str  # "pool/member"; what the table keys its rows by
    pool: str
    name: str
    member: Json
    draining: bool


class ApplianceApp(App[None]):
    """The appliance's live view; build it with `make_app(client)`."""

    CSS_PATH = "app.tcss"
    TITLE = "appliance"
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("e", "set_state('enabled')", "Enable"),
        Binding("d", "set_state('disabled')", "Disable"),
        Binding("f", "force_offline", "Force offline"),
        Binding("e,d,f", "members_only", show=False),  # what e, d and f do when the SNAT view is shown
        Binding("s", "view('snat')", "SNAT"),
        Binding("s", "view('members')", "Members"),  # the footer shows the one that applies
        Binding("slash", "filter", "Filter"),
        Binding("escape", "clear_filter", "Clear filter", show=False),
        Binding("r", "refresh", "Refresh", show=False),
        Binding("question_mark", "help", "Help"),
        Binding("q", "quit", "Quit"),
    ]

    def __init__(self, client: AdminApi, *, interval: float = POLL_INTERVAL, max_backoff: float = MAX_BACKOFF) -> None:
        super().__init__()
        self.client = client
        self.interval = interval
        self.max_backoff = max_backoff
        self.last_status: Json | None = None  # the last answer of status()
        self.connected = False
        self.failures = 0  # polls failed in a row
        self.last_error: ApiError | Unreachable | None = None  # why the last poll failed
        self.filter_text = ""
        self.polls = 0  # completed polls, answered or not (tests wait on it)
        self.cells_written = 0  # member-table cells written by the last poll
        self.snat_cells_written = 0  # SNAT-table cells written by the last poll
        self.view: View = "members"
        self.status_line = ""  # the last action's result, also notified
        self.event_lines: list[str] = []  # what the events pane shows, plain
        self.display_errors: list[str] = []
        self._rows: list[MemberRow] = []
        self._rates: dict[str, float | None] = {}
        self._counters: dict[str, tuple[float, float]] = {}  # key -> (requests, time)
        self._last_event: tuple[str, ...] | None = None
        self._timer: Timer | None = None
        self._polling = False
        self._poll_again = False
        self._retry_in = 0.0  # seconds until the next try, while disconnected
        self._connection_message = ""  # the status line that explains the disconnection

    # ------------------------------------------------------------ layout

    def compose(self) -> ComposeResult:
        yield Static(id="header")
        with Vertical(id="body"):
            yield KeyedTable(fmt.VS_COLUMNS, id="virtual-servers")
            yield Static(id="pools")
            yield KeyedTable(fmt.MEMBER_COLUMNS, id="members")
            yield Static(id="snat-pools")
            yield KeyedTable(fmt.SNAT_COLUMNS, id="snat")
            yield FilterInput(placeholder="filter: pool, member or address (Enter keeps, Esc clears)", id="filter")
            yield RichLog(id="events", max_lines=EVENT_LINES, wrap=False, markup=False, auto_scroll=True)
        yield Static(id="status")
        yield Footer()

    @property
    def members_table(self) -> KeyedTable:
        return self.query_one("#members", KeyedTable)

    @property
    def snat_table(self) -> KeyedTable:
        return self.query_one("#snat", KeyedTable)

    @property
    def current_table(self) -> KeyedTable:
        """The table of the view shown: members or SNAT addresses."""
        return self.snat_table if self.view == "snat" else self.members_table

    @property
    def vs_table(self) -> KeyedTable:
        return self.query_one("#virtual-servers", KeyedTable)

    def on_mount(self) -> None:
        self.vs_table.can_focus = False
        self.vs_table.show_cursor = False
        self.query_one("#virtual-servers").border_title = "virtual servers"
        self.query_one("#members").border_title = "members"
        self.query_one("#snat").border_title = "SNAT addresses"
        self.query_one("#events").border_title = "events"
        self.query_one("#filter").display = False
        self.members_table.focus()
        self._render_header()
        self.poll_now()

    # ------------------------------------------------------------ polling

    def poll_now(self) -> None:
        """Poll as soon as possible, but never while another poll is in flight."""
        if self._polling:
            self._poll_again = True
            return
        if self._timer is not None:
            self._timer.stop()
            self._timer = None
        self._polling = True
        self.run_worker(self._poll(), group="poll", exit_on_error=False)

    async def _poll(self) -> None:
        try:
            delay = await self._poll_once()
        finally:
            self._polling = False
            self.polls += 1
        if self._poll_again:
            self._poll_again = False
            delay = 0.0
        self._timer = self.set_timer(max(delay, MIN_DELAY), self.poll_now)  # Textual's timers refuse 0

    async def _poll_once(self) -> float:
        try:
            status = await self.client.status()
            if not isinstance(status, dict):
                raise ApiError(f"unexpected status answer: {type(status).__name__}")
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001
            return self._lost(classify(exc))
        events: list[Json] | None = None
        events_error: ApiError | None = None
        try:
            events = await self.client.events()
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001
            error = classify(exc)
            if isinstance(error, Unreachable):
                return self._lost(error)
            events_error = error  # the status is good: show it, and say why events are missing
        self.connected, self.failures, self.last_error = True, 0, None
        if self._connection_message and self.status_line == self._connection_message:
            self._set_status("")
        self._connection_message = ""
        self._show(status, events, events_error)
        return self.interval

    def _lost(self, error: ApiError | Unreachable) -> float:
        self.failures += 1
        self.connected = False
        self.last_error = error
        delay: float = min(self.interval * 2.0 ** (self.failures - 1), self.max_backoff)
        self._retry_in = delay
        self.query_one("#body").add_class("-stale")
        self._render_header()
        message = f"admin API: {error}"  # the whole reason; the header says what it means
        if message != self._connection_message:  # once per reason: a retry does not hide an action's result
            self._set_status(message, error=True)
            self._connection_message = message
        return delay

    def _show(self, status: Json, events: list[Json] | None, events_error: ApiError | None) -> None:
        try:
            with self.batch_update():
                self.query_one("#body").remove_class("-stale")
                self._take(status)
                self._render_header()
                self._render_virtual_servers()
                self._render_members()
                self._render_snat()
                self._render_events(events, events_error)
        except Exception as exc:  # noqa: BLE001 - a shape this version does not know: say so, keep running
            message = f"cannot show the answer: {type(exc).__name__}: {exc}"
            self.display_errors.append(message)
            self.log.error(message)
            self._set_status(message, error=True)

    def _take(self, status: Json) -> None:
        """Remember the answer and compute each member's request rate from the previous one."""
        self.last_status = status
        now = _number(status.get("time"))
        if now is None:
            now = time.time()
        rows: list[MemberRow] = []
        for pool in status.get("pools") or []:
            pool_name = str(pool.get("name", "?"))
            for member in pool.get("members") or []:
                name = str(member.get("name", "?"))
                rows.append(MemberRow(f"{pool_name}/{name}", pool_name, name, member, False))
            for member in pool.get("draining") or []:
                name = str(member.get("name", "?"))
                rows.append(MemberRow(f"{pool_name}/{name} (draining)", pool_name, name, member, True))
        counters: dict[str, tuple[float, float]] = {}
        rates: dict[str, float | None] = {}
        for row in rows:
            requests = _number(row.member.get("requests"))
            if requests is None:
                rates[row.key] = None
                continue
            before = self._counters.get(row.key)
            if before is not None and now <= before[1]:  # the same instant again: nothing to divide by
                counters[row.key], rates[row.key] = before, self._rates.get(row.key)
                continue
            counters[row.key] = (requests, now)
            if before is None or requests < before[0]:  # the first answer, or a counter that restarted
                rates[row.key] = None
            else:
                rates[row.key] = (requests - before[0]) / (now - before[1])
        self._rows, self._rates, self._counters = rows, rates, counters

    # ------------------------------------------------------------ rendering

    def _render_header(self) -> None:
        status = self.last_status or {}
        text = Text(no_wrap=True, overflow="ellipsis")
        text.append(f" {status.get('node', '?')} ", style="bold reverse")
        text.append(f"  appliance {status.get('version', '?')}", style="")
        ha = status.get("ha") or {}
        if ha:
            text.append("  ")
            text.append(fmt.ha_text(ha), style=fmt.HA_STYLE.get(str(ha.get("state")), "yellow"))
        uptime = _number(status.get("uptime"))
        if uptime is not None:
            text.append(f"  up {duration(uptime)}")
        text.append("  ")
        if self.connected:
            text.append(" ● live ", style="bold green")
        elif self.last_error is None:
            text.append(" connecting… ", style="bold yellow")
        else:
            label = "DISCONNECTED" if isinstance(self.last_error, Unreachable) else "API ERROR"
            text.append(f" {label} — retrying in {self._retry_in:g}s ", style="bold white on red")
            if self.last_status is not None:
                text.append("  last data shown dimmed", style="dim")
        if self.filter_text:
            text.append(f"  filter: {self.filter_text}", style="bold yellow")
        self.query_one("#header", Static).update(text)

    def _render_virtual_servers(self) -> None:
        servers = (self.last_status or {}).get("virtual_servers") or []
        rows = {str(vs.get("name", i)): fmt.vs_cells(vs) for i, vs in enumerate(servers)}
        self.vs_table.sync(rows)
        self.vs_table.styles.height = len(rows) + 3 if rows else 3

    def _render_members(self) -> None:
        status = self.last_status or {}
        now = _number(status.get("time"))
        needle = self.filter_text.lower()
        rows: dict[str, tuple[fmt.Cell, ...]] = {}
        for row in self._rows:
            if needle and not any(
                needle in s.lower() for s in (row.pool, row.name, str(row.member.get("address", "")))
            ):
                continue
            rows[row.key] = fmt.member_cells(row.pool, row.member, now, self._rates.get(row.key), row.draining)
        self.cells_written = self.members_table.sync(rows)
        pools = status.get("pools") or []
        summary = Text(no_wrap=True, overflow="ellipsis")
        summary.append("pools  ", style="bold")
        summary.append("  ·  ".join(fmt.pool_summary(p) for p in pools) or "none")
        if needle:
            summary.append(f"   showing {len(rows)} of {len(self._rows)} (filter: {self.filter_text})", style="yellow")
        self.query_one("#pools", Static).update(summary)

    def _render_snat(self) -> None:
        status = self.last_status or {}
        now = _number(status.get("time"))
        needle = self.filter_text.lower()
        snat_pools = status.get("snat_pools") or []
        rows: dict[str, tuple[fmt.Cell, ...]] = {}
        total = 0
        for snat in snat_pools:
            name = str(snat.get("name", "?"))
            users = [str(pool) for pool in snat.get("used_by") or []]
            for address in snat.get("addresses") or []:
                total += 1
                where = str(address.get("address", "?"))
                lanes = [str(lane.get("pool", "")) for lane in address.get("pools") or []]
                if needle and not any(needle in s.lower() for s in (name, where, *users, *lanes)):
                    continue
                rows[f"{name}/{where}"] = fmt.snat_cells(snat, address, now)
        self.snat_cells_written = self.snat_table.sync(rows)
        summary = Text(no_wrap=True, overflow="ellipsis")
        if not snat_pools:
            summary.append(NO_SNAT, style="dim")
        for i, snat in enumerate(snat_pools):
            if i:
                summary.append("\n")
            summary.append("SNAT  ", style="bold")
            summary.append(fmt.snat_summary(snat, now))
        if needle:
            summary.append(f"   showing {len(rows)} of {total} (filter: {self.filter_text})", style="yellow")
        self.query_one("#snat-pools", Static).update(summary)

    def _render_events(self, events: list[Json] | None, error: ApiError | None) -> None:
        log = self.query_one("#events", RichLog)
        if error is not None:
            log.border_subtitle = f"events unavailable: {error}"
            return
        log.border_subtitle = ""
        for event in fmt.new_events(self._last_event, events or []):
            plain, parts = fmt.event_line(event)
            line = Text(no_wrap=True)
            for part, style in parts:
                line.append(part, style=style)
            log.write(line)
            self.event_lines.append(plain)
            self._last_event = fmt.event_key(event)
        del self.event_lines[:-EVENT_LINES]

    def _set_status(self, message: str, *, error: bool = False) -> None:
        self.status_line = message
        self.query_one("#status", Static).update(Text(message, style="bold red" if error else "green"))

    # ------------------------------------------------------------ actions

    def selected(self) -> MemberRow | None:
        key = self.members_table.selected_key
        return next((row for row in self._rows if row.key == key), None)

    def _target(self) -> MemberRow | None:
        row = self.selected()
        if row is None:
            self.notify("no member selected", severity="warning", markup=False)
        elif row.draining:
            self.notify(f"{row.pool}/{row.name} was removed and is draining", severity="warning", markup=False)
            return None
        return row

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "view":
            return bool(parameters) and parameters[0] != self.view  # `s` shows the other view
        if action in ("set_state", "force_offline"):
            return True if self.view == "members" else None  # greyed out in the SNAT view
        if action == "members_only":
            return self.view != "members"
        return True

    def action_view(self, view: str) -> None:
        """Show the members (`members`) or the SNAT addresses (`snat`); each table keeps its cursor."""
        self.view = "snat" if view == "snat" else "members"
        self.query_one("#body").set_class(self.view == "snat", "-snat")
        if not isinstance(self.focused, Input):
            self.current_table.focus()
        self.refresh_bindings()

    def action_members_only(self) -> None:
        self.notify("e, d and f act on members: press s for the members view", severity="warning", markup=False)

    def action_set_state(self, state: str) -> None:
        row = self._target()
        if row is not None:
            self.run_worker(self._set_state(row.pool, row.name, state), group="action", exit_on_error=False)

    def action_force_offline(self) -> None:
        row = self._target()
        if row is None:
            return

        def answered(yes: bool | None) -> None:
            if yes:
                self.run_worker(
                    self._set_state(row.pool, row.name, "forced_offline"), group="action", exit_on_error=False
                )
            else:
                self.notify(f"{row.pool}/{row.name}: left as it was", markup=False)

        self.push_screen(
            ConfirmScreen(
                f"Force {row.pool}/{row.name} ({row.member.get('address', '')}) offline?",
                "Nothing new is sent to it, not even persistent clients; open connections run on.",
            ),
            answered,
        )

    async def _set_state(self, pool: str, member: str, state: str) -> None:
        try:
            await self.client.set_state(pool, member, state)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001
            error = classify(exc)
            reason = error.message if isinstance(error, ApiError) else f"appliance unreachable: {error}"
            message = f"{pool}/{member}: {state.replace('_', ' ')} failed: {reason}"
            self._set_status(message, error=True)
            self.notify(message, title="action failed", severity="error", markup=False, timeout=8)
            return
        message = f"{pool}/{member}: {state.replace('_', ' ')}"
        self._set_status(message)
        self.notify(message, markup=False)
        self.poll_now()

    def action_refresh(self) -> None:
        self.poll_now()

    def action_help(self) -> None:
        self.push_screen(HelpScreen())

    def action_filter(self) -> None:
        box = self.query_one("#filter", FilterInput)
        box.display = True
        box.focus()

    def action_clear_filter(self) -> None:
        box = self.query_one("#filter", FilterInput)
        box.value = ""
        box.display = False
        self._set_filter("")
        self.current_table.focus()

    @on(Input.Changed, "#filter")
    def _filter_changed(self, event: Input.Changed) -> None:
        self._set_filter(event.value)

    @on(Input.Submitted, "#filter")
    def _filter_submitted(self, event: Input.Submitted) -> None:
        if not event.value:
            self.action_clear_filter()
        else:
            self.current_table.focus()

    def _set_filter(self, value: str) -> None:
        if value == self.filter_text:
            return
        self.filter_text = value
        self._render_header()
        if self.last_status is not None:
            self._render_members()
            self._render_snat()


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def make_app(client: AdminApi, *, interval: float = POLL_INTERVAL, max_backoff: float = MAX_BACKOFF) -> ApplianceApp:
    """The TUI over `client` (an `AdminApi`: `AsyncAdminClient` or a test's fake)."""
    return ApplianceApp(client, interval=interval, max_backoff=max_backoff)
