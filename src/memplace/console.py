"""The one place rich consoles are made, and how library code says a line on stderr.

Commands print tables through these; libraries never import click, so the few lines
they say on their own (warnings, progress) go through `say`.
"""

from __future__ import annotations

import sys
from contextlib import contextmanager


def _console_class():
    from rich.console import Console

    class QuietConsole(Console):
        """A reader that went away (`memplace keys core | head -1`) is no error: rich's own
        handling exits with status 1; this lets memplace end quietly with 0 instead, as
        for plain output (cli.main catches BrokenPipeError)."""

        def on_broken_pipe(self) -> None:
            self.quiet = True
            raise BrokenPipeError

    return QuietConsole


def table_console():
    """For wide tables on stdout: off a terminal, rich would squeeze them into 80
    columns, so give them room (and no colour) instead."""
    Console = _console_class()
    return Console() if sys.stdout.isatty() else Console(width=200, color_system=None)


def console(*, min_width: int | None = None, stderr: bool = False, highlight: bool = True):
    """A rich console; piped, it is at least `min_width` wide (do not fold paths into slivers)."""
    out = _console_class()(stderr=stderr, highlight=highlight)
    if min_width is not None and not out.is_terminal:
        out.width = max(out.width, min_width)
    return out


def say(text: str) -> None:
    """One line on stderr, flushed (what click.echo(text, err=True) does for plain text)."""
    sys.stderr.write(text + "\n")
    sys.stderr.flush()


@contextmanager
def phase(text: str):
    """'memplace: TEXT…' on stderr while a long step runs, when stderr is a terminal; the
    line is erased when the step ends (piped, nothing: logs keep only results)."""
    live = sys.stderr.isatty()
    if live:
        sys.stderr.write(f"\r\x1b[Kmemplace: {text}…")
        sys.stderr.flush()
    try:
        yield
    finally:
        if live:
            sys.stderr.write("\r\x1b[K")
            sys.stderr.flush()


def plain_table(header: list[str], rows: list[list[str]], indent: str = "") -> str:
    """Columns aligned with spaces, for output that is not a terminal (no rich, no cut at
    80 columns); the last column is never padded.

    >>> print(plain_table(["key", "destructor"], [["0", "prog:destroy"], ["12", "-"]]))
    key  destructor
    0    prog:destroy
    12   -
    """
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    lines = [indent + "  ".join(c.ljust(w) for c, w in zip(r[:-1], widths)) + ("  " if len(r) > 1 else "") + r[-1]
             for r in [header, *rows]]
    return "\n".join(line.rstrip() for line in lines)
