"""`memplace profile`: measure a program's allocation sites, or merge profiles.

    memplace profile [--engine runtime|dhat] [--out DIR] [--rate N] -- CMD [ARGS...]
    memplace profile merge A.json B.json ... -o OUT.json

The first form is the `run` subcommand written without its name: anything after
`profile` that is not a subcommand name is taken as `profile run ...`.
"""

from __future__ import annotations

import json
import os
import sys

import click

from memplace.commands.options import OutputFile
from memplace.console import console as make_console
from memplace.errors import UserError
from memplace.launch.process import end_like
from memplace.profiling import profile as prof
from memplace.profiling.access_estimate import DEFAULT_RATE, SCALE_NOTE
from memplace.profiling.merge import merge_files
from memplace.units import format_size


class _ProfileGroup(click.Group):
    """A group whose default subcommand is `run`, so that `profile -- CMD` works."""

    def parse_args(self, ctx, args):
        if args and args[0] not in self.commands and args[0] not in ("-h", "--help"):
            args = ["run", *args]
        return super().parse_args(ctx, args)


@click.group("profile", cls=_ProfileGroup, invoke_without_command=False)
def profile_group():
    """Measure allocation sites (run) or combine profiles (merge).

    \b
    memplace profile [--engine runtime|dhat] [--out DIR] -- CMD [ARGS...]
    memplace profile merge A.json B.json ... -o OUT.json
    """


def _summary_table(profiles: list[prof.Profile], paths: list[str]) -> None:
    from rich.table import Table

    console = make_console(stderr=True)
    for p, path in zip(profiles, paths):
        t = Table(title=f"{path}: {len(p.sites)} site(s), pid {p.pid}" + (f", rank {p.rank}" if p.rank is not None else ""),
                  title_justify="left")
        for col in ("site", "function", "file:line", "allocs", "bytes", "peak", "read", "written"):
            t.add_column(col, justify="left" if col in ("site", "function", "file:line") else "right")
        for s in sorted(p.sites, key=lambda s: -((s.accesses or 0) or s.bytes))[:10]:
            t.add_row(str(s.frames[0]), s.function or "?", s.location or "?", str(s.allocations),
                      format_size(s.bytes), format_size(s.peak_live_bytes),
                      "-" if s.reads is None else format_size(s.reads), "-" if s.writes is None else format_size(s.writes))
        if any(s.sampled is not None for s in p.sites):
            t.caption = f"read, written: {SCALE_NOTE}"
            t.caption_justify = "left"
        console.print(t)


def _say_sampling(profiles: list[prof.Profile]) -> None:
    """One line per distinct reason access sampling did not give figures."""
    seen = set()
    for p in profiles:
        s = p.meta.get("access_sampling") or {}
        empty_but_long = s.get("state") == "empty" and s.get("cpu_seconds", 0) >= 0.1  # ~25 ticks
        if (s.get("state") in ("failed", "stopped") or empty_but_long) and s.get("why") not in seen:
            seen.add(s.get("why"))
            click.echo(f"memplace: access sampling {s['state']} in pid {p.pid}: {s.get('why')}; "
                       "its sites have no read/write figures", err=True)


@profile_group.command("run", context_settings={"ignore_unknown_options": True})
@click.option("--engine", type=click.Choice(["runtime", "dhat"]), default="runtime", show_default=True,
              help="runtime: the preload library; dhat: valgrind's DHAT (adds bytes read/written, ~50x slower).")
@click.option("--out", "out_dir", default="memplace-profile", show_default=True, type=click.Path(file_okay=False),
              help="Directory for one profile file per process (and MPI rank).")
@click.option("--rate", type=int, default=None, metavar="N",
              help="runtime engine: access samples per CPU-second (0: no access sampling) "
                   "[default: 1000; the kernel's tick caps what arrives, e.g. 250 at HZ=250].")
@click.option("--json", "as_json", is_flag=True, help="Print the written files as JSON (on stderr).")
@click.argument("command", nargs=-1, required=True, type=click.UNPROCESSED)
def run_command(engine, out_dir, rate, as_json, command):
    """Run CMD and write its per-site allocation profile(s) into DIR."""
    command = list(command)
    if command and command[0] == "--":
        command = command[1:]
    if not command:
        raise UserError("no command given: memplace profile [--engine dhat] -- CMD [ARGS...]")
    if rate is not None and not 0 <= rate <= 100000:
        raise UserError(f"--rate {rate}: must be 0 (no access sampling) to 100000 samples per CPU-second")
    if rate is not None and engine == "dhat":
        raise UserError("--rate: only the runtime engine samples (DHAT counts every access)")
    try:
        os.makedirs(out_dir, exist_ok=True)
    except OSError as e:
        raise UserError(f"{out_dir}: cannot create: {e.strerror or e}") from None
    if engine == "runtime":
        from memplace.profiling import runtime_engine

        status, profiles, written = runtime_engine.run(
            command, out_dir, rate=DEFAULT_RATE if rate is None else rate)
    else:
        from memplace.profiling import dhat

        status, profiles, written = dhat.profile(command, out_dir)
    if not written:  # the program ran: keep its exit status, and say why there is nothing
        click.echo(f"memplace: {command[0]}: no profile was written: the program was killed by a "
                   "signal it handles itself, left by a raw exit system call, or allocated nothing",
                   err=True)
        end_like(status)
    late = sorted({m for p in profiles for m in p.meta.get("modules_without_unwind_table", [])})
    if late:
        names = ", ".join(os.path.basename(m) for m in late[:4])
        more = f" and {len(late) - 4} more" if len(late) > 4 else ""
        click.echo(f"memplace: sites in {len(late)} module(s) loaded after start ({names}{more}) "
                   "end at their first frame there; their unwind tables are made now: profile "
                   "again to follow their callers", err=True)
    _say_sampling(profiles)
    if as_json:
        click.echo(json.dumps({"engine": engine, "profiles": written, "exit_status": status}), err=True)
    elif sys.stderr.isatty() or os.environ.get("MEMPLACE_SUMMARY"):
        _summary_table(profiles, written)
    else:
        click.echo(f"memplace: profile(s) written: {', '.join(written)}", err=True)
    end_like(status)


@click.command("merge")
@click.argument("profiles", nargs=-1, required=True, type=click.Path(dir_okay=False))
@click.option("-o", "--output", required=True, type=OutputFile("profile"), help="Merged profile to write.")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON summary.")
def merge_command(profiles, output, as_json):
    """Combine the profiles of several ranks or processes (sites merged by identity)."""
    merged = merge_files(profiles, output)
    summary = {"output": output, "inputs": list(profiles), "processes": merged.processes,
               "sites": len(merged.sites), "engine": merged.engine}
    if as_json:
        click.echo(json.dumps(summary, indent=2))
    else:
        click.echo(f"Merged {len(profiles)} profile(s) of {merged.processes} process(es): "
                   f"{len(merged.sites)} site(s) -> {output}")


profile_group.add_command(merge_command)
