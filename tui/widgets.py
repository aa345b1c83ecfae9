"""Widgets of the TUI: a keyed table that updates only what changed, and two modal screens."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import ClassVar

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical
from textual.coordinate import Coordinate
from textual.screen import ModalScreen
from textual.widgets import Button, DataTable, Input, Label, Static

from tui import format as fmt
from tui.format import Cell, Column


class KeyedTable(DataTable[Text]):
    """A DataTable whose rows are keyed (`pool/member`) and kept in step with `sync()`.

    `sync(rows)` diffs the wanted rows against what is on screen: unchanged
    cells are left alone, changed cells get one `update_cell` each (no width
    recalculation, so no layout), rows are added or removed only when the set
    of keys changes, and the cursor stays on the same key across all of it
    (textual#5273, #6457: full redraws and width updates are what cost).
    """

    def __init__(self, columns: Sequence[Column], **kwargs: object) -> None:
        super().__init__(cursor_type="row", zebra_stripes=True, **kwargs)  # type: ignore[arg-type]
        self.spec = tuple(columns)
        self.shown: dict[str, tuple[Cell, ...]] = {}

    def on_mount(self) -> None:
        for column in self.spec:
            self.add_column(Text(column.label, justify=column.justify), key=column.key, width=column.width)

    def _text(self, index: int, cell: Cell) -> Text:
        text, style = cell
        return Text(text, style=style, justify=self.spec[index].justify, no_wrap=True, overflow="ellipsis")

    def _add(self, key: str, cells: tuple[Cell, ...]) -> None:
        self.add_row(*(self._text(i, c) for i, c in enumerate(cells)), key=key)

    @property
    def selected_key(self) -> str | None:
        if not self.row_count:
            return None
        row = min(max(self.cursor_row, 0), self.row_count - 1)
        value = self.coordinate_to_cell_key(Coordinate(row, 0)).row_key.value
        return value

    def sync(self, rows: Mapping[str, tuple[Cell, ...]]) -> int:
        """Show exactly `rows` (in their order); returns how many cells were written."""
        wanted = list(rows)
        current = list(self.shown)
        written = 0
        if wanted != current:
            selected = self.selected_key
            kept = [k for k in current if k in rows]
            added = [k for k in wanted if k not in self.shown]
            if kept + added == wanted:  # membership changed at the end: remove and append only
                for key in current:
                    if key not in rows:
                        self.remove_row(key)
                        del self.shown[key]
                for key in added:
                    self._add(key, rows[key])
                    self.shown[key] = rows[key]
                    written += len(rows[key])
            else:  # the order changed: rebuild
                self.clear()
                self.shown = {}
                for key in wanted:
                    self._add(key, rows[key])
                    self.shown[key] = rows[key]
                    written += len(rows[key])
            if selected is not None and selected in rows:
                self.move_cursor(row=self.get_row_index(selected), animate=False, scroll=False)
        for key in wanted:
            old, new = self.shown[key], rows[key]
            if old == new:
                continue
            for i, (before, after) in enumerate(zip(old, new)):
                if before != after:
                    self.update_cell(key, self.spec[i].key, self._text(i, after), update_width=True)
                    written += 1
            self.shown[key] = new
        return written


class FilterInput(Input):
    """The `/` filter: narrows the members live; Enter keeps it, Esc clears it."""

    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape", "app.clear_filter", "Clear filter", show=False)]


class ConfirmScreen(ModalScreen[bool]):
    """Asks y/n before a destructive action; dismisses with the answer."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("y", "answer(True)", "Yes"),
        Binding("n,escape", "answer(False)", "No"),
    ]

    def __init__(self, question: str, detail: str = "") -> None:
        super().__init__()
        self.question = question
        self.detail = detail

    def compose(self) -> ComposeResult:
        with Vertical(id="dialog"):
            yield Label(self.question, id="question")
            if self.detail:
                yield Static(self.detail, id="detail")
            with Horizontal(id="buttons"):
                yield Button("Yes (y)", variant="error", id="yes")
                yield Button("No (n)", variant="primary", id="no")

    def on_mount(self) -> None:
        self.query_one("#no", Button).focus()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        self.dismiss(event.button.id == "yes")

    def action_answer(self, answer: bool) -> None:
        self.dismiss(answer)


HELP = (
    ("↑ ↓  PgUp PgDn", "move between members (or SNAT addresses)"),
    ("s", "switch between the members and the SNAT view (each keeps its cursor)"),
    ("e", "enable the member (members view)"),
    ("d", "disable the member (drains: no new connections, persistence honoured)"),
    ("f", "force the member offline (asks first; no new connections at all)"),
    ("/", "filter the rows by pool, name or address (Enter keeps it, Esc clears)"),
    ("r", "refresh now"),
    ("?", "this help"),
    ("q", "quit"),
)


class HelpScreen(ModalScreen[None]):
    """The key list."""

    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape,question_mark,q,enter", "close", "Close")]

    def compose(self) -> ComposeResult:
        text = Text()
        text.append("Keys\n\n", style="bold")
        for key, what in HELP:
            text.append(f"  {key:<15}", style="bold cyan")
            text.append(f"{what}\n")
        text.append("\nHealth: ", style="bold")
        _legend(text, fmt.HEALTH_STYLE)
        text.append("    Admin: ", style="bold")
        _legend(text, fmt.ADMIN_STYLE)
        text.append("  (source in brackets)\n")
        text.append("SNAT: ", style="bold")
        text.append("usable", style="green")
        text.append(" · ")
        text.append("draining", style="yellow")
        text.append(" (removed, its connections finish) · ")
        text.append("quarantined", style="bold red")
        text.append(" for an LB pool until a time\n")
        text.append("      LB pools: those drawing from it, (n) = open connections through it\n\n")
        text.append("Esc, ? or q closes this help.", style="dim")
        with Vertical(id="help"):
            yield Static(text)

    def action_close(self) -> None:
        self.dismiss(None)


def _legend(text: Text, styles: dict[str, str]) -> None:
    """Each state in the style the tables show it in, separated by dots."""
    for i, (state, style) in enumerate(styles.items()):
        text.append(" · " if i else "")
        text.append(state, style=style)
