"""memplace tls vs gdb on cores of a program with N threads x 20 `long` TLS variables.

Each size: one core. memplace prints every TLS variable of every module (the
program's 20 and libc's) of all threads in one run, start-up included, twice over:
"cold" with an empty cache directory (the TLS index of the program and libc is built
from DWARF in that run) and "warm" (the index made by an earlier run). gdb runs
`thread apply all print vK` for each K on the same core. The three are run
interleaved, round after round (order reversed every other round); the table shows
wall-time medians, the ratios gdb/memplace (median over the rounds where both ran of
gdb's time / memplace's time in that round: a slow phase of the shared machine then
hits both), and CPU-time medians (user + sys of the process and its threads: steadier
than wall time on a shared machine). The values of
the 20 variables are checked equal between memplace and gdb. `memplace keys` on the
same core is timed too (no gdb equivalent: gdb cannot call pthread_getspecific in a
core).

    python bench/postmortem/run.py [--sizes 1,8,100,1000,4000] [--runs 5] [--gdb-runs 3]
"""

from __future__ import annotations

import argparse
import os
import re
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
from benchlib import timed  # noqa: E402

SRC = HERE.parent.parent / "src"
NVARS = 20


def make_core(tmp: Path, exe: Path, n: int) -> Path:
    d = tmp / f"t{n}"
    d.mkdir()
    subprocess.run([str(exe), str(n)], cwd=d, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                   preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_CORE, (-1, -1)))
    cores = list(d.glob("core*"))
    if not cores:
        raise SystemExit("no core produced: check ulimit -c and /proc/sys/kernel/core_pattern")
    return cores[0]


def memplace_env(cache: Path) -> dict[str, str]:
    # Byte-compiled modules, as in an installed wheel (this machine sets PYTHONDONTWRITEBYTECODE).
    env = dict(os.environ, PYTHONPATH=str(SRC), MEMPLACE_CACHE=str(cache))
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    return env


def memplace_values(out: str) -> dict[tuple[int, str], int]:
    vals, tid = {}, None
    for line in out.splitlines():
        m = re.match(r"thread (\d+) ", line)
        if m:
            tid = int(m.group(1))
        m = re.match(r"  \S+:(v\d+) \(long(?: int)?\) = (-?\d+)", line)
        if m and tid is not None:
            vals[(tid, m.group(1))] = int(m.group(2))
    return vals


def gdb_values(out: str) -> dict[tuple[int, str], int]:
    vals, tid = {}, None
    order = []
    for line in out.splitlines():
        m = re.match(r"Thread \d+ \(.*LWP (\d+)\)", line)
        if m:
            tid = int(m.group(1))
            continue
        m = re.match(r"\$\d+ = (-?\d+)", line)
        if m and tid is not None:
            order.append((tid, int(m.group(1))))
    per = len(order) // NVARS if order else 0
    for i, (tid, v) in enumerate(order):
        vals[(tid, f"v{i // per}")] = v
    return vals


def bench_size(tmp: Path, exe: Path, n: int, runs: int, gdb_runs: int) -> str:
    core = make_core(tmp, exe, n)
    names = [f"v{k}" for k in range(NVARS)]
    tls = [sys.executable, "-m", "memplace", "tls", str(core)]
    keys = [sys.executable, "-m", "memplace", "keys", str(core)]
    gdb = ["gdb", "-batch", "-nx", *sum((["-ex", f"thread apply all print {v}"] for v in names), []),
           str(exe), str(core)]
    warm_cache = tmp / "warm-cache"
    timed(tls, memplace_env(warm_cache))  # fills the warm cache
    t: dict[str, list[float]] = {"cold": [], "warm": [], "gdb": [], "keys": []}
    cpu: dict[str, list[float]] = {k: [] for k in t}
    outs: dict[str, str] = {}
    for r in range(max(runs, gdb_runs)):
        order = ["cold", "warm", "gdb", "keys"]
        for which in (order if r % 2 == 0 else order[::-1]):
            if which == "gdb" and r >= gdb_runs or which != "gdb" and r >= runs:
                continue
            if which == "cold":
                cache = tmp / f"cold-cache-{r}"
                wall, used, out = timed(tls, memplace_env(cache))
                shutil.rmtree(cache, ignore_errors=True)
            elif which == "warm":
                wall, used, out = timed(tls, memplace_env(warm_cache))
            elif which == "keys":
                wall, used, out = timed(keys, memplace_env(warm_cache))
            else:
                wall, used, out = timed(gdb, dict(os.environ))
            t[which].append(wall)
            cpu[which].append(used)
            outs.setdefault(which, out)
        print(".", end="", file=sys.stderr, flush=True)
    a, b = memplace_values(outs["warm"]), gdb_values(outs["gdb"])
    same = len(a) == n * NVARS and a == b and memplace_values(outs["cold"]) == a
    med = {k: statistics.median(v) for k, v in t.items()}
    mcpu = {k: statistics.median(v) for k, v in cpu.items()}
    ratio = {k: statistics.median(g / m for g, m in zip(t["gdb"], t[k])) for k in ("cold", "warm")}
    core.unlink()
    return (f"{n:>8} {med['cold']:>9.3f} {med['warm']:>9.3f} {med['gdb']:>9.3f} "
            f"{ratio['cold']:>10.2f}x {ratio['warm']:>10.2f}x {med['keys']:>9.3f}"
            f"  | cpu {mcpu['cold']:>7.3f} {mcpu['warm']:>7.3f} {mcpu['gdb']:>7.3f}"
            f"  {'equal' if same else 'DIFFER'} ({len(a)} vs {len(b)} values)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="1,8,100,1000,4000")
    ap.add_argument("--runs", type=int, default=5, help="memplace runs per size")
    ap.add_argument("--gdb-runs", type=int, default=3, help="gdb runs per size (47 s each at 4,000 threads)")
    args = ap.parse_args()
    if shutil.which("gdb") is None:
        raise SystemExit("gdb is not installed (Debian package gdb)")
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        exe = tmp / "manythreads"
        subprocess.run(["gcc", "-O1", "-g", "-pthread", "-o", str(exe), str(HERE / "manythreads.c")], check=True)
        print("wall seconds, medians (then user+sys CPU seconds, medians: cold, warm, gdb); memplace tls"
              " prints every TLS variable of every module, gdb the 20 of the program")
        print(f"{'threads':>8} {'mp cold':>9} {'mp warm':>9} {'gdb':>9} {'gdb/cold':>11} {'gdb/warm':>11}"
              f" {'mp keys':>9}  | cpu    cold    warm     gdb  values")
        for n in (int(s) for s in args.sizes.split(",")):
            work = tmp / f"n{n}"
            work.mkdir()
            line = bench_size(work, exe, n, args.runs, args.gdb_runs)
            print(file=sys.stderr)
            print(line, flush=True)


if __name__ == "__main__":
    main()
