"""The user's whole commands on a profile of a big code: `memplace advise` and `memplace
report --html` on 50,000 sites (real libraries' code addresses, so symbolizing does real
work: libc and libm have Debian debug files with line tables and inlined calls; 64-window
timelines; half the sites with sampled accesses), start-up included, each run with an
empty cache directory (cold), and again with the symbols cached by an earlier run (warm).

Side by side in the same rounds, interleaved:
- read (baseline): `memplace profile merge` of the one file, what loading it costs;
- before: the same advise and report with the symbolizer memplace had before
  memplace.dwarf_reader (pyelftools, tests/profiling/pyelftools_symbols.py), --before-runs
  times (each takes half a minute or more);
then, in this process, the symbols both symbolizers give every frame, compared.

    python bench/advisor/large_profile.py [--sites 50000] [--runs 3] [--before-runs 1]

Target (issue 13): advise and report --html each in seconds on 50,000 sites (aim: under 5 s).
Results: docs/benchmarks.md ("A profile of 50,000 sites").
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE.parents[1] / "tests" / "profiling"))
from benchlib import timed  # noqa: E402

from memplace.elf import elf_info  # noqa: E402
from memplace.profiling import profile as prof  # noqa: E402

LIBRARIES = ["/lib/x86_64-linux-gnu/libc.so.6", "/lib/x86_64-linux-gnu/libstdc++.so.6",
             "/lib/x86_64-linux-gnu/libm.so.6", sys.executable]
WINDOWS = 64
TARGET_S = 5.0

# `python BEFORE memplace ARGS`: memplace with the old symbolizer put in place of the new one.
BEFORE = """import sys, runpy
sys.path.insert(0, {tests!r})
import memplace.profiling.symbolize as s
from pyelftools_symbols import reference_symbolize_profile
s.symbolize_profile = reference_symbolize_profile
sys.argv = ["memplace", *sys.argv[1:]]
runpy.run_module("memplace", run_name="__main__")
"""


def make_profile(n: int, path: Path, seed: int = 1) -> None:
    rng = random.Random(seed)
    mods = [(lib, elf_info(lib)) for lib in LIBRARIES if Path(lib).exists()]
    sites, seen = [], set()
    while len(sites) < n:
        frames = []
        for _ in range(rng.randint(1, 3)):
            lib, info = rng.choice(mods)
            frames.append(prof.Frame(str(Path(lib).resolve()), info.build_id if info else None,
                                     rng.randrange(0x1000, 0x100000)))
        key = tuple(f.key for f in frames)
        if key in seen:
            continue
        seen.add(key)
        size = int(2 ** rng.uniform(4, 24))
        a = rng.randrange(WINDOWS)
        b = rng.randrange(a, WINDOWS) + 1
        live = [size if a <= w < b else 0 for w in range(WINDOWS)]
        measured = rng.random() < 0.5
        sites.append(prof.Site(tuple(frames), allocations=rng.randint(1, 1000), bytes=size * 3,
                               peak_live_bytes=size, live=live,
                               reads=int(size * 2 ** rng.uniform(-3, 8)) if measured else None,
                               writes=int(size * 2 ** rng.uniform(-3, 4)) if measured else None))
    prof.save(prof.Profile("runtime", ["bigcode"], sites, pid=1, clock_unit="ns", duration=64e9,
                           window=1e9), path)


def compare_symbols(profile_path: Path) -> str:
    """Both symbolizers on every frame of the profile, in this process: time and answers."""
    from pyelftools_symbols import reference_symbolize_profile

    from memplace.profiling.symbolize import module_symbols, symbolize_profile

    new, old = prof.load(profile_path), prof.load(profile_path)
    t = time.perf_counter()
    symbolize_profile(new)
    t_new = time.perf_counter() - t
    t = time.perf_counter()
    reference_symbolize_profile(old)
    t_old = time.perf_counter() - t
    frames = same = outside = 0
    for a, b in zip(new.sites, old.sites):
        for i, f in enumerate(a.frames):
            frames += 1
            if a.symbol(i) == b.symbol(i):
                same += 1
                continue
            ms = module_symbols(f.module)
            in_unit = ms is not None and ms._units_of(f.offset - 1)
            if in_unit or (a.symbol(i) is not None and (a.symbol(i).file or a.symbol(i).inlined)):
                raise SystemExit(f"symbols differ inside a compilation unit: {f}: {a.symbol(i)} vs {b.symbol(i)}")
            outside += 1
    return (f"symbolizing in-process: {t_new:.2f} s now, {t_old:.2f} s before ({t_old / t_new:.0f}x);\n"
            f"  {same:,} of {frames:,} frames symbolized the same, the other {outside:,} are outside every\n"
            f"  compilation unit (before: the line of whatever row came before them in the file; now: none)")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sites", type=int, default=50_000)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--before-runs", type=int, default=1, help="runs with the old symbolizer (0: none)")
    args = ap.parse_args()

    mp = [sys.executable, "-m", "memplace"]
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        profile = tmp / "big.json"
        make_profile(args.sites, profile)
        (tmp / "slow").mkdir()
        before = tmp / "before.py"
        before.write_text(BEFORE.format(tests=str(HERE.parents[1] / "tests" / "profiling")))
        devices = ["--device", "fast=numa:0,latency=80ns,capacity=1GiB",
                   "--device", f"slow=file:{tmp / 'slow'},latency=300ns"]
        steps = {
            "advise": ["advise", str(profile), "--policy-out", str(tmp / "p.toml"), *devices],
            "report --html": ["report", "--profile", str(profile), "--html", str(tmp / "r.html")],
        }
        commands = {"read (baseline)": [*mp, "profile", "merge", str(profile), "-o", str(tmp / "copy.json")]}
        for name, argv in steps.items():
            commands[name] = [*mp, *argv]
            commands[f"{name}, warm"] = [*mp, *argv]
            commands[f"{name}, before"] = [sys.executable, str(before), *argv]
        warm = dict(os.environ, MEMPLACE_CACHE=str(tmp / "cache-warm"))
        timed(commands["advise"], warm)  # the symbol cache filled once
        times: dict[str, list[tuple[float, float]]] = {k: [] for k in commands}
        for r in range(args.runs):
            names = list(commands) if r % 2 == 0 else list(commands)[::-1]
            for name in names:
                if name.endswith("before") and len(times[name]) >= args.before_runs:
                    continue
                env = warm if name.endswith("warm") else dict(os.environ, MEMPLACE_CACHE=str(tmp / f"cache-{name}-{r}"))
                wall, cpu, _ = timed(commands[name], env)
                times[name].append((wall, cpu))
                print(".", end="", file=sys.stderr, flush=True)
        print(file=sys.stderr)
        compared = compare_symbols(profile) if args.before_runs else None
    med = {k: (statistics.median(w for w, _ in v), statistics.median(c for _, c in v))
           for k, v in times.items() if v}
    base = med["read (baseline)"]
    ok = True
    print(f"{args.sites:,} sites, start-up included, cold cache unless 'warm'; median of {args.runs} runs "
          f"({args.before_runs} for 'before'):")
    print(f"  {'':24s} {'wall':>8s} {'cpu':>8s}  {'wall/baseline':>13s}  {'before/now':>10s}")
    for name, (wall, cpu) in med.items():
        line = f"  {name:24s} {wall:7.2f}s {cpu:7.2f}s  {wall / base[0]:12.2f}x"
        if name in steps:
            before = med.get(f"{name}, before")
            line += f"  {before[0] / wall:9.1f}x" if before else f"  {'':10s}"
            met = wall < TARGET_S
            ok &= met
            line += f"  target < {TARGET_S:.0f} s {'met' if met else 'MISSED'}"
        print(line)
    if compared:
        print(compared)
    print(f"load average at the end: {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs (wall includes "
          f"waiting for a CPU; cpu is the command's own user+system time)")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
