"""`memplace run`: the command's output and exit status are its own; refusals are one line."""

import os
import shutil
import signal
import subprocess
import sys

import pytest

from support import memplace

ECHO_ENV = r'''
#include <stdio.h>
#include <stdlib.h>
int main(int argc, char **argv) {
    const char *p = getenv("LD_PRELOAD");
    printf("LD_PRELOAD=%s\n", p ? p : "");
    fprintf(stderr, "to stderr\n");
    return argc > 1 ? atoi(argv[1]) : 0;
}
'''


def test_exit_status_and_output_unchanged(cc):
    prog = cc(ECHO_ENV, "echoenv")
    for code in ("0", "3", "255"):
        r = memplace("run", "--", str(prog), code)
        assert r.returncode == int(code)
        assert r.stderr == "to stderr\n"
    assert r.stdout.startswith("LD_PRELOAD=") and "libmemplace.so" in r.stdout


def test_runtime_appended_to_users_preload_and_inherited(cc, runtime, tmp_path):
    prog = cc(ECHO_ENV, "echoenv")
    other = tmp_path / "libother.so"
    subprocess.run(["gcc", "-shared", "-fPIC", "-o", other, "-x", "c", "-"], input="int x;",
                   text=True, check=True)
    env = dict(os.environ, LD_PRELOAD=str(other))
    # the child of a shell (an exec'd grandchild) sees the same preload list
    r = memplace("run", "--", "sh", "-c", f"exec {prog}", env=env)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == f"LD_PRELOAD={other} {runtime}"


@pytest.mark.parametrize("verbose", [[], ["--verbose"]])
def test_death_by_signal_reported_like_a_shell(verbose):
    r = subprocess.run(["bash", "-c", f"{sys.executable} -m memplace run {' '.join(verbose)} -- "
                        "sh -c 'kill -TERM $$'; echo status=$?"], capture_output=True, text=True)
    assert r.stdout.strip() == "status=143"
    direct = subprocess.run([sys.executable, "-m", "memplace", "run", *verbose, "--",
                             "sh", "-c", "kill -SEGV $$"], capture_output=True, text=True)
    assert direct.returncode == -signal.SIGSEGV


def test_verbose_names_runtime_and_next_allocator(runtime):
    r = memplace("run", "--verbose", "--", "true")
    assert r.returncode == 0
    line = r.stderr.strip()
    assert "\n" not in line
    assert runtime in line and "next allocator from /" in line and "libc.so.6" in line


def test_command_not_found():
    r = memplace("run", "--", "no-such-command-xyz")
    assert (r.returncode, r.stderr) == (2, "memplace: no-such-command-xyz: command not found\n")


def test_bad_option_is_one_line():
    r = memplace("run", "--frobnicate", "--", "true")
    assert r.returncode == 2
    assert len(r.stderr.strip().splitlines()) == 1 and "--frobnicate" in r.stderr


def test_static_program_refused(cc):
    try:
        prog = cc("int main(void) { return 0; }", "static", "-static")
    except subprocess.CalledProcessError:
        pytest.skip("static libc not available")
    r = memplace("run", "--", str(prog))
    assert r.returncode == 2
    assert r.stderr.startswith(f"memplace: {prog}: statically linked")
    assert len(r.stderr.splitlines()) == 1


def test_setuid_program_refused(tmp_path):
    prog = tmp_path / "suid-true"
    shutil.copy("/bin/true", prog)
    os.chmod(prog, 0o4755)
    r = memplace("run", "--", str(prog))
    assert r.returncode == 2
    assert "set-user-ID" in r.stderr and len(r.stderr.splitlines()) == 1


def test_not_executable_and_directory(tmp_path):
    f = tmp_path / "data.txt"
    f.write_text("x")
    assert memplace("run", "--", str(f)).returncode == 2
    r = memplace("run", "--", str(tmp_path))
    assert r.returncode == 2 and "is a directory" in r.stderr
