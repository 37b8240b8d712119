"""`memplace tls` and `memplace keys`: thin commands over the post-mortem helpers.

Human output is a rich table on a terminal and plain aligned lines otherwise (so
that 4,000 threads x 20 variables print in well under a second); `--json` is
the same data for programs.

    $ memplace tls core tv --thread 5636
    $ memplace keys --pid 1234 --json
"""

from __future__ import annotations

import json
import os
import sys

import click

from memplace.commands.options import PID, TID
from memplace.errors import UserError


def _open(core: str | None, pid: int | None, exe: str | None, sysroot: str | None):
    if pid is not None:
        if core is not None:
            raise UserError("give a CORE or --pid, not both")
        from memplace.postmortem.live import open_pid

        return open_pid(pid)
    if core is None:
        raise UserError("missing CORE (or --pid PID)")
    if sysroot is not None and not os.path.isdir(sysroot):
        raise UserError(f"--sysroot {sysroot}: not a directory")
    from memplace.postmortem.target import open_core

    return open_core(core, exe=exe, sysroot=sysroot)


def _source_options(f):
    f = click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")(f)
    f = click.option("--pid", type=PID, help="Read a live process instead of a core.")(f)
    f = click.option("--sysroot", type=click.Path(), help="Root to find the core's libraries under.")(f)
    f = click.option("--exe", type=click.Path(), help="The executable (default: from the core's notes).")(f)
    return f


def _hex(v: int | None) -> str | None:
    return None if v is None else f"{v:#x}"


@click.command("tls", context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("args", nargs=-1)
@click.option("--thread", "tids", type=TID, multiple=True, help="Only this thread id (repeatable).")
@_source_options
def tls_command(args, tids, exe, sysroot, pid, as_json):
    """Thread-local variables of every thread: memplace tls CORE [VAR ...] | --pid PID [VAR ...]."""
    from memplace.postmortem.tls import tls_values

    core, names = (None, list(args)) if pid is not None else ((args[0] if args else None), list(args[1:]))
    target = _open(core, pid, exe, sysroot)
    rows = tls_values(target, names or None, list(tids) or None)
    if as_json:
        doc = _header(target)
        doc["threads"] = [{
            "tid": th.tid, "thread_pointer": _hex(th.tp), "crashed": th.crashed,
            "variables": [{"module": v.module, "name": v.name, "type": v.type, "address": _hex(v.address),
                           "state": v.state, "value": v.value, "text": v.text} for v in vals],
        } for th, vals in rows]
        json.dump(doc, sys.stdout, indent=1, default=str)
        sys.stdout.write("\n")
        return
    for n in target.notes:
        click.echo(f"note: {n}", err=True)
    if sys.stdout.isatty():
        _tls_rich(target, rows)
    else:
        _tls_plain(target, rows)


def _header(target) -> dict:
    return {"source": target.where, "arch": target.arch.name, "libc": target.libc,
            "libc_version": (target.glibc.version if target.glibc else target.musl_version),
            "notes": target.notes}


def _thread_title(th) -> str:
    tp = f"tp {th.tp:#x}" if th.tp is not None else "tp unknown"
    return f"thread {th.tid} ({tp}){'  <- crashed' if th.crashed else ''}"


def _tls_plain(target, rows) -> None:
    out = [f"{target.where}: {target.arch.name}, {target.libc}, {len(rows)} threads"]
    for th, vals in rows:
        out.append(_thread_title(th))
        for v in vals:
            shown = v.text if v.state == "ok" else f"<{v.state}>"
            out.append(f"  {v.module}:{v.name} ({v.type}) = {shown}")
    sys.stdout.write("\n".join(out) + "\n")


def _tls_rich(target, rows) -> None:
    from rich.table import Table

    from memplace.console import console

    con = console()
    con.print(f"[bold]{target.where}[/]: {target.arch.name}, {target.libc}, {len(rows)} threads")
    for th, vals in rows:
        t = Table(title=_thread_title(th), title_justify="left", show_edge=False)
        for c in ("module", "variable", "type", "value"):
            t.add_column(c, overflow="fold")
        for v in vals:
            t.add_row(v.module, v.name, v.type, v.text if v.state == "ok" else f"[dim]<{v.state}>[/]")
        con.print(t)


@click.command("keys", context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("core", required=False)
@_source_options
def keys_command(core, exe, sysroot, pid, as_json):
    """pthread keys in use, every thread's values, and misuse findings: memplace keys CORE | --pid PID."""
    from memplace.postmortem.keys import pthread_keys

    target = _open(core, pid, exe, sysroot)
    rep = pthread_keys(target)
    if as_json:
        doc = _header(target)
        doc["keys"] = [{"key": k.key, "seq": k.seq, "in_use": k.in_use, "destructor": _hex(k.destructor),
                        "destructor_name": k.destructor_name, "creator": k.creator} for k in rep.keys]
        doc["values"] = [{"tid": v.tid, "key": v.key, "seq": v.seq, "value": _hex(v.value),
                          "points_to": v.points_to, "status": v.status} for v in rep.values]
        doc["findings"] = [{"tid": f.tid, "key": f.key, "message": f.message} for f in rep.findings]
        json.dump(doc, sys.stdout, indent=1)
        sys.stdout.write("\n")
        return
    from rich.table import Table

    from memplace.console import console

    con = console(highlight=False)
    con.print(f"[bold]{target.where}[/]: {target.libc}, {len(rep.keys)} keys in use, {len(rep.values)} values")
    t = Table("key", "seq", "destructor", show_edge=False)
    for k in rep.keys:
        t.add_row(str(k.key), "" if k.seq is None else str(k.seq),
                  k.destructor_name or (_hex(k.destructor) or "-") + ("" if k.in_use else "  (not in use)"))
    con.print(t)
    t = Table("thread", "key", "value", "points to", "status", show_edge=False)
    for v in rep.values:
        t.add_row(str(v.tid), str(v.key), f"{v.value:#x}", v.points_to or "", v.status)
    con.print(t)
    for f in rep.findings:
        con.print(f"[bold red]misuse[/] thread {f.tid} key {f.key}: {f.message}")
