"""`memplace interop import|export`: FlexMalloc / ecoHMEM files <-> memplace policies."""

from __future__ import annotations

import json

import click

from memplace.commands.options import OutputFile

from memplace.interop import export_policy, import_locations, parse_pairs


@click.group("interop")
def interop_group():
    """Read FlexMalloc / ecoHMEM placement files as policies, and write them."""


@interop_group.command("import")
@click.argument("locations", type=click.Path(dir_okay=False))
@click.option("-o", "--output", required=True, type=OutputFile("policy"), help="Policy TOML to write.")
@click.option("--definitions", type=click.Path(dir_okay=False), help="FlexMalloc memory-definitions file.")
@click.option("--allocator", "allocators", multiple=True, metavar="ALLOC=DEVICE", help="Device serving an allocator.")
@click.option("--device", "devices", multiple=True, metavar="NAME=SPEC", help="A device, as in `memplace advise`.")
@click.option("--json", "as_json", is_flag=True)
def import_command(locations, output, definitions, allocators, devices, as_json):
    """FlexMalloc locations file or ecoHMEM advisor output -> memplace policy."""
    locs = import_locations(locations, output, definitions, allocators, devices)
    notes = [f"line {l.line}: {n}" for l in locs for n in l.notes]
    if as_json:
        click.echo(json.dumps({"policy": output, "rules": len(locs), "form": locs[0].form if locs else None,
                               "notes": notes}, indent=2))
    else:
        for n in notes:
            click.echo(f"note: {n}", err=True)
        click.echo(f"{len(locs)} location(s) -> {output}")


@interop_group.command("export")
@click.argument("policy", type=click.Path(dir_okay=False))
@click.option("-o", "--output", required=True, type=OutputFile("locations file"), help="Locations file to write.")
@click.option("--form", type=click.Choice(["auto", "raw", "source"]), default="auto", show_default=True)
@click.option("--allocator", "allocators", multiple=True, metavar="DEVICE=ALLOC", help="FlexMalloc allocator of a device.")
@click.option("--definitions-out", type=OutputFile("definitions file"), help="Also write a memory-definitions file.")
@click.option("--json", "as_json", is_flag=True)
def export_command(policy, output, form, allocators, definitions_out, as_json):
    """memplace policy -> FlexMalloc locations file."""
    ex = export_policy(policy, output, form, parse_pairs(allocators, "--allocator"), definitions_out)
    if as_json:
        click.echo(json.dumps({"locations": output, "definitions": definitions_out, "skipped": ex.skipped}, indent=2))
    else:
        for s in ex.skipped:
            click.echo(f"skipped: {s}", err=True)
        click.echo(f"{sum(1 for l in ex.text.splitlines() if l and not l.startswith('#'))} location(s) -> {output}")
