"""Threads, fork, dlopen and pthread keys under the runtime."""

import json
import subprocess

from support import PROGRAMS, memplace, preloaded


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


def test_a_reloaded_librarys_constructor_allocations_are_its_own_site_in_the_profile(cc, tmp_path):
    """The plugin's constructor allocates through strdup while dlopen maps it, 200 times,
    unloaded in between: libc's frame is left out and every allocation is the plugin's
    constructor line, found by walking through the plugin (the snapshot taken after the
    last dlclose does not have it yet: the walk that meets it takes a new one)."""
    plugin = tmp_path / "libplugin.so"
    subprocess.run(["gcc", "-shared", "-fPIC", "-O1", "-g", "-o", plugin, PROGRAMS / "plugin.c"],
                   check=True)
    prog = cc("dlopen_cycles.c", None, "-g", "-ldl", "-pthread")
    r = memplace("profile", "--out", str(tmp_path / "prof"), "--", str(prog), str(plugin),
                 timeout=300)
    assert r.returncode == 0, r.stderr
    profile, = [json.loads(p.read_text()) for p in (tmp_path / "prof").glob("*.json")]
    line = next(i for i, t in enumerate((PROGRAMS / "plugin.c").read_text().splitlines(), 1)
                if "strdup" in t)
    by_first = {}
    for site in profile["sites"]:
        f = site["frames"][0]
        key = (f["module"].rsplit("/", 1)[-1], f.get("line"))
        by_first[key] = by_first.get(key, 0) + site["allocations"]
    assert by_first.get(("libplugin.so", line)) == 200, by_first
    assert not any(module.startswith("libc.so") for module, _ in by_first), by_first


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
