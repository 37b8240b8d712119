"""The `memplace` command's entry point.

`memplace run` in its common form (known options, then the command) goes straight to the
run, without the CLI framework: its start-up is paid by every run, in every MPI rank, and
importing click alone takes as long as the rest of memplace's start. Anything else, help
and every malformed command line included, goes through memplace.cli, whose parsing and
messages are the reference: tests/test_start.py checks that both read a command line the
same way.
"""

from __future__ import annotations

import os
import sys

_FLAGS = {"-v": "verbose", "--verbose": "verbose", "--best-effort": "best_effort"}
_VALUES = {"--policy": "policy", "--stats": "stats"}


def parse_run(args: list[str]) -> dict | None:
    """The arguments of `run` for memplace.placement.run.run, or None when the command
    line is anything but `run [known options] [--] COMMAND...` with valid values."""
    if not args or args[0] != "run":
        return None
    opts: dict = {"verbose": False, "policy": None, "stats": None, "best_effort": False}
    i = 1
    while i < len(args):
        a = args[i]
        if a == "--":
            i += 1
            break
        if not a.startswith("-") or a == "-":
            break  # the command: options end there (no interspersed options)
        name, eq, value = a.partition("=")
        if a in _FLAGS:
            opts[_FLAGS[a]] = True
        elif name in _VALUES and eq:
            opts[_VALUES[name]] = value
        elif a in _VALUES and i + 1 < len(args):
            i += 1
            opts[_VALUES[a]] = args[i]
        else:
            return None  # help, an unknown option, a value missing: the CLI says what
        i += 1
    command = args[i:]
    if not command:
        return None
    for path in (opts["policy"], opts["stats"]):
        if path is not None and (not path or os.path.isdir(path)):
            return None  # the CLI's own message for a bad path
    opts["argv"] = command
    return opts


def main(argv: list[str] | None = None) -> None:
    args = sys.argv[1:] if argv is None else list(argv)
    fast = parse_run(args)
    if fast is not None:
        from memplace.errors import UserError
        from memplace.placement.run import run

        try:
            run(**fast)  # execs the command or exits as it did
            return
        except UserError as e:
            print(f"memplace: {e}", file=sys.stderr)
            sys.exit(2)
        except MemoryError:
            print("memplace: out of memory (an input too large for this process's memory limit?)",
                  file=sys.stderr)
            sys.exit(2)
    from memplace.cli import main as cli_main

    cli_main(args)
