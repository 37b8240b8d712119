"""gdb commands `mp-tls` and `mp-keys`: memplace's answers for the core or process gdb has open.

gdb's `print VAR` of a thread-local variable needs libthread_db, which static glibc,
musl and i386 programs without it do not give ("Cannot find thread-local variables on
this target"); these commands read the same image with memplace instead.

    $ gdb -ex "source $(memplace gdb-script)" ./prog core
    (gdb) mp-tls t_state            # every thread, as `memplace tls core t_state` prints it
    (gdb) mp-tls -t t_state         # only gdb's selected thread
    (gdb) mp-keys [-t]              # as `memplace keys core` prints it

gdb runs this file in its own embedded Python, which need not be the interpreter
memplace was installed with: the file puts the directory holding the `memplace` package
on sys.path itself, and uses only memplace's pure-Python post-mortem modules (no click,
no rich). For a core, memplace opens the core file gdb opened (with gdb's executable);
for a live inferior it reads /proc/PID/mem while gdb has the process stopped, taking
thread pointers gdb knows (x86_64 `$fs_base`) for threads glibc's lists do not give,
since memplace cannot ptrace a thread gdb already traces.
"""

from __future__ import annotations

import os
import re
import sys

_PKG_PARENT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
if _PKG_PARENT not in sys.path:
    sys.path.insert(0, _PKG_PARENT)

USAGE_TLS = "mp-tls [-t] [VAR ...]: thread-local variables of every thread (-t: gdb's selected thread)"
USAGE_KEYS = "mp-keys [-t]: pthread keys and every thread's values (-t: gdb's selected thread)"


def core_path_from_info_target(text: str) -> str | None:
    """The core file's name in gdb's `info target` output.

    >>> core_path_from_info_target("Local core dump file:\\n\\t`/tmp/core', file type elf64-x86-64.\\n")
    '/tmp/core'
    """
    m = re.search(r"Local core dump file:\s*`(.+?)', file type", text)
    return m.group(1) if m else None


def parse_args(arg: str, usage: str, split) -> tuple[bool, list[str]]:
    """(-t given, the other words); unknown options are a one-line error."""
    words = split(arg)
    only_selected = False
    names = []
    for w in words:
        if w in ("-t", "--thread"):
            only_selected = True
        elif w.startswith("-"):
            raise ValueError(f"{w}: unknown option; usage: {usage}")
        else:
            names.append(w)
    return only_selected, names


def _define_commands(gdb) -> None:
    from memplace.errors import UserError

    cache: dict = {}  # core path -> (stat, Target): a core does not change between commands

    def open_image():
        inf = gdb.selected_inferior()
        conn = inf.connection
        kind = getattr(conn, "type", None) if conn is not None else None
        info = gdb.execute("info target", to_string=True)
        core = core_path_from_info_target(info) if kind in (None, "core") else None
        if core is not None:
            from memplace.postmortem.target import open_core

            exe = inf.progspace.filename
            exe = exe if exe and os.path.isfile(exe) else None
            sysroot = gdb.parameter("sysroot") or ""
            sysroot = sysroot if sysroot not in ("", "/") and os.path.isdir(sysroot) else None
            try:
                st = os.stat(core)
            except OSError as e:
                raise UserError(f"core {core}: {e.strerror}") from None
            key = (core, exe, sysroot)
            hit = cache.get(key)
            if hit is None or hit[0] != (st.st_size, st.st_mtime_ns):
                hit = cache[key] = ((st.st_size, st.st_mtime_ns), open_core(core, exe=exe, sysroot=sysroot))
            return hit[1]
        if kind not in (None, "native"):
            raise UserError(f"the inferior is on a {kind} target: mp-tls and mp-keys read cores and local processes")
        if inf.pid > 0:
            from memplace.postmortem.live import open_pid

            return open_pid(inf.pid, thread_pointers=lambda tids: gdb_thread_pointers(inf, tids))
        raise UserError("no core file and no live process in gdb (start the program, attach, or load a core)")

    def gdb_thread_pointers(inf, tids: list[int]) -> dict[int, int]:
        """x86_64 `$fs_base` of these threads, as gdb read it from the stopped process."""
        if "x86-64" not in inf.architecture().name():
            return {}
        out = {}
        selected = gdb.selected_thread()
        try:
            for th in inf.threads():
                if th.ptid[1] in tids:
                    th.switch()
                    out[th.ptid[1]] = int(gdb.parse_and_eval("$fs_base")) & (2**64 - 1)
        except gdb.error:
            pass
        finally:
            if selected is not None and selected.is_valid():
                selected.switch()
        return out

    def selected_tid() -> list[int]:
        th = gdb.selected_thread()
        if th is None:
            raise UserError("no thread selected")
        return [th.ptid[1] or th.ptid[0]]

    class TlsCommand(gdb.Command):
        __doc__ = USAGE_TLS

        def __init__(self):
            super().__init__("mp-tls", gdb.COMMAND_DATA)

        def invoke(self, arg, from_tty):
            try:
                only, names = parse_args(arg, USAGE_TLS, gdb.string_to_argv)
                from memplace.postmortem.text import tls_text
                from memplace.postmortem.tls import tls_values

                target = open_image()
                rows = tls_values(target, names or None, selected_tid() if only else None)
                for n in target.notes:
                    gdb.write(f"note: {n}\n", gdb.STDERR)
                gdb.write(tls_text(target, rows) + "\n")
            except (UserError, ValueError) as e:
                raise gdb.GdbError(str(e)) from None

    class KeysCommand(gdb.Command):
        __doc__ = USAGE_KEYS

        def __init__(self):
            super().__init__("mp-keys", gdb.COMMAND_DATA)

        def invoke(self, arg, from_tty):
            try:
                only, names = parse_args(arg, USAGE_KEYS, gdb.string_to_argv)
                if names:
                    raise ValueError(f"{names[0]}: unexpected argument; usage: {USAGE_KEYS}")
                from memplace.postmortem.keys import pthread_keys
                from memplace.postmortem.text import keys_parts, keys_text

                target = open_image()
                rep = pthread_keys(target)
                gdb.write(keys_text(*keys_parts(target, rep, selected_tid() if only else None)) + "\n")
            except (UserError, ValueError) as e:
                raise gdb.GdbError(str(e)) from None

    TlsCommand()
    KeysCommand()


try:
    import gdb as _gdb
except ImportError:  # imported outside gdb (tests, doctests): only the helpers above
    _gdb = None
if _gdb is not None:
    _define_commands(_gdb)
