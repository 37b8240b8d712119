"""`memplace profile` with the runtime engine: exact per-site counts, stable identities,
profiles written at exit and on death by a signal, one profile per MPI rank."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from memplace.profiling import profile as prof

PROGRAMS = Path(__file__).parent / "programs"
MIB = 1 << 20


def build(tmp_path, name="pattern"):
    out = tmp_path / name
    subprocess.run(["gcc", "-O1", "-g", "-pthread", "-o", out, PROGRAMS / f"{name}.c"], check=True)
    return out


def profile(tmp_path, *cmd, out="prof", env=None):
    r = subprocess.run([sys.executable, "-m", "memplace", "profile", "--out", str(tmp_path / out),
                        "--", *map(str, cmd)], capture_output=True, text=True, env=env, timeout=300)
    files = sorted((tmp_path / out).glob("*.json")) if (tmp_path / out).exists() else []
    return r, [prof.load(f) for f in files]


def line(marker):
    for i, text in enumerate((PROGRAMS / "pattern.c").read_text().splitlines(), 1):
        if f"SITE {marker} " in text or text.rstrip().endswith(f"SITE {marker} */"):
            return i
    raise AssertionError(marker)


def by_line(p: prof.Profile):
    out = {}
    for s in p.sites:
        loc = s.location or ""
        if loc.startswith("pattern.c:") or "/pattern.c:" in loc:
            out.setdefault(int(loc.rsplit(":", 1)[1]), []).append(s)
    return out


def test_exact_counts_bytes_and_peaks(tmp_path):
    exe = build(tmp_path)
    r, profiles = profile(tmp_path, exe)
    assert r.returncode == 0, r.stderr
    assert len(profiles) == 1
    sites = by_line(profiles[0])
    a, = sites[line("A")]
    b, = sites[line("B")]
    c, = sites[line("C")]
    assert (a.allocations, a.frees, a.bytes, a.peak_live_bytes) == (10, 10, 10000, 10000)
    assert (b.allocations, b.frees, b.bytes, b.peak_live_bytes) == (100, 100, 6400, 64)
    assert (c.allocations, c.frees, c.bytes, c.peak_live_bytes) == (1, 0, 1 << 20, 1 << 20)
    assert a.size_histogram == {prof.size_bucket(1000): 10}
    assert b.size_histogram == {prof.size_bucket(64): 100}
    assert a.function == "site_a" and b.function == "site_b" and c.function == "main"
    assert a.frames[0].module == str(exe) and all(f.offset > 0 for f in a.frames)


def test_same_site_same_identity_in_two_runs(tmp_path):
    exe = build(tmp_path)
    _, first = profile(tmp_path, exe, out="one")
    _, second = profile(tmp_path, exe, out="two")
    ids = lambda p: {s.identity for s in p.sites if s.frames[0].module == str(exe)}
    assert ids(first[0]) == ids(second[0]) and len(ids(first[0])) >= 3


def test_written_when_the_program_dies_of_a_signal(tmp_path):
    exe = build(tmp_path)
    r, profiles = profile(tmp_path, exe, "crash")
    assert r.returncode == -11  # memplace died of the same signal
    c, = by_line(profiles[0])[line("C")]
    assert c.bytes == 1 << 20


def test_the_core_left_is_the_programs(tmp_path):
    """memplace dies of the program's signal, but must not dump a core of its own over the
    program's (core_pattern "core": both would be ./core)."""
    if Path("/proc/sys/kernel/core_pattern").read_text().strip() != "core":
        pytest.skip("needs kernel.core_pattern = core (cores in the working directory)")
    import resource

    from memplace.postmortem.elfcore import Core

    exe = build(tmp_path)
    def unlimited():
        resource.setrlimit(resource.RLIMIT_CORE, (resource.RLIM_INFINITY, resource.RLIM_INFINITY))
    r = subprocess.run([sys.executable, "-m", "memplace", "profile", "--out", str(tmp_path / "prof"), "--",
                        str(exe), "crash"], cwd=tmp_path, preexec_fn=unlimited, capture_output=True, timeout=300)
    assert r.returncode == -11
    assert Core(str(tmp_path / "core")).fname == exe.name


def test_exit_status_and_output_are_the_programs(tmp_path):
    r, profiles = profile(tmp_path, "bash", "-c", "echo out; echo err >&2; exit 7")
    assert (r.returncode, r.stdout) == (7, "out\n")
    assert r.stderr.startswith("err\n")
    assert len(profiles) >= 1
    # dash leaves through _exit: no exit handlers run, but the runtime's _exit writes the profile
    r, profiles = profile(tmp_path, "dash", "-c", "exit 5", out="dash")
    assert r.returncode == 5 and len(profiles) == 1 and profiles[0].pid > 0


def test_bad_command_is_one_line(tmp_path):
    r, _ = profile(tmp_path, "no-such-program-xyz")
    assert r.returncode == 2 and r.stderr.strip().count("\n") == 0


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("mpirun") is None, reason="needs Debian package openmpi-bin")
def test_two_mpi_ranks_write_two_profiles_that_merge(tmp_path):
    exe = build(tmp_path)
    env = dict(os.environ, OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1",
               OMPI_MCA_rmaps_base_oversubscribe="1")
    out = tmp_path / "mpi"
    r = subprocess.run(["mpirun", "-np", "2", sys.executable, "-m", "memplace", "profile",
                        "--out", str(out), "--", str(exe)], capture_output=True, text=True,
                       env=env, timeout=300)
    assert r.returncode == 0, r.stderr
    files = sorted(out.glob("*.json"))
    ranks = sorted(prof.load(f).rank for f in files)
    assert ranks == [0, 1], [f.name for f in files]
    merged = tmp_path / "merged.json"
    m = subprocess.run([sys.executable, "-m", "memplace", "profile", "merge", *map(str, files),
                        "-o", str(merged)], capture_output=True, text=True)
    assert m.returncode == 0, m.stderr
    total = prof.load(merged)
    a, = by_line(total)[line("A")]
    assert (a.allocations, a.bytes) == (20, 20000)


def test_the_process_peak_of_live_bytes_is_measured_not_the_sum_of_site_peaks(tmp_path):
    """Two 8 MiB blocks from two sites, one freed before the other is made: the sites'
    peaks sum to 16 MiB, the process never held more than 8 MiB (plus start-up blocks).
    `profile merge` keeps the largest process's peak, as it keeps the sites' peaks."""
    src = tmp_path / "phases.c"
    src.write_text("""#include <stdlib.h>
#include <string.h>
int main(void) {
    char *a = malloc(8 << 20); memset(a, 1, 8 << 20); free(a);
    char *b = malloc(8 << 20); memset(b, 2, 8 << 20); free(b);
    return 0;
}
""")
    exe = tmp_path / "phases"
    subprocess.run(["gcc", "-O0", "-g", "-o", str(exe), str(src)], check=True)
    r, (p,) = profile(tmp_path, exe)
    assert r.returncode == 0, r.stderr
    total = p.meta["peak_live_total"]
    assert sum(s.peak_live_bytes for s in p.sites) >= 16 << 20
    assert 8 << 20 <= total < 9 << 20
    r2, (q,) = profile(tmp_path, exe, out="prof2")
    from memplace.profiling.merge import merge
    assert merge([p, q]).meta["peak_live_total"] == max(total, q.meta["peak_live_total"])


def sum_by_window(sites, series):
    return [sum(col) for col in zip(*(series(s) for s in sites))]


@pytest.mark.parametrize("threads", [1, 2])
def test_the_sites_bytes_at_the_heaps_peaks_add_up_to_the_heap_not_to_their_peaks(tmp_path, threads):
    """Each thread: a 2 MiB state block all run long, and two 4 MiB temporaries from two
    sites made and freed one after the other, 400 times (about 0.5 s: the windows widen
    three times). The sites' own peaks per window add up to 10 MiB a thread; what the
    sites had live when the heap peaked in each window adds up to what the heap held then,
    which is never more than its measured peak: 6 MiB a thread at most."""
    exe = build(tmp_path, "temporaries")
    r, (p,) = profile(tmp_path, exe, threads, 400)
    assert r.returncode == 0, r.stderr
    total = p.meta["peak_live_total"]
    own_peaks = max(sum_by_window(p.sites, lambda s: s.live))
    at_peaks = sum_by_window(p.sites, lambda s: s.heap_peak_live)
    assert own_peaks >= threads * 10 * MIB
    assert max(at_peaks) <= total
    if threads == 1:  # no other thread between a site's change and the heap's count
        assert max(at_peaks) == total
        assert 6 * MIB <= total < 6 * MIB + 256 * 1024
    else:
        assert max(at_peaks) >= total - 64 * 1024
        assert 8 * MIB <= total <= 12 * MIB + 256 * 1024
    lines = (PROGRAMS / "temporaries.c").read_text().splitlines()
    marked = {i for i, text in enumerate(lines, 1) if "SITE temporary" in text}
    temporaries = [s for s in p.sites if (s.location or "").endswith("temporaries.c:%d" % s.symbol(0).line)
                   and s.symbol(0).line in marked]
    # a temporary is not live at every peak: its bytes there are below its own peaks
    assert all(s.live_at_peak is not None and sum(s.live_at_peak) < sum(s.live) for s in temporaries)
    # the profile file keeps them; `profile merge` of two runs keeps each window's largest
    from memplace.profiling.merge import merge
    m = merge([p, p])
    assert max(sum_by_window(m.sites, lambda s: s.heap_peak_live)) == max(at_peaks)


def test_a_plan_packed_by_the_heaps_peaks_is_what_the_placed_run_holds(tmp_path):
    """profile -> advise with a fast device of 7 MiB -> placed run, on the one-thread
    temporaries program: the three sites' own peaks add up to 10 MiB, but the heap never
    holds more than 6 MiB, so all three fit. The plan says so, and the placed run puts
    every allocation of the three on the fast device and holds what the plan said."""
    exe = build(tmp_path, "temporaries")
    memplace = [sys.executable, "-m", "memplace"]
    # no access sampling: every allocated byte counts as written once, so every site
    # gains from the fast device and the plan packs it as full as it can
    r = subprocess.run([*memplace, "profile", "--rate", "0", "--out", str(tmp_path / "prof"), "--", str(exe),
                        "1", "200"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    files = sorted((tmp_path / "prof").glob("*.json"))
    policy, stats = tmp_path / "policy.toml", tmp_path / "stats.json"
    a = subprocess.run([*memplace, "advise", str(files[0]), "--policy-out", str(policy),
                        "--device", "fast=numa:0,latency=80ns,capacity=7MiB",
                        "--device", "slow=system,latency=300ns"], capture_output=True, text=True)
    assert a.returncode == 0, a.stderr
    plan = json.loads(subprocess.run([*memplace, "report", "--profile", str(files[0]), "--policy", str(policy),
                                      "--json"], capture_output=True, text=True, check=True).stdout)
    planned = {d["name"]: d for d in plan["devices"]}
    assert 6 * MIB <= planned["fast"]["peak_bytes"] <= 7 * MIB
    placed = subprocess.run([*memplace, "run", "--policy", str(policy), "--stats", str(stats), "--",
                             str(exe), "1", "200"], capture_output=True, text=True)
    assert placed.returncode == 0, placed.stderr
    fast, = [d for d in json.loads(stats.read_text())["totals"]["devices"] if d["name"] == "fast"]
    assert fast["allocations"] >= 1 + 2 * 200  # the state block and every temporary
    assert 6 * MIB <= fast["peak"] <= 7 * MIB


def test_children_forked_while_other_threads_make_new_heap_peaks_run_on(tmp_path):
    """Two threads reach new heap peaks (a site's lock held while the peak's is taken)
    while the main thread forks 100 children that allocate and exit: every child ends."""
    exe = build(tmp_path, "fork_while_growing")
    r, profiles = profile(tmp_path, exe, 100)
    assert r.returncode == 0, r.stderr
    assert "children 100 of 100" in r.stdout
    assert len(profiles) >= 1
