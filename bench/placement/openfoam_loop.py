"""The placement loop on a real code: OpenFOAM pitzDaily through profile -> advise ->
placed run -> report, serial and with 2 MPI ranks (each rank its own memplace, the fast
device's capacity shared by the node's ranks). Prints the wall time of each step beside
the bare solver's, the share of the planned allocations the run placed as planned,
whether the residuals are identical, and the ranks' peak use of the fast device.

    python bench/placement/openfoam_loop.py [--steps 50] [--capacity-mib 64]

Targets (issue 13): advise and report under 30 s each; >= 95% of the planned allocations
placed as planned; identical residuals; the ranks together within the node's capacity.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[1] / "tests" / "realprograms"))
from openfoam_loop import run_loop  # noqa: E402
from openfoam_support import missing  # noqa: E402

MIB = 1 << 20


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=50)
    ap.add_argument("--capacity-mib", type=int, default=64, help="fast device (the node's, with ranks)")
    ap.add_argument("--ranks", type=int, nargs="+", default=[1, 2])
    args = ap.parse_args()
    if missing():
        print(f"skipped: {missing()}")
        return 0
    ok = True
    with tempfile.TemporaryDirectory() as tmp:
        for ranks in args.ranks:
            r = run_loop(Path(tmp) / f"ranks{ranks}", ranks=ranks, steps=args.steps, capacity_mib=args.capacity_mib)
            bare = r.seconds["bare run"]
            print(f"\npitzDaily, {args.steps} steps, {ranks} rank(s), fast device {args.capacity_mib} MiB per node, "
                  f"{r.sites:,} sites")
            for name, s in r.seconds.items():
                print(f"  {name:11s} {s:7.2f} s  ({s / bare:5.2f}x the bare run)")
            fast = sum(r.fast_peaks)
            within = fast <= r.capacity + ranks * MIB
            share_ok = r.planned_share >= 0.95
            quick = r.seconds["advise"] < 30 and r.seconds["report"] < 30
            ok &= r.identical and share_ok and within and quick
            print(f"  planned allocations placed as planned: {100 * r.planned_share:.2f}% (target >= 95%)")
            print(f"  planned {r.planned}\n  placed  {r.placed}")
            print(f"  residuals identical: {r.identical}; ranks in the stats: {r.ranks_in_stats or '-'}")
            print(f"  fast device, sum of the processes' peaks: {fast / MIB:.2f} MiB of {args.capacity_mib} MiB "
                  f"({'within' if within else 'OVER'} the capacity)")
            print(f"  advise and report under 30 s: {'met' if quick else 'MISSED'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
