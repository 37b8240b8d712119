"""Option types shared by the commands: numbers with their ranges, checked by click."""

from __future__ import annotations

import math

import click


class FiniteFloat(click.FloatRange):
    """A float in a range, never nan or infinite (click's FloatRange lets nan through)."""

    name = "finite float"

    def convert(self, value, param, ctx):
        rv = super().convert(value, param, ctx)
        if not math.isfinite(rv):
            self.fail(f"{value!r} is not a finite number", param, ctx)
        return rv


SECONDS = FiniteFloat(min=0, min_open=True, max=7 * 24 * 3600)  # a time limit: above 0, at most a week
ROWS = click.IntRange(min=0, max=1 << 31)  # rows of a table
PID = click.IntRange(min=1, max=(1 << 31) - 1)  # pid_t; one that is not running is the reader's to say
TID = PID


class OutputFile(click.ParamType):
    """A file a command writes: refused before any work when it is a directory or its
    directory does not exist."""

    name = "file"

    def __init__(self, what: str):
        self.what = what

    def convert(self, value, param, ctx):
        from memplace.errors import UserError
        from memplace.inputs import check_output

        try:
            check_output(value, self.what)
        except UserError as e:
            self.fail(str(e), param, ctx)
        return value
