"""memplace tls vs gdb on cores of a program with 100, 1,000 and 4,000 threads x 20 `long` TLS variables.

Each size: one core; memplace prints all 20 variables of all threads in one run,
gdb runs `thread apply all print vK` for each K on the same core. Both are run
interleaved (round after round), medians compared; the values are checked equal.

    python bench/postmortem/run.py [--sizes 100,1000,4000] [--runs 3]
"""

from __future__ import annotations

import argparse
import os
import re
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
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


def run(argv: list[str]) -> tuple[float, str]:
    # Byte-compiled modules, as in an installed wheel (this machine sets PYTHONDONTWRITEBYTECODE).
    env = dict(os.environ, PYTHONPATH=str(SRC))
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    t = time.perf_counter()
    r = subprocess.run(argv, capture_output=True, text=True, env=env)
    dt = time.perf_counter() - t
    if r.returncode != 0:
        raise SystemExit(f"{argv[:3]} failed: {r.stderr[-500:]}")
    return dt, r.stdout


def memplace_values(out: str) -> dict[tuple[int, str], int]:
    vals, tid = {}, None
    for line in out.splitlines():
        m = re.match(r"thread (\d+) ", line)
        if m:
            tid = int(m.group(1))
        m = re.match(r"  \S+:(v\d+) \(long\) = (-?\d+)", line) or re.match(r"  \S+:(v\d+) \(long int\) = (-?\d+)", line)
        if m and tid is not None:
            vals[(tid, m.group(1))] = int(m.group(2))
    return vals


def gdb_values(out: str) -> dict[tuple[int, str], int]:
    vals, tid, k = {}, None, 0
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


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="100,1000,4000")
    ap.add_argument("--runs", type=int, default=3)
    args = ap.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    with tempfile.TemporaryDirectory() as t:
        tmp = Path(t)
        exe = tmp / "manythreads"
        subprocess.run(["gcc", "-O1", "-g", "-pthread", "-o", str(exe), str(HERE / "manythreads.c")], check=True)
        names = [f"v{k}" for k in range(NVARS)]
        print(f"{'threads':>8} {'memplace s':>11} {'gdb s':>9} {'gdb/memplace':>13}  values")
        for n in sizes:
            core = make_core(tmp, exe, n)
            mp_cmd = [sys.executable, "-m", "memplace", "tls", str(core), *names]
            gdb_cmd = ["gdb", "-batch", "-nx", *sum((["-ex", f"thread apply all print {v}"] for v in names), []),
                       str(exe), str(core)]
            mp_t, gdb_t = [], []
            for r in range(args.runs):
                for which in (("mp", "gdb") if r % 2 == 0 else ("gdb", "mp")):
                    if which == "mp":
                        dt, mp_out = run(mp_cmd)
                        mp_t.append(dt)
                    else:
                        dt, gdb_out = run(gdb_cmd)
                        gdb_t.append(dt)
            a, b = memplace_values(mp_out), gdb_values(gdb_out)
            ok = len(a) == n * NVARS and a == b
            m, g = statistics.median(mp_t), statistics.median(gdb_t)
            print(f"{n:>8} {m:>11.3f} {g:>9.3f} {g / m:>12.1f}x  {'equal' if ok else 'DIFFER'} ({len(a)} vs {len(b)})",
                  flush=True)
            core.unlink()


if __name__ == "__main__":
    main()
