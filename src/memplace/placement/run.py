"""Run a program with the runtime preloaded (`memplace run`), placing per a policy.

The command's stdout, stderr and exit status are its own. When nothing has to happen
after it exits, memplace simply execs it (same pid, same signals, same status): without
a policy, or with one already compiled (in the cache). When something does (--verbose,
--stats, a policy to compile, a node-shared capacity to release), memplace waits for it
and then ends the way it ended: by the same signal (so the shell reports it as usual) or
with the same exit code.
A policy that places nothing (every allocation on system) runs the program as it is,
without the runtime.
"""

from __future__ import annotations

import os
import signal
import sys

from memplace.console import say
from memplace.errors import UserError
from memplace.launch.process import (child_environment, end_like, given_environment, read_status,
                                     wait_forwarding_signals)
from memplace.launch.program import describe_program
from memplace.launch.runtime_path import runtime_path

NOTHING_TO_PLACE = "the policy places nothing (every allocation on system): run without the runtime"


def check_stats_destination(stats: str) -> None:
    from memplace.inputs import check_output

    check_output(stats, "--stats file")
    parent = os.path.dirname(os.path.abspath(stats))
    if not os.path.isdir(parent):
        raise UserError(f"--stats {stats}: directory {parent} does not exist")
    if not os.access(parent, os.W_OK):
        raise UserError(f"--stats {stats}: directory {parent} is not writable")


def run(argv: list[str], verbose: bool = False, policy: str | None = None,
        stats: str | None = None, best_effort: bool = False) -> None:
    """Run `argv` under the runtime (placing per `policy` if given); never returns."""
    if not argv:
        raise UserError("run: no command given (usage: memplace run [OPTIONS] -- CMD [ARGS...])")
    target = describe_program(argv[0])
    runtime = runtime_path()
    if best_effort and policy is None:
        raise UserError("--best-effort needs --policy (without one nothing is placed)")
    if stats is not None:
        if policy is None:
            raise UserError("--stats needs --policy (transparent mode keeps no statistics)")
        check_stats_destination(stats)
    if not verbose and policy is None:
        execute(argv, child_environment(runtime))
    prepared = None
    if policy is not None and not verbose and stats is None:
        prepared = exec_if_cached(argv, policy, target, runtime, best_effort)

    import subprocess
    import tempfile

    with tempfile.TemporaryDirectory(prefix="memplace-") as tmp:
        extra = {}
        if verbose:
            extra["MEMPLACE_STATUS"] = os.path.join(tmp, "status")
            open(extra["MEMPLACE_STATUS"], "w").close()
        bare = False  # a policy that places nothing: the program without the runtime
        if policy is not None:
            # Compiled once per policy, program and machine, then from the cache.
            from memplace.placement.compile_cache import prepare_run
            prepared = prepared or prepare_run(policy, target, runtime, tmp)
            for warning in prepared.warnings:
                say(f"memplace: {warning}")
            if verbose:
                say(f"memplace: compiled policy {prepared.policy_file}"
                    + (" (from the cache)" if prepared.hit else ""))
            bare = prepared.places_nothing  # known from the compile (or its cached record)
            if bare and verbose:
                say(f"memplace: {policy}: {NOTHING_TO_PLACE}")
            extra["MEMPLACE_POLICY"] = prepared.policy_file
            extra["MEMPLACE_UNWIND"] = prepared.unwind_dir
            extra["MEMPLACE_STATS"] = os.path.join(tmp, "stats")
            os.mkdir(extra["MEMPLACE_STATS"])
            if prepared.node_scoped and not bare:
                from memplace.placement import node_share
                extra["MEMPLACE_SHARED"] = node_share.counters_path(prepared.policy_file)
            if not best_effort:
                # The runtime in the process whose parent this is stops it (status 2, one
                # line) when placement cannot start; its children run transparent.
                extra["MEMPLACE_REQUIRE"] = str(os.getpid())
        # the runtime would only add its own memory (which a memory limit sized to the
        # program does not have) and time: a policy that places nothing runs without it
        env = given_environment() if bare else child_environment(runtime, extra)
        try:
            # close_fds=False: the program gets every descriptor memplace was given (MPICH's
            # ranks talk to their launcher through PMI_FD); memplace's own are close-on-exec.
            proc = subprocess.Popen(argv, env=env, close_fds=False)
        except OSError as e:
            raise UserError(f"{argv[0]}: cannot execute: {e.strerror}") from None
        returncode = wait_forwarding_signals(proc)
        if "MEMPLACE_SHARED" in extra:
            node_share.release(extra["MEMPLACE_SHARED"])
        status = read_status(extra["MEMPLACE_STATUS"]) if verbose and not bare else {}
        if stats is not None:
            from memplace.placement import stats as run_stats
            procs = [run_stats.without_runtime(proc.pid, argv[0], returncode, NOTHING_TO_PLACE)] if bare else \
                run_stats.collect(extra["MEMPLACE_STATS"], proc.pid, returncode)
            run_stats.write_report(stats, argv, os.path.abspath(policy), returncode, procs)
    if verbose and not bare:
        report_status(status, proc.pid, runtime, argv[0])
    end_like(returncode)


def exec_if_cached(argv: list[str], policy: str, target, runtime: str, best_effort: bool):
    """With nothing to do once the program ends (no stats, no status, no node share to
    release) and the compiled policy in the cache, the program replaces memplace (does not
    return). Else the cache's record if it had one (a node-scoped policy), or None."""
    from memplace.placement.compile_cache import cached

    prepared = cached(policy, target, runtime)
    if prepared is None or prepared.node_scoped:
        return prepared
    for warning in prepared.warnings:
        say(f"memplace: {warning}")
    if prepared.places_nothing:
        execute(argv, given_environment())
    extra = {"MEMPLACE_POLICY": prepared.policy_file, "MEMPLACE_UNWIND": prepared.unwind_dir}
    if not best_effort:  # the runtime stops this very process if it cannot place
        extra["MEMPLACE_REQUIRE"] = f"={os.getpid()}"
    env = child_environment(runtime, extra)
    # As for the child we wait for, nothing of an outer `memplace run` that started this
    # one: its stats directory (the stats would count under its policy), and under
    # --best-effort its MEMPLACE_REQUIRE, which names this process's parent.
    env.pop("MEMPLACE_STATS", None)
    if best_effort:
        env.pop("MEMPLACE_REQUIRE", None)
    execute(argv, env)


def execute(argv: list[str], env: dict[str, str]) -> None:
    """Replace this process with the command (same pid, signals and exit status)."""
    sys.stdout.flush()
    sys.stderr.flush()
    # Python ignores these and an exec keeps ignored signals: the program would get EPIPE
    # where it dies of SIGPIPE (`yes | head`). Popen restores them for the child we wait for.
    for sig in (signal.SIGPIPE, signal.SIGXFSZ):
        signal.signal(sig, signal.SIG_DFL)
    try:
        os.execvpe(argv[0], argv, env)
    except OSError as e:
        raise UserError(f"{argv[0]}: cannot execute: {e.strerror}") from None


def report_status(status: dict, pid: int, runtime: str, cmd: str) -> None:
    mine = status.get(pid)
    if mine is None:
        say(f"memplace: the runtime did not report from {cmd}: it exited before the "
            "runtime initialised, or its loader ignored LD_PRELOAD")
    else:
        say(f"memplace: runtime {runtime} (version {mine.get('version', '?')}, "
            f"{mine.get('mode', '?')}); next allocator from {mine.get('next') or '?'}"
            + (f"; {len(status)} processes" if len(status) > 1 else ""))
