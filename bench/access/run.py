"""What access sampling costs in `memplace profile` (runtime engine), beside DHAT: the
program's own run time bare, profiled without sampling (--rate 0), profiled with sampling
at the default rate, and under valgrind's DHAT; samples per CPU-second, the sampling
handler's own time, and how far the runtime's per-site estimates rank sites as DHAT's
exact counts do (Spearman).

Workloads: `compute` (memory-heavy: a Jacobi stencil over two 16 MiB grids and random
lookups in a 4 MiB table, few allocations), `alloc` (allocation-heavy: malloc/free churn
of 16 B-64 KiB blocks), `sites` (five sites of known, very different access intensity,
as tests/profiling/test_access_sampling.py's ranking test), and with --pitzdaily OpenFOAM
simpleFoam pitzDaily (282 iterations; Debian openfoam + openfoam-examples; DHAT takes a
few minutes on it).

Times are CPU seconds (user+sys of the program and its children, from wait4; start-up
and the profile's writing included) of interleaved runs; a ratio is the median of
per-round ratios (benchlib). DHAT runs `--dhat-runs` times (default 1: at 20-50x, noise
does not matter) and its ratio is to the median bare run. Agreement: one runtime profile
(the last timed run with sampling) against the DHAT run's profile, over the sites DHAT
saw accessed, matched by their frames; a site the runtime has no figure for counts 0.

Target: sampling's own share, profile+sampling / profile, at most 1.05 (1.10 ceiling).

    python bench/access/run.py [--runs 7] [--scale 3] [--rate N] [--workload W]...
                               [--pitzdaily] [--dhat-runs 1] [--no-dhat] [--instructions] [--json]
    python bench/access/run.py --workload pitzDaily --runs 5     # pitzDaily alone
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE.parents[1] / "tests" / "realprograms"))
from benchlib import build, compare, instructions, timed  # noqa: E402

WORKLOADS = ["compute", "alloc", "sites"]
TARGET = 1.05
CEILING = 1.10
VARIANTS = ("bare", "profile", "profile+sampling")


def spearman(x: list[float], y: list[float]) -> float:
    """Rank correlation, ties given their mean rank."""
    def ranks(v):
        order = sorted(range(len(v)), key=lambda i: v[i])
        r = [0.0] * len(v)
        i = 0
        while i < len(v):
            j = i
            while j + 1 < len(v) and v[order[j + 1]] == v[order[i]]:
                j += 1
            for k in range(i, j + 1):
                r[order[k]] = (i + j) / 2
            i = j + 1
        return r
    if len(x) < 2:
        return float("nan")
    rx, ry = ranks(x), ranks(y)
    mx, my = sum(rx) / len(rx), sum(ry) / len(ry)
    cov = sum((a - mx) * (b - my) for a, b in zip(rx, ry))
    var = (sum((a - mx) ** 2 for a in rx) * sum((b - my) ** 2 for b in ry)) ** 0.5
    return cov / var if var else float("nan")


def agreement(runtime, dhat) -> dict:
    """Spearman of the two engines' bytes accessed per site, over the sites DHAT saw
    accessed; also over those the runtime has at least FEW_SAMPLES samples for."""
    from memplace.profiling.access_estimate import FEW_SAMPLES
    rt = {}
    for s in runtime.sites:  # a site can appear twice (a module loaded twice): sum
        rt[s.identity] = rt.get(s.identity, 0) + (s.accesses or 0)
    samples = {s.identity: (s.sampled or {}).get("read_samples", 0) + (s.sampled or {}).get("write_samples", 0)
               for s in runtime.sites}
    dh: dict = {}
    for s in dhat.sites:
        if s.accesses:
            dh[s.identity] = dh.get(s.identity, 0) + s.accesses
    keys = list(dh)
    sure = [k for k in keys if samples.get(k, 0) >= FEW_SAMPLES]
    top = sorted(keys, key=lambda k: -dh[k])[:10]
    return {
        "sites": len(keys), "spearman": spearman([rt.get(k, 0) for k in keys], [dh[k] for k in keys]),
        "sites_sampled": len(sure), "spearman_sampled": spearman([rt[k] for k in sure], [dh[k] for k in sure]),
        "top10_spearman": spearman([rt.get(k, 0) for k in top], [dh[k] for k in top]),
        "runtime_total": sum(rt.values()), "dhat_total": sum(dh.values()),
    }


def raw_sampling(profile_txt: Path) -> dict:
    for line in profile_txt.read_text(errors="replace").splitlines():
        if line.startswith("sampling "):
            w = line.split()
            return {"state": w[1], **{k: int(v) for k, v in zip(w[2::2], w[3::2])}}
    return {}


class Workload:
    """One program, its argv, and the environments of the variants."""

    def __init__(self, name: str, argv: list[str], base_env: dict, work: Path, rate: int):
        from memplace.launch.process import child_environment
        from memplace.launch.program import describe_program
        from memplace.launch.runtime_path import runtime_path
        from memplace.launch.unwind_tables import program_tables
        self.name, self.argv, self.work = name, argv, work
        runtime = runtime_path()
        tables = program_tables(describe_program(shutil.which(argv[0], path=base_env.get("PATH")) or argv[0]),
                                runtime)
        self.profiles = {r: work / f"{name}-profiles-{r}" for r in (0, rate)}
        self.envs = {"bare": base_env}
        for variant, r in (("profile", 0), ("profile+sampling", rate)):
            self.profiles[r].mkdir(parents=True, exist_ok=True)
            self.envs[variant] = child_environment(runtime, {
                "MEMPLACE_PROFILE": str(self.profiles[r]), "MEMPLACE_PROFILE_DEPTH": "3",
                "MEMPLACE_SAMPLE_RATE": str(r), "MEMPLACE_UNWIND": tables.directory}, base=base_env)
        self.rate = rate

    def last_sampled_profile(self) -> Path | None:
        files = sorted(self.profiles[self.rate].glob("profile.*.txt"), key=lambda p: p.stat().st_mtime)
        return files[-1] if files else None


def run_dhat(w: Workload, runs: int) -> tuple[list[float], object | None]:
    """CPU seconds of each DHAT run (valgrind as `memplace profile --engine dhat` runs it)
    and the profile of the last one."""
    from memplace.profiling import dhat
    cpus, prof = [], None
    for i in range(runs):
        out = w.work / f"{w.name}-dhat-{i}"
        out.mkdir()
        cpus.append(timed(dhat.valgrind_command(w.argv, str(out)), w.envs["bare"])[1])
        profiles = dhat.collect(str(out))
        prof = max(profiles, key=lambda p: len(p.sites)) if profiles else None
    return cpus, prof


def pitzdaily(work: Path, rate: int) -> Workload | None:
    from openfoam_support import foam_env, missing, prepare
    why = missing()
    if why:
        print(f"pitzDaily skipped: {why}", file=sys.stderr)
        return None
    env = foam_env()
    env.pop("LD_PRELOAD", None)
    env = {k: v for k, v in env.items() if not k.startswith("MEMPLACE_")}
    case = prepare("simpleFoam/pitzDaily", work / "pitzDaily", env)
    # every variant runs the same case: the solver writes its time directories and
    # overwrites them with the same data each run
    return Workload("pitzDaily", ["simpleFoam", "-case", str(case)], env, work, rate)


def main() -> int:
    from memplace.profiling import runtime_engine
    from memplace.profiling.access_estimate import DEFAULT_RATE

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=7)
    ap.add_argument("--scale", type=float, default=3.0, help="work per run of the C workloads")
    ap.add_argument("--rate", type=int, default=DEFAULT_RATE, help="samples per CPU-second asked")
    ap.add_argument("--workload", action="append", choices=[*WORKLOADS, "pitzDaily"],
                    help="run only these (default: the C workloads, and pitzDaily with --pitzdaily)")
    ap.add_argument("--pitzdaily", action="store_true", help="also OpenFOAM pitzDaily (slow: DHAT takes minutes)")
    ap.add_argument("--dhat-runs", type=int, default=1)
    ap.add_argument("--no-dhat", action="store_true", help="skip DHAT (no DHAT ratio, no agreement)")
    ap.add_argument("--instructions", action="store_true",
                    help="also count instructions with callgrind, one run per variant (deterministic; "
                         "sampling at 1/s, as valgrind's slow CPU time would inflate the handler's share)")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    if args.runs < 5:
        ap.error("--runs must be at least 5")
    dhat_ok = not args.no_dhat and shutil.which("valgrind") is not None
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        prog = str(build(HERE / "workloads.c", tmp / "workloads"))
        base = {k: v for k, v in os.environ.items() if not k.startswith(("LD_PRELOAD", "MEMPLACE_"))}
        chosen = args.workload or [*WORKLOADS, *(["pitzDaily"] if args.pitzdaily else [])]
        loads = [Workload(w, [prog, w, str(args.scale)], base, tmp, args.rate)
                 for w in chosen if w in WORKLOADS]
        if "pitzDaily" in chosen:
            p = pitzdaily(tmp, args.rate)
            if p:
                loads.append(p)
        for w in loads:
            print(f"{w.name}: {args.runs} rounds of {', '.join(VARIANTS)}", file=sys.stderr)
            # the solver's log differs run to run (it prints times): outputs compared for ours only
            c = compare(w.name, w.argv, w.envs, args.runs, check_same_output=w.name != "pitzDaily")
            row = {"workload": w.name, "runs": args.runs,
                   "median_cpu_s": {v: round(c.median(v, 1), 4) for v in VARIANTS},
                   "cpu_ratio": {"profile": c.ratio("profile", "bare", 1),
                                 "profile+sampling": c.ratio("profile+sampling", "bare", 1),
                                 "sampling_share": c.ratio("profile+sampling", "profile", 1)},
                   "wall_ratio_sampling_share": c.ratio("profile+sampling", "profile", 0)}
            row["met"] = row["cpu_ratio"]["sampling_share"] <= TARGET
            txt = w.last_sampled_profile()
            raw = raw_sampling(txt) if txt else {}
            cpu = raw.get("cpu_ns", 0) / 1e9
            row["sampling"] = {"state": raw.get("state"), "samples": raw.get("samples", 0), "cpu_s": round(cpu, 3),
                               "samples_per_cpu_s": round(raw.get("samples", 0) / cpu, 1) if cpu else 0.0,
                               "handler_share": raw.get("handler_ns", 0) / 1e9 / cpu if cpu else 0.0,
                               "credited": raw.get("credited", 0), "memory": raw.get("memory", 0),
                               "outside": raw.get("outside", 0)}
            if dhat_ok:
                print(f"{w.name}: DHAT x{args.dhat_runs}", file=sys.stderr)
                cpus, dprof = run_dhat(w, args.dhat_runs)
                row["dhat_cpu_s"] = round(statistics.median(cpus), 3)
                row["cpu_ratio"]["dhat"] = statistics.median(cpus) / row["median_cpu_s"]["bare"]
                if dprof is not None and txt is not None:
                    rprof = runtime_engine.convert(txt.read_text(errors="replace"), str(txt), w.argv)
                    row["agreement"] = agreement(rprof, dprof)
            if args.instructions:
                # valgrind's CPU time runs ~50x slow, so at the rate the handler would count ~50x
                # over: sampling at 1/s counts the allocation path's own work (maps), nothing else
                print(f"{w.name}: callgrind", file=sys.stderr)
                row["instructions"] = {v: instructions(w.argv, e) for v, e in w.envs.items()
                                       if v != "profile+sampling"}
                row["instructions"]["profile+sampling"] = instructions(
                    w.argv, dict(w.envs["profile+sampling"], MEMPLACE_SAMPLE_RATE="1"))
            rows.append(row)
    if args.json:
        print(json.dumps(rows, indent=2))
    else:
        print_table(rows, args.rate)
    return 0 if all(r["met"] for r in rows) else 1


def print_table(rows: list[dict], rate: int) -> None:
    print(f"\nCPU time, median of per-round ratios; sampling asked at {rate}/s; "
          f"target: profile+sampling / profile <= {TARGET}x ({CEILING}x ceiling)\n")
    print(f"{'workload':<10} {'runs':>4} {'bare':>8} {'profile':>9} {'+sampling':>10} {'DHAT':>8}"
          f"  {'sampling share':<22} {'samples/s':>9} {'handler':>8}")
    for r in rows:
        cr = r["cpu_ratio"]
        dh = f"{cr['dhat']:.1f}x" if "dhat" in cr else "-"
        share = f"{cr['sampling_share']:.3f}x {'met' if r['met'] else 'MISSED'}"
        s = r["sampling"]
        print(f"{r['workload']:<10} {r['runs']:>4} {r['median_cpu_s']['bare']:>7.3f}s {cr['profile']:>8.3f}x "
              f"{cr['profile+sampling']:>9.3f}x {dh:>8}  {share:<22} {s['samples_per_cpu_s']:>9.0f} "
              f"{100 * s['handler_share']:>7.2f}%")
    print("\n(profile, +sampling, DHAT: ratios to bare; sampling share: profile+sampling / profile;"
          " handler: the sampling handler's own time, share of the profiled run's CPU time)")
    agree = [r for r in rows if "agreement" in r]
    if agree:
        print("\nagreement with DHAT (Spearman of bytes accessed per site; one run each):")
        for r in agree:
            a = r["agreement"]
            print(f"  {r['workload']:<10} {a['spearman']:.2f} over the {a['sites']} sites DHAT saw accessed, "
                  f"{a['spearman_sampled']:.2f} over the {a['sites_sampled']} with >= 10 samples, "
                  f"{a['top10_spearman']:.2f} over DHAT's top 10; totals {a['runtime_total'] / 1e6:.1f} MB "
                  f"estimated vs {a['dhat_total'] / 1e6:.1f} MB counted")
    for r in rows:
        s = r["sampling"]
        print(f"  {r['workload']:<10} {s['samples']} samples in {s['cpu_s']:.2f} CPU-s, {s['credited']} credited "
              f"{s['memory']} accesses, {s['memory'] - s['outside']} in a live block")
    ins = [r for r in rows if "instructions" in r]
    if ins:
        print("\ninstructions (callgrind, one run each; sampling at 1/s: the allocation path's work only):")
        for r in ins:
            n = r["instructions"]
            print(f"  {r['workload']:<10} bare {n['bare']:,}  profile {n['profile'] / n['bare']:.3f}x  "
                  f"+sampling {n['profile+sampling'] / n['bare']:.3f}x  "
                  f"sampling share {n['profile+sampling'] / n['profile']:.4f}x")


if __name__ == "__main__":
    sys.exit(main())
