"""The runtime's exported surface and the malloc family's semantics under it."""

import subprocess

from support import PROGRAMS, preloaded

MALLOC_FAMILY = {"malloc", "free", "calloc", "realloc", "reallocarray", "posix_memalign",
                 "aligned_alloc", "memalign", "valloc", "pvalloc", "malloc_usable_size",
                 "free_sized", "free_aligned_sized"}
OPERATOR_NEW = {"_Znwm", "_Znam", "_ZnwmRKSt9nothrow_t", "_ZnamRKSt9nothrow_t"}
SIGNALS = {"sigaction", "signal"}  # entry/signals.c: access sampling yields its signal
# entry/process.c and entry/exec.c: the stats before a process ends, stepping aside at exec
PROCESS_CALLS = {"_exit", "_Exit", "exit", "quick_exit", "execve", "execv", "execvp", "execvpe",
                 "execl", "execlp", "execle", "fexecve", "execveat", "posix_spawn", "posix_spawnp"}
FORK = {"fork", "_Fork"}  # entry/fork.c: a child never shares file-device memory
DLCLOSE = {"dlclose"}  # entry/dlclose.c: after it, an address may name another module


def test_exports_exactly_the_malloc_family_operator_new_process_fork_signal_dlclose_calls_and_memplace_api(runtime):
    out = subprocess.run(["nm", "-D", "--defined-only", runtime], capture_output=True,
                         text=True, check=True).stdout
    names = {line.split()[-1] for line in out.splitlines() if line.strip()}
    exported = MALLOC_FAMILY | OPERATOR_NEW | PROCESS_CALLS | FORK | SIGNALS | DLCLOSE
    assert names - exported == {n for n in names if n.startswith("memplace_")}
    assert exported <= names
    assert not any(n.startswith(("mi_", "_mi_")) for n in names)


def test_runtime_needs_only_libc_and_the_loader(runtime):
    out = subprocess.run(["readelf", "-dW", runtime], capture_output=True, text=True, check=True)
    needed = [l.split("[")[1].rstrip("]") for l in out.stdout.splitlines() if "(NEEDED)" in l]
    assert set(needed) <= {"libc.so.6", "ld-linux-x86-64.so.2", "ld-linux-aarch64.so.1"}
    assert "libc.so.6" in needed


def test_semantics_identical_with_and_without_runtime(cc, runtime):
    prog = cc("semantics.c")
    plain = subprocess.run([prog], capture_output=True, text=True)
    placed = subprocess.run([prog], capture_output=True, text=True, env=preloaded(runtime))
    assert plain.returncode == 0, plain.stdout
    assert placed.returncode == 0, placed.stdout
    assert placed.stdout == plain.stdout
    assert "0 failures" in placed.stdout


def test_cxx_operators(cc, runtime):
    prog = cc("cxx_ops.cc", None, compiler="g++")
    r = subprocess.run([prog], capture_output=True, text=True, env=preloaded(runtime))
    assert r.returncode == 0, r.stdout + r.stderr
    assert r.stdout == subprocess.run([prog], capture_output=True, text=True).stdout
    assert "failures=0" in r.stdout


def test_cxx_operators_when_placing(cc, tmp_path, runtime):
    """The same program with every allocation placed: operator new goes through placement,
    failures still reach the new-handler and bad_alloc."""
    import sys
    prog = cc("cxx_ops.cc", None, compiler="g++")
    policy = tmp_path / "policy.toml"
    policy.write_text('version = 1\ndefault = "fast"\n[devices.fast]\nkind = "numa"\nnodes = [0]\n')
    stats = tmp_path / "stats.json"
    r = subprocess.run([sys.executable, "-m", "memplace", "run", "--policy", policy, "--stats",
                        stats, "--", prog], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr
    assert r.stdout == subprocess.run([prog], capture_output=True, text=True).stdout
    import json
    fast = [d for d in json.loads(stats.read_text())["totals"]["devices"] if d["name"] == "fast"]
    assert fast[0]["allocations"] > 40000  # the strings, vectors and map nodes were placed


def test_a_program_that_replaces_operator_new_keeps_it(cc, runtime):
    prog = cc("own_new.cc", None, compiler="g++")
    r = subprocess.run([prog], capture_output=True, text=True, env=preloaded(runtime))
    assert r.returncode == 0, r.stderr
    assert r.stdout == "own operator new calls: all\n"


def test_foreign_blocks_go_to_the_next_allocator(cc, tmp_path, runtime):
    lib = tmp_path / "libdeep.so"
    subprocess.run(["gcc", "-shared", "-fPIC", "-o", lib,
                    PROGRAMS / "deepbind_lib.c"], check=True)
    prog = cc("foreign_pointers.c", None, "-ldl")
    r = subprocess.run([prog, lib], capture_output=True, text=True, env=preloaded(runtime))
    assert r.returncode == 0, r.stdout + r.stderr
    assert "failures=0" in r.stdout


def test_runtime_can_be_dlopened(cc, runtime):
    prog = cc("dlopen_runtime.c", None, "-ldl")
    r = subprocess.run([prog, runtime], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr
    assert r.stdout.strip() == ("via runtime / allocated before the runtime was loaded / "
                                "next=libc")
