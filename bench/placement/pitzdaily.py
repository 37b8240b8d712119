"""Cost of placement on a real solver: OpenFOAM simpleFoam pitzDaily (Debian openfoam +
openfoam-examples, 282 iterations to convergence) under a 100-rule policy, side by side with
transparent mode and with no runtime (median CPU time, user+sys from wait4, of interleaved
runs, as ratios).

Variants:
  no runtime        simpleFoam alone
  transparent       runtime preloaded, no policy (what `memplace run --` sets up)
  placed dram       100 rules: the largest call sites (by bytes, from a profile of a
                    3-iteration run) and other real `operator new` call sites of
                    libOpenFOAM.so/libfiniteVolume.so (from objdump, those the profile saw
                    first) all go to "dram", a device bound to NUMA node 0; the rest of the
                    program's allocations go to the next allocator
  placed file+dram  the same 100 rules, but the largest sites go to "big", a file device (a
                    MAP_SHARED file in a temporary directory), and everything else,
                    default included, to "dram"
The placed variants run with the environment `memplace run --policy P --stats S` gives the
solver (compiled policy, stats directory), without the Python launcher's own start-up.
Every run must print the same residuals, iteration by iteration, as the run without runtime.
Target: every variant at most 1.05x of no runtime.

    python bench/placement/pitzdaily.py [--runs 5] [--profile DIR_OR_FILE] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE.parents[1] / "tests" / "realprograms"))
from benchlib import Comparison, call_sites, report  # noqa: E402
from openfoam_support import (all_residuals, foam_env, iterations, missing,  # noqa: E402
                              prepare, profile_case, set_end_time, site_bytes)

TUTORIAL = "simpleFoam/pitzDaily"
TARGET = 1.05
RULES = 100
LARGEST = 10                      # sites that go to the big device
PROFILED_STEPS = 3
PADDING_MODULES = ("libOpenFOAM.so", "libfiniteVolume.so")


def timed(argv: list[str], env: dict, log: Path) -> tuple[float, float, str]:
    """(wall seconds, user+sys CPU seconds, stdout) of one run. The solver's log goes to a
    file: it is larger than a pipe holds, and wait4 must see the child's own rusage."""
    with open(log, "w+") as out:
        start = time.perf_counter()
        proc = subprocess.Popen(argv, env=env, stdout=out, stderr=subprocess.STDOUT)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - start
        out.seek(0)
        text = out.read()
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"{' '.join(argv)} failed: {text[-2000:]}")
    return wall, usage.ru_utime + usage.ru_stime, text


def library_paths(exe: str, env: dict) -> dict[str, str]:
    """Basename -> path of the shared libraries `exe` loads (ldd)."""
    out = subprocess.run(["ldd", exe], env=env, capture_output=True, text=True,
                         check=True).stdout
    return dict(re.findall(r"^\s*(\S+) => (/\S+)", out, re.M))


def operator_new_sites(path: str) -> list[int]:
    """Return-address offsets of every `call _Znwm@plt` (operator new) in the library."""
    return call_sites(path, ("_Znwm",))


def choose_rules(profiled: dict[str, int], libraries: dict[str, str]) -> tuple[list, list]:
    """(largest sites, padding sites): LARGEST sites by bytes, then real operator-new call
    sites of the OpenFOAM libraries up to RULES in all, those the profile saw first (so the
    padding rules match allocations too, and the runtime pays for matching them)."""
    ranked = sorted(profiled, key=lambda s: -profiled[s])
    largest = ranked[:LARGEST]
    candidates = [f"{m}+{off:#x}" for m in PADDING_MODULES
                  for off in operator_new_sites(libraries[m])]
    candidates = [s for s in candidates if s not in largest]
    seen = sorted((s for s in candidates if s in profiled), key=lambda s: -profiled[s])
    unseen = [s for s in candidates if s not in profiled]
    padding = (seen + unseen)[:RULES - len(largest)]
    return largest, padding


def policy_text(largest: list[str], padding: list[str], big: str, default: str,
                file_dir: Path) -> str:
    lines = ["version = 1", f'default = "{default}"', "",
             "[devices.dram]", 'kind = "numa"', "nodes = [0]", 'capacity = "4GiB"', "",
             "[devices.big]", 'kind = "file"', f'path = "{file_dir}"', 'capacity = "2GiB"', ""]
    for i, site in enumerate(largest):
        lines += ["[[rules]]", f'name = "large-{i}"', f'site = ["{site}"]',
                  f'device = "{big}"', ""]
    for i, site in enumerate(padding):
        lines += ["[[rules]]", f'name = "pad-{i}"', f'site = ["{site}"]', 'device = "dram"', ""]
    return "\n".join(lines)


def find_profiles(given: str | None, tmp: Path, env: dict) -> list[Path]:
    if given:
        p = Path(given)
        files = sorted(p.glob("profile.*.json")) if p.is_dir() else [p]
        if not files:
            raise SystemExit(f"--profile {given}: no profile.*.json there")
        return files
    case = prepare(TUTORIAL, tmp / "short", env)
    set_end_time(case, PROFILED_STEPS)
    print(f"profiling {PROFILED_STEPS} iterations ...", file=sys.stderr)
    return profile_case(case, ["simpleFoam"], env, tmp / "profile")


def placement_summary(stats_dir: Path, runs: int) -> dict:
    """Per run: bytes each device served, and how many rules matched anything."""
    from memplace.placement import stats
    totals = stats.totals(stats.collect(stats_dir))
    return {
        "devices": {d["name"]: {"allocations": d["allocations"] // runs,
                                "bytes": d["bytes"] // runs,
                                "fallbacks": sum(d["fallbacks"].values())}
                    for d in totals["devices"]},
        "rules_matched": sum(1 for r in totals["rules"] if r["hits"]),
        "rules": len(totals["rules"]),
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--profile", help="a profile file or directory to take the sites from "
                    "(default: profile a short run now)")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    if args.runs < 5:
        ap.error("--runs must be at least 5")
    if missing():
        raise SystemExit(f"pitzdaily: {missing()}")
    from memplace.placement.policy_compile import prepare as compile_policy
    from memplace.launch.runtime_path import runtime_path
    runtime = runtime_path()
    env = foam_env()
    env.pop("LD_PRELOAD", None)
    exe = subprocess.run(["bash", "-c", "command -v simpleFoam"], env=env, capture_output=True,
                         text=True, check=True).stdout.strip()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        largest, padding = choose_rules(site_bytes(find_profiles(args.profile, tmp, env)),
                                        library_paths(exe, env))
        file_dir = tmp / "filedev"
        file_dir.mkdir()
        variants = {"no runtime": env, "transparent": dict(env, LD_PRELOAD=runtime)}
        stats_dirs = {}
        for name, big, default in (("placed dram", "dram", "system"),
                                   ("placed file+dram", "big", "dram")):
            slug = name.replace(" ", "-").replace("+", "-")
            toml = tmp / f"{slug}.toml"
            toml.write_text(policy_text(largest, padding, big, default, file_dir))
            compiled = tmp / f"{slug}.mpc"
            for warning in compile_policy(toml, exe, compiled):
                print(f"{name}: {warning}", file=sys.stderr)
            stats_dirs[name] = tmp / f"{slug}.stats"
            stats_dirs[name].mkdir()
            variants[name] = dict(env, LD_PRELOAD=runtime, MEMPLACE_POLICY=str(compiled),
                                  MEMPLACE_STATS=str(stats_dirs[name]))
        cases = {name: prepare(TUTORIAL, tmp / f"case{i}", env)
                 for i, name in enumerate(variants)}

        result = Comparison("pitzDaily", {name: [] for name in variants})
        reference = None
        names = list(variants)
        for r in range(args.runs):
            for name in (names if r % 2 == 0 else names[::-1]):
                wall, cpu, out = timed([exe, "-case", str(cases[name])], variants[name],
                                       tmp / "log")
                result.variants[name].append((wall, cpu))
                solved = (iterations(out), all_residuals(out))
                reference = reference or solved
                if solved != reference:
                    raise SystemExit(f"{name}: residuals differ from the other runs")
            print(".", end="", file=sys.stderr, flush=True)
        placement = {name: placement_summary(d, args.runs) for name, d in stats_dirs.items()}

    ok = report([result], "no runtime", TARGET, args.json)
    if args.json:
        print(json.dumps({"iterations": reference[0], "rules": len(largest) + len(padding),
                          "largest": largest, "placement": placement}, indent=2))
        return 0 if ok else 1
    print(f"\n{len(largest) + len(padding)} rules ({len(largest)} largest sites, "
          f"{len(padding)} other operator-new sites); every run: {reference[0]} iterations, "
          "identical residuals")
    for name, p in placement.items():
        served = ", ".join(f"{dev} {d['bytes'] / 2**30:.2f} GiB in {d['allocations']:,} allocs"
                           f" ({d['fallbacks']} fallbacks)" for dev, d in p["devices"].items()
                           if d["allocations"] or d["fallbacks"])
        print(f"  {name:<17} per run: {served}; rules that matched: "
              f"{p['rules_matched']}/{p['rules']}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
