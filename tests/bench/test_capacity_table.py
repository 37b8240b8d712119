"""bench/capacity's cells and verdict: runs that were OOM-killed next to runs that finished."""

from __future__ import annotations

import sys
from pathlib import Path
from types import SimpleNamespace

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench" / "capacity"))
import run as bench  # noqa: E402


def outcome(status: str, seconds: float = 0.0, faults: int = 0):
    return SimpleNamespace(status=status, seconds=seconds, major_faults=faults, error="", returncode=1)


def test_a_cell_keeps_the_runs_that_finished_and_counts_the_others():
    c = bench.Cell()
    c.add(outcome("OOM"))
    assert c.status == "OOM" and c.median() is None and not c.gave_up()  # an OOM is run again
    c.add(outcome("ok", 17.0, 40))
    c.add(outcome("ok", 19.0, 60))
    assert c.status == "ok" and c.median() == 18.0 and c.failures == {"OOM": 1}
    assert c.major_faults == [40, 60]  # of the runs that finished
    t = bench.Cell()
    t.add(outcome("timeout"))
    assert t.gave_up() and t.status == "timeout"
    f = bench.Cell()
    f.add(outcome("OOM"))
    f.add(outcome("failed"))
    assert f.gave_up() and f.status == "failed"


def cell(seconds: list[float], **failures: int) -> dict:
    c = bench.Cell(seconds=list(seconds), failures=dict(failures))
    return {"status": c.status, "seconds": c.seconds, "median_s": c.median(), "failures": c.failures,
            "major_faults": [], "note": ""}


def test_the_table_says_how_many_runs_did_not_finish():
    assert bench.cell_text(cell([17.11], OOM=2)) == "17.11 2/3 OOM"
    assert bench.cell_text(cell([], OOM=3)) == "OOM"
    assert bench.cell_text(cell([12.0])) == "12.00"
    worst = bench.cell_text(cell([120.0], OOM=1, timeout=1))
    assert worst == "120.00 2/3 t/o" and len(worst) <= 16  # the worst, and it fits the column


def results(at50: dict[str, dict], program: str = "spmv") -> list[dict]:
    cells = {}
    for pct in bench.LIMITS:
        for v in bench.VARIANTS:
            cells[f"{v}@{pct}"] = at50[v] if pct == 50 else cell([10.0])
    return [{"program": program, "peak": 100 << 20, "heap": 90 << 20, "unlimited_s": 1.0, "cells": cells}]


def test_swap_finishing_one_run_in_three_faster_misses_the_target(capsys):
    at50 = {"malloc": cell([], OOM=3), "file": cell([25.0, 26.0, 27.0]), "swap": cell([17.0], OOM=2),
            "memplace": cell([20.0, 20.0, 20.0]), "memplace-swap": cell([13.0, 14.0, 15.0])}
    assert bench.print_table(results(at50)) is False  # 17 s against 20: never slower is missed
    out = capsys.readouterr().out
    assert "17.00 2/3 OOM" in out and "at 50% (c) swap file 0.85x" in out


def test_memplace_must_finish_every_run_where_the_others_finish_any():
    at50 = {"malloc": cell([], OOM=3), "file": cell([25.0, 26.0, 27.0]), "swap": cell([], OOM=3),
            "memplace": cell([20.0, 20.0], OOM=1), "memplace-swap": cell([13.0, 14.0], OOM=1)}
    assert bench.print_table(results(at50)) is False
    out = capsys_free(at50)
    assert "at 50% (d) did not complete every run" in out
    assert "completes wherever they do: NO" in out  # (e) too
    at50["memplace"] = cell([20.0, 20.0, 20.0])
    at50["memplace-swap"] = cell([13.0, 14.0, 15.0])
    assert bench.print_table(results(at50)) is True


def capsys_free(at50: dict) -> str:
    """The table's text (printed by print_table to stdout)."""
    import contextlib
    import io
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        bench.print_table(results(at50))
    return buf.getvalue()
