"""`memplace tls` and `memplace keys`: thin commands over the post-mortem helpers.

Human output is a rich table on a terminal and plain aligned lines otherwise (so
that 4,000 threads x 20 variables print in well under a second, and nothing is cut
at 80 columns); `--json` is the same data for programs, addresses and values as
JSON numbers.

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
from memplace.postmortem.text import count, keys_parts, keys_text, thread_title, tls_text


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


def _source_options(many: bool):
    def options(f):
        f = click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")(f)
        f = click.option("--pid", type=PID, multiple=many,
                         help="Read a live process instead of a core" + (" (repeatable)." if many else "."))(f)
        f = click.option("--sysroot", type=click.Path(), help="Root to find the core's libraries under.")(f)
        f = click.option("--exe", type=click.Path(), help="The executable (default: from the core's notes).")(f)
        return f
    return options


@click.command("tls", context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("args", nargs=-1)
@click.option("--thread", "tids", type=TID, multiple=True, help="Only this thread id (repeatable).")
@click.option("--group", is_flag=True, help="Group threads by identical values (the default for several cores or pids).")
@_source_options(many=True)
def tls_command(args, tids, group, exe, sysroot, pid, as_json):
    """Thread-local variables of every thread: memplace tls CORE... [VAR ...] | --pid PID... [VAR ...]."""
    import os

    if pid:
        sources, names = [str(p) for p in pid], list(args)
        if args and os.path.isfile(args[0]):
            raise UserError("give CORE files or --pid, not both")
    else:
        n = next((i for i, a in enumerate(args) if not os.path.isfile(a)), len(args))
        sources, names = list(args[:n]), list(args[n:])
        if not sources:
            raise UserError(f"{args[0]}: no such core file" if args else "missing CORE (or --pid PID)")
    if len(sources) > 1 or group:
        if tids:
            raise UserError("--thread names a thread of one core; it does not go with several cores or --group")
        _tls_grouped(sources, names, exe, sysroot, bool(pid), as_json)
        return
    from memplace.postmortem.tls import tls_values

    target = _open(None if pid else sources[0], pid[0] if pid else None, exe, sysroot)
    rows = tls_values(target, names or None, list(tids) or None)
    if as_json:
        doc = _header(target)
        doc["threads"] = [{
            "tid": th.tid, "thread_pointer": th.tp, "crashed": th.crashed,
            "variables": [{"module": v.module, "name": v.name, "type": v.type, "address": v.address,
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
        sys.stdout.write(tls_text(target, rows) + "\n")


def _tls_grouped(sources: list[str], names: list[str], exe, sysroot, is_pid: bool, as_json: bool) -> None:
    """Every image's threads, each variable's values grouped: `= 3 in 3,998 threads; = 7 in 2: ...`."""
    from memplace.postmortem.job import group_values, read_many

    def progress(done: int, total: int) -> None:
        if total > 1 and sys.stderr.isatty():
            sys.stderr.write(f"\rread {done}/{total} {'pids' if is_pid else 'cores'}" + ("\n" if done == total else ""))
            sys.stderr.flush()

    images = read_many(sources, names or None, exe, sysroot, is_pid, progress=progress)
    for img in images:
        for n in img.notes:
            click.echo(f"note: {img.where}: {n}", err=True)
    variables = group_values(images)
    nthreads = sum(len(img.rows) for img in images)
    if as_json:
        doc = {"sources": [img.source for img in images], "kind": "process" if is_pid else "core",
               "threads": nthreads, "variables": [{
                   "module": vg.module, "name": vg.name, "type": vg.type, "groups": [{
                       "state": g.state, "value": g.value, "text": g.text, "count": g.count,
                       "threads": [{"source": s, "tid": t} for s, t in g.threads]} for g in vg.groups]}
                   for vg in variables]}
        json.dump(doc, sys.stdout, indent=1, default=str)
        sys.stdout.write("\n")
        return
    what = "pid" if is_pid else "core"
    out = [f"{count(len(images), what)}, {count(nthreads, 'thread')}, threads grouped by value"]
    for vg in variables:
        parts = []
        for g in vg.groups[:GROUP_LINES]:
            shown = g.text if g.state == "ok" else f"<{g.state}>"
            where = ""
            if g.count <= GROUP_EXAMPLES:
                where = ": " + ", ".join(f"{s} tid {t}" if len(images) > 1 else f"tid {t}" for s, t in g.threads)
            parts.append(f"= {shown} in {count(g.count, 'thread')}{where}")
        rest = vg.groups[GROUP_LINES:]
        if rest:
            parts.append(f"{count(len(rest), 'other value')} in {count(sum(g.count for g in rest), 'thread')}")
        out.append(f"{vg.module}:{vg.name} ({vg.type}) " + "; ".join(parts))
    sys.stdout.write("\n".join(out) + "\n")


GROUP_EXAMPLES = 3  # a group this small lists its threads
GROUP_LINES = 5  # values shown per variable (--json has them all)


def _header(target) -> dict:
    return {"source": target.source, "kind": target.where.split(" ", 1)[0], "arch": target.arch.name,
            "libc": target.libc, "libc_version": (target.glibc.version if target.glibc else target.musl_version),
            "notes": target.notes}


def _tls_rich(target, rows) -> None:
    from rich.table import Table

    from memplace.console import console

    con = console()
    con.print(f"[bold]{target.where}[/]: {target.arch.name}, {target.libc}, {count(len(rows), 'thread')}")
    for th, vals in rows:
        t = Table(title=thread_title(th), title_justify="left", show_edge=False)
        for c in ("module", "variable", "type", "value"):
            t.add_column(c, overflow="fold")
        for v in vals:
            t.add_row(v.module, v.name, v.type, v.text if v.state == "ok" else f"[dim]<{v.state}>[/]")
        con.print(t)


@click.command("keys", context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("core", required=False)
@_source_options(many=False)
def keys_command(core, exe, sysroot, pid, as_json):
    """pthread keys in use, every thread's values, and misuse findings: memplace keys CORE | --pid PID."""
    from memplace.postmortem.keys import pthread_keys

    target = _open(core, pid, exe, sysroot)
    rep = pthread_keys(target)
    crashed = {th.tid for th in target.threads if th.crashed}
    if as_json:
        doc = _header(target)
        doc["keys"] = [{"key": k.key, "seq": k.seq, "in_use": k.in_use, "destructor": k.destructor,
                        "destructor_name": k.destructor_name, "creator": k.creator,
                        "held_by": k.holders} for k in rep.keys]
        doc["values"] = [{"tid": v.tid, "crashed": v.tid in crashed, "key": v.key, "seq": v.seq, "value": v.value,
                          "points_to": v.points_to, "status": v.status} for v in rep.values]
        doc["findings"] = [{"tid": f.tid, "key": f.key, "message": f.message} for f in rep.findings]
        json.dump(doc, sys.stdout, indent=1)
        sys.stdout.write("\n")
        return
    title, keys, values, findings = keys_parts(target, rep)
    if sys.stdout.isatty():
        _keys_rich(title, keys, values, findings)
        return
    sys.stdout.write(keys_text(title, keys, values, findings) + "\n")


def _keys_rich(title: str, keys: list, values: list, findings: list[str]) -> None:
    from rich.markup import escape
    from rich.table import Table

    from memplace.console import console

    con = console(highlight=False)
    con.print(f"[bold]{escape(title)}[/]")
    t = Table("key", "seq", "destructor", show_edge=False)
    for row in keys:
        t.add_row(*row)
    con.print(t)
    if values:
        t = Table("thread", "key", "value", "points to", "status", show_edge=False)
        for row in values:
            t.add_row(*row)
        con.print(t)
    for f in findings:
        con.print(f"[bold red]misuse[/]{escape(f[len('misuse'):])}")


@click.command("gdb-script", context_settings={"help_option_names": ["-h", "--help"]})
def gdb_script_command():
    """Path of the gdb commands mp-tls and mp-keys: gdb -ex "source $(memplace gdb-script)" PROG CORE."""
    import memplace

    path = os.path.join(os.path.dirname(os.path.abspath(memplace.__file__)), "postmortem", "gdb_commands.py")
    if not os.path.isfile(path):
        raise UserError(f"{path}: missing from this installation of memplace")
    click.echo(path)
