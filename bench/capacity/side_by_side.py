"""Variants of one program under one memory limit, interleaved round by round, with what
the kernel did in each run: the per-cell measurements behind docs/benchmarks.md's "Still
slower than (b) or (c), and why" (issue 15).

    sudo python bench/capacity/side_by_side.py spmv 340787200 7 c=swap e=memplace-swap-100.toml+swap
    sudo python bench/capacity/side_by_side.py hotcold 433 5 plain=malloc@nolimit placed=P.toml@nolimit

LIMIT: bytes, or MiB when below 1 MiB (run.py's 100% limit is the plain run's peak in
bytes: results.json's "peak"). VARIANT: NAME=WHAT, WHAT being malloc, swap (malloc with a
swap file), or a policy file (placed, as run.py places), with "+swap" for a swap file too
and "@nolimit" for no limit (the cgroup still measures). Prints each run (wall, user and
system seconds, major faults, the cgroup's peak and failcnt: how often it hit the limit,
the machine's swap-outs and swap-ins, pages written to disk (`nr_written`) and file pages
read back after eviction (`workingset_refault_file`) in that run; other work on the
machine adds to these four) and each variant's medians. The
programs are built in --out/bin, so the policies of a run.py --out can be given. Needs
root (cgroups, swapon). OpenFOAM (as run.py --openfoam runs it) is meshed again in
--out/openfoam-side.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))
import limits  # noqa: E402
import run as bench  # noqa: E402

MIB = 1 << 20
VMSTAT = ("pswpout", "pswpin", "pgscan_direct", "nr_written", "workingset_refault_file")
SHOWN = ("wall", "user", "system", "major_faults", "peak_mib", "failcnt", "pswpout", "pswpin", "nr_written",
         "workingset_refault_file")


def vmstat() -> dict[str, int]:
    with open("/proc/vmstat") as f:
        return {k: int(v) for k, v in (line.split() for line in f)}


def variant(text: str) -> tuple[str, str, bool, bool]:
    name, eq, what = text.partition("=")
    nolimit = what.endswith("@nolimit")
    what = what.removesuffix("@nolimit")
    swap = what == "swap" or what.endswith("+swap")
    what = what.removesuffix("+swap")
    if not eq or not name or not (what in ("malloc", "swap") or Path(what).is_file()):
        bench.bad_input(f"{text}: expected NAME=malloc|swap|POLICY[+swap][@nolimit] (POLICY an existing file)")
    return name, what, swap, nolimit


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("program", choices=["hotcold", "spmv", "openfoam"])
    ap.add_argument("limit", type=int, help="bytes, or MiB when below 1 MiB")
    ap.add_argument("rounds", type=int)
    ap.add_argument("variants", nargs="+", metavar="VARIANT")
    ap.add_argument("--out", default="capacity-out", help="run.py's output directory (the programs' bin/)")
    ap.add_argument("--device-dir", default="/var/tmp/memplace-capacity", help="where the swap file goes")
    args = ap.parse_args()
    if limits.why_no_cgroup():
        raise SystemExit(f"side_by_side: {limits.why_no_cgroup()}")
    if args.limit <= 0 or args.rounds <= 0:
        bench.bad_input(f"limit {args.limit}, rounds {args.rounds}: both must be above 0")
    variants = [variant(v) for v in args.variants]
    limit = args.limit if args.limit >= MIB else args.limit * MIB
    out = Path(args.out).resolve()
    if args.program == "openfoam":  # run.py's case (refined 4x, 10 steps), meshed again here
        from openfoam_case import openfoam_program
        prog = openfoam_program(out / "openfoam-side", 4, 10)
    else:
        prog = {p.name: p for p in bench.c_programs(out / "bin", 1.0)}[args.program]
    base = bench.clean_env(prog.env or os.environ)
    device_dir = Path(args.device_dir).resolve()
    device_dir.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix="side-", dir=out))
    swap = limits.SwapFile(device_dir / "side_by_side.swap", 1 << 30) if any(v[2] for v in variants) else None
    results: dict[str, list[dict]] = {v[0]: [] for v in variants}
    try:
        if swap:
            swap.__enter__()
        for r in range(args.rounds):
            for name, what, swapped, nolimit in (variants if r % 2 == 0 else variants[::-1]):
                env = base if what in ("malloc", "swap") else \
                    bench.placed_env(Path(what), prog.argv, tmp / f"{name}-{r}", tmp, base)
                if prog.prepare:
                    prog.prepare()
                before = vmstat()
                with limits.MemoryCgroup("memplace-side", None if nolimit else limit, swapped) as cg:
                    o = cg.run(prog.argv, env, 600, tmp / f"log-{name}-{r}")
                    failcnt = int((cg.path / "memory.failcnt").read_text()) if cg.version == 1 else 0
                after = vmstat()
                row = {"status": o.status, "wall": o.seconds, "user": o.user, "system": o.system,
                       "major_faults": o.major_faults, "peak_mib": o.peak / MIB, "failcnt": failcnt,
                       **{k: after.get(k, 0) - before.get(k, 0) for k in VMSTAT}}
                results[name].append(row)
                print(f"round {r} {name:<12} {o.status:<7} " + " ".join(
                    f"{k} {row[k]:.2f}" if isinstance(row[k], float) else f"{k} {row[k]}" for k in SHOWN),
                    flush=True)
    finally:
        if swap:
            swap.__exit__()
    print(f"medians of {args.rounds} rounds, limit {limit / MIB:.2f} MiB (@nolimit variants: none):")
    for name, rows in results.items():
        ok = [x for x in rows if x["status"] == "ok"]
        if not ok:
            print(f"  {name:<12} no run completed ({', '.join(sorted({x['status'] for x in rows}))})")
            continue
        print(f"  {name:<12} " + " ".join(f"{k} {statistics.median(x[k] for x in ok):.2f}" for k in SHOWN))
    return 0


if __name__ == "__main__":
    sys.exit(main())
