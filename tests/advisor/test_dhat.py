"""The DHAT engine on real programs: exact counts, hot vs cold, stable identities, real offsets."""

from __future__ import annotations

import json
import re
import shutil
import subprocess

import pytest

from advisor_support import memplace, needs_valgrind
from memplace.profiling import profile as prof
from memplace.profiling.symbolize import symbolize

pytestmark = [needs_valgrind, pytest.mark.slow]

PROGRAM = r"""
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#define N 20000
__attribute__((noinline)) static double *make(size_t n) {
    return malloc(n * sizeof(double));                         /* MAKE */
}
int main(int argc, char **argv) {
    double *hot = malloc(N * sizeof(double));                  /* HOT */
    double *cold = malloc(N * sizeof(double));                 /* COLD */
    memset(hot, 0, N * sizeof(double));
    memset(cold, 0, N * sizeof(double));
    double s = 0;
    for (int r = 0; r < 50; r++)
        for (int i = 0; i < N; i++) { hot[i] += i; s += hot[i]; }
    for (int k = 0; k < 5; k++) {
        char *t = malloc(1000);                                /* LOOP */
        memset(t, k, 1000);
        s += t[3];
        free(t);
    }
    double *a = make(10);                                      /* CALLER1 */
    double *b = make(20);                                      /* CALLER2 */
    a[0] = 1; b[0] = 2;
    printf("sum %.1f %.1f\n", s, cold[7] + a[0] + b[0]);
    free(a); free(b); free(hot); free(cold);
    return argc > 1 ? 7 : 0;
}
"""


def line_of(tag: str) -> int:
    return next(i for i, l in enumerate(PROGRAM.splitlines(), 1) if f"/* {tag} */" in l)


def profile_of(tmp_path, exe, name, *args):
    out = tmp_path / name
    r = memplace("profile", "--engine", "dhat", "--out", str(out), "--", str(exe), *args)
    files = sorted(out.glob("profile.*.json"))
    assert len(files) == 1, (r.returncode, r.stderr)
    return r, prof.load(files[0])


def site_at(p: prof.Profile, line: int, depth: int = 0) -> prof.Site:
    hits = [s for s in p.sites if s.symbol(depth) and s.symbol(depth).line == line]
    assert len(hits) == 1, [(s.label, s.symbols) for s in p.sites]
    return hits[0]


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    if shutil.which("gcc") is None:
        pytest.skip("gcc not installed (Debian package gcc)")
    d = tmp_path_factory.mktemp("dhat")
    (d / "prog.c").write_text(PROGRAM)
    subprocess.run(["gcc", "-g", "-O0", "-o", str(d / "prog"), str(d / "prog.c")], check=True)
    return d, d / "prog"


def test_counts_bytes_and_peaks_are_exact(built):
    d, exe = built
    r, p = profile_of(d, exe, "one")
    assert p.engine == "dhat" and p.clock_unit == "instr"
    hot, cold, loop = site_at(p, line_of("HOT")), site_at(p, line_of("COLD")), site_at(p, line_of("LOOP"))
    assert (hot.allocations, hot.bytes, hot.peak_live_bytes, hot.frees) == (1, 160000, 160000, 1)
    assert (cold.allocations, cold.bytes, cold.peak_live_bytes) == (1, 160000, 160000)
    assert (loop.allocations, loop.bytes, loop.peak_live_bytes, loop.frees) == (5, 5000, 1000, 5)
    # make() is one frame 0 called from two places: two sites, told apart by frame 1.
    c1, c2 = site_at(p, line_of("CALLER1"), depth=1), site_at(p, line_of("CALLER2"), depth=1)
    assert c1.frames[0] == c2.frames[0] and c1.identity != c2.identity
    assert (c1.bytes, c2.bytes) == (80, 160)
    assert c1.function == "make"


def test_hot_array_ranks_above_cold(built):
    d, exe = built
    _, p = profile_of(d, exe, "rank")
    hot, cold = site_at(p, line_of("HOT")), site_at(p, line_of("COLD"))
    # 50 passes of a read-modify-write plus a read over the hot array; the cold one is
    # written once (memset) and read once.
    assert hot.reads >= 50 * 2 * 160000
    assert cold.reads < 1000 and cold.writes == 160000
    assert hot.accesses > 10 * cold.accesses
    ranked = sorted(p.sites, key=lambda s: -(s.accesses or 0))
    assert ranked[0] is hot


def test_offsets_are_return_addresses_and_stable_across_runs(built):
    d, exe = built
    _, p1 = profile_of(d, exe, "run1")
    _, p2 = profile_of(d, exe, "run2")
    mine1 = {s.identity for s in p1.sites if s.frames[0].module == str(exe)}
    mine2 = {s.identity for s in p2.sites if s.frames[0].module == str(exe)}
    assert mine1 == mine2 and len(mine1) >= 5
    # Each frame 0 offset is the address right after a `call malloc` in the binary.
    dis = subprocess.run(["objdump", "-d", "--no-show-raw-insn", str(exe)], capture_output=True, text=True).stdout
    lines = dis.splitlines()
    after_call = {
        int(re.match(r"\s*([0-9a-f]+):", lines[i + 1]).group(1), 16)
        for i, l in enumerate(lines[:-1])
        if re.search(r"call.*<malloc@plt>", l)
    }
    hot = site_at(p1, line_of("HOT"))
    assert hot.frames[0].offset in after_call
    assert hot.frames[0].build_id  # read from the ELF note
    # Our own symbolizer reads the same function and line from DWARF.
    sym = symbolize(hot.frames[0])
    assert (sym.function, sym.file.endswith("prog.c"), sym.line) == ("main", True, line_of("HOT"))


def test_program_output_and_exit_status_pass_through(built):
    d, exe = built
    native = subprocess.run([str(exe), "x"], capture_output=True, text=True)
    r, _ = profile_of(d, exe, "status", "x")
    assert r.returncode == native.returncode == 7
    assert r.stdout == native.stdout


def test_advise_from_dhat_puts_hot_on_fast_device(built, tmp_path):
    d, exe = built
    _, p = profile_of(d, exe, "advise")
    path = tmp_path / "p.json"
    prof.save(p, path)
    policy = tmp_path / "policy.toml"
    r = memplace("advise", str(path), "--policy-out", str(policy), "--json",
                 "--device", "fast=numa:0,latency=80ns,capacity=200KiB", "--device", "slow=system,latency=300ns",
                 check=True)
    out = json.loads(r.stdout)
    by_line = {pl["location"]: pl["device"] for pl in out["placements"]}
    assert by_line[f"prog.c:{line_of('HOT')}"] == "fast"
    assert by_line[f"prog.c:{line_of('COLD')}"] == "slow"  # both would not fit in 200 KiB
    assert out["devices"]["fast"]["peak"] <= 200 * 1024
    text = policy.read_text()
    assert f"prog.c:{line_of('HOT')}" in text  # the rule's comment says which site it is
