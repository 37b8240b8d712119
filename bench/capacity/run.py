"""Capacity tier: programs whose heap exceeds the memory they are given (a memory
cgroup's limit), run at 100%, 75%, 50% and 30% of their peak in four ways:

  (a) malloc     plain malloc, no swap (expected: OOM-killed below 100%)
  (b) file       every heap object on a file device (one file device, the policy's only
                 device), the kernel's page LRU decides which pages stay in memory
  (c) swap       plain malloc with a swap file on the same disk (on only for these runs)
  (d) memplace   `memplace profile` (access sampling) -> `memplace advise` with the fast
                 device = NUMA node 0, the slow device = the file device, and
                 --shared-memory = the limit minus what is not heap (node 0's pinned pages
                 and the file device's page cache share it; the advisor's page cache model
                 decides how much to pin) -> a placed run (the environment `memplace run
                 --policy` gives, started here so that only the program is in the cgroup)
  (e) mp + swap  the same with the swap file on and `memplace advise --swap`: the fast
                 device locked, sites that churn in the kernel's swappable memory, the rest
                 of (d)'s file device sites still there (docs/advisor.md)

Programs: hotcold (a hot table updated at random, big cold arrays written once and read
once; bench/capacity/hotcold.c), spmv (power iteration with a sparse matrix: hot vectors
read at random, the matrix streamed; bench/capacity/spmv.c) and, with --openfoam,
OpenFOAM simpleFoam pitzDaily on a refined mesh. Every run that completes must print the
same result (checksum, eigenvalue, residuals) as the unlimited plain run, or the
benchmark fails. Prints runtime medians per program, variant and limit, with the ratios
of (d) to (b) and (c), and writes results.json and one SVG plot per program (runtime
against limit, one line per variant) to --out.

Needs root (cgroups, swapon). Machine-wide state (the cgroups, the swap file, the disk's
read-around with --read-ahead) is undone in `finally` blocks.

    sudo python bench/capacity/run.py [--runs 1] [--out capacity-out] [--openfoam] [--read-ahead 128]

The file device's disk reads its read_ahead_kb around every page fault on a file
mapping; under a memory limit a large value evicts the data the program is using
(docs/policy.md, "Read-around"). --read-ahead sets it for the benchmark, and the table
says which value the runs had.

Target (issue 15): at the 50% limit (d) at least 1.5x faster than (b) and (c) on hotcold,
never slower than them on any program, and completes wherever they complete.
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
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))
from benchlib import build  # noqa: E402
from limits import MemoryCgroup, ReadAround, SwapFile, filesystem_type, why_no_cgroup  # noqa: E402

MIB = 1 << 20
LIMITS = (100, 75, 50, 30)
VARIANTS = ("malloc", "file", "swap", "memplace", "memplace-swap")
LABELS = {"malloc": "(a) malloc", "file": "(b) file device", "swap": "(c) swap file",
          "memplace": "(d) memplace", "memplace-swap": "(e) mp + swap"}
TARGET = 1.5


@dataclass
class Program:
    name: str
    argv: list[str]                      # the command (built or found)
    result: callable                     # stdout -> what must be identical in every run
    prepare: callable = None             # makes a fresh working copy before each run (OpenFOAM)
    env: dict | None = None              # the environment it needs (OpenFOAM's), else ours


WORST_FIRST = ("failed", "timeout", "OOM")  # a run's failures, the worst first


def worst(failures: dict[str, int]) -> str | None:
    return next((s for s in WORST_FIRST if s in failures), None)


@dataclass
class Cell:
    seconds: list[float] = field(default_factory=list)   # the runs that completed
    failures: dict[str, int] = field(default_factory=dict)  # the others: OOM, timeout, failed
    major_faults: list[int] = field(default_factory=list)
    peak: int = 0
    note: str = ""

    @property
    def status(self) -> str:
        """ok when any run completed (the others are counted), else the worst failure."""
        return "ok" if self.seconds else worst(self.failures) or "ok"

    def median(self) -> float | None:
        return statistics.median(self.seconds) if self.seconds else None

    def gave_up(self) -> bool:
        """A timeout or a crash is not run again at the same limit (an OOM is: near its
        limit a variant can be OOM-killed in one run and complete in the next)."""
        return not self.seconds and ("timeout" in self.failures or "failed" in self.failures)

    def add(self, o) -> None:
        """One run's outcome (limits.Outcome): its time, or its failure and why."""
        if o.status != "ok":
            self.failures[o.status] = self.failures.get(o.status, 0) + 1
            if o.status == "failed":
                self.note = o.error.strip().splitlines()[-1] if o.error.strip() else f"status {o.returncode}"
        else:
            self.seconds.append(o.seconds)
            self.major_faults.append(o.major_faults)

    def to_json(self, variant: str, pct: int) -> dict:
        return {"variant": variant, "limit_pct": pct, "status": self.status, "seconds": self.seconds,
                "median_s": self.median(), "peak": self.peak, "major_faults": self.major_faults,
                "failures": self.failures, "note": self.note}


def c_programs(bindir: Path, scale: float) -> list[Program]:
    bindir.mkdir(parents=True, exist_ok=True)
    hot = build(HERE / "hotcold.c", bindir / "hotcold")
    spmv = build(HERE / "spmv.c", bindir / "spmv", "-lm")
    last = lambda out: out.strip()
    return [Program("hotcold", [str(hot), str(round(48 * scale)), str(round(384 * scale)), "32"], last),
            Program("spmv", [str(spmv), str(round(1536 * scale)), "16", "4"], last)]


def clean_env(env) -> dict:
    """`env` without a preloaded runtime or memplace settings of the caller's."""
    return {k: v for k, v in env.items() if not k.startswith(("LD_PRELOAD", "MEMPLACE_"))}


def run_in_cgroup(name: str, argv: list[str], env: dict, limit: int | None, swap: bool,
                  timeout: float, logs: Path):
    with MemoryCgroup(f"memplace-capacity-{name}", limit, swap) as cg:
        return cg.run(argv, env, timeout, logs)


def placed_env(policy: Path, argv: list[str], stats_dir: Path, tmp: Path, base: dict) -> dict:
    """The environment `memplace run --policy P` gives the program (compiled policy from
    the cache, unwind tables, stats directory, placement required)."""
    from memplace.launch.process import child_environment
    from memplace.launch.program import describe_program
    from memplace.launch.runtime_path import runtime_path
    from memplace.placement.compile_cache import prepare_run
    from memplace.placement.policy import load, places_nothing
    runtime = runtime_path()
    prepared = prepare_run(str(policy), describe_program(argv[0]), runtime, str(tmp))
    for warning in prepared.warnings:
        print(f"  memplace: {warning}", file=sys.stderr)
    if places_nothing(load(policy)):
        return base  # as `memplace run` does: the program as it is, without the runtime
    stats_dir.mkdir(parents=True, exist_ok=True)
    return child_environment(runtime, {"MEMPLACE_POLICY": prepared.policy_file,
                                       "MEMPLACE_UNWIND": prepared.unwind_dir,
                                       "MEMPLACE_STATS": str(stats_dir),
                                       "MEMPLACE_REQUIRE": str(os.getpid())}, base)


def file_policy(path: Path, device_dir: Path, capacity: int) -> Path:
    path.write_text("\n".join([
        "version = 1", 'default = "slow"', "",
        "[devices.slow]", 'kind = "file"', f'path = "{device_dir}"',
        f'capacity = "{capacity // MIB}MiB"', ""]))
    return path


def policy_capacity(path: Path, device: str) -> int:
    """The capacity (bytes) a written policy gives a device."""
    try:
        import tomllib
    except ImportError:  # Python 3.10
        import tomli as tomllib
    from memplace.units import parse_size
    return parse_size(tomllib.loads(path.read_text())["devices"][device]["capacity"], what=str(path))


def memplace(*args: str, env: dict) -> str:
    exe = shutil.which("memplace", path=os.path.dirname(sys.executable) + os.pathsep + env.get("PATH", ""))
    r = subprocess.run([exe, *args], env=env, capture_output=True, text=True)
    if r.returncode != 0:
        raise SystemExit(f"memplace {' '.join(args)} failed ({r.returncode}): {r.stderr.strip()[-2000:]}")
    return r.stdout


def heap_peak(profile_dir: Path) -> tuple[Path, int]:
    from memplace.profiling import profile as prof
    files = sorted(profile_dir.glob("*.json"))
    if len(files) != 1:
        raise SystemExit(f"{profile_dir}: expected one profile, found {len(files)}")
    return files[0], prof.concurrent_peak(prof.load(files[0]).sites)


def placed_heap_peak(stats_dir: Path, pid: int, code: int) -> int:
    """Peak live bytes of the heap in a placed run with one device (its stats)."""
    from memplace.placement import stats
    return sum(d["peak"] for d in stats.totals(stats.collect(stats_dir, pid, code))["devices"])


def fast_device_stats(stats_dir: Path, pid: int, code: int) -> str:
    """What the placed run did with the fast device: its peak and fallbacks."""
    from memplace.placement import stats
    if not stats_dir.is_dir():
        return "the plan places nothing: run without the runtime"
    totals = stats.totals(stats.collect(stats_dir, pid, code))
    parts = []
    for d in totals["devices"]:
        if d["allocations"]:
            full = d["fallbacks"].get("full", 0)
            parts.append(f"{d['name']} peak {d['peak'] / MIB:.0f}MiB" + (f" ({full} full)" if full else ""))
    return ", ".join(parts)


def planned_peaks(profile_file: Path, policy: Path, env: dict) -> str:
    """What the plan says each pinned device holds at its peak (the advisor's model of the
    profile's timeline, as `memplace report` draws it), to set beside the run's."""
    plan = json.loads(memplace("report", "--profile", str(profile_file), "--policy", str(policy), "--json", env=env))
    peaks = [f"{t['device']} {max(t['live']) / MIB:.0f}MiB" for t in plan.get("device_timeline", [])
             if t["device"].startswith("fast") and max(t["live"])]
    return "planned " + (", ".join(peaks) or "nothing pinned")


def profile(prog: Program, work: Path, base_env: dict) -> tuple[Path, int]:
    """A profile of the program (runtime engine, access sampling) and its heap's peak."""
    prof_dir = work / "profile"
    shutil.rmtree(prof_dir, ignore_errors=True)
    if prog.prepare:
        prog.prepare()
    memplace("profile", "run", "--out", str(prof_dir), "--", *prog.argv, env=base_env)
    return heap_peak(prof_dir)


def bench_program(prog: Program, args, out: Path, device_dir: Path, base_env: dict,
                  swap_path: Path) -> dict:
    work = out / prog.name
    if prog.env:
        base_env = dict(clean_env(prog.env), **{k: v for k, v in base_env.items() if k == "MEMPLACE_CACHE"})
    work.mkdir(parents=True, exist_ok=True)
    print(f"\n== {prog.name}: {' '.join(Path(a).name if i == 0 else a for i, a in enumerate(prog.argv))}",
          file=sys.stderr)

    def run(variant: str, limit: int | None, env: dict, tag: str, swap: bool = False):
        if prog.prepare:
            prog.prepare()
        return run_in_cgroup(prog.name, prog.argv, env, limit, swap, args.timeout, work / "logs" / tag)

    # 1. unlimited plain run: the peak (the cgroup's, page cache of the binary included)
    #    and the reference result; twice, the smaller peak: a first run after the page
    #    cache lost the program's files is charged for reading them, which no measured run
    #    is (OpenFOAM: 317-341 MiB cold, 244 warm, so the limits moved from run to run)
    ref = run("malloc", None, base_env, "reference")
    if ref.status != "ok":
        raise SystemExit(f"{prog.name}: the unlimited plain run failed ({ref.status}): {ref.error}")
    reference = prog.result(ref.output)
    warm = run("malloc", None, base_env, "reference-warm")
    if warm.status != "ok" or prog.result(warm.output) != reference:
        raise SystemExit(f"{prog.name}: a second unlimited plain run failed or printed another result "
                         f"({warm.status}): {warm.error or prog.result(warm.output)}")
    peak = min(ref.peak, warm.peak)
    print(f"  peak {peak / MIB:.0f} MiB, {ref.seconds:.2f} s unlimited", file=sys.stderr)

    # 2. profile (runtime engine, access sampling) and the heap's own peak
    profile_file, heap = profile(prog, work, base_env)

    # 3. what is not heap in a placed run: an unlimited run with every heap object on
    #    node 0, its cgroup peak minus the heap (runtime, program, libraries, stacks;
    #    not on the file device, whose page cache would count read-around pages)
    all_file = file_policy(work / "file.toml", device_dir, 4 * peak + 256 * MIB)
    all_fast = work / "fast.toml"
    all_fast.write_text('version = 1\ndefault = "fast"\n\n[devices.fast]\nkind = "numa"\nnodes = [0]\n')
    tmp = Path(tempfile.mkdtemp(prefix="run-", dir=work))
    d_free = run("fast", None, placed_env(all_fast, prog.argv, tmp / "s0", tmp, base_env), "fast-unlimited")
    if d_free.status != "ok":
        raise SystemExit(f"{prog.name}: the unlimited placed run failed: {d_free.error}")
    # the heap's real peak, from that run's stats (the profile's sum of per-site peaks
    # over windows is an upper bound: 416 MiB for OpenFOAM, whose whole run peaks at 242)
    heap = min(heap, placed_heap_peak(tmp / "s0", d_free.pid, d_free.returncode))
    not_heap = max(d_free.peak - heap, 0)
    print(f"  heap peak {heap / MIB:.0f} MiB, not heap {not_heap / MIB:.1f} MiB", file=sys.stderr)

    cells: dict[tuple[str, int], Cell] = {}
    for pct in LIMITS:
        limit = peak * pct // 100
        # node 0's pinned pages and the file device's page cache share what the limit
        # leaves the heap: the advisor's page cache model decides how much to pin
        shared = max(limit - not_heap, MIB) // MIB
        policy = work / f"memplace-{pct}.toml"
        advice = memplace("advise", str(profile_file), "--policy-out", str(policy),
                          "--device", f"fast=numa:0,capacity={shared}MiB",
                          "--device", f"slow=file:{device_dir}", "--shared-memory", f"{shared}MiB",
                          env=base_env)
        (work / f"advice-{pct}.txt").write_text(advice)
        fast = policy_capacity(policy, "fast")
        planned = planned_peaks(profile_file, policy, base_env)
        swap_policy = work / f"memplace-swap-{pct}.toml"
        (work / f"advice-swap-{pct}.txt").write_text(memplace(
            "advise", str(profile_file), "--policy-out", str(swap_policy),
            "--device", f"fast=numa:0,capacity={shared}MiB", "--device", f"slow=file:{device_dir}",
            "--shared-memory", f"{shared}MiB", "--swap", env=base_env))
        for r in range(args.runs):
            order = VARIANTS if r % 2 == 0 else VARIANTS[::-1]
            for variant in order:
                cell = cells.setdefault((variant, pct), Cell())
                if cell.gave_up():
                    continue
                tag = f"{variant}-{pct}-{r}"
                stats_dir = tmp / tag
                if variant == "malloc":
                    o = run(variant, limit, base_env, tag)
                elif variant == "swap":
                    with SwapFile(swap_path, peak + 256 * MIB):
                        o = run(variant, limit, base_env, tag, swap=True)
                elif variant == "memplace-swap":
                    with SwapFile(swap_path, peak + 256 * MIB):
                        o = run(variant, limit, placed_env(swap_policy, prog.argv, stats_dir, tmp, base_env), tag,
                                swap=True)
                    if o.status == "ok":
                        cell.note = fast_device_stats(stats_dir, o.pid, o.returncode)
                else:
                    pol = all_file if variant == "file" else policy
                    o = run(variant, limit, placed_env(pol, prog.argv, stats_dir, tmp, base_env), tag)
                    if variant == "memplace" and o.status == "ok":
                        cell.note = (f"fast capacity {fast / MIB:.0f}MiB, {planned}; run: "
                                     + fast_device_stats(stats_dir, o.pid, o.returncode))
                cell.peak = max(cell.peak, o.peak)
                if o.status == "ok" and prog.result(o.output) != reference:
                    raise SystemExit(f"{prog.name}, {variant} at {pct}%: the result differs from the "
                                     f"unlimited run:\n{prog.result(o.output)}\nvs\n{reference}")
                cell.add(o)
                shown = f"{o.seconds:.1f}s" if o.status == "ok" else o.status
                print(f"  {pct:3d}% {variant:<9} {shown}", file=sys.stderr, flush=True)
    shutil.rmtree(tmp, ignore_errors=True)
    return {"program": prog.name, "argv": prog.argv, "peak": peak, "heap": heap,
            "not_heap": not_heap, "unlimited_s": ref.seconds,
            "cells": {f"{v}@{p}": c.to_json(v, p) for (v, p), c in cells.items()}}


def bench_two_node(prog: Program, args, out: Path, nodes: tuple[int, int], base_env: dict) -> dict:
    """The same benchmark on two NUMA nodes (two_node.py): the fast device on one, the slow
    on the other, the fast node's capacity (the runtime's) as the limit."""
    from memplace.placement.devices import read_topology
    from two_node import LABELS as TN_LABELS, VARIANTS as TN_VARIANTS, timed_run, two_node_policies

    topology = read_topology()
    work = out / f"{prog.name}-two-node"
    work.mkdir(parents=True, exist_ok=True)
    print(f"\n== {prog.name} on two nodes: fast node {nodes[0]}, slow node {nodes[1]}", file=sys.stderr)

    def run(env: dict, tag: str):
        if prog.prepare:
            prog.prepare()
        return timed_run(prog.argv, env, args.timeout, work / "logs" / tag)

    ref = run(base_env, "reference")
    if ref.status != "ok":
        raise SystemExit(f"{prog.name}: the plain run failed ({ref.status}): {ref.error}")
    reference = prog.result(ref.output)
    profile_file, heap = profile(prog, work, base_env)
    tmp = Path(tempfile.mkdtemp(prefix="run-", dir=work))
    cells: dict[tuple[str, int], Cell] = {}
    for pct in LIMITS:
        capacity = heap * pct // 100
        policies = two_node_policies(profile_file, nodes, capacity, work / "policies", topology)
        for r in range(args.runs):
            order = TN_VARIANTS if r % 2 == 0 else TN_VARIANTS[::-1]
            for variant in order:
                cell = cells.setdefault((variant, pct), Cell())
                if cell.gave_up():
                    continue
                tag = f"{variant}-{pct}-{r}"
                env = base_env if variant == "malloc" else \
                    placed_env(policies[variant], prog.argv, tmp / tag, tmp, base_env)
                o = run(env, tag)
                if variant == "memplace" and o.status == "ok":
                    cell.note = fast_device_stats(tmp / tag, o.pid, o.returncode)
                if o.status == "ok" and prog.result(o.output) != reference:
                    raise SystemExit(f"{prog.name}, {variant} at {pct}% (two nodes): the result differs")
                cell.add(o)
                shown = f"{o.seconds:.2f}s" if o.status == "ok" else o.status
                print(f"  {pct:3d}% {variant:<9} {shown}", file=sys.stderr, flush=True)
    shutil.rmtree(tmp, ignore_errors=True)
    return {"program": prog.name, "argv": prog.argv, "peak": heap, "heap": heap, "not_heap": 0,
            "unlimited_s": ref.seconds, "nodes": list(nodes), "variants": list(TN_VARIANTS), "labels": TN_LABELS,
            "cells": {f"{v}@{p}": c.to_json(v, p) for (v, p), c in cells.items()}}


def ratio(cells: dict, pct: int, other: str, mine: str = "memplace") -> float | None:
    d, o = cells[f"{mine}@{pct}"]["median_s"], cells[f"{other}@{pct}"]["median_s"]
    return o / d if d and o else None


def never_slower(cells: dict, pct: int, mine: str, others: tuple[str, ...]) -> bool:
    """`mine` completed wherever the others did, and within the benchmark's 5% of each."""
    return not slower_than(cells, pct, mine, others)


def slower_than(cells: dict, pct: int, mine: str, others: tuple[str, ...]) -> list[tuple[str, float | None]]:
    """The others that completed at `pct` where `mine` did not (ratio None), or that were
    more than 5% faster than `mine` (their time over mine)."""
    done = cells[f"{mine}@{pct}"]["median_s"] is not None
    out = []
    for other in others:
        if cells[f"{other}@{pct}"]["median_s"] is not None:
            r = ratio(cells, pct, other, mine) if done else None
            if r is None or r < 1.0 / 1.05:
                out.append((other, r))
    return out


def completes(cells: dict, pct: int, mine: str, others: tuple[str, ...]) -> bool:
    """`mine` completed every run at `pct`, or none of the others completed any."""
    d = cells[f"{mine}@{pct}"]
    return (d["median_s"] is not None and not d.get("failures")) or all(
        cells[f"{o}@{pct}"]["median_s"] is None for o in others)


SHORT = {"timeout": "t/o"}  # so that "120.00 2/3 t/o" fits the table's column


def cell_text(c: dict) -> str:
    """The median of the runs that completed, with the count of those that did not
    ("16.20 1/3 OOM"), or the failure when none completed."""
    failed = sum(c.get("failures", {}).values())
    if c["median_s"] is None:
        return c["status"]
    if not failed:
        return f"{c['median_s']:.2f}"
    w = worst(c["failures"])
    return f"{c['median_s']:.2f} {failed}/{failed + len(c['seconds'])} {SHORT.get(w, w)}"


def read_around_text(res: dict) -> str:
    """Which read-around the program's runs had ("" where it is not known)."""
    kib = res.get("read_around_kib")
    return f"file device read-around {kib} KiB" if kib is not None else ""


def print_table(results: list[dict]) -> bool:
    """The table; True when (d) meets issue 15's targets: at the 50% limit at least
    TARGET x faster than (b) and (c) on hotcold and never slower than them (within 5%) on
    any program; at every limit, completed wherever (b) or (c) did. Whether (d) is never
    slower at the other limits too is said on its own line, as is (e)'s record."""
    ok = True
    for res in results:
        cells = res["cells"]
        VARIANTS, LABELS = res.get("variants", globals()["VARIANTS"]), res.get("labels", globals()["LABELS"])
        vb, vc = VARIANTS[1], VARIANTS[2]
        mine = [m for m in ("memplace", "memplace-swap") if m in VARIANTS]
        letter = {"memplace": "d", "memplace-swap": "e"}
        if res.get("nodes"):
            print(f"\ntwo NUMA nodes: fast device = node {res['nodes'][0]}, slow device = node {res['nodes'][1]}; "
                  "the limit is the fast node's capacity (the runtime's), no memory cgroup")
        print(f"\n{res['program']}: peak {res['peak'] / MIB:.0f} MiB (heap {res['heap'] / MIB:.0f} MiB), "
              f"unlimited plain run {res['unlimited_s']:.2f} s; median wall seconds"
              + (f"; {read_around_text(res)}" if read_around_text(res) else ""))
        print(f"{'limit':>10} " + " ".join(f"{LABELS[v]:>16}" for v in VARIANTS)
              + "".join(f" {f'(b)/({letter[m]})':>8} {f'(c)/({letter[m]})':>8}" for m in mine))
        e_ok = True
        for pct in LIMITS:
            row = []
            for v in VARIANTS:
                c = cells[f"{v}@{pct}"]
                row.append(f"{cell_text(c):>16}")
            fmt = lambda x: f"{x:>7.2f}x" if x else f"{'-':>8}"
            ratios = "".join(f" {fmt(ratio(cells, pct, vb, m))} {fmt(ratio(cells, pct, vc, m))}" for m in mine)
            limit = f"{pct}% {res['peak'] * pct // 100 // MIB}M"
            print(f"{limit:>10} " + " ".join(row) + ratios)
            ok &= completes(cells, pct, "memplace", (vb, vc))
            if pct == 50:
                ok &= never_slower(cells, pct, "memplace", (vb, vc))
            if res["program"] == "hotcold" and pct == 50:
                ok &= all((ratio(cells, pct, v) or 0) >= TARGET for v in (vb, vc))
            if "memplace-swap" in mine:
                e_ok &= never_slower(cells, pct, "memplace-swap", (vb, vc)) and \
                    completes(cells, pct, "memplace-swap", (vb, vc))
        print("  major page faults (reads from the disk: file pages or swap-ins), median:"
              if not res.get("nodes") else "  major page faults, median:")
        for pct in LIMITS:
            faults = []
            for v in VARIANTS:
                mf = cells[f"{v}@{pct}"]["major_faults"]
                faults.append(f"{LABELS[v][:3]} {int(statistics.median(mf)):,}" if mf else f"{LABELS[v][:3]} -")
            print(f"    {pct:3d}%: " + ", ".join(faults))
        for m in mine:
            for pct in LIMITS:
                note = cells[f"{m}@{pct}"]["note"]
                if note:
                    print(f"    ({letter[m]}) at {pct}%: {note}")
        lost = [f"at {pct}% {LABELS[o]} " + (f"{r:.2f}x" if r else "completed, (d) did not")
                for pct in LIMITS for o, r in slower_than(cells, pct, "memplace", (vb, vc))]
        lost += [f"at {pct}% (d) did not complete every run" for pct in LIMITS
                 if not completes(cells, pct, "memplace", (vb, vc))]
        print(f"  (d) never slower than (b) and (c) (within 5%) at every limit: "
              + ("yes" if not lost else "no: " + "; ".join(lost)))
        if "memplace-swap" in mine:
            print(f"  (e) never slower than (b) and (c) (within 5%), completes wherever they do: "
                  f"{'yes' if e_ok else 'NO'}")
    return ok


def write_plots(results: list[dict], out: Path) -> list[Path]:
    sys.path.insert(0, str(HERE.parents[1] / "src"))
    from memplace.report import line_chart_svg
    paths = []
    for res in results:
        series = []
        VARIANTS, LABELS = res.get("variants", globals()["VARIANTS"]), res.get("labels", globals()["LABELS"])
        for v in VARIANTS:
            points = [(p, res["cells"][f"{v}@{p}"]["median_s"], res["cells"][f"{v}@{p}"]["status"])
                      for p in LIMITS]
            series.append((LABELS[v], points))
        around = f" ({read_around_text(res)})" if read_around_text(res) else ""
        svg = line_chart_svg(series, title=f"{res['program']}: runtime against memory limit{around}",
                             x_label="memory limit, % of the plain run's peak",
                             y_label="wall seconds (median)")
        path = out / f"{res['program']}.svg"
        path.write_text(svg)
        paths.append(path)
    return paths


def bad_input(message: str) -> None:
    """One line naming the input and the problem, exit status 2."""
    print(message, file=sys.stderr)
    sys.exit(2)


def two_nodes(text: str | None) -> tuple[int, int] | None:
    """--nodes FAST,SLOW, else the machine's fast and slow node (None: one node)."""
    from memplace.placement.devices import read_topology
    from two_node import fast_and_slow

    topology = read_topology()
    if text is None:
        return fast_and_slow(topology)
    try:
        fast, slow = (int(x) for x in text.split(","))
    except ValueError:
        bad_input(f"--nodes {text!r}: expected FAST,SLOW node ids (example: 0,1)")
    for n in (fast, slow):
        if topology.node(n) is None:
            have = ", ".join(str(x.id) for x in topology.nodes)
            bad_input(f"--nodes {text!r}: node {n} does not exist on this machine (nodes: {have})")
    if fast == slow:
        bad_input(f"--nodes {text!r}: the fast and the slow node must differ")
    return fast, slow


def main_two_node(args, out: Path, nodes: tuple[int, int]) -> int:
    out.mkdir(parents=True, exist_ok=True)
    print(f"two NUMA nodes: the fast device on node {nodes[0]}, the slow device on node {nodes[1]}; "
          "limits are the fast node's capacity (no cgroup, no file device)", file=sys.stderr)
    base_env = clean_env(os.environ)
    if os.environ.get("MEMPLACE_CACHE"):
        base_env["MEMPLACE_CACHE"] = os.environ["MEMPLACE_CACHE"]
    wanted = args.program or ["hotcold", "spmv"]
    programs = [p for p in c_programs(out / "bin", args.scale) if p.name in wanted]
    results = [bench_two_node(prog, args, out, nodes, base_env) for prog in programs]
    (out / "results.json").write_text(json.dumps(results, indent=2))
    ok = print_table(results)
    plots = write_plots(results, out)
    print(f"\nresults: {out / 'results.json'}; plots: {', '.join(str(p) for p in plots)}")
    print(f"targets (at 50%: (d) >= {TARGET}x faster than (b) and (c) on hotcold, never slower than "
          f"them on any program; (d) completes wherever they do): {'met' if ok else 'MISSED'}")
    return 0 if ok else 1


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=1, help="runs per variant and limit (median)")
    ap.add_argument("--out", default="capacity-out", help="output directory (results, plots, logs)")
    ap.add_argument("--device-dir", default="/var/tmp/memplace-capacity",
                    help="directory of the file device and the swap file (a real disk, not tmpfs)")
    ap.add_argument("--timeout", type=float, default=120, help="seconds before a run counts as timed out")
    ap.add_argument("--scale", type=float, default=1.0, help="heap sizes of the C programs")
    ap.add_argument("--program", action="append", choices=["hotcold", "spmv", "openfoam"],
                    help="run only these (default: hotcold and spmv, plus openfoam with --openfoam)")
    ap.add_argument("--openfoam", action="store_true", help="also OpenFOAM pitzDaily, refined (slow)")
    ap.add_argument("--openfoam-refine", type=int, default=4, help="cells in x and y multiplied by")
    ap.add_argument("--openfoam-steps", type=int, default=10, help="simpleFoam iterations per run")
    ap.add_argument("--read-ahead", type=int, metavar="KIB",
                    help="the file device's disk reads this many KiB around each page fault during the "
                         "benchmark (its read_ahead_kb, put back after; default: as the machine has it)")
    ap.add_argument("--nodes", metavar="FAST,SLOW",
                    help="two-node mode with these nodes (default: on when /sys shows two nodes with memory)")
    ap.add_argument("--one-node", action="store_true",
                    help="the cgroup and file device benchmark even where the machine has two nodes")
    args = ap.parse_args()
    out = Path(args.out).resolve()
    if args.read_ahead is not None and args.read_ahead < 0:
        bad_input(f"--read-ahead {args.read_ahead}: not a number of KiB (0 or more)")
    nodes = None if args.one_node else two_nodes(args.nodes)
    if nodes is not None:
        if args.read_ahead is not None:
            bad_input("--read-ahead: the two-node mode has no file device (--one-node for the cgroup benchmark)")
        return main_two_node(args, out, nodes)
    if why_no_cgroup():
        raise SystemExit(f"capacity benchmark: {why_no_cgroup()}")
    out.mkdir(parents=True, exist_ok=True)
    device_dir = Path(args.device_dir).resolve()
    device_dir.mkdir(parents=True, exist_ok=True)
    kind = filesystem_type(device_dir)
    if kind in ("tmpfs", "ramfs"):
        raise SystemExit(f"--device-dir {device_dir}: on {kind}, which is memory, not a disk")
    base_env = clean_env(os.environ)
    if os.environ.get("MEMPLACE_CACHE"):
        base_env["MEMPLACE_CACHE"] = os.environ["MEMPLACE_CACHE"]
    with ReadAround(device_dir, args.read_ahead) as around:
        return benchmark(args, out, device_dir, kind, base_env, around.kib)


def benchmark(args, out: Path, device_dir: Path, kind: str, base_env: dict, read_around_kib: int | None) -> int:
    print(f"file device and swap file in {device_dir} ({kind}); the disk's read-around "
          f"{f'{read_around_kib} KiB' if read_around_kib is not None else 'unknown'}", file=sys.stderr)
    from memplace.placement.sysfs import READ_AROUND_WARN
    if read_around_kib is not None and read_around_kib << 10 > READ_AROUND_WARN:
        print(f"  the disk reads {read_around_kib} KiB around every fault: under the limits the file device "
              "evicts what the programs use (docs/policy.md, 'Read-around'); --read-ahead 128 runs with the "
              "kernel's default", file=sys.stderr)
    # measured figures for the advisor (cached per machine, device and read-around after the first time)
    print(memplace("devices", "--measure", "--device", "fast=numa:0", "--device", f"slow=file:{device_dir}",
                   env=base_env), file=sys.stderr)

    wanted = args.program or ["hotcold", "spmv"] + (["openfoam"] if args.openfoam else [])
    programs = [p for p in c_programs(out / "bin", args.scale) if p.name in wanted]
    if "openfoam" in wanted:
        from openfoam_case import openfoam_program
        programs.append(openfoam_program(out / "openfoam", args.openfoam_refine, args.openfoam_steps))
    results = []
    for prog in programs:
        results.append(dict(bench_program(prog, args, out, device_dir, base_env, device_dir / "capacity.swap"),
                            read_around_kib=read_around_kib))
        (out / "results.json").write_text(json.dumps(results, indent=2))
    ok = print_table(results)
    plots = write_plots(results, out)
    print(f"\nresults: {out / 'results.json'}; plots: {', '.join(str(p) for p in plots)}")
    print(f"targets (at 50%: (d) >= {TARGET}x faster than (b) and (c) on hotcold, never slower than "
          f"them on any program; (d) completes wherever they do): {'met' if ok else 'MISSED'}")
    return 0 if ok else 1


if __name__ == "__main__":
    from memplace.errors import UserError
    try:
        sys.exit(main())
    except UserError as e:  # a policy the benchmark wrote that memplace refuses: one line
        bad_input(f"run.py: {e}")
