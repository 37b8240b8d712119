"""Every process of a run is in `memplace run --stats`, however it ends: children that leave
by _exit (no destructor runs), images replaced by exec (each image listed), processes killed
by a signal (listed, without final counts), and stress-ng's workers."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import pytest

from memplace.errors import UserError
from memplace.placement import stats as run_stats
from processes_support import compile_c, memplace_run, plain_run, stats_doc

FORK_EXIT = r"""
#include <stdio.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>
int main(int argc, char **argv) {
    int n = atoi(argv[1]);
    for (int i = 0; i < 10; i++) { /* the parent's, before any fork: not the children's */
        char *volatile p = malloc(50);
        p[0] = 1;
    }
    for (int i = 0; i < n; i++)
        if (fork() == 0) {
            char *volatile p = malloc(100 + i); /* one allocation the rule matches, 100+i bytes */
            p[0] = 1;
            _exit(i % 7);
        }
    int st, odd = 0;
    while (wait(&st) > 0)
        odd += !WIFEXITED(st);
    printf("children done, %d odd\n", odd);
    return 0;
}
"""


def test_children_ending_by__exit_are_all_in_the_stats(tmp_path):
    prog = compile_c(tmp_path, "fork_exit", FORK_EXIT)
    stats = tmp_path / "stats.json"
    r = memplace_run(tmp_path, str(prog), "80", stats=stats)
    assert r.returncode == 0 and "children done, 0 odd" in r.stdout, r.stderr
    assert r.stderr == ""
    doc = stats_doc(stats)
    procs = doc["processes"]
    assert len(procs) == 81
    parent = [p for p in procs if p["began"] == "start"]
    children = [p for p in procs if p["began"] == "fork"]
    assert len(parent) == 1 and len(children) == 80
    assert parent[0]["ended"] == "exit" and parent[0]["status"] == 0  # main returned: from the wait status
    assert all(c["parent"] == parent[0]["pid"] and c["complete"] and c["ended"] == "_exit" for c in children)
    assert sorted(c["status"] for c in children) == sorted(i % 7 for i in range(80))
    # each child's own allocation is counted in its own file: 100..179 bytes, once each, and
    # not the 10 x 50 bytes it inherited from its parent
    child_rules = [{r["name"]: r for r in c["rules"]}["small"] for c in children]
    assert all(r["hits"] == 1 for r in child_rules)
    assert sorted(r["bytes"] for r in child_rules) == list(range(100, 180))
    assert all({d["name"]: d for d in c["devices"]}["fast"]["allocations"] == 1 for c in children)
    parent_rule = {r["name"]: r for r in parent[0]["rules"]}["small"]
    assert parent_rule["hits"] >= 10 and parent_rule["bytes"] >= 500
    page = tmp_path / "report.html"
    report = subprocess.run([sys.executable, "-m", "memplace", "report", "--stats", str(stats), "--html",
                             str(page)], capture_output=True, text=True, timeout=120)
    assert report.returncode == 0, report.stderr
    assert "81 images" in report.stdout and "_exit 80, exit 1" in report.stdout
    html = page.read_text()
    assert html.count("<tr data-pid=") == 81 and html.count("<td>_exit ") == 80


EXEC_CHAIN = r"""
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
int main(int argc, char **argv) {
    char *volatile p = malloc(64);
    p[0] = 1;
    if (argc > 2) { /* first image: a failed exec, then the real one */
        char *bad[] = {"nowhere", NULL};
        execv("/nonexistent/program", bad);
        char *next[] = {argv[0], argv[1], NULL};
        execv(argv[0], next);
        return 99;
    }
    printf("second image %s\n", argv[1]);
    exit(5);
}
"""


def test_exec_chain_lists_both_images_and_a_failed_exec_is_not_an_end(tmp_path):
    prog = compile_c(tmp_path, "exec_chain", EXEC_CHAIN)
    stats = tmp_path / "stats.json"
    r = memplace_run(tmp_path, str(prog), "x", "first", stats=stats)
    assert (r.returncode, r.stdout, r.stderr) == (5, "second image x\n", "")
    procs = stats_doc(stats)["processes"]
    assert [p["image"] for p in procs] == [0, 1] and procs[0]["pid"] == procs[1]["pid"]
    first, second = procs
    assert (first["began"], first["ended"], first["exec"]) == ("start", "exec", str(prog))
    assert (second["began"], second["ended"], second["status"]) == ("exec", "exit", 5)
    assert first["complete"] and second["complete"]
    assert {r["name"]: r for r in first["rules"]}["small"]["hits"] >= 1
    assert {r["name"]: r for r in second["rules"]}["small"]["hits"] >= 1


def test_runtime_stats_file_after_a_failed_exec_has_one_end(tmp_path):
    """The runtime's own file (not the JSON): the failed exec's counts are cut back."""
    prog = compile_c(tmp_path, "exec_chain", EXEC_CHAIN)
    from memplace.launch.runtime_path import runtime_path
    from memplace.placement.compile_cache import prepare_run
    from memplace.launch.program import describe_program
    from processes_support import policy_file

    work = tmp_path / "work"
    work.mkdir()
    prepared = prepare_run(str(policy_file(tmp_path)), describe_program(str(prog)), runtime_path(), str(work))
    out = tmp_path / "raw"
    out.mkdir()
    env = {**os.environ, "LD_PRELOAD": runtime_path(), "MEMPLACE_POLICY": prepared.policy_file,
           "MEMPLACE_UNWIND": prepared.unwind_dir, "MEMPLACE_STATS": str(out)}
    r = subprocess.run([str(prog), "x", "first"], env=env, capture_output=True, text=True, timeout=60)
    assert r.returncode == 5, r.stderr
    files = sorted(p.name for p in out.iterdir())
    pid = files[0].split(".")[1]
    assert files == [f"stats.{pid}.1.txt", f"stats.{pid}.txt"]
    first, second = (out / files[1]).read_text(), (out / files[0]).read_text()
    # one set of counts and one end each: the failed exec's were cut back, not left twice
    for text in (first, second):
        assert text.startswith(f"memplace-stats 2\npid {pid}\n") and text.endswith("\nend\n")
        assert text.count("\nended ") == 1 and text.count("\ndevice 0 ") == 1
    assert f"\nended exec {prog}\n" in first and "nonexistent" not in first
    assert "\nended exit 5\n" in second


SELF_KILL = r"""
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>
int main(void) {
    pid_t c = fork();
    if (c == 0) {
        char *volatile p = malloc(32);
        p[0] = 1;
        kill(getpid(), SIGKILL);
        pause();
    }
    int st;
    waitpid(c, &st, 0);
    printf("child killed by %d\n", WIFSIGNALED(st) ? WTERMSIG(st) : 0);
    return 0;
}
"""


def test_a_child_killed_by_sigkill_is_listed_without_final_counts(tmp_path):
    prog = compile_c(tmp_path, "self_kill", SELF_KILL)
    stats = tmp_path / "stats.json"
    r = memplace_run(tmp_path, str(prog), stats=stats)
    assert (r.returncode, r.stdout, r.stderr) == (0, "child killed by 9\n", "")
    procs = stats_doc(stats)["processes"]
    assert len(procs) == 2
    child = next(p for p in procs if p["began"] == "fork")
    assert not child["complete"] and child["ended"] == "unknown"
    assert child["note"] == "ended without final counts (killed by a signal?)"
    assert child["devices"] == [] and child["rules"] == []  # no counts are made up
    report = subprocess.run([sys.executable, "-m", "memplace", "report", "--stats", str(stats)],
                            capture_output=True, text=True, timeout=120)
    assert "killed by a signal?" in report.stdout


def test_the_command_killed_by_a_signal_is_named_by_its_signal(tmp_path):
    prog = compile_c(tmp_path, "die", "#include <signal.h>\n#include <unistd.h>\n"
                     "int main(void) { kill(getpid(), SIGKILL); return 0; }\n")
    stats = tmp_path / "stats.json"
    r = memplace_run(tmp_path, str(prog), stats=stats)
    assert r.returncode == plain_run(str(prog)).returncode == -9
    (proc,) = stats_doc(stats)["processes"]
    assert (proc["ended"], proc["signal"], proc["complete"]) == ("signal", 9, False)


WAYS_OUT = r"""
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>
int main(void) {
    if (fork() == 0) quick_exit(4);
    if (fork() == 0) _Exit(5);
    if (fork() == 0) exit(6);
    while (wait(NULL) > 0) {}
    return 0;
}
"""


def test_quick_exit_and__Exit_and_exit_with_their_status(tmp_path):
    prog = compile_c(tmp_path, "ways_out", WAYS_OUT)
    stats = tmp_path / "stats.json"
    r = memplace_run(tmp_path, str(prog), stats=stats)
    assert (r.returncode, r.stderr) == (0, "")
    ends = sorted((p["ended"], p["status"]) for p in stats_doc(stats)["processes"] if p["began"] == "fork")
    assert ends == [("_exit", 5), ("exit", 6), ("quick_exit", 4)]


@pytest.mark.skipif(shutil.which("stress-ng") is None, reason="needs Debian package stress-ng")
def test_stress_ng_workers_are_counted(tmp_path):
    stats = tmp_path / "stats.json"
    r = memplace_run(tmp_path, "stress-ng", "--malloc", "2", "--malloc-ops", "2000", "-t", "2s",
                     stats=stats, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    procs = stats_doc(stats)["processes"]
    workers = [p for p in procs if p["began"] == "fork" and p["complete"]]
    # stress-ng forks a worker per instance (plus helpers); they leave by _exit
    assert len(workers) >= 2 and any(p["ended"] == "_exit" for p in workers), procs
    assert sum(r["hits"] for p in workers for r in p["rules"]) > 0


def test_unknown_runtime_stats_version_is_refused_with_one_line(tmp_path):
    (tmp_path / "stats.42.txt").write_text("memplace-stats 9\npid 42\nend\n")
    with pytest.raises(UserError) as e:
        run_stats.collect(tmp_path)
    assert "format version 9" in str(e.value) and "\n" not in str(e.value)


def test_profile_mode_writes_a_profile_for__exit_children_and_each_exec_image(tmp_path):
    """memplace profile uses the same hook: _exit children and exec'd images have profiles."""
    fork_exit = compile_c(tmp_path, "fork_exit", FORK_EXIT)
    chain = compile_c(tmp_path, "exec_chain", EXEC_CHAIN)
    for prog, args, count, status in ((fork_exit, ["5"], 6, 0), (chain, ["x", "first"], 2, 5)):
        out = tmp_path / f"prof-{prog.name}"
        r = subprocess.run([sys.executable, "-m", "memplace", "profile", "run", "--out", str(out), "--",
                            str(prog), *args], capture_output=True, text=True, timeout=300)
        assert r.returncode == status, r.stderr
        assert len(list(out.glob("profile.*.json"))) == count, sorted(out.iterdir())
