"""One program, one variant, one memory limit, with what the kernel did: the numbers
behind docs/benchmarks.md's "File device against swap" (issue 15).

    sudo python bench/capacity/explain.py openfoam file 185
    sudo python bench/capacity/explain.py spmv swap 243
    sudo python bench/capacity/explain.py openfoam path/to/policy.toml 185 --swap

VARIANT: malloc, swap (plain malloc with a swap file), file (every heap object on a file
device in --device-dir), or a policy file (placed; add --swap for a swap file too).
LIMIT: MiB (0: none). Prints the wall, user and system seconds; the memory cgroup's largest
page cache, dirty and writeback figures (sampled every 20 ms), its page-in/out and
refault counters; and the machine's /proc/vmstat counters that moved during the run
(pages written: nr_written; swap: pswpin/pswpout; read-around refaults:
workingset_refault_file), which other work on the machine adds to. One run: for ratios,
use run.py.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))
import limits  # noqa: E402
import run as bench  # noqa: E402

MIB = 1 << 20
SAMPLED = ("cache", "rss", "mapped_file", "dirty", "writeback", "swap")
COUNTERS = ("pgpgin", "pgpgout", "pgfault", "pgmajfault", "workingset_refault_file", "workingset_refault_anon")
VMSTAT = ("nr_written", "pswpin", "pswpout", "pgpgin", "pgpgout", "workingset_refault_file",
          "workingset_refault_anon", "pgmajfault", "nr_vmscan_write", "nr_vmscan_immediate_reclaim", "pgrotated",
          "pgactivate", "pgdeactivate")


def vmstat() -> dict[str, int]:
    with open("/proc/vmstat") as f:
        return {k: int(v) for k, v in (line.split() for line in f)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("program", choices=["hotcold", "spmv", "openfoam"])
    ap.add_argument("variant", help="malloc, swap, file, or a policy file")
    ap.add_argument("limit_mib", type=int, help="the memory cgroup's limit, MiB (0: none)")
    ap.add_argument("--swap", action="store_true", help="a swap file on for a placed run too")
    ap.add_argument("--out", default="capacity-explain", help="working directory (programs, logs)")
    ap.add_argument("--device-dir", default="/var/tmp/memplace-capacity")
    args = ap.parse_args()
    if limits.why_no_cgroup():
        raise SystemExit(f"explain: {limits.why_no_cgroup()}")
    if args.variant not in ("malloc", "swap", "file") and not Path(args.variant).is_file():
        bench.bad_input(f"{args.variant}: not a variant (malloc, swap, file) nor a policy file")
    out = Path(args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    device_dir = Path(args.device_dir).resolve()
    device_dir.mkdir(parents=True, exist_ok=True)
    if args.program == "openfoam":
        from openfoam_case import openfoam_program
        prog = openfoam_program(out / "openfoam", 4, 10)
    else:
        prog = {p.name: p for p in bench.c_programs(out / "bin", 1.0)}[args.program]
    base = bench.clean_env(prog.env or os.environ)
    tmp = Path(tempfile.mkdtemp(prefix="run-", dir=out))
    swap = args.variant == "swap" or args.swap
    env = base
    if args.variant == "file":
        policy = bench.file_policy(out / "file.toml", device_dir, 4 << 30)
        env = bench.placed_env(policy, prog.argv, tmp / "stats", tmp, base)
    elif args.variant not in ("malloc", "swap"):
        env = bench.placed_env(Path(args.variant), prog.argv, tmp / "stats", tmp, base)
    if prog.prepare:
        prog.prepare()
    peaks: dict[str, int] = {}
    done = threading.Event()

    def sample(cg: limits.MemoryCgroup) -> None:
        while not done.is_set():
            try:
                for line in (cg.path / "memory.stat").read_text().splitlines():
                    k, v = line.split()
                    if k in SAMPLED:
                        peaks[k] = max(peaks.get(k, 0), int(v))
            except OSError:
                pass
            time.sleep(0.02)

    swap_file = limits.SwapFile(device_dir / "explain.swap", 1 << 30) if swap else None
    if swap_file:
        swap_file.__enter__()
    try:
        before = vmstat()
        with limits.MemoryCgroup("memplace-explain", args.limit_mib * MIB or None, swap) as cg:
            sampler = threading.Thread(target=sample, args=(cg,))
            sampler.start()
            try:
                o = cg.run(prog.argv, env, 600, tmp / "log")
            finally:
                done.set()
                sampler.join()
            stat = dict(line.split() for line in (cg.path / "memory.stat").read_text().splitlines())
        after = vmstat()
    finally:
        if swap_file:
            swap_file.__exit__()
    print(f"{args.program} {args.variant} at {args.limit_mib} MiB{' with swap' if swap else ''}: {o.status}, "
          f"{o.seconds:.2f} s wall, {o.user:.2f} s user, {o.system:.2f} s system, "
          f"{o.major_faults:,} major faults, cgroup peak {o.peak / MIB:.0f} MiB")
    print("  largest (MiB): " + ", ".join(f"{k} {peaks.get(k, 0) / MIB:.0f}" for k in SAMPLED))
    print("  cgroup (pages): " + ", ".join(f"{k} {int(stat[k]):,}" for k in COUNTERS if k in stat))
    print("  machine (pages, pgpgin/out KiB): " + ", ".join(f"{k} {after.get(k, 0) - before.get(k, 0):,}"
                                                           for k in VMSTAT))
    if o.status != "ok":
        print(f"  {o.error.strip()[-300:]}")
    return 0 if o.status == "ok" else 1


if __name__ == "__main__":
    from memplace.errors import UserError
    try:
        sys.exit(main())
    except UserError as e:  # a policy the benchmark wrote that memplace refuses: one line
        bench.bad_input(f"explain.py: {e}")
