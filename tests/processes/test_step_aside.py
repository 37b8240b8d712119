"""Programs the runtime cannot host (musl, static, i686, set-user-ID), started by the command
through a shell script, `sh -c`, execvp, execl, posix_spawn, posix_spawnp, system, or a
script whose interpreter is one, run exactly as without memplace: same stdout, stderr and
status; the stats name each process the runtime stepped aside for."""

from __future__ import annotations

import os
import shutil

import pytest

from memplace.launch.program import WHY, why_machine
from processes_support import compile_c, memplace_run, plain_run, stats_doc

TARGET = r"""
#include <stdio.h>
#include <stdlib.h>
int main(int argc, char **argv) {
    char *p = malloc(100);
    printf("target %s argc=%d\n", argv[argc - 1], argc);
    fprintf(stderr, "target's own stderr line\n");
    free(p);
    return 3;
}
"""

LAUNCHER = r"""
#define _GNU_SOURCE
#include <fcntl.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>
extern char **environ;
int main(int argc, char **argv) {
    const char *how = argv[1], *target = argv[2];
    char *args[] = {(char *)target, "via-launcher", NULL};
    fflush(stdout);
    if (!strcmp(how, "execvp")) execvp(target, args);
    if (!strcmp(how, "execl")) execl(target, target, "via-launcher", (char *)NULL);
    if (!strcmp(how, "execve")) execve(target, args, environ);
    if (!strcmp(how, "execvpe")) execvpe(target, args, environ);
    if (!strcmp(how, "execlp")) execlp(target, target, "via-launcher", (char *)NULL);
    if (!strcmp(how, "execle")) execle(target, target, "via-launcher", (char *)NULL, environ);
    if (!strcmp(how, "execveat")) execveat(AT_FDCWD, target, args, environ, 0);
    if (!strcmp(how, "fexecve")) {
        int fd = open(target, O_RDONLY | O_CLOEXEC);
        fexecve(fd, args, environ);
    }
    pid_t pid;
    int st, r = -1;
    if (!strcmp(how, "spawn")) r = posix_spawn(&pid, target, NULL, NULL, args, environ);
    if (!strcmp(how, "spawnp")) r = posix_spawnp(&pid, target, NULL, NULL, args, environ);
    if (!strcmp(how, "system")) {
        st = system(target);
        return WIFEXITED(st) ? WEXITSTATUS(st) : 100;
    }
    if (!strcmp(how, "vfork")) {
        pid = vfork();
        if (pid == 0) { execve(target, args, environ); _exit(127); }
        r = 0;
    }
    if (r != 0) { fprintf(stderr, "launch %s failed\n", how); return 99; }
    waitpid(pid, &st, 0);
    return WIFEXITED(st) ? WEXITSTATUS(st) : 100;
}
"""

KINDS = ["musl", "static", "i686", "setid"]


@pytest.fixture
def targets(tmp_path):
    def make(kind: str):
        if kind == "setid":
            prog = compile_c(tmp_path, "target_setid", TARGET)
            os.chmod(prog, 0o4755)
            return prog
        return compile_c(tmp_path, f"target_{kind}", TARGET, kind)
    return make


def reason_of(kind: str) -> str:
    return why_machine("i386") if kind == "i686" else WHY[kind]


def same_as_without_memplace(tmp_path, *cmd: str, concurrent: bool = False) -> dict:
    """Run `cmd` plainly and under memplace (placing, with stats): identical output and
    status; the stats document. `concurrent`: the command is a launcher running processes
    side by side (mpirun), whose lines interleave in no set order and whose own report of a
    failed rank names the job (a new id each run) and whichever rank it saw fail first: the
    targets' lines, in any order, and the status."""
    stats = tmp_path / "stats.json"
    plain = plain_run(*cmd, cwd=tmp_path)
    placed = memplace_run(tmp_path, *cmd, stats=stats, cwd=tmp_path)
    assert plain.returncode == 3, plain
    if concurrent:
        def lines(text: str) -> list[str]:
            return sorted(line for line in text.splitlines() if line.startswith("target"))
        assert (lines(placed.stdout), lines(placed.stderr), placed.returncode) == \
            (lines(plain.stdout), lines(plain.stderr), plain.returncode)
    else:
        assert (placed.stdout, placed.stderr, placed.returncode) == (plain.stdout, plain.stderr, plain.returncode)
    return stats_doc(stats)


def assert_stepped_aside(doc: dict, target, kind: str) -> None:
    aside = [a for a in doc["stepped_aside"] if a["path"].endswith(target.name)]  # fexecve: /proc's link
    assert aside, doc["stepped_aside"]
    assert all(a["reason"] == reason_of(kind) and a["pid"] > 0 for a in aside)
    # and it is not among the processes the runtime ran in
    assert not any(p["exe"] == str(target) for p in doc["processes"])


@pytest.mark.parametrize("kind", KINDS)
def test_sh_c_and_a_shell_script(tmp_path, targets, kind):
    target = targets(kind)
    doc = same_as_without_memplace(tmp_path, "sh", "-c", f"./{target.name} from-sh")
    assert_stepped_aside(doc, target, kind)
    script = tmp_path / "run.sh"
    script.write_text(f"#!/bin/sh\necho before\n./{target.name} from-script\n")
    script.chmod(0o755)
    doc = same_as_without_memplace(tmp_path, str(script))
    assert_stepped_aside(doc, target, kind)
    assert any(p["exe"].endswith(("/dash", "/sh", "/bash")) for p in doc["processes"])  # the shell is placed


@pytest.mark.parametrize("how", ["execvp", "execvpe", "execl", "execlp", "execle", "execve", "execveat",
                                 "fexecve", "spawn", "spawnp", "system", "vfork"])
@pytest.mark.parametrize("kind", KINDS)
def test_exec_family_and_posix_spawn(tmp_path, targets, kind, how, monkeypatch):
    target = targets(kind)
    launcher = compile_c(tmp_path, "launcher", LAUNCHER)
    name = target.name if how in ("execvp", "execvpe", "execlp", "spawnp") else str(target)  # found in PATH
    monkeypatch.setenv("PATH", f"{tmp_path}:{os.environ.get('PATH', '/usr/bin:/bin')}")
    doc = same_as_without_memplace(tmp_path, str(launcher), how, name)
    assert_stepped_aside(doc, target, kind)


def test_script_whose_interpreter_is_a_musl_program(tmp_path):
    interp = compile_c(tmp_path, "musl_interp", TARGET, "musl")
    script = tmp_path / "interp.script"
    script.write_text(f"#!{interp}\n")
    script.chmod(0o755)
    doc = same_as_without_memplace(tmp_path, "sh", "-c", f"./{script.name}")
    (aside,) = doc["stepped_aside"]
    assert aside["path"] == f"./{script.name}" and aside["interpreter"] == str(interp)
    assert aside["reason"] == WHY["musl"]


def test_a_glibc_child_keeps_the_runtime(tmp_path):
    """The control: a program that can host the runtime is placed, not stepped aside for."""
    target = compile_c(tmp_path, "target_glibc", TARGET)
    doc = same_as_without_memplace(tmp_path, "sh", "-c", f"./{target.name} glibc")
    assert doc["stepped_aside"] == []
    (mine,) = [p for p in doc["processes"] if p["exe"] == str(target)]
    assert mine["complete"] and {r["name"]: r for r in mine["rules"]}["small"]["hits"] >= 1


def test_other_ld_preload_entries_are_kept(tmp_path):
    """Only our entry leaves LD_PRELOAD: the user's own preloads still reach the target, and
    the variable goes when ours was the only one."""
    import subprocess
    import sys

    show = compile_c(tmp_path, "show_env", r"""
#include <stdio.h>
#include <stdlib.h>
int main(void) { const char *p = getenv("LD_PRELOAD"); printf("LD_PRELOAD=%s\n", p ? p : "(unset)"); return 3; }
""", "static")
    placed = memplace_run(tmp_path, "sh", "-c", f"./{show.name}", cwd=tmp_path)
    assert (placed.stdout, placed.returncode) == ("LD_PRELOAD=(unset)\n", 3), placed.stderr
    (tmp_path / "other.c").write_text("int other_symbol = 1;\n")
    other = tmp_path / "libother.so"
    subprocess.run(["gcc", "-shared", "-fPIC", "-o", str(other), str(tmp_path / "other.c")], check=True)
    env = {**os.environ, "LD_PRELOAD": str(other)}
    cmd = ["sh", "-c", f"./{show.name}"]
    plain = subprocess.run(cmd, capture_output=True, text=True, cwd=tmp_path, env=env)
    placed = subprocess.run([sys.executable, "-m", "memplace", "run", "--", *cmd], capture_output=True,
                            text=True, cwd=tmp_path, env=env)
    assert plain.stdout == f"LD_PRELOAD={other}\n"
    assert (placed.stdout, placed.stderr, placed.returncode) == (plain.stdout, plain.stderr, plain.returncode)


def test_a_top_level_script_whose_interpreter_cannot_host_is_refused_in_one_line(tmp_path):
    """`memplace run -- ./script` starts the script itself (not through the runtime): the
    launcher judges the interpreter as the runtime would, and says so as for a program."""
    import subprocess
    import sys

    interp = compile_c(tmp_path, "musl_interp", TARGET, "musl")
    script = tmp_path / "top.script"
    script.write_text(f"#!{interp}\n")
    script.chmod(0o755)
    r = subprocess.run([sys.executable, "-m", "memplace", "run", "--", str(script)], capture_output=True,
                       text=True, timeout=120)
    assert r.returncode == 2 and r.stdout == ""
    assert r.stderr == f"memplace: {script}: a script whose interpreter {interp}: {WHY['musl']}\n"


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("mpirun") is None, reason="needs Debian package openmpi-bin")
def test_mpirun_starting_musl_ranks(tmp_path, targets, monkeypatch):
    monkeypatch.setenv("OMPI_ALLOW_RUN_AS_ROOT", "1")
    monkeypatch.setenv("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1")
    target = targets("musl")
    doc = same_as_without_memplace(tmp_path, "mpirun", "--oversubscribe", "-np", "2", str(target),
                                   concurrent=True)
    assert len([a for a in doc["stepped_aside"] if a["path"] == str(target)]) == 2


def test_exec_of_a_fifo_fails_as_without_memplace(tmp_path):
    """Inspecting the target must not block on a FIFO (the kernel refuses it: EACCES)."""
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    os.chmod(fifo, 0o755)
    cmd = ["sh", "-c", f"{fifo}; echo status $?"]
    plain = plain_run(*cmd, cwd=tmp_path, timeout=60)
    placed = memplace_run(tmp_path, *cmd, cwd=tmp_path, timeout=60)
    assert (placed.stdout, placed.stderr, placed.returncode) == (plain.stdout, plain.stderr, plain.returncode)
    assert plain.stdout == "status 126\n"


def test_a_program_with_another_dynamic_loader(tmp_path):
    """PT_INTERP not named as glibc's loader: the runtime steps aside and says which."""
    import subprocess

    if not os.path.exists("/lib64/ld-linux-x86-64.so.2"):
        pytest.skip("written for x86_64 glibc (/lib64/ld-linux-x86-64.so.2)")
    loader = tmp_path / "my-loader.so"
    os.symlink(os.path.realpath("/lib64/ld-linux-x86-64.so.2"), loader)
    (tmp_path / "t.c").write_text(TARGET)
    prog = tmp_path / "target_loader"
    subprocess.run(["gcc", "-O1", f"-Wl,--dynamic-linker={loader}", "-o", str(prog), str(tmp_path / "t.c")],
                   check=True)
    doc = same_as_without_memplace(tmp_path, "sh", "-c", f"./{prog.name} x")
    (aside,) = doc["stepped_aside"]
    assert aside["reason"] == f"its dynamic loader {loader} is not glibc's; the memplace runtime is built for glibc"
