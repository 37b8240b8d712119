"""Exact call sites at run time: what they cost.

  1. An allocation-heavy program (bignum.c: cfrac-like, ~58,000 allocations per
     iteration through 1-3 helper frames) placed by the advisor's own policy: profile ->
     advise (fast device: NUMA node 0 with a third of the profile's peak; the rest on a
     file device) -> placed run, against the bare program. Target: placed <= 1.10x.
     Beside it, the same devices without rules (every site on the default device): the
     device heaps' own cost, without telling sites apart. The same again for the program
     built without frame pointers, as distributions build (the walks then start from a
     frame pointer register holding the program's data). And a real program nobody here
     wrote: the distribution's CPython (no frame pointers) with PYTHONMALLOC=malloc on
     interpreter.py, profiled, advised (about 100 rules of 1-3 frames) and placed.
     The walk cache's worst case beside them: the same program dispatching its additions
     and subtractions through 32 wrappers in turn (bignum.c's WAYS: 64 more chains that
     part only at the wrapper's frame), under its advised policy and under one rule of 3
     frames per chain, alternately on the advised policy's two devices (about 70 rules).
     The advisor writes the fewest, shortest rules its plan allows (docs/advisor.md): which
     rules each advised policy has is printed below the table.
  2. Capture + matching per allocation for rules of 1-4 frames (one rule per distinct
     chain of the num_alloc call site and its callers, to the "system" device, so only
     finding the site and its rule is measured): (variant - transparent) / allocations.
  3. Start-up: `memplace run --policy P -- bignum 0` against `bignum 0` (wall time; the
     compiled policy and unwind tables are cached after the first run).

    python bench/sites/run.py [--runs 7] [--iterations 300] [--json] [--other-runtime SO] [--instructions]

With --other-runtime SO, the advised policies also run under another build of
libmemplace.so (e.g. the one before a change), in the same rounds: "advised@other".
With --instructions, the bare, transparent and advised runs of each program are also
counted in instructions by callgrind (one run each, a tenth of the iterations): a figure
this shared machine's load does not move.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
from benchlib import build, compare, report, report_instructions  # noqa: E402

TARGET = 1.10
DISPATCH_WAYS = 32
PROFILE_ITERATIONS = 1500  # of interpreter.py, for its profile
STARTUP_TARGET_S = 0.1


def memplace(*args: str, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "memplace", *args], check=True,
                          capture_output=True, text=True, **kw)


def allocations_per_iteration(profile: dict, iterations: int) -> float:
    return sum(s["allocations"] for s in profile["sites"]) / iterations


def frame_rules(profile: dict, frames: int, head: str | None = None,
                devices: tuple[str, ...] = ("system",)) -> str:
    """One rule of `frames` frames (file:line) per distinct call chain, in turn on
    `devices`, after `head` (the devices' part of a policy). By default every rule sends
    its site to the next allocator, so that only finding the site and its rule is
    measured."""
    lines = [head] if head is not None else ["version = 1", "[devices.dram]", 'kind = "numa"',
                                             "nodes = [0]", ""]
    chains = []
    for site in profile["sites"]:
        fr = [f for f in site["frames"] if f.get("file")][:frames]
        chain = [f'{os.path.basename(f["file"])}:{f["line"]}' for f in fr]
        if len(chain) == frames and chain not in chains:
            chains.append(chain)
    for i, chain in enumerate(chains):
        quoted = ", ".join(f'"{f}"' for f in chain)
        lines += ["[[rules]]", f'name = "chain{i}"', f"site = [{quoted}]",
                  f'device = "{devices[i % len(devices)]}"', ""]
    return "\n".join(lines)


def policy_head(policy_text: str) -> str:
    """A policy's text before its rules: its devices."""
    return policy_text.split("[[rules]]")[0]


def advised_policy(argv: list[str], tmp: Path, env: dict | None = None) -> tuple[Path, Path, dict]:
    """profile -> advise for the command `argv` (fast device: NUMA node 0, 80 ns, room
    for a third of the sum of the sites' peaks, as the advisor is asked on real codes;
    the rest on a file device, 300 ns): the profile, the policy and the profile's JSON."""
    tmp.mkdir()
    memplace("profile", "--out", str(tmp / "prof"), "--", *argv, env=env)
    prof_path, = (tmp / "prof").glob("*.json")
    profile = json.loads(prof_path.read_text())
    peak = sum(s["peak_live_bytes"] for s in profile["sites"])
    pmem = tmp / "pmem"
    pmem.mkdir()
    policy = tmp / "advised.toml"
    memplace("advise", str(prof_path), "--policy-out", str(policy),
             "--device", f"fast=numa:0,latency=80ns,capacity={max(peak // 3, 64)}",
             "--device", f"slow=file:{pmem},latency=300ns")
    return prof_path, policy, profile


def rules_of(policy: Path) -> str:
    """What a policy asks of the runtime: its rules and their frames."""
    depths = [line.count(",") + 1 for line in policy.read_text().splitlines() if line.startswith("site = ")]
    if not depths:
        return "no rules"
    span = f"{min(depths)}" if min(depths) == max(depths) else f"{min(depths)}-{max(depths)}"
    return f"{len(depths)} rule{'s' if len(depths) > 1 else ''} of {span} frame{'s' if max(depths) > 1 else ''}"


def interpreter(tmp: Path, runtime: str, base: dict, args):
    """The distribution's CPython with PYTHONMALLOC=malloc on interpreter.py: profiled
    over PROFILE_ITERATIONS (enough CPU-time samples for the advisor to act on about 100
    sites), advised, and run over args.iterations, beside the bare interpreter."""
    from memplace.launch.program import describe_program
    from memplace.launch.unwind_tables import program_tables
    from memplace.placement.policy_compile import prepare

    python = os.path.realpath("/usr/bin/python3" if os.path.exists("/usr/bin/python3") else sys.executable)
    env = dict(base, PYTHONMALLOC="malloc")
    script = str(HERE / "interpreter.py")
    _, policy, _ = advised_policy([python, script, str(PROFILE_ITERATIONS)], tmp / "interp", env)
    prepare(policy, Path(python), tmp / "interp.mpc")
    program_tables(describe_program(python), runtime)
    nrules = policy.read_text().count("[[rules]]")
    envs = {"bare": env, "transparent": dict(env, LD_PRELOAD=runtime),
            "advised policy": dict(env, LD_PRELOAD=runtime, MEMPLACE_POLICY=str(tmp / "interp.mpc"))}
    if args.other_runtime:
        envs["advised@other"] = dict(envs["advised policy"], LD_PRELOAD=os.path.abspath(args.other_runtime))
    name = f"cpython, {nrules} rules"
    return compare(name, [python, script, str(args.iterations)], envs, args.runs), [python, script], envs


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=7)
    ap.add_argument("--iterations", type=int, default=300)
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--instructions", action="store_true",
                    help="also count instructions with callgrind (bare, transparent, advised; "
                         "one run each at a tenth of --iterations)")
    ap.add_argument("--other-runtime", metavar="SO",
                    help="also run 'advised policy' with this libmemplace.so (variant advised@other)")
    args = ap.parse_args()
    from memplace.launch.program import describe_program
    from memplace.launch.runtime_path import runtime_path
    from memplace.launch.unwind_tables import program_tables
    from memplace.placement.policy_compile import prepare
    from memplace.profiling import runtime_engine

    runtime = runtime_path()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        prog = build(HERE / "bignum.c", tmp / "bignum")
        n = str(args.iterations)
        prof_path, policy, profile = advised_policy([str(prog), n], tmp / "fp")
        # the same run with 4 frames per site, for the rules of 4 frames
        (tmp / "prof4").mkdir()
        runtime_engine.run([str(prog), n], str(tmp / "prof4"), depth=4)
        profile4 = json.loads(next((tmp / "prof4").glob("*.json")).read_text())
        base = {k: v for k, v in os.environ.items() if k != "LD_PRELOAD"}
        base["MEMPLACE_UNWIND"] = program_tables(describe_program(str(prog)), runtime).directory
        envs = {"bare": base, "transparent": dict(base, LD_PRELOAD=runtime)}
        compiled = tmp / "advised.mpc"
        prepare(policy, prog, compiled)
        envs["advised policy"] = dict(base, LD_PRELOAD=runtime, MEMPLACE_POLICY=str(compiled))
        if args.other_runtime:
            envs["advised@other"] = dict(envs["advised policy"], LD_PRELOAD=os.path.abspath(args.other_runtime))
        # the advised devices without rules: every site on the default device, one frame
        text = policy.read_text()
        bare_policy = tmp / "default-only.toml"
        bare_policy.write_text(policy_head(text))
        prepare(bare_policy, prog, tmp / "default-only.mpc")
        envs["default device only"] = dict(base, LD_PRELOAD=runtime,
                                           MEMPLACE_POLICY=str(tmp / "default-only.mpc"))
        for frames in (1, 2, 3, 4):
            toml = tmp / f"frames{frames}.toml"
            toml.write_text(frame_rules(profile4, frames))
            out = tmp / f"frames{frames}.mpc"
            prepare(toml, prog, out)
            envs[f"{frames}-frame rules"] = dict(base, LD_PRELOAD=runtime, MEMPLACE_POLICY=str(out))
        result = compare("bignum", [str(prog), n], envs, args.runs)
        # built without frame pointers: its own profile and policy
        nofp = build(HERE / "bignum.c", tmp / "bignum-nofp", "-fomit-frame-pointer")
        _, nofp_policy, _ = advised_policy([str(nofp), n], tmp / "nofp")
        prepare(nofp_policy, nofp, tmp / "nofp.mpc")
        program_tables(describe_program(str(nofp)), runtime)
        nofp_envs = {"bare": base, "transparent": dict(base, LD_PRELOAD=runtime),
                     "advised policy": dict(base, LD_PRELOAD=runtime,
                                            MEMPLACE_POLICY=str(tmp / "nofp.mpc"))}
        if args.other_runtime:
            nofp_envs["advised@other"] = dict(nofp_envs["advised policy"],
                                              LD_PRELOAD=os.path.abspath(args.other_runtime))
        result_nofp = compare("bignum, no fp", [str(nofp), n], nofp_envs, args.runs)
        # the walk cache's worst case: one start, many callers (a dispatch)
        dispatch_argv = [str(prog), n, str(DISPATCH_WAYS)]
        _, dispatch_policy, _ = advised_policy(dispatch_argv, tmp / "dispatch")
        prepare(dispatch_policy, prog, tmp / "dispatch.mpc")
        (tmp / "dispatch-prof4").mkdir()
        runtime_engine.run(dispatch_argv, str(tmp / "dispatch-prof4"), depth=4)
        dispatch_profile = json.loads(next((tmp / "dispatch-prof4").glob("*.json")).read_text())
        chains = tmp / "dispatch-chains.toml"
        chains.write_text(frame_rules(dispatch_profile, 3, policy_head(dispatch_policy.read_text()),
                                      ("fast", "slow")))
        prepare(chains, prog, tmp / "dispatch-chains.mpc")
        dispatch_envs = {"bare": base, "transparent": dict(base, LD_PRELOAD=runtime),
                         "advised policy": dict(base, LD_PRELOAD=runtime,
                                                MEMPLACE_POLICY=str(tmp / "dispatch.mpc")),
                         f"{chains.read_text().count('[[rules]]')} 3-frame rules":
                             dict(base, LD_PRELOAD=runtime, MEMPLACE_POLICY=str(tmp / "dispatch-chains.mpc"))}
        if args.other_runtime:
            dispatch_envs["advised@other"] = dict(dispatch_envs["advised policy"],
                                                  LD_PRELOAD=os.path.abspath(args.other_runtime))
        result_dispatch = compare("bignum, dispatch", dispatch_argv, dispatch_envs, args.runs)
        result_interp, interp_argv, interp_envs = interpreter(tmp, runtime, base, args)
        ok = report([result, result_nofp, result_dispatch, result_interp], "bare", TARGET, args.json,
                    targeted=("advised policy",))
        if not args.json:
            print("\nthe advised policies: " + "; ".join(
                f"{name} {rules_of(p)}" for name, p in (
                    ("bignum", policy), ("bignum, no fp", nofp_policy), ("bignum, dispatch", dispatch_policy),
                    ("cpython", tmp / "interp" / "advised.toml"))))
        if args.instructions:
            # exact and repeatable whatever else the machine does (but instructions, not time)
            n_i = str(max(1, args.iterations // 10))
            advised = ("bare", "transparent", "advised policy", "advised@other",
                       *(v for v in dispatch_envs if v.endswith("3-frame rules")))
            for c, argv, variants in ((result, [str(prog), n_i], envs),
                                      (result_nofp, [str(nofp), n_i], nofp_envs),
                                      (result_dispatch, [str(prog), n_i, str(DISPATCH_WAYS)], dispatch_envs),
                                      (result_interp, [*interp_argv, n_i], interp_envs)):
                report_instructions([c.workload], lambda _, argv=argv: argv,
                                    {k: v for k, v in variants.items() if k in advised}, "bare", args.json)

        # start-up of the whole command, policy compiled and tables made once before; with
        # Python's bytecode cache, as an installed package has it (PYTHONDONTWRITEBYTECODE
        # in the caller's environment would make every run compile memplace's sources)
        env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
        memplace("run", "--policy", str(policy), "--", str(prog), "0", env=env)
        # the command as users type it: the installed script beside this interpreter
        script = Path(sys.executable).with_name("memplace")
        command = [str(script)] if script.exists() else [sys.executable, "-m", "memplace"]
        startup = {"bare": [], "memplace run --policy": []}
        for _ in range(args.runs):
            for name, argv in (("bare", [str(prog), "0"]),
                               ("memplace run --policy",
                                [*command, "run", "--policy", str(policy), "--", str(prog), "0"])):
                t = time.perf_counter()
                subprocess.run(argv, check=True, capture_output=True, env=env)
                startup[name].append(time.perf_counter() - t)
    allocs = allocations_per_iteration(profile, args.iterations) * args.iterations
    per_alloc = {f: result.difference(f"{f}-frame rules", "transparent", 1) / allocs * 1e9
                 for f in (1, 2, 3, 4)}
    extra = statistics.median(startup["memplace run --policy"]) - statistics.median(startup["bare"])
    ok &= extra <= STARTUP_TARGET_S
    if args.json:
        print(json.dumps({"capture_ns_per_allocation": per_alloc, "startup_extra_s": extra}))
    else:
        print(f"\n{allocs:,.0f} allocations per run; capture + matching per allocation "
              "(variant - transparent, median of per-round CPU-time differences):")
        for f, ns in per_alloc.items():
            print(f"  {f} frame{'s' if f > 1 else ' '}  {ns:6.1f} ns")
        print(f"\nstart-up, median wall time of {args.runs}: bare "
              f"{statistics.median(startup['bare']):.3f}s, memplace run --policy "
              f"{statistics.median(startup['memplace run --policy']):.3f}s: +{extra:.3f}s "
              f"(target <= +{STARTUP_TARGET_S}s {'met' if extra <= STARTUP_TARGET_S else 'MISSED'})")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
