"""`memplace report`: a profile and/or a run's statistics, in the terminal, as JSON or as a page.

    memplace report --profile profile.4242.json --policy app.toml --html report.html
    memplace report --stats stats.json --html report.html
    memplace report --stats stats.json --json
"""

from __future__ import annotations

import json

import click

from memplace.commands.options import ROWS, OutputFile
from memplace.console import console as make_console
from memplace.report import Summary, reasons_text, summarize, write_html
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
            t.add_row(d.name, str(d.allocations), format_size(d.bytes), format_size(d.peak_bytes),
                      format_size(d.capacity) if d.capacity else "-",
                      reasons_text(d) if d.fallback_reasons else str(d.fallbacks))
        console.print(t)
    if sm.rules:
        t = Table(title="Rules (allocations matched)", title_justify="left")
        for c in ("rule", "device", "hits", "bytes"):
            t.add_column(c, justify="right" if c in ("hits", "bytes") else "left")
        for r in sm.rules:
            t.add_row(r.name, r.device or "-", str(r.hits), format_size(r.bytes))
        console.print(t)
    if sm.sites:
        t = Table(title=f"Top sites ({len(sm.sites)} in all)", title_justify="left")
        for c in ("function", "file:line", "site", "allocs", "peak", "accessed", "device"):
            t.add_column(c, justify="right" if c in ("allocs", "peak", "accessed") else "left")
        for s in sorted(sm.sites, key=lambda s: (-(s.accessed or 0), -s.peak))[:top]:
            t.add_row(s.function or "?", s.location or "?", s.frame, str(s.allocations), format_size(s.peak),
                      "-" if s.accessed is None else format_size(s.accessed), s.device or "-")
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
    sm = summarize(profile_path, stats_path, policy_path)
    if html_out:
        write_html(sm, html_out)
    if as_json:
        click.echo(json.dumps({**sm.to_json(), "html": html_out}, indent=2))
    else:
        print_summary(sm, top)
        if html_out:
            click.echo(f"HTML report: {html_out}")
