"""The `memplace` command tree.

Subcommands live in their own modules (memplace.commands) and are imported only when invoked, so that
`memplace tls` or `memplace run` do not pay for the imports of the others.
"""

from __future__ import annotations

import importlib
import os
import sys

import click

from memplace import __version__
from memplace.errors import UserError

# name -> "module:attribute" of a click command; imported on first use.
SUBCOMMANDS = {
    "tls": "memplace.commands.postmortem:tls_command",
    "keys": "memplace.commands.postmortem:keys_command",
    "gdb-script": "memplace.commands.postmortem:gdb_script_command",
    "run": "memplace.commands.run:run_command",
    "devices": "memplace.commands.devices:devices_command",
    "policy": "memplace.commands.policy:policy_group",
    "advise": "memplace.commands.advise:advise_command",
    "profile": "memplace.commands.profile:profile_group",
    "interop": "memplace.commands.interop:interop_group",
    "report": "memplace.commands.report:report_command",
    "demo": "memplace.commands.demo:demo_command",
}


class LazyGroup(click.Group):
    def list_commands(self, ctx):
        return sorted(set(super().list_commands(ctx)) | set(SUBCOMMANDS))

    def format_commands(self, ctx, formatter):
        """The command list of `memplace --help`, from each command's docstring read with
        ast: importing them all would load numpy, rich and the placement modules (0.5 s)."""
        names = self.list_commands(ctx)
        limit = formatter.width - 6 - max((len(n) for n in names), default=0)  # as click's own
        rows = [(name, short_help(name, limit)) for name in names]
        if rows:
            with formatter.section("Commands"):
                formatter.write_dl(rows)

    def get_command(self, ctx, name):
        if name in SUBCOMMANDS:
            module, attr = SUBCOMMANDS[name].split(":")
            return getattr(importlib.import_module(module), attr)
        return super().get_command(ctx, name)


def short_help(name: str, limit: int = 45) -> str:
    """First sentence of a subcommand's docstring, without importing its module."""
    import ast
    import importlib.util

    module, attr = SUBCOMMANDS[name].split(":")
    try:
        with open(importlib.util.find_spec(module).origin, encoding="utf-8") as f:
            tree = ast.parse(f.read())
    except (OSError, SyntaxError, AttributeError):
        return ""
    doc = next((ast.get_docstring(n) or "" for n in tree.body
                if isinstance(n, ast.FunctionDef) and n.name == attr), "")
    return click.Command(name, help=doc).get_short_help_str(limit)


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="memplace")
def cli():
    """Place a program's heap objects on memory devices; read its threads' state post mortem."""


def main(argv=None):
    """Entry point: bad input becomes one line on stderr and exit status 2, never a traceback."""
    try:
        # Not cli.main(): click turns a closed stdout into exit status 1; memplace ends with 0.
        with cli.make_context("memplace", list(sys.argv[1:] if argv is None else argv)) as ctx:
            rv = cli.invoke(ctx)
    except UserError as e:
        click.echo(f"memplace: {e}", err=True)
        sys.exit(2)
    except click.exceptions.Abort:
        click.echo("memplace: aborted", err=True)
        sys.exit(130)
    except click.ClickException as e:
        # click's own usage errors: keep them to one line.
        msg = e.format_message()
        ctx = getattr(e, "ctx", None)
        where = f"{ctx.command_path}: " if ctx is not None else ""
        click.echo(f"memplace: {where}{msg}", err=True)
        sys.exit(2)
    except click.exceptions.Exit as e:
        _flush_stdout()
        sys.exit(e.exit_code)
    except BrokenPipeError:
        _quiet_stdout()  # `memplace keys core | head -1`: the reader has all it wanted
        sys.exit(0)
    except MemoryError:
        click.echo("memplace: out of memory (an input too large for this process's memory limit?)", err=True)
        sys.exit(2)
    _flush_stdout()
    sys.exit(rv if isinstance(rv, int) else 0)


def _flush_stdout() -> None:
    """Flush now, so that a reader that has gone away is noticed here and not at exit."""
    try:
        sys.stdout.flush()
    except BrokenPipeError:
        _quiet_stdout()
    except (OSError, ValueError, AttributeError):  # closed or replaced stdout: nothing to flush
        pass


def _quiet_stdout() -> None:
    """Point stdout at /dev/null: Python's flush at exit then finds no broken pipe to report."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError, AttributeError):
        pass


if __name__ == "__main__":
    main()
