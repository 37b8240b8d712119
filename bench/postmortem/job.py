"""memplace tls on the cores of a crashed job, grouped, vs gdb reading the cores one by one.

A 64-rank job (jobprog.c run 64 times at once, 4 threads per rank) crashes: every rank
aborts and leaves a core (each in a directory of its own: the machine's core_pattern is
left as it is). In three ranks one thread's `t_state` is 7 instead of 3.

- memplace: one `memplace tls CORE... t_state t_rank t_step`: the cores read in parallel
  worker processes (one per CPU), threads grouped by value; "cold" with an empty cache
  directory (the TLS index built in that run), "warm" with the index of an earlier run;
- gdb: a shell loop of `gdb -batch -ex 'thread apply all print VAR'` (one -ex per
  variable) over the same cores, one after the other: what a user does today.

Runs are interleaved round after round (order reversed every other round); the table
shows wall and CPU (user + sys, children included) medians and the ratio gdb/memplace
(median over rounds of the two times in the same round). Checked: memplace's grouped
counts of t_state equal those the ranks printed and those gdb printed, and the threads
memplace lists for the small group are the ones that printed 7.

    python bench/postmortem/job.py [--ranks 64] [--threads 4] [--runs 5]
"""

from __future__ import annotations

import argparse
import os
import re
import resource
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
from collections import Counter
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
from benchlib import timed  # noqa: E402
from run import memplace_env  # noqa: E402

VARS = ["t_state", "t_rank", "t_step"]


def crash_job(tmp: Path, exe: Path, ranks: int, threads: int) -> tuple[list[Path], dict[tuple[int, int], int]]:
    """Run every rank at once until each dumps core; (cores by rank, {(rank, tid): t_state printed})."""
    procs = []
    for r in range(ranks):
        d = tmp / f"rank{r}"
        d.mkdir()
        out = open(d / "out", "w")
        procs.append((r, d, out, subprocess.Popen(
            [str(exe), str(r), str(threads)], cwd=d, stdout=out, stderr=subprocess.DEVNULL,
            preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_CORE, (-1, -1)))))
    cores_dir = tmp / "cores"
    cores_dir.mkdir()
    cores, printed = [], {}
    for r, d, out, p in procs:
        p.wait()
        out.close()
        found = [c for c in d.glob("core*") if c.is_file()]
        if p.returncode >= 0 or not found:
            raise SystemExit(f"rank {r} left no core (status {p.returncode}): check ulimit -c and"
                             " /proc/sys/kernel/core_pattern (cores must go to the cwd)")
        core = cores_dir / f"core.{r}"
        found[0].rename(core)
        cores.append(core)
        for line in (d / "out").read_text().splitlines():
            rank, tid, name, value = line.split()
            printed[(int(rank), int(tid))] = int(value)
    return cores, printed


def memplace_groups(out: str, var: str) -> tuple[Counter, list[tuple[int, int]]]:
    """memplace's grouped line for `var` -> (Counter value -> threads, [(rank, tid)] listed)."""
    line = next(ln for ln in out.splitlines() if re.match(rf"\S+:{var} \(", ln))
    counts = Counter({int(v): int(n.replace(",", "")) for v, n in re.findall(r"= (-?\d+) in ([\d,]+) threads?", line)})
    listed = [(int(r), int(t)) for r, t in re.findall(r"core\.(\d+) tid (\d+)", line)]
    return counts, listed


def gdb_counts(out: str, var_index: int) -> Counter:
    """t_state values gdb printed: every `$N = V` of the first variable's command in each core."""
    vals = Counter()
    for block in out.split("== core ")[1:]:
        values = [int(v) for v in re.findall(r"^\$\d+ = (-?\d+)$", block, re.M)]
        per = len(values) // len(VARS)
        vals.update(values[var_index * per:(var_index + 1) * per])
    return vals


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--ranks", type=int, default=64)
    ap.add_argument("--threads", type=int, default=4, help="threads per rank, main included")
    ap.add_argument("--runs", type=int, default=5)
    args = ap.parse_args()
    if shutil.which("gdb") is None:
        raise SystemExit("gdb is not installed (Debian package gdb)")
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        exe = tmp / "jobprog"
        subprocess.run(["gcc", "-O1", "-g", "-pthread", "-o", str(exe), str(HERE / "jobprog.c")], check=True)
        cores, printed = crash_job(tmp, exe, args.ranks, args.threads)
        mp = [sys.executable, "-m", "memplace", "tls", *map(str, cores), *VARS]
        prints = " ".join(f"-ex {shlex.quote('thread apply all print ' + v)}" for v in VARS)
        loop = " ".join(shlex.quote(str(c)) for c in cores)
        gdb = ["sh", "-c", f"for c in {loop}; do echo \"== core $c\"; gdb -batch -nx {prints} "
               f"{shlex.quote(str(exe))} \"$c\" 2>/dev/null; done"]
        warm = tmp / "warm-cache"
        timed(mp, memplace_env(warm))
        wall: dict[str, list[float]] = {"cold": [], "warm": [], "gdb": []}
        cpu: dict[str, list[float]] = {k: [] for k in wall}
        outs: dict[str, str] = {}
        for r in range(args.runs):
            order = list(wall)
            for which in order if r % 2 == 0 else order[::-1]:
                if which == "gdb":
                    w, c, out = timed(gdb, dict(os.environ))
                else:
                    cache = warm if which == "warm" else tmp / f"cold-{r}"
                    w, c, out = timed(mp, memplace_env(cache))
                    if which == "cold":
                        shutil.rmtree(cache, ignore_errors=True)
                wall[which].append(w)
                cpu[which].append(c)
                outs.setdefault(which, out)
            print(".", end="", file=sys.stderr, flush=True)
        print(file=sys.stderr)
        want = Counter(printed.values())
        counts, listed = memplace_groups(outs["warm"], "t_state")
        odd = sorted(k for k, v in printed.items() if v != 3)
        checks = {
            "memplace counts = printed": counts == want and memplace_groups(outs["cold"], "t_state")[0] == want,
            "gdb counts = printed": gdb_counts(outs["gdb"], 0) == want,
            "listed threads = those that printed 7": sorted(listed) == odd,
        }
        med = {k: statistics.median(v) for k, v in wall.items()}
        mcpu = {k: statistics.median(v) for k, v in cpu.items()}
        ratio = {k: statistics.median(g / m for g, m in zip(wall["gdb"], wall[k])) for k in ("cold", "warm")}
        cratio = {k: statistics.median(g / m for g, m in zip(cpu["gdb"], cpu[k])) for k in ("cold", "warm")}
        print(f"{args.ranks} cores x {args.threads} threads, {len(VARS)} variables; {os.cpu_count()} CPUs;"
              f" medians of {args.runs} runs")
        print(f"{'':<14} {'wall s':>8} {'cpu s':>8} {'gdb/this wall':>14} {'gdb/this cpu':>13}")
        for k in ("cold", "warm"):
            print(f"{'memplace ' + k:<14} {med[k]:>8.3f} {mcpu[k]:>8.3f} {ratio[k]:>13.2f}x {cratio[k]:>12.2f}x")
        print(f"{'gdb loop':<14} {med['gdb']:>8.3f} {mcpu['gdb']:>8.3f}")
        print("t_state printed by the ranks: " + ", ".join(f"{v} in {n} threads" for v, n in want.most_common()))
        print("memplace: " + next(ln for ln in outs["warm"].splitlines() if ":t_state (" in ln))
        for name, ok in checks.items():
            print(f"check {name}: {'yes' if ok else 'NO'}")
        if not all(checks.values()):
            raise SystemExit(1)


if __name__ == "__main__":
    main()
