"""`memplace run --policy` compiles a policy once and reuses it from the cache while the
policy, the program, the libraries it resolved sites in and the machine are unchanged."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from memplace.launch.program import describe_program
from memplace.placement import compile_cache, policy_compile

LIB = """\
#include <stdlib.h>
void *lib_alloc(size_t n) {
    return malloc(n); /* SITE lib */
}
"""
PROG = """\
#include <stdio.h>
#include <stdlib.h>
void *lib_alloc(size_t n);
int main(void) {
    void *p = malloc(100); /* SITE main */
    void *q = lib_alloc(200);
    printf("ok %d\\n", p != NULL && q != NULL);
    free(p);
    free(q);
    return 0;
}
"""
POLICY = """\
version = 1
[devices.dram]
kind = "numa"
nodes = [0]
capacity = "50%"
[[rules]]
name = "main"
site = ["prog.c:5"]
device = "dram"
[[rules]]
name = "lib"
site = ["lib.c:3"]
device = "dram"
[[rules]]
name = "nowhere"
site = ["no_such_function+0x10"]
device = "dram"
"""


def gcc(*args: str) -> None:
    if shutil.which("gcc") is None:
        pytest.skip("gcc not installed")
    subprocess.run(["gcc", "-O0", "-g", *args], check=True, capture_output=True, text=True)


@pytest.fixture
def setup(tmp_path, monkeypatch):
    """A program linking a library (sites in both), a policy, an empty cache; and a count
    of the compiles `prepare_run` makes."""
    (tmp_path / "lib.c").write_text(LIB)
    (tmp_path / "prog.c").write_text(PROG)
    gcc("-shared", "-fPIC", "-o", str(tmp_path / "libcc.so"), str(tmp_path / "lib.c"))
    gcc("-o", str(tmp_path / "prog"), str(tmp_path / "prog.c"), f"-L{tmp_path}", "-lcc",
        f"-Wl,-rpath,{tmp_path}")
    (tmp_path / "policy.toml").write_text(POLICY)
    cache = tmp_path / "cache"
    monkeypatch.setenv("MEMPLACE_CACHE", str(cache))
    monkeypatch.chdir(tmp_path)
    compiles = []
    real = policy_compile.prepare_inputs

    def counting(*args, **kw):
        compiles.append(args)
        return real(*args, **kw)

    monkeypatch.setattr(policy_compile, "prepare_inputs", counting)
    return tmp_path, cache, compiles


def prepare(tmp_path: Path, runtime: str) -> compile_cache.Prepared:
    run_tmp = tmp_path / f"run{len(list(tmp_path.glob('run*')))}"
    run_tmp.mkdir()
    return compile_cache.prepare_run("policy.toml", describe_program(str(tmp_path / "prog")),
                                     runtime, str(run_tmp))


def records(cache: Path) -> list[Path]:
    return sorted((cache / "policies").glob("*.json"))


def test_the_second_start_reuses_the_compiled_policy(setup, runtime):
    tmp_path, cache, compiles = setup
    first = prepare(tmp_path, runtime)
    assert not first.hit and len(compiles) == 1
    assert Path(first.policy_file).parent == cache / "policies"
    assert Path(first.unwind_dir) == cache / "unwind"
    warning, = first.warnings
    assert warning.startswith("warning: ") and "no_such_function" in warning
    rules = {r.name for r in policy_compile.decode(Path(first.policy_file).read_bytes()).rules}
    assert rules == {"main", "lib"}

    second = prepare(tmp_path, runtime)
    assert second.hit and len(compiles) == 1  # no compile, no DWARF, no ld.so --list
    assert (second.policy_file, second.unwind_dir) == (first.policy_file, first.unwind_dir)
    assert second.warnings == first.warnings  # still said on a hit
    assert len(records(cache)) == 1


def test_changing_the_policy_the_program_or_a_library_compiles_again(setup, runtime):
    tmp_path, cache, compiles = setup
    first = prepare(tmp_path, runtime)

    (tmp_path / "policy.toml").write_text(POLICY.replace('capacity = "50%"', 'capacity = "40%"'))
    assert not prepare(tmp_path, runtime).hit and len(compiles) == 2
    assert prepare(tmp_path, runtime).hit

    # the program rebuilt (a line moved: the site's addresses change)
    (tmp_path / "prog.c").write_text(PROG.replace("int main(void) {", "int main(void) {\n    int unused = 0; (void)unused;"))
    gcc("-o", str(tmp_path / "prog"), str(tmp_path / "prog.c"), f"-L{tmp_path}", "-lcc",
        f"-Wl,-rpath,{tmp_path}")
    rebuilt = prepare(tmp_path, runtime)
    assert not rebuilt.hit and len(compiles) == 3
    assert prepare(tmp_path, runtime).hit

    # the library rebuilt: the program is the same file, the library's sites moved
    (tmp_path / "lib.c").write_text("#include <stdlib.h>\nstatic int pad(void) { return 1; }\n" + LIB)
    gcc("-shared", "-fPIC", "-o", str(tmp_path / "libcc.so"), str(tmp_path / "lib.c"))
    relib = prepare(tmp_path, runtime)
    assert not relib.hit and len(compiles) == 4
    assert relib.policy_file != rebuilt.policy_file != first.policy_file
    assert prepare(tmp_path, runtime).hit and len(compiles) == 4


def test_a_corrupt_record_or_compiled_file_is_ignored_and_rewritten(setup, runtime):
    tmp_path, cache, compiles = setup
    first = prepare(tmp_path, runtime)
    record, = records(cache)
    good = record.read_text()

    record.write_text(good[: len(good) // 2])  # truncated JSON
    assert not prepare(tmp_path, runtime).hit and len(compiles) == 2
    assert json.loads(record.read_text()) == json.loads(good)

    record.write_text(json.dumps({"format": compile_cache.CACHE_FORMAT, "files": 3}))
    assert not prepare(tmp_path, runtime).hit and len(compiles) == 3

    Path(first.policy_file).write_bytes(b"MPLCPOL\0 not a policy")
    again = prepare(tmp_path, runtime)
    assert not again.hit and len(compiles) == 4
    policy_compile.decode(Path(again.policy_file).read_bytes())  # whole again
    assert prepare(tmp_path, runtime).hit


def test_missing_unwind_tables_are_made_again_on_a_hit(setup, runtime):
    tmp_path, cache, compiles = setup
    prepare(tmp_path, runtime)
    tables = sorted((cache / "unwind").iterdir())
    assert tables
    shutil.rmtree(cache / "unwind")
    hit = prepare(tmp_path, runtime)
    assert hit.hit and len(compiles) == 1
    assert sorted((cache / "unwind").iterdir()) == tables


def test_a_cache_that_cannot_be_written_still_runs(setup, runtime, monkeypatch):
    tmp_path, cache, compiles = setup
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("")  # a cache root below a file cannot be made, even by root
    monkeypatch.setenv("MEMPLACE_CACHE", str(blocker / "cache"))
    for n in (1, 2):
        p = prepare(tmp_path, runtime)
        assert not p.hit and len(compiles) == n
        assert p.policy_file.startswith(str(tmp_path / "run")) and os.path.isfile(p.policy_file)
        assert p.unwind_dir.startswith(str(tmp_path / "run")) and os.listdir(p.unwind_dir)


def test_a_policy_with_errors_is_never_cached(setup, runtime):
    tmp_path, cache, compiles = setup
    (tmp_path / "policy.toml").write_text(POLICY.replace("nodes = [0]", "nodes = [63]"))
    for _ in range(2):
        r = subprocess.run([sys.executable, "-m", "memplace", "run", "--policy", "policy.toml",
                            "--", str(tmp_path / "prog")], capture_output=True, text=True,
                           timeout=120)
        assert r.returncode == 2 and r.stdout == ""
        assert r.stderr.count("\n") == 1 and "node 63 does not exist" in r.stderr
    assert records(cache) == []


def test_the_command_says_when_the_policy_came_from_the_cache(setup):
    tmp_path, cache, _ = setup
    outs = []
    for _ in range(2):
        r = subprocess.run([sys.executable, "-m", "memplace", "run", "--verbose", "--policy",
                            "policy.toml", "--", str(tmp_path / "prog")], capture_output=True,
                           text=True, timeout=120)
        assert r.returncode == 0, r.stderr
        assert r.stdout == "ok 1\n"
        outs.append(r.stderr)
    for err in outs:
        assert "warning: " in err and "no_such_function" in err
    compiled = [line for err in outs for line in err.splitlines() if "compiled policy" in line]
    assert len(compiled) == 2 and "from the cache" not in compiled[0]
    assert compiled[1] == compiled[0] + " (from the cache)"
    assert str(cache / "policies") in compiled[0]


WHO = """\
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
int main(void) {
    char line[512], *p = malloc(64); /* SITE who */
    int runtime = 0;
    FILE *maps = fopen("/proc/self/maps", "r");
    while (fgets(line, sizeof line, maps))
        runtime |= strstr(line, "libmemplace") != NULL;
    fclose(maps);
    printf("pid %d runtime %d policy %d\\n", (int)getpid(), runtime, getenv("MEMPLACE_POLICY") != NULL);
    free(p);
    return 0;
}
"""


def test_a_cached_policy_runs_the_program_in_memplaces_place(setup):
    """Nothing to do after the program (no --stats, no --verbose): from the second start,
    memplace execs it, runtime and compiled policy preloaded, so a run costs no second
    process and no Python waiting; the first start compiles and waits as before."""
    tmp_path, cache, _ = setup
    (tmp_path / "who.c").write_text(WHO)
    gcc("-o", str(tmp_path / "who"), str(tmp_path / "who.c"))
    (tmp_path / "policy.toml").write_text(POLICY.replace("prog.c:5", "who.c:6"))
    pids = []
    for _ in range(2):
        proc = subprocess.Popen([sys.executable, "-m", "memplace", "run", "--policy", "policy.toml",
                                 "--", str(tmp_path / "who")], stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
        assert "no_such_function" in err  # the check's warnings, said on every start
        pid, runtime, policy = out.split()[1::2]
        assert (runtime, policy) == ("1", "1")
        pids.append((proc.pid, int(pid)))
    (launcher, first), (memplace, second) = pids
    assert first != launcher  # compiled, then waited for (its child)
    assert second == memplace  # from the cache: the same process
    assert len(records(cache)) == 1


def test_the_program_memplace_execs_gets_the_default_sigpipe(setup):
    """Python ignores SIGPIPE and SIGXFSZ, and an exec keeps ignored signals: the program
    would see EPIPE where it dies of SIGPIPE (`memplace run -- yes | head -1` printing
    "Broken pipe", status 1). The child memplace waits for gets them back (Popen restores
    them); the program memplace execs must too: without a policy, and from the cache."""
    tmp_path, _, _ = setup
    (tmp_path / "policy.toml").write_text(POLICY.replace('site = ["prog.c:5"]', 'size = "..4KiB"'))
    ignored = []
    for args in (["--"], ["--policy", "policy.toml", "--"], ["--policy", "policy.toml", "--"],
                 ["--verbose", "--"]):
        r = subprocess.run([sys.executable, "-m", "memplace", "run", *args, "grep", "SigIgn", "/proc/self/status"],
                           capture_output=True, text=True, timeout=120)
        assert r.returncode == 0, r.stderr
        ignored.append(int(r.stdout.split()[1], 16))
    pipe, xfsz = 1 << (13 - 1), 1 << (25 - 1)
    assert all(mask & (pipe | xfsz) == 0 for mask in ignored), [hex(m) for m in ignored]

    # and what that means: killed by SIGPIPE, silently, when the reader goes away
    for _ in range(2):
        proc = subprocess.Popen([sys.executable, "-m", "memplace", "run", "--policy", "policy.toml", "--", "yes"],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        assert proc.stdout.readline() == b"y\n"
        proc.stdout.close()
        assert proc.wait(timeout=60) == -13
        assert b"Broken pipe" not in proc.stderr.read()
        proc.stderr.close()


OUTER = """\
version = 1
[devices.dram]
kind = "numa"
nodes = [0]
[[rules]]
name = "small"
size = "..64"
device = "dram"
"""


def test_a_run_memplace_execs_inside_another_counts_in_neither_stats(setup):
    """`memplace run --stats` of a command that starts `memplace run` again: the inner run's
    program is placed by its own policy, and its counts go to no stats (as when the inner
    memplace waits for it, in a directory of its own), not into the outer run's stats,
    under the outer policy's rule and device names."""
    tmp_path, _, _ = setup
    (tmp_path / "outer.toml").write_text(OUTER)
    stats = tmp_path / "stats.json"
    for _ in range(2):  # the second start execs the program
        r = subprocess.run([sys.executable, "-m", "memplace", "run", "--policy", "outer.toml", "--stats", stats,
                            "--", sys.executable, "-m", "memplace", "run", "--policy", "policy.toml", "--",
                            str(tmp_path / "prog")], capture_output=True, text=True, timeout=120)
        assert r.returncode == 0 and r.stdout == "ok 1\n", r.stderr
        doc = json.loads(stats.read_text())
        assert [p["exe"] for p in doc["processes"] if p["exe"] == str(tmp_path / "prog")] == []
        assert [rule["name"] for rule in doc["totals"]["rules"]] == ["small"]
        assert [d["name"] for d in doc["totals"]["devices"]] == ["dram", "system"]


@pytest.mark.parametrize("given", [None, "C", "POSIX"])
def test_the_program_sees_the_locale_memplace_was_given(setup, given):
    """Python coerces a C or POSIX locale (PEP 538) by setting LC_CTYPE=C.UTF-8 in its own
    environment, which the programs it starts inherit: a batch job with no locale (or
    LC_CTYPE=C) ran under memplace in another locale than without it. The program gets
    LC_CTYPE as memplace was given it, whether memplace execs or waits, placed, not placed
    or profiled."""
    tmp_path, _, _ = setup
    (tmp_path / "policy.toml").write_text(POLICY.replace('site = ["prog.c:5"]', 'size = "..4KiB"'))
    (tmp_path / "bare.toml").write_text('version = 1\n[[rules]]\nsize = "..4KiB"\ndevice = "system"\n')
    env = {k: v for k, v in os.environ.items() if not k.startswith("LC_") and k != "LANG"}
    env["LANG"] = "C"
    if given is not None:
        env["LC_CTYPE"] = given
    for args in (["run", "--"], ["run", "--verbose", "--"], ["run", "--policy", "policy.toml", "--"],
                 ["run", "--policy", "policy.toml", "--"], ["run", "--policy", "bare.toml", "--"],
                 ["run", "--policy", "bare.toml", "--"], ["profile", "run", "--out", "profiles", "--"]):
        r = subprocess.run([sys.executable, "-m", "memplace", *args, "sh", "-c", 'echo "${LC_CTYPE-unset}"'],
                           capture_output=True, text=True, timeout=120, env=env)
        assert r.returncode == 0, r.stderr
        assert r.stdout == f"{given or 'unset'}\n", (args, r.stdout)
