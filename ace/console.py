"""Terminal output that never cuts an id.

Rich shrinks a table that is wider than the console (80 columns in a pipe, ``COLUMNS`` when set) by
folding or ellipsising its cells, ids included ("rehe…"), and an id cut like that cannot be given
to ``ace stop``. :class:`IdTable` marks the id columns: they are never wrapped, folded or cut
(``no_wrap`` with the longest id as their minimum width), the other columns fold instead, and where
even that cannot fit the console the table is printed as one record a line, ids first::

    t = IdTable("live streams", [Col("id", id=True), "status", Col("lag s", justify="right")])
    t.add_row("rehearsal-1a2b3c4d", "running", "0.4")
    t.print(console)

Cells are plain strings (never parsed as console markup, so ``[`` in a file name is safe) or
:class:`rich.text.Text` for styled ones. :func:`say` prints one line that the console must not
wrap (a line naming an id or a path).
"""

from __future__ import annotations

from dataclasses import dataclass

from rich.console import Console
from rich.table import Table
from rich.text import Text

#: the narrowest a column that is not an id folds to before the table gives way to records
MIN_FOLD = 4


@dataclass(frozen=True)
class Col:
    header: str
    #: an id (stream, show, moment, job ...): printed whole, never wrapped or cut
    id: bool = False
    justify: str = "left"
    #: the narrowest this column may fold to (not ids); a column narrower than this keeps its width
    min_width: int = MIN_FOLD


def _text(cell) -> Text:
    if isinstance(cell, Text):
        return cell
    return Text("" if cell is None else str(cell))


def _width(t: Text) -> int:
    return max((Text(line).cell_len for line in t.plain.split("\n")), default=0)


class IdTable:
    """A table whose id columns are always printed whole (see the module's docstring)."""

    def __init__(self, title: str | None, columns: list[Col | str], *, caption: str | None = None):
        self.title = title
        self.caption = caption
        self.columns = [c if isinstance(c, Col) else Col(c) for c in columns]
        self.rows: list[list[Text]] = []

    def add_row(self, *cells) -> None:
        if len(cells) != len(self.columns):
            raise ValueError(f"{len(cells)} cells for {len(self.columns)} columns")
        self.rows.append([_text(c) for c in cells])

    def _natural(self, i: int) -> int:
        return max([_width(r[i]) for r in self.rows] + [Text(self.columns[i].header).cell_len, 1])

    def table(self) -> Table:
        """The table form: id columns unwrapped at the width of their longest id, the others folding."""
        t = Table(title=self.title, caption=self.caption)
        for i, c in enumerate(self.columns):
            if c.id:
                t.add_column(c.header, justify=c.justify, no_wrap=True, min_width=self._natural(i), overflow="ellipsis")
            else:
                t.add_column(c.header, justify=c.justify, overflow="fold")
        for r in self.rows:
            t.add_row(*r)
        return t

    def min_width(self) -> int:
        """The narrowest console the table form fits with every id whole and the other columns
        folded to no less than their ``min_width`` (borders and padding included)."""
        t = self.table()
        need = 0
        for i, c in enumerate(self.columns):
            need += self._natural(i) if c.id else min(self._natural(i), max(1, c.min_width))
            # rich's own padding and border widths (left/right padding; the edges and separators)
            need += t._get_padding_width(i) if hasattr(t, "_get_padding_width") else 2
        return need + (t._extra_width if hasattr(t, "_extra_width") else len(self.columns) + 1)

    def fits(self, width: int) -> bool:
        return self.min_width() <= width

    def records(self) -> list[Text]:
        """One line a row: its ids, then ``header: value`` for every other non-empty cell."""
        lines = []
        for r in self.rows:
            ids = [cell for c, cell in zip(self.columns, r) if c.id]
            rest = [(c, cell) for c, cell in zip(self.columns, r) if not c.id and cell.plain.strip()]
            line = Text("  ").join(ids) if ids else Text()
            fields = []
            for c, cell in rest:
                flat = " ".join(cell.plain.split())
                one = cell if flat == cell.plain else Text(flat, style=cell.style)  # one line
                fields.append(Text.assemble(f"{c.header}: ", one))
            if fields:
                line = Text.assemble(line, "  " if ids else "", Text("; ").join(fields))
            lines.append(line)
        return lines

    def print(self, console: Console) -> None:
        """The table where it fits the console, else a title line and one record a line (never wrapped)."""
        if self.fits(console.width):
            console.print(self.table())
            return
        if self.title:
            say(console, Text(self.title, style="italic"))
        for line in self.records():
            say(console, line)
        if self.caption:
            say(console, Text(self.caption, style="dim"))

    def __rich__(self) -> Table:  # console.print(id_table): the table form
        return self.table()


def say(console: Console, text: str | Text) -> None:
    """Print one line as it is: no markup, no highlighting, no line breaks added (the terminal
    may still show it over several rows, but the text holds every id and path whole)."""
    console.print(text if isinstance(text, Text) else Text(text), soft_wrap=True, highlight=False)
