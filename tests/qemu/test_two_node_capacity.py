"""The capacity benchmark's two-node mode (bench/capacity/two_node.py) in the two-node QEMU
guest: the fast device on node 0, the slow one on the CPU-less node 1.

The benchmark's Python does not run in the guest (busybox and the programs only), so its
core does: on the host, bench/capacity's hotcold program is built and profiled, the
policies of the two-node variants are made by two_node.py against the guest's topology
(a copy of its /sys, from a first boot) and compiled; a second boot runs the program
plainly and under each policy with the runtime, and prints its output, its run time and
the runtime's statistics. Checked: the benchmark finds the guest's fast and slow nodes,
every variant prints the plain run's result, and each placed run used its devices as its
policy says (the advised plan puts the hot table on the fast node and keeps the fast
node under its capacity). Times are printed, not checked (software emulation).
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from guest import Guest, GuestUnavailable, Step, sysfs_dump_step, write_sysfs_dump

pytestmark = pytest.mark.slow

BENCH = Path(__file__).resolve().parents[2] / "bench"
RUNTIME_GUEST = "/lib/memplace/libmemplace.so"
ARGS = ("4", "32", "4")  # hotcold: 4 MiB hot table, 32 MiB cold (16 input + 16 log), 4 rounds
MIB = 1 << 20
LIMITS = (100, 75, 50, 30)


def _guest(workdir: Path) -> Guest:
    try:
        return Guest.find(workdir)
    except GuestUnavailable as e:
        pytest.skip(str(e))


@pytest.fixture(scope="module")
def bench_modules():
    for p in (BENCH / "capacity", BENCH):
        if str(p) not in sys.path:
            sys.path.insert(0, str(p))
    import two_node
    from benchlib import build

    return two_node, build


@pytest.fixture(scope="module")
def guest_topology(tmp_path_factory):
    from memplace.placement.devices import read_topology

    work = tmp_path_factory.mktemp("cap-guest1")
    boot = _guest(work).boot([sysfs_dump_step("sysfs")])
    boot.require("sysfs")
    return read_topology(sysfs=write_sysfs_dump(boot.steps["sysfs"].output, work / "sys"))


@pytest.fixture(scope="module")
def capacity_boot(bench_modules, guest_topology, tmp_path_factory):
    from memplace.launch.runtime_path import runtime_path
    from memplace.profiling import profile as prof

    two_node, build = bench_modules
    work = tmp_path_factory.mktemp("cap-guest2")
    exe = build(BENCH / "capacity" / "hotcold.c", work / "hotcold")
    nodes = two_node.fast_and_slow(guest_topology)
    assert nodes == (0, 1)
    r = subprocess.run([sys.executable, "-m", "memplace", "profile", "run", "--out", str(work / "profile"), "--",
                        str(exe), *ARGS], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    profile = next((work / "profile").glob("*.json"))
    heap = prof.concurrent_peak(prof.load(profile).sites)
    g = _guest(work)
    g.add_program(exe, "/bin/hotcold")
    g.add_program(runtime_path(), RUNTIME_GUEST)
    steps = [_step("malloc", "")]
    policies = {}
    for pct in LIMITS:  # the benchmark's limits: the fast node's capacity, % of the heap's peak
        policies[pct] = two_node.two_node_policies(profile, nodes, heap * pct // 100, work / "policies",
                                                   guest_topology)
        for variant in two_node.VARIANTS[1:]:
            name = f"{variant}-{pct}"
            compiled = two_node.compile_policy(policies[pct][variant], str(exe), work / f"{name}.mpc", guest_topology)
            g.add_file(f"/{name}.mpc", compiled)
            steps.append(_step(name, f"LD_PRELOAD={RUNTIME_GUEST} MEMPLACE_POLICY=/{name}.mpc "
                                     f"MEMPLACE_STATS=/tmp/s-{name} "))
    boot = g.boot(steps, timeout=600)
    boot.require(*(s.name for s in steps))
    return boot, heap, policies, work


def _step(name: str, env: str) -> Step:
    """hotcold under `env`, its run time (from /proc/uptime) and the runtime's statistics."""
    return Step(name, (
        f"mkdir -p /tmp/s-{name}; t0=$(cut -d' ' -f1 /proc/uptime); {env}/bin/hotcold {' '.join(ARGS)}; "
        "s=$?; t1=$(cut -d' ' -f1 /proc/uptime); echo \"seconds $t0 $t1\"; "
        f"for f in /tmp/s-{name}/stats.*; do [ -f \"$f\" ] && echo \"==> $f\" && cat \"$f\"; done; exit $s"))


def _stats(output: str, where: Path) -> dict:
    """The runtime's statistics the step printed, as `memplace run --stats` totals them."""
    from memplace.placement import stats

    where.mkdir(parents=True, exist_ok=True)
    for m in re.finditer(r"^==> \S*/(stats\.[^\s/]+)\n(.*?)(?=^==> |^seconds |\Z)", output, re.M | re.S):
        (where / m.group(1)).write_text(m.group(2))
    totals = stats.totals(stats.collect(where))
    return {d["name"]: d for d in totals["devices"]}


def _seconds(output: str) -> float:
    t0, t1 = map(float, re.search(r"^seconds (\S+) (\S+)$", output, re.M).groups())
    return t1 - t0


def test_every_variant_prints_the_plain_result_and_the_table(capacity_boot, bench_modules):
    """Every run in the guest prints what the plain run printed; the benchmark's table of
    the guest's run times (software emulation: shown, not checked) says it ran on two nodes."""
    import run as bench

    two_node = bench_modules[0]
    boot, heap = capacity_boot[:2]
    checksum = lambda out: re.search(r"^checksum .*$", out, re.M).group(0)  # noqa: E731
    plain = boot.steps["malloc"]
    assert plain.status == 0 and "cold read errors 0" in plain.output, plain.output
    for name, step in boot.steps.items():
        assert step.status == 0, f"{name}:\n{step.output}"
        assert checksum(step.output) == checksum(plain.output), name
    cells = {}
    for pct in LIMITS:
        for v in two_node.VARIANTS:
            s = _seconds(boot.steps["malloc" if v == "malloc" else f"{v}-{pct}"].output)
            cells[f"{v}@{pct}"] = {"median_s": s, "status": "ok", "major_faults": [0], "note": ""}
    result = {"program": "hotcold (QEMU guest)", "peak": heap, "heap": heap, "unlimited_s": _seconds(plain.output),
              "nodes": [0, 1], "variants": list(two_node.VARIANTS), "labels": two_node.LABELS, "cells": cells}
    import contextlib
    import io

    shown = io.StringIO()
    with contextlib.redirect_stdout(shown):
        bench.print_table([result])
    print(shown.getvalue())
    assert "two NUMA nodes: fast device = node 0, slow device = node 1" in shown.getvalue()


def test_placed_runs_use_the_devices_their_policies_name(capacity_boot):
    """At the 50% limit: (b) puts everything on node 1; (c) fills node 0 to its capacity and
    falls back; (d) keeps node 0 within the capacity with the hot table on it and the log,
    never read, on node 1."""
    boot, heap, _, work = capacity_boot
    capacity = heap * 50 // 100 // MIB * MIB
    slow = _stats(boot.steps["slow-50"].output, work / "st-slow")
    assert slow["slow"]["bytes"] >= 32 * MIB and slow["slow"]["peak"] >= 32 * MIB
    first = _stats(boot.steps["first-fit-50"].output, work / "st-first")
    assert 0 < first["fast"]["peak"] <= capacity
    assert first["fast"]["fallbacks"]["full"] > 0 and first["slow"]["peak"] > 0
    advised = _stats(boot.steps["memplace-50"].output, work / "st-memplace")
    fast = [d for name, d in advised.items() if name.startswith("fast")]
    assert sum(d["peak"] for d in fast) <= capacity  # the plan's device and its spill room
    assert max(d["peak"] for d in fast) >= 4 * MIB  # the hot table
    assert advised["slow"]["peak"] >= 16 * MIB  # the log, never read, stays on the slow node


def test_advised_policy_names_the_guest_nodes(capacity_boot):
    try:
        import tomllib
    except ImportError:  # Python 3.10
        import tomli as tomllib

    doc = tomllib.loads(capacity_boot[2][50]["memplace"].read_text())
    assert doc["default"] == "slow"
    assert doc["devices"]["fast"]["nodes"] == [0] and doc["devices"]["slow"]["nodes"] == [1]
    assert any(r["device"].startswith("fast") for r in doc["rules"])
