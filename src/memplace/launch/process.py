"""The child process: its environment (LD_PRELOAD gains the runtime), signals passed on
while memplace waits for it, ending the way it ended, and the status lines the runtime
appends (MEMPLACE_STATUS).
"""

from __future__ import annotations

import os
import signal
import sys

TYPE_CHECKING = False  # subprocess only for annotations: `memplace run` may exec without it
if TYPE_CHECKING:
    import subprocess

FORWARDED_SIGNALS = (signal.SIGTERM, signal.SIGHUP, signal.SIGUSR1, signal.SIGUSR2,
                     signal.SIGWINCH, signal.SIGCONT)


def given_environment() -> dict[str, str]:
    """This process's environment as it was given. Python coerces a C or POSIX locale
    (PEP 538) by setting LC_CTYPE=C.UTF-8 in its own environment, which a program it starts
    would inherit: in another locale than without memplace. /proc/self/environ still holds
    the environment the process was started with."""
    env = dict(os.environ)
    if "LC_CTYPE" in env:
        try:
            with open("/proc/self/environ", "rb") as f:
                given = [e for e in f.read().split(b"\0") if e.startswith(b"LC_CTYPE=")]
        except OSError:
            return env
        if given:
            env["LC_CTYPE"] = os.fsdecode(given[0][len(b"LC_CTYPE="):])
        else:
            del env["LC_CTYPE"]
    return env


def child_environment(runtime: str, extra: dict[str, str] | None = None,
                      base: dict[str, str] | None = None) -> dict[str, str]:
    """The environment of the command: LD_PRELOAD gains the runtime, after the user's own."""
    env = given_environment() if base is None else dict(base)
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
        if sig not in (signal.SIGKILL, signal.SIGSTOP):  # those have no handler to reset
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
