"""`memplace run`: run a command with the runtime preloaded.

The command's stdout, stderr and exit status are its own. When nothing has to happen
after it exits, memplace simply execs it (same pid, same signals, same status). When
something does (--verbose), memplace waits for it and then ends the way it ended: by
the same signal (so the shell reports it as usual) or with the same exit code.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile

import click

from memplace.errors import UserError
from memplace.runtime_path import runtime_path
from memplace.target import describe_target

FORWARDED_SIGNALS = (signal.SIGTERM, signal.SIGHUP, signal.SIGUSR1, signal.SIGUSR2,
                     signal.SIGWINCH, signal.SIGCONT)


def child_environment(runtime: str, extra: dict[str, str] | None = None,
                      base: dict[str, str] | None = None) -> dict[str, str]:
    """The environment of the command: LD_PRELOAD gains the runtime, after the user's own."""
    env = dict(os.environ if base is None else base)
    preload = env.get("LD_PRELOAD", "").strip()
    entries = preload.replace(":", " ").split()
    if runtime not in entries:
        entries.append(runtime)
    env["LD_PRELOAD"] = " ".join(entries)
    env.update(extra or {})
    return env


def end_like(returncode: int) -> None:
    """Leave this process the way the child left: same exit code, or same fatal signal."""
    if returncode >= 0:
        sys.exit(returncode)
    sig = -returncode
    sys.stdout.flush()
    sys.stderr.flush()
    try:
        import resource
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))  # the child already dumped its core
        signal.signal(sig, signal.SIG_DFL)
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {sig})
        os.kill(os.getpid(), sig)
    except (OSError, ValueError):
        pass
    sys.exit(128 + sig)  # a signal that does not terminate: report it as a shell would


def wait_forwarding_signals(proc: subprocess.Popen) -> int:
    """Wait for `proc`; terminal signals reach it through the tty, others are passed on."""
    def forward(signum, _frame):
        try:
            proc.send_signal(signum)
        except ProcessLookupError:
            pass

    previous = {s: signal.signal(s, forward) for s in FORWARDED_SIGNALS}
    # Like system(3): the terminal already sent SIGINT/SIGQUIT to the whole process group.
    previous[signal.SIGINT] = signal.signal(signal.SIGINT, signal.SIG_IGN)
    previous[signal.SIGQUIT] = signal.signal(signal.SIGQUIT, signal.SIG_IGN)
    try:
        return proc.wait()
    finally:
        for s, h in previous.items():
            signal.signal(s, h)


def read_status(path: str) -> dict[int, dict[str, str]]:
    """Status lines the runtime appended, by pid: '<pid> key=value ...'."""
    out: dict[int, dict[str, str]] = {}
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            for line in f:
                pid, _, rest = line.rstrip("\n").partition(" ")
                fields = {}
                for part in rest.split(" "):
                    key, eq, value = part.partition("=")
                    if eq:
                        fields[key] = value
                if pid.isdigit():
                    out[int(pid)] = fields
    except OSError:
        pass
    return out


def run(argv: list[str], verbose: bool = False) -> None:
    """Run `argv` under the runtime; never returns."""
    if not argv:
        raise UserError("run: no command given (usage: memplace run [OPTIONS] -- CMD [ARGS...])")
    describe_target(argv[0])
    runtime = runtime_path()
    if not verbose:
        env = child_environment(runtime)
        sys.stdout.flush()
        try:
            os.execvpe(argv[0], argv, env)
        except OSError as e:
            raise UserError(f"{argv[0]}: cannot execute: {e.strerror}") from None

    with tempfile.TemporaryDirectory(prefix="memplace-") as tmp:
        status_path = os.path.join(tmp, "status")
        open(status_path, "w").close()
        env = child_environment(runtime, {"MEMPLACE_STATUS": status_path})
        try:
            proc = subprocess.Popen(argv, env=env)
        except OSError as e:
            raise UserError(f"{argv[0]}: cannot execute: {e.strerror}") from None
        returncode = wait_forwarding_signals(proc)
        status = read_status(status_path)
    mine = status.get(proc.pid)
    if mine is None:
        click.echo(f"memplace: the runtime did not report from {argv[0]}: it exited before the "
                   "runtime initialised, or its loader ignored LD_PRELOAD", err=True)
    else:
        click.echo(f"memplace: runtime {runtime} (version {mine.get('version', '?')}, "
                   f"{mine.get('mode', '?')}); next allocator from {mine.get('next') or '?'}"
                   + (f"; {len(status)} processes" if len(status) > 1 else ""), err=True)
    end_like(returncode)


@click.command("run", context_settings={"allow_interspersed_args": False})
@click.option("-v", "--verbose", is_flag=True,
              help="Say which runtime was loaded and which allocator it forwards to.")
@click.argument("command", nargs=-1, type=click.UNPROCESSED, required=True)
def run_command(verbose: bool, command: tuple[str, ...]) -> None:
    """Run COMMAND with the memplace runtime preloaded.

    \b
    Example:
      memplace run -- ./solver input.dat
    """
    run(list(command), verbose=verbose)
