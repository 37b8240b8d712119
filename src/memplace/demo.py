"""The demo (`memplace demo`): the whole loop on a built-in example, in under a minute.

A bundled program with hot and cold arrays is built, profiled with the runtime engine
(whose access sampling estimates the bytes each site's blocks read and write; valgrind's
DHAT, which counts them exactly, only where sampling cannot run), advised onto a small fast device
(NUMA node 0, 64 MiB: room for the hot data only) and a file device for the rest, run
with that policy, and reported. The program itself asks the kernel where each array
lives, so the placement is checked, not assumed.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import time
from importlib import resources
from pathlib import Path
from typing import Callable

from memplace.errors import UserError

# How the demo says what it does: echo(text, bold=False, fg=None, nl=True), on stderr.
Echo = Callable[..., None]

HOT = ("grid", "next", "rhs")
COLD = ("input", "history")


def _step(echo: Echo, n: int, what: str, argv: list[str]) -> None:
    shown = " ".join("memplace" if a == "-m" else a for a in argv
                     if a not in (sys.executable, "memplace.cli")).replace("memplace memplace", "memplace")
    echo(f"\n[{n}/5] {what}", bold=True)
    echo(f"  $ {shown}")


def _memplace(*args: str) -> list[str]:
    return [sys.executable, "-m", "memplace", *args]


def _run(argv: list[str], capture: bool = False) -> subprocess.CompletedProcess:
    r = subprocess.run(argv, capture_output=capture, text=True)
    if r.returncode != 0:
        detail = (r.stderr or "").strip().splitlines()[-1:] if capture else []
        raise UserError(f"demo step failed: {' '.join(argv[:4])} ... exited with {r.returncode}"
                        + (f": {detail[0]}" if detail else ""))
    return r


def parse_where(stdout: str) -> dict[str, dict[str, str]]:
    out = {}
    for line in stdout.splitlines():
        m = re.match(r"where (\S+)\s+policy=(\S+) nodemask=(\S+) node=(\S+) file=(.*)$", line)
        if m:
            out[m.group(1)] = {"policy": m.group(2), "nodemask": m.group(3), "node": m.group(4),
                               "file": m.group(5)}
    return out


def run_demo(workdir: Path, echo: Echo) -> int:
    start = time.monotonic()
    try:  # the directory, not its parents: a mistyped place is reported, not built
        workdir = workdir.resolve()
        workdir.mkdir(exist_ok=True)
        pmem = workdir / "pmem"
        pmem.mkdir(exist_ok=True)
    except (OSError, RuntimeError) as e:  # RuntimeError: a symlink loop
        raise UserError(f"--dir {workdir}: cannot make the demo's directory: "
                        f"{getattr(e, 'strerror', None) or e}") from None
    if shutil.which("gcc") is None:
        raise UserError("the demo needs gcc: apt-get install gcc")
    exe = workdir / "hotcold"
    source = resources.files("memplace").joinpath("demo/hotcold.c")
    argv = ["gcc", "-O1", "-g", "-o", str(exe), str(source)]
    _step(echo, 1, "build the example (hot: grid, next, rhs; cold: input, history)", argv)
    _run(argv)

    prof_dir = workdir / "profile"
    shutil.rmtree(prof_dir, ignore_errors=True)
    argv = _memplace("profile", "--out", str(prof_dir), "--", str(exe))
    _step(echo, 2, "profile: allocation sites and, sampled, the bytes they read and write", argv)
    _run(argv, capture=True)
    profile = next(iter(sorted(prof_dir.glob("*.json"))), None)
    if profile is None:
        raise UserError("demo: the profile was not written")
    sampling = json.loads(profile.read_text()).get("meta", {}).get("access_sampling", {})
    if sampling.get("state") != "on":  # e.g. Linux < 6.3, or not x86_64: count with DHAT
        why = sampling.get("why", "unknown")
        if shutil.which("valgrind") is None:
            raise UserError(f"demo: access sampling did not run ({why}) and valgrind is not "
                            "installed to count accesses instead: apt-get install valgrind")
        shutil.rmtree(prof_dir, ignore_errors=True)
        argv = _memplace("profile", "--engine", "dhat", "--out", str(prof_dir), "--", str(exe))
        _step(echo, 2, f"access sampling did not run ({why}): profile with valgrind DHAT", argv)
        _run(argv, capture=True)
        profile = next(iter(sorted(prof_dir.glob("*.json"))), None)
        if profile is None:
            raise UserError("demo: the profile was not written")

    policy = workdir / "policy.toml"
    argv = _memplace("advise", str(profile), "--policy-out", str(policy),
                     "--device", "fast=numa:0,latency=80ns,capacity=64MiB,fallback=slow",
                     "--device", f"slow=file:{pmem},latency=300ns",
                     "--default", "slow", "--top", "8")
    _step(echo, 3, "advise: 64 MiB of fast memory (node 0) for the hottest data, a file for the rest", argv)
    _run(argv)

    stats = workdir / "stats.json"
    argv = _memplace("run", "--policy", str(policy), "--stats", str(stats), "--", str(exe))
    _step(echo, 4, "run with the policy; the program reports where the kernel put each array", argv)
    r = _run(argv, capture=True)
    echo("".join(f"    {l}\n" for l in r.stdout.splitlines()), nl=False)

    html = workdir / "report.html"
    argv = _memplace("report", "--profile", str(profile), "--stats", str(stats), "--policy",
                     str(policy), "--html", str(html))
    _step(echo, 5, "report", argv)
    _run(argv)

    where = parse_where(r.stdout)
    ok = True
    echo("\nWhat happened, as the kernel reports it:", bold=True)
    for name in HOT + COLD:
        w = where.get(name)
        if w is None:
            echo(f"  {name:<8} not reported")
            ok = False
            continue
        on_fast = w["policy"] == "bind" and w["nodemask"] == "0x1"
        in_file = w["file"].startswith(str(pmem.resolve()) + "/") or w["file"].startswith(str(pmem) + "/")
        expect_fast = name in HOT
        good = on_fast if expect_fast else in_file
        ok &= good
        place = "node 0 (bound)" if on_fast else f"file {w['file']}" if in_file else \
            f"policy {w['policy']}, file {w['file']}"
        mark = "ok" if good else "UNEXPECTED"
        echo(f"  {name:<8} {'hot ' if expect_fast else 'cold'} -> {place:<60} {mark}")
    doc = json.loads(stats.read_text())
    for d in doc["totals"]["devices"]:
        peak = "not tracked" if d["name"] == "system" else f"{d['peak'] / 2**20:6.1f} MiB"  # its frees pass unseen
        echo(f"  device {d['name']:<7} {d['allocations']:>6} allocations, "
             f"{d['bytes'] / 2**20:8.1f} MiB, peak {peak}")
    echo(f"\nreport: {html}\npolicy: {policy}\ndone in {time.monotonic() - start:.1f} s")
    if not ok:
        echo("the placement did not match the advice: see above", fg="red")
    return 0 if ok else 1
