"""`memplace report`: a profile and/or a run's statistics, in the terminal, as JSON or as a page.

    memplace report --profile profile.4242.json --policy app.toml --html report.html
    memplace report --stats stats.json --html report.html
    memplace report --stats stats.json --json
"""

from __future__ import annotations

import json

import click

from memplace.commands.options import ROWS, OutputFile
from memplace.console import console as make_console, phase
from memplace.report import Summary, peak_text, reasons_text, summarize, write_html
from memplace.units import format_size


def print_summary(sm: Summary, top: int = 15) -> None:
    from rich.table import Table

    console = make_console(min_width=110)
    run = ""
    if sm.processes is not None:
        run = f"  {sm.processes} process(es)" + (f", exit status {sm.returncode}" if sm.returncode is not None else "")
    console.print(f"[bold]memplace report[/bold]: {' '.join(sm.command)}{run}  [dim]({', '.join(sm.sources)})[/dim]")
    if sm.devices:
        t = Table(title=f"Devices ({sm.device_origin})", title_justify="left")
        for c in ("device", "allocations", "bytes", "peak", "capacity", "fallbacks"):
            t.add_column(c, justify="left" if c in ("device", "fallbacks") else "right")
        for d in sm.devices:
            t.add_row(d.name, str(d.allocations), format_size(d.bytes), peak_text(d),
                      format_size(d.capacity) if d.capacity else "-",
                      reasons_text(d) if d.fallback_reasons else str(d.fallbacks))
        console.print(t)
    if sm.rules:
        t = Table(title=f"Rules by bytes matched ({len(sm.rules)} in all)", title_justify="left")
        for c in ("rule", "device", "hits", "bytes"):
            t.add_column(c, justify="right" if c in ("hits", "bytes") else "left")
        for r in sorted(sm.rules, key=lambda r: -r.bytes)[:top]:
            t.add_row(r.name, r.device or "-", str(r.hits), format_size(r.bytes))
        console.print(t)
        if len(sm.rules) > top:
            console.print(f"… and {len(sm.rules) - top} more rule(s) (--top N shows more; --json shows all)")
    if sm.sites:
        t = Table(title=f"Top sites ({len(sm.sites)} in all)", title_justify="left")
        for c in ("function", "file:line", "site", "allocs", "peak", "accessed", "device"):
            t.add_column(c, justify="right" if c in ("allocs", "peak", "accessed") else "left")
        for s in sorted(sm.sites, key=lambda s: (-(s.accessed or 0), -s.peak))[:top]:
            t.add_row(s.function or "?", s.location or "?", s.frame, str(s.allocations), format_size(s.peak),
                      "-" if s.accessed is None else format_size(s.accessed), s.device or "-")
        console.print(t)
    if sm.process_list:
        t = Table(title=f"Processes ({len(sm.process_list)} images)", title_justify="left")
        for c in ("pid", "parent", "began", "program", "ended"):
            t.add_column(c, justify="right" if c in ("pid", "parent") else "left")
        shown = sm.process_list if len(sm.process_list) <= top else \
            [p for p in sm.process_list if not p.complete][:top] or sm.process_list[:top]
        for p in shown:
            t.add_row(str(p.pid), "-" if p.parent is None else str(p.parent), p.began or "-", p.exe or "?", p.ended)
        console.print(t)
        if len(shown) < len(sm.process_list):
            ends: dict[str, int] = {}
            for p in sm.process_list:
                ends[p.ended.split(" ")[0] if p.complete else "no final counts"] = \
                    ends.get(p.ended.split(" ")[0] if p.complete else "no final counts", 0) + 1
            console.print(f"  {len(sm.process_list) - len(shown)} more not shown (--json lists all); ended by: "
                          + ", ".join(f"{k} {v}" for k, v in sorted(ends.items())))
    if sm.stepped_aside:
        t = Table(title="Stepped aside for (ran without the runtime)", title_justify="left")
        for c in ("pid", "program", "why"):
            t.add_column(c, justify="right" if c == "pid" else "left")
        for a in sm.stepped_aside:
            t.add_row(str(a.pid), a.path, a.reason + (f" (its interpreter {a.interpreter})" if a.interpreter else ""))
        console.print(t)
    for n in sm.notes:
        console.print(f"[yellow]note:[/yellow] {n}")


@click.command("report")
@click.option("--profile", "profile_path", type=click.Path(dir_okay=False), help="A profile (memplace profile).")
@click.option("--stats", "stats_path", type=click.Path(dir_okay=False), help="Run statistics (memplace run).")
@click.option("--policy", "policy_path", type=click.Path(dir_okay=False),
              help="Place the profile's sites by this policy; with --stats, capacities and rule devices from it.")
@click.option("--html", "html_out", type=OutputFile("HTML page"), help="Write a self-contained HTML page here.")
@click.option("--top", type=ROWS, default=15, show_default=True)
@click.option("--json", "as_json", is_flag=True)
def report_command(profile_path, stats_path, policy_path, html_out, top, as_json):
    """Summarise a profile and/or a run's statistics; optionally as an HTML page."""
    with phase("reading and summarizing"):
        sm = summarize(profile_path, stats_path, policy_path)
    if html_out:
        with phase(f"writing {html_out}"):
            write_html(sm, html_out)
    if as_json:
        click.echo(json.dumps({**sm.to_json(), "html": html_out}, indent=2))
    else:
        print_summary(sm, top)
        if html_out:
            click.echo(f"HTML report: {html_out}")
