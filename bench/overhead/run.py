"""Overhead of the runtime in transparent mode (no policy) on allocation-heavy workloads.

Each workload runs with and without the runtime preloaded, interleaved, and the median
CPU time (user+sys of the process, start-up included) of each is compared.
Target: at most 1.03x on every workload.

    python bench/overhead/run.py [--runs 7] [--scale 1.0] [--json]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from benchlib import build, compare, report, report_instructions  # noqa: E402

WORKLOADS = ["churn-small", "churn-medium", "realloc-growth", "cross-thread", "larson"]
TARGET = 1.03


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=15)
    ap.add_argument("--scale", type=float, default=1.0, help="work per run (1.0 = ~0.5 s)")
    ap.add_argument("--workload", action="append", choices=WORKLOADS)
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--instructions", action="store_true",
                    help="count instructions with callgrind (one run each, at --scale, e.g. 0.1) "
                         "instead of timing")
    args = ap.parse_args()
    if args.runs < 5:
        ap.error("--runs must be at least 5")
    from memplace.launch.runtime_path import runtime_path
    runtime = runtime_path()
    with tempfile.TemporaryDirectory() as tmp:
        prog = build(Path(__file__).with_name("workloads.c"), Path(tmp) / "workloads", "-pthread")
        base = {k: v for k, v in os.environ.items() if k != "LD_PRELOAD"}
        envs = {"no runtime": base, "transparent": dict(base, LD_PRELOAD=runtime)}
        if args.instructions:
            report_instructions(args.workload or WORKLOADS,
                                lambda w: [str(prog), w, str(args.scale)], envs, "no runtime",
                                args.json)
            return 0
        results = [compare(w, [str(prog), w, str(args.scale)], envs, args.runs)
                   for w in (args.workload or WORKLOADS)]
    ok = report(results, "no runtime", TARGET, args.json)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
