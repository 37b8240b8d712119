"""`memplace demo`: profile, advise, place and report a built-in example."""

from __future__ import annotations

from pathlib import Path

import click

from memplace.demo import run_demo


def _echo(text: str, bold: bool = False, fg: str | None = None, nl: bool = True) -> None:
    if bold or fg:
        click.secho(text, bold=bold or None, fg=fg, err=True, nl=nl)
    else:
        click.echo(text, err=True, nl=nl)


@click.command("demo")
@click.option("--dir", "workdir", default="memplace-demo", show_default=True,
              type=click.Path(file_okay=False), help="Where to build, profile and report.")
def demo_command(workdir: str) -> None:
    """Profile, advise, place and report a built-in example with hot and cold data."""
    raise SystemExit(run_demo(Path(workdir), _echo))
