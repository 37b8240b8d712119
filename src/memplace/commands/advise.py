"""`memplace advise PROFILE --policy-out FILE`: a policy from a profile, with reasons.

    $ memplace advise profile.4242.json --policy-out app.toml \\
          --device hbm=numa:1,latency=80ns,capacity=2GiB \\
          --device ddr=numa:0,latency=140ns

Devices come from `--device NAME=SPEC` (SPEC: a kind — numa:N[+M|-K], file:DIR,
hugepages[:SIZE], system — then key=value items: latency, read-latency, write-latency
(ns), bandwidth, read-bandwidth, write-bandwidth (GB/s), capacity, mode, fallback), or,
without any, from the machine's NUMA nodes and their HMAT attributes.
"""

from __future__ import annotations

import json

import click

from memplace.advisor import solver as adv
from memplace.advisor.advice import advice_json, device_specs, load_profiles, run_advice
from memplace.advisor.device_specs import share_among_ranks
from memplace.advisor.page_cache import ROOM_FLOOR, ROOM_PER_READ_AROUND, SharedMemory, room_for
from memplace.advisor.policy_writer import write_policy
from memplace.commands.options import ROWS, SECONDS, OutputFile
from memplace.console import console as make_console
from memplace.errors import UserError
from memplace.placement.sysfs import read_around
from memplace.units import format_ns, format_size, parse_size


def print_table(advice: adv.Advice, top: int) -> None:
    """The sites that matter most first: by modelled access cost where they would stay
    without a policy (accesses x latency), then by footprint."""
    from rich.table import Table

    console = make_console(min_width=120)  # piped: do not fold paths into slivers
    t = Table(title="Placement advice (sites by modelled access cost)", title_justify="left")
    for col, just in (("#", "right"), ("function", "left"), ("file:line", "left"), ("called from", "left"),
                      ("peak", "right"), ("accessed", "right"), ("per byte", "right"), ("saves", "right"),
                      ("device", "left")):
        t.add_column(col, justify=just, overflow="fold")
    ranked = sorted(advice.placements, key=lambda p: (-p.default_cost, -p.site.peak_live_bytes))
    for i, p in enumerate(ranked[:top], 1):
        style = "bold green" if p.device != advice.default else None
        fn = p.site.function or str(p.site.frames[0])
        measured = p.site.accesses is not None
        t.add_row(str(i), fn if len(fn) <= 40 else fn[:39] + "…", p.site.location or "?", p.site.callers(),
                  format_size(p.site.peak_live_bytes), format_size(p.site.accesses) if measured else "-",
                  f"{p.density:.3g}" if measured else "-",
                  format_ns(p.default_cost - p.cost) if p.device != advice.default else "",
                  p.device + (f" (+{format_size(p.spill.capacity)} on {p.spill.device})" if p.spill else ""), style=style)
    console.print(t)
    more = len(advice.placements) - top
    if more > 0:
        console.print(f"… and {more} more site(s) (--top N shows more; --json shows all)")
    if any(p.site.accesses is None for p in advice.placements):
        console.print("  accessed -: not measured; such a site is modelled as writing each of its bytes once")
    for d in advice.devices:
        cap = f" of {format_size(d.capacity)}" if d.capacity is not None else ""
        console.print(f"  {d.name}: {len(advice.on(d.name))} site(s), modelled peak {format_size(advice.peak[d.name])}{cap}")
    saved = advice.default_cost - advice.cost
    pct = 100 * saved / advice.default_cost if advice.default_cost else 0.0
    gap = advice.gap
    how = "optimal" if advice.optimal else (f"within {100 * gap:.3g}% of optimal" if gap is not None else "heuristic")
    console.print(f"Modelled access cost ({advice.model} model: accesses x device cost, not a run time): "
                  f"{format_ns(advice.cost)} vs {format_ns(advice.default_cost)} all on {advice.default} "
                  f"({pct:.1f}% less); solved by {advice.method}, {how}, in {advice.seconds:.2f} s.")
    for note in advice.notes:
        console.print(f"Note: {note}")


def _budget(text: str | None, room: str | None) -> tuple[int, int | None] | None:
    """--shared-memory and --cache-room, parsed (room None: not given)."""
    if text is None:
        return None
    total = parse_size(text, what="--shared-memory")
    if total <= 0:
        raise UserError(f"--shared-memory {text!r}: must be above 0")
    return total, None if room is None else parse_size(room, what="--cache-room")


def _shared_memory(budget: tuple[int, int | None], ranks: int, specs) -> SharedMemory:
    """The budget per rank with --ranks-per-node; without --cache-room, the room the file
    devices' disks call for (room_for: the largest read-around among them)."""
    total, room = budget
    if room is not None:
        return SharedMemory(total // ranks, room // ranks, room_from="--cache-room")
    files = [d for d in specs if d.kind == "file" and d.table.get("path")]
    known = [(found[0], d.name, found[1]) for d in files if (found := read_around(d.table["path"]))]
    if known:
        around, name, sysfs = max(known)
        why = (f"{ROOM_PER_READ_AROUND}x {name}'s disk read-around of {format_size(around)}, {sysfs}; "
               f"at least {format_size(ROOM_FLOOR)}")
    else:
        around = None
        why = "no disk read-around known for " + (", ".join(d.name for d in files) or "a file device")
    return SharedMemory(total // ranks, room_for(around) // ranks, room_from=why)


@click.command("advise")
@click.argument("profiles", nargs=-1, required=True, type=click.Path(dir_okay=False))
@click.option("--policy-out", "policy_out", type=OutputFile("policy"), help="Write the policy TOML here.")
@click.option("--device", "devices", multiple=True, metavar="NAME=SPEC",
              help="A device: NAME=numa:N|file:DIR|hugepages|system[,latency=NS][,bandwidth=GB/s][,capacity=SIZE]...")
@click.option("--capacity", "capacities", multiple=True, metavar="NAME=SIZE", help="Set or override a device's capacity.")
@click.option("--default", "default", metavar="NAME", help="Device for everything not placed (default: cheapest unlimited).")
@click.option("--model", type=click.Choice(["latency", "bandwidth"]), default="latency", show_default=True)
@click.option("--method", type=click.Choice(["auto", "milp", "greedy"]), default="auto", show_default=True)
@click.option("--time-limit", type=SECONDS, default=3.0, show_default=True, help="Seconds the solver may take.")
@click.option("--top", type=ROWS, default=25, show_default=True, help="Rows in the table.")
@click.option("--ranks-per-node", "ranks", type=click.IntRange(min=1, max=1 << 16), default=1, show_default=True,
              help="MPI ranks sharing each node: capacities become the node's (policy scope \"node\"), "
                   "each rank planned with its share.")
@click.option("--shared-memory", "shared_memory", metavar="SIZE",
              help="Memory the limited devices share with the file devices' page cache (e.g. a memory "
                   "cgroup's limit minus what is not heap): pin only what gains given it.")
@click.option("--cache-room", "cache_room", metavar="SIZE",
              help="With --shared-memory: the page cache below which misses on a file device slow "
                   "down in proportion (read-around and reclaim need room). Default: 8x the read-around "
                   "of the file devices' disk, at least 8 MiB.")
@click.option("--swap", is_flag=True,
              help="The machine swaps under the memory limit: lock the limited devices' pages, and keep the sites "
                   "a file device serves badly (allocated or written again and again) in the next allocator's "
                   "swappable memory (docs/advisor.md).")
@click.option("--json", "as_json", is_flag=True, help="Print the advice as JSON.")
def advise_command(profiles, policy_out, devices, capacities, default, model, method, time_limit, top, ranks,
                   shared_memory, cache_room, swap, as_json):
    """Assign a profile's allocation sites to devices and write the policy.

    Minimises modelled access cost (accesses x latency, or bytes / bandwidth) under the
    devices' capacities, counting only bytes that are live at the same time.
    """
    budget = _budget(shared_memory, cache_room)
    profile = load_profiles(profiles)  # first: a missing file is the first thing to hear about
    specs = device_specs(devices, capacities, default)
    share_among_ranks(specs, ranks)
    shared = None if budget is None else _shared_memory(budget, ranks, specs)
    advice = run_advice(profile, specs, model, method, default, time_limit, shared)
    if swap:
        from memplace.advisor.swap import plan_for_swap

        plan_for_swap(advice, specs)
    if policy_out:
        write_policy(advice, specs, ", ".join(profiles), policy_out)
    if as_json:
        click.echo(json.dumps(advice_json(advice, policy_out), indent=2))
    else:
        print_table(advice, top)
        for note in (n for d in specs for n in d.notes):
            click.echo(f"  {note}")
        if policy_out:
            click.echo(f"Policy written to {policy_out}")
        else:
            click.echo("(no --policy-out: nothing written)", err=True)
