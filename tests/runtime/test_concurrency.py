"""Threads, fork, dlopen and pthread keys under the runtime."""

import subprocess

from support import PROGRAMS, preloaded


def test_fork_from_allocating_threads(cc, runtime):
    prog = cc("fork_threads.c", None, "-pthread")
    r = subprocess.run([prog], capture_output=True, text=True, env=preloaded(runtime), timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    assert r.stdout.strip() == "forks=60 failures=0"


def test_dlopen_dlclose_cycles_with_threads(cc, tmp_path, runtime):
    plugin = tmp_path / "libplugin.so"
    subprocess.run(["gcc", "-shared", "-fPIC", "-O1", "-o", plugin, PROGRAMS / "plugin.c"],
                   check=True)
    prog = cc("dlopen_cycles.c", None, "-ldl", "-pthread")
    plain = subprocess.run([prog, plugin], capture_output=True, text=True, timeout=120)
    r = subprocess.run([prog, plugin], capture_output=True, text=True, env=preloaded(runtime),
                       timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    assert r.stdout == plain.stdout


def test_failing_dlsym_in_threads_with_pthread_keys(cc, runtime):
    prog = cc("dlsym_keys.c", None, "-ldl", "-pthread")
    r = subprocess.run([prog], capture_output=True, text=True, env=preloaded(runtime), timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    assert r.stdout.strip() == "threads=16 rounds=2000 bad=0"


def test_library_with_its_own_malloc_sits_between(cc, tmp_path, runtime):
    """Like libOpenFOAM.so: the runtime forwards to that library, and names it."""
    lib = tmp_path / "libownmalloc.so"
    subprocess.run(["gcc", "-shared", "-fPIC", "-o", lib, PROGRAMS / "own_malloc_lib.c"], check=True)
    prog = cc("own_malloc_main.c", None, f"-L{tmp_path}", "-lownmalloc", f"-Wl,-rpath,{tmp_path}")
    from support import memplace
    r = memplace("run", "--verbose", "--", str(prog))
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "own_malloc_calls_grew=1"
    assert f"next allocator from {lib}" in r.stderr
