"""Cost of placement: the overhead workloads under a 100-rule policy, side by side with
transparent mode and with no runtime (median CPU time of interleaved runs, as ratios).

Variants:
  no runtime      the program alone
  transparent     runtime preloaded, no policy
  placed          100 rules; the workload's own malloc-family call sites go to a device
                  bound to NUMA node 0 (mimalloc arenas), 96 other rules never match
  sited->system   the same rules, but the matching ones name the "system" device: every
                  allocation pays for call-site capture and matching, then goes to the next
                  allocator, so (sited->system - transparent) / allocations is the cost of
                  call-site capture per allocation
Target: placed at most 1.10x of no runtime on every workload (the other variants are shown
for reference).

    python bench/placement/run.py [--runs 7] [--scale 1.0] [--json]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
from benchlib import build, call_sites, compare, report  # noqa: E402

WORKLOADS = ["churn-small", "churn-medium", "realloc-growth", "cross-thread", "larson"]
# allocations per run at scale 1.0, for the per-allocation capture cost
ALLOCATIONS = {"churn-small": 20e6, "churn-medium": 2e6, "cross-thread": 2e6, "larson": 10e6}
TARGET = 1.10
ALLOC_FUNCTIONS = ("malloc", "calloc", "realloc")


def policy_text(binary: Path, device: str, nrules: int = 100) -> str:
    sites = call_sites(binary, ALLOC_FUNCTIONS)
    lines = ["version = 1", "[devices.dram]", 'kind = "numa"', "nodes = [0]",
             'capacity = "4GiB"', ""]
    for off in sites:
        lines += ["[[rules]]", f'site = ["{binary.name}+{off:#x}"]', f'device = "{device}"', ""]
    for i in range(nrules - len(sites)):  # rules that exist but never match
        lines += ["[[rules]]", f'site = ["{binary.name}+{0x100000 + 16 * i:#x}"]',
                  'device = "dram"', ""]
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=15)
    ap.add_argument("--scale", type=float, default=1.0)
    ap.add_argument("--workload", action="append", choices=WORKLOADS)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    if args.runs < 5:
        ap.error("--runs must be at least 5")
    from memplace.policy_compile import prepare
    from memplace.runtime_path import runtime_path
    runtime = runtime_path()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        prog = build(HERE.parent / "overhead" / "workloads.c", tmp / "workloads", "-pthread")
        base = {k: v for k, v in os.environ.items() if k != "LD_PRELOAD"}
        envs = {"no runtime": base, "transparent": dict(base, LD_PRELOAD=runtime)}
        for name, device in (("placed", "dram"), ("sited->system", "system")):
            toml = tmp / f"{device}.toml"
            toml.write_text(policy_text(prog, device))
            compiled = tmp / f"{device}.mpc"
            prepare(toml, prog, compiled)
            envs[name] = dict(base, LD_PRELOAD=runtime, MEMPLACE_POLICY=str(compiled))
        results = [compare(w, [str(prog), w, str(args.scale)], envs, args.runs)
                   for w in (args.workload or WORKLOADS)]
    ok = report(results, "no runtime", TARGET, args.json, targeted=("placed",))
    if not args.json:
        print("\ncall-site capture + matching, per allocation (sited->system - transparent, "
              "median of per-round CPU-time differences):")
        for c in results:
            if c.workload in ALLOCATIONS:
                extra = c.difference("sited->system", "transparent", 1)
                print(f"  {c.workload:<16} {extra / (ALLOCATIONS[c.workload] * args.scale) * 1e9:6.1f} ns")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
