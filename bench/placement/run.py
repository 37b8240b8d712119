"""Cost of placement: the overhead workloads under a 100-rule policy, side by side with
transparent mode and with no runtime (median CPU time of interleaved runs, as ratios).

Variants:
  no runtime      the program alone
  transparent     runtime preloaded, no policy
  placed          100 rules; the workload's own malloc-family call sites go to a device
                  bound to NUMA node 0 (mimalloc arenas), 96 other rules never match
  sited->system   the same rules, but the matching ones name the "system" device: every
                  allocation pays for finding its site and rule, then goes to the next
                  allocator, so (sited->system - transparent) / allocations is the cost of
                  call-site capture per allocation for one-frame rules (a per-thread cache
                  keyed by the return address)
  2 frames        rules of two frames (the allocation call and the call of the workload
                  function in main), to "system": every allocation unwinds to the second
                  frame (a thread's repeated walk is replayed), the cost for rules of 2-4
                  frames
  placed@other   with --other-runtime SO: "placed" with another build of libmemplace.so
                  (e.g. the one before a change), in the same rounds
Target: placed at most 1.10x of no runtime on every workload (the other variants are shown
for reference).

    python bench/placement/run.py [--runs 7] [--scale 1.0] [--json] [--other-runtime SO]
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


WORKLOAD_FUNCTIONS = ("churn", "realloc_growth", "cross_thread", "larson")


def policy_text(binary: Path, device: str, nrules: int = 100, frames: int = 1) -> str:
    sites = [[f"{binary.name}+{off:#x}"] for off in call_sites(binary, ALLOC_FUNCTIONS)]
    if frames == 2:  # each allocation site under each call of a workload function in main
        callers = call_sites(binary, WORKLOAD_FUNCTIONS, plt=False)
        sites = [s + [f"{binary.name}+{c:#x}"] for s in sites for c in callers][:nrules]
    lines = ["version = 1", "[devices.dram]", 'kind = "numa"', "nodes = [0]",
             'capacity = "4GiB"', ""]
    for site in sites:
        quoted = ", ".join(f'"{f}"' for f in site)
        lines += ["[[rules]]", f"site = [{quoted}]", f'device = "{device}"', ""]
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
    ap.add_argument("--other-runtime", metavar="SO",
                    help="also run 'placed' with this libmemplace.so (variant placed@other)")
    args = ap.parse_args()
    if args.runs < 5:
        ap.error("--runs must be at least 5")
    from memplace.launch.program import describe_program
    from memplace.launch.runtime_path import runtime_path
    from memplace.launch.unwind_tables import program_tables
    from memplace.placement.policy_compile import prepare
    runtime = runtime_path()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        prog = build(HERE.parent / "overhead" / "workloads.c", tmp / "workloads", "-pthread")
        base = {k: v for k, v in os.environ.items() if k != "LD_PRELOAD"}
        base["MEMPLACE_UNWIND"] = program_tables(describe_program(str(prog)), runtime).directory
        envs = {"no runtime": base, "transparent": dict(base, LD_PRELOAD=runtime)}
        for name, device, frames in (("placed", "dram", 1), ("sited->system", "system", 1),
                                     ("2 frames", "system", 2)):
            toml = tmp / f"{device}{frames}.toml"
            toml.write_text(policy_text(prog, device, frames=frames))
            compiled = tmp / f"{device}{frames}.mpc"
            prepare(toml, prog, compiled)
            envs[name] = dict(base, LD_PRELOAD=runtime, MEMPLACE_POLICY=str(compiled))
            if name == "placed" and args.other_runtime:
                envs["placed@other"] = dict(envs[name], LD_PRELOAD=os.path.abspath(args.other_runtime))
        results = [compare(w, [str(prog), w, str(args.scale)], envs, args.runs)
                   for w in (args.workload or WORKLOADS)]
    ok = report(results, "no runtime", TARGET, args.json, targeted=("placed",))
    if not args.json:
        print("\ncall-site capture + matching, per allocation (variant - transparent, median "
              "of per-round CPU-time differences):")
        print(f"  {'workload':<16} {'one frame':>10} {'two frames':>11}")
        for c in results:
            if c.workload in ALLOCATIONS:
                n = ALLOCATIONS[c.workload] * args.scale
                one, two = (c.difference(v, "transparent", 1) / n * 1e9
                            for v in ("sited->system", "2 frames"))
                print(f"  {c.workload:<16} {one:8.1f} ns {two:8.1f} ns")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
