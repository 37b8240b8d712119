"""Overhead of access sampling in `memplace profile` (runtime engine): the program's own
run time bare, profiled without sampling (--rate 0) and profiled with sampling at the
default rate, interleaved; medians and per-round ratios of CPU time (user+sys of the
program, start-up and the profile's writing included). Also the samples that arrived per
CPU-second and how many of them found a data access.

Target: sampling at the default rate costs at most 1.05x the program's own run time on the
compute-heavy workload (1.10x hard ceiling); the allocation-heavy one is shown for the
cost the chunk table adds to blocks of 1 KiB and more.

    python bench/access/run.py [--runs 11] [--scale 3] [--rate N] [--json]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from benchlib import build, compare, report, timed  # noqa: E402

WORKLOADS = ["compute", "alloc"]
TARGET = 1.05


def sampling_line(prog: str, workload: str, scale: str, env: dict[str, str], out: Path) -> dict:
    """One profiled run's `sampling ...` line from the runtime's file, as a dict."""
    out.mkdir(exist_ok=True)
    for f in out.glob("profile.*.txt"):
        f.unlink()
    timed([prog, workload, scale], dict(env, MEMPLACE_PROFILE=str(out)))
    for f in out.glob("profile.*.txt"):
        for line in f.read_text().splitlines():
            if line.startswith("sampling "):
                w = line.split()
                return {"state": w[1], **{k: int(v) for k, v in zip(w[2::2], w[3::2])}}
    return {}


def main() -> int:
    from memplace.launch.process import child_environment
    from memplace.launch.program import describe_program
    from memplace.launch.runtime_path import runtime_path
    from memplace.launch.unwind_tables import program_tables
    from memplace.profiling.access_estimate import DEFAULT_RATE

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=11)
    ap.add_argument("--scale", type=float, default=3.0, help="work per run (1.0 = ~0.3 s CPU)")
    ap.add_argument("--rate", type=int, default=DEFAULT_RATE, help="samples per CPU-second asked")
    ap.add_argument("--workload", action="append", choices=WORKLOADS)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    if args.runs < 5:
        ap.error("--runs must be at least 5")
    runtime = runtime_path()
    with tempfile.TemporaryDirectory() as tmp:
        prog = str(build(Path(__file__).with_name("workloads.c"), Path(tmp) / "workloads"))
        tables = program_tables(describe_program(prog), runtime)
        base = {k: v for k, v in os.environ.items() if not k.startswith(("LD_PRELOAD", "MEMPLACE_"))}
        profile_dir = Path(tmp) / "profiles"
        profile_dir.mkdir()

        def profiled(rate: int) -> dict[str, str]:
            return child_environment(runtime, {"MEMPLACE_PROFILE": str(profile_dir),
                                               "MEMPLACE_PROFILE_DEPTH": "3",
                                               "MEMPLACE_SAMPLE_RATE": str(rate),
                                               "MEMPLACE_UNWIND": tables.directory}, base=base)

        envs = {"bare": base, "profile": profiled(0), "profile+sampling": profiled(args.rate)}
        results, samples = [], {}
        for w in args.workload or WORKLOADS:
            results.append(compare(w, [prog, w, str(args.scale)], envs, args.runs))
            samples[w] = sampling_line(prog, w, str(args.scale), envs["profile+sampling"], Path(tmp) / "one")
    # the target is for the compute-heavy workload; on the allocation-heavy one profiling
    # itself costs several times the run time, and what matters is sampling's share on top
    ok = report([c for c in results if c.workload == "compute"], "bare", TARGET, args.json,
                targeted=("profile+sampling",))
    others = [c for c in results if c.workload != "compute"]
    if others:
        report(others, "bare", None, args.json)
    if not args.json:
        print("\nsampling vs profile without sampling (the sampler's own cost):")
        for c in results:
            print(f"  {c.workload:<10} cpu {c.ratio('profile+sampling', 'profile', 1):.3f}x "
                  f"wall {c.ratio('profile+sampling', 'profile', 0):.3f}x")
        print("\nsamples (one profiled run each):")
        for w, s in samples.items():
            cpu = s.get("cpu_ns", 0) / 1e9
            print(f"  {w:<10} state {s.get('state')}, {s.get('samples', 0)} samples in {cpu:.2f} CPU-s "
                  f"({s.get('samples', 0) / cpu if cpu else 0:.0f}/s, {s.get('expirations', 0)} expirations "
                  f"asked at {args.rate}/s), {s.get('credited', 0)} crediting {s.get('memory', 0)} accesses, "
                  f"{s.get('memory', 0) - s.get('outside', 0)} in a live block")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
