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


def check_stats_destination(stats: str) -> None:
    parent = os.path.dirname(os.path.abspath(stats))
    if not os.path.isdir(parent):
        raise UserError(f"--stats {stats}: directory {parent} does not exist")
    if not os.access(parent, os.W_OK):
        raise UserError(f"--stats {stats}: directory {parent} is not writable")


def run(argv: list[str], verbose: bool = False, policy: str | None = None,
        stats: str | None = None) -> None:
    """Run `argv` under the runtime (placing per `policy` if given); never returns."""
    if not argv:
        raise UserError("run: no command given (usage: memplace run [OPTIONS] -- CMD [ARGS...])")
    target = describe_target(argv[0])
    runtime = runtime_path()
    if stats is not None:
        if policy is None:
            raise UserError("--stats needs --policy (transparent mode keeps no statistics)")
        check_stats_destination(stats)
    if not verbose and policy is None:
        env = child_environment(runtime)
        sys.stdout.flush()
        try:
            os.execvpe(argv[0], argv, env)
        except OSError as e:
            raise UserError(f"{argv[0]}: cannot execute: {e.strerror}") from None

    with tempfile.TemporaryDirectory(prefix="memplace-") as tmp:
        extra = {}
        if verbose:
            extra["MEMPLACE_STATUS"] = os.path.join(tmp, "status")
            open(extra["MEMPLACE_STATUS"], "w").close()
        if policy is not None:
            from memplace.policy_compile import prepare
            extra["MEMPLACE_POLICY"] = os.path.join(tmp, "policy.mpc")
            exe = target.path if target.kind == "elf" else None
            for warning in prepare(policy, exe, extra["MEMPLACE_POLICY"]):
                click.echo(f"memplace: {warning}", err=True)
            extra["MEMPLACE_STATS"] = os.path.join(tmp, "stats")
            os.mkdir(extra["MEMPLACE_STATS"])
        env = child_environment(runtime, extra)
        try:
            proc = subprocess.Popen(argv, env=env)
        except OSError as e:
            raise UserError(f"{argv[0]}: cannot execute: {e.strerror}") from None
        returncode = wait_forwarding_signals(proc)
        status = read_status(extra["MEMPLACE_STATUS"]) if verbose else {}
        if stats is not None:
            from memplace import stats as run_stats
            run_stats.write_report(stats, argv, os.path.abspath(policy), returncode,
                                   run_stats.collect(extra["MEMPLACE_STATS"]))
    if verbose:
        report_status(status, proc.pid, runtime, argv[0])
    end_like(returncode)


def report_status(status: dict, pid: int, runtime: str, cmd: str) -> None:
    mine = status.get(pid)
    if mine is None:
        click.echo(f"memplace: the runtime did not report from {cmd}: it exited before the "
                   "runtime initialised, or its loader ignored LD_PRELOAD", err=True)
    else:
        click.echo(f"memplace: runtime {runtime} (version {mine.get('version', '?')}, "
                   f"{mine.get('mode', '?')}); next allocator from {mine.get('next') or '?'}"
                   + (f"; {len(status)} processes" if len(status) > 1 else ""), err=True)


@click.command("run", context_settings={"allow_interspersed_args": False})
@click.option("-v", "--verbose", is_flag=True,
              help="Say which runtime was loaded and which allocator it forwards to.")
@click.option("--policy", type=click.Path(dir_okay=False),
              help="Placement policy (TOML): checked and compiled before COMMAND starts.")
@click.option("--stats", type=click.Path(dir_okay=False),
              help="Write per-device and per-rule statistics (JSON) here when COMMAND exits.")
@click.argument("command", nargs=-1, type=click.UNPROCESSED, required=True)
def run_command(verbose: bool, policy: str | None, stats: str | None,
                command: tuple[str, ...]) -> None:
    """Run COMMAND with the memplace runtime preloaded.

    \b
    Examples:
      memplace run -- ./solver input.dat
      memplace run --policy hbm.toml --stats stats.json -- ./solver input.dat
    """
    run(list(command), verbose=verbose, policy=policy, stats=stats)
