"""The solver: optimal on small instances, capacities always honoured, lifetimes used."""

from __future__ import annotations

import random

import numpy as np
import pytest

from memplace.advisor.solver import Device, advise, brute_force, build_problem, solve_greedy, solve_milp
from memplace.errors import UserError
from memplace.profiling.profile import Frame, Site


def random_instance(rng: random.Random, n: int, m: int, windows: int):
    sites = []
    for i in range(n):
        size = rng.randrange(1, 100)
        live = None
        if windows:
            a = rng.randrange(windows)
            b = rng.randrange(a, windows) + 1
            live = [size if a <= w < b else 0 for w in range(windows)]
        sites.append(Site((Frame("/app", None, 0x100 + i),), allocations=1, bytes=size, peak_live_bytes=size,
                          reads=rng.randrange(0, 10_000), writes=rng.randrange(0, 5_000), live=live))
    total = sum(s.peak_live_bytes for s in sites)
    devices = []
    for j in range(m - 1):  # limited fast devices, then one unlimited slow one
        lat = rng.uniform(50, 150)
        devices.append(Device(f"fast{j}", read_latency=lat, write_latency=lat * rng.uniform(1, 2),
                              capacity=rng.randrange(1, max(2, total // 2))))
    devices.append(Device("slow", read_latency=300, write_latency=400))
    return sites, devices


@pytest.mark.parametrize("seed", range(40))
def test_milp_matches_brute_force_and_respects_capacities(seed):
    rng = random.Random(seed)
    n, m, windows = rng.randrange(2, 7), rng.randrange(2, 4), rng.choice([0, 0, 3, 5])
    sites, devices = random_instance(rng, n, m, windows)
    pb = build_problem(sites, devices, "latency", default=m - 1)
    best_assign, best = brute_force(pb)
    got = solve_milp(pb)
    assert got is not None
    assign, optimal, _ = got
    assert optimal
    assert pb.feasible(assign)
    assert pb.total(assign) == pytest.approx(best, rel=1e-9, abs=1e-9)
    # The public entry point agrees, and greedy is never better than the optimum.
    a = advise(sites, devices)
    assert a.cost == pytest.approx(best, rel=1e-9, abs=1e-9)
    g = solve_greedy(pb)
    assert pb.feasible(g)
    assert pb.total(g) >= best - 1e-6
    # Capacities, recomputed from the placements themselves (not from the solver's loads).
    for d in devices:
        if d.capacity is not None:
            placed = [p.site for p in a.placements if p.device == d.name]
            if windows:
                per_window = np.sum([p.live for p in placed], axis=0) if placed else np.zeros(1)
                assert per_window.max() <= d.capacity
            else:
                assert sum(s.peak_live_bytes for s in placed) <= d.capacity


def test_greedy_can_be_worse_than_exact():
    """The knapsack case value density gets wrong: the one big hot object is worth more
    than the slightly denser small one that blocks it."""
    small = Site((Frame("/app", None, 1),), bytes=11, peak_live_bytes=11, reads=1100, writes=0)
    big = Site((Frame("/app", None, 2),), bytes=100, peak_live_bytes=100, reads=9000, writes=0)
    devices = [Device("fast", read_latency=10, capacity=100), Device("slow", read_latency=100)]
    exact = advise([small, big], devices, method="milp")
    greedy = advise([small, big], devices, method="greedy")
    assert {p.site.bytes: p.device for p in exact.placements} == {100: "fast", 11: "slow"}
    assert {p.site.bytes: p.device for p in greedy.placements} == {11: "fast", 100: "slow"}
    assert exact.cost < greedy.cost


def _two_phase_sites(with_timeline: bool):
    # Two 60-byte objects: one live in the first half of the run, one in the second.
    first = Site((Frame("/app", None, 1),), bytes=60, peak_live_bytes=60, reads=6000, writes=0,
                 live=[60, 60, 0, 0] if with_timeline else None)
    second = Site((Frame("/app", None, 2),), bytes=60, peak_live_bytes=60, reads=5000, writes=0,
                  live=[0, 0, 60, 60] if with_timeline else None)
    return [first, second]


def test_lifetimes_let_non_overlapping_sites_share_a_device():
    devices = [Device("fast", read_latency=10, capacity=100), Device("slow", read_latency=100)]
    aware = advise(_two_phase_sites(True), devices)
    blind = advise(_two_phase_sites(False), devices)
    assert [p.device for p in aware.placements] == ["fast", "fast"]
    assert sorted(p.device for p in blind.placements) == ["fast", "slow"]
    assert aware.peak["fast"] == 60
    assert aware.cost < blind.cost


def test_overlapping_timelines_still_limited():
    a = Site((Frame("/app", None, 1),), bytes=60, peak_live_bytes=60, reads=6000, live=[60, 60, 0])
    b = Site((Frame("/app", None, 2),), bytes=60, peak_live_bytes=60, reads=5000, live=[0, 60, 60])
    devices = [Device("fast", read_latency=10, capacity=100), Device("slow", read_latency=100)]
    adv = advise([a, b], devices)
    assert sorted(p.device for p in adv.placements) == ["fast", "slow"]


def test_large_random_instances_never_exceed_capacity():
    rng = random.Random(7)
    sites, devices = random_instance(rng, 3000, 4, 8)
    for method in ("auto", "greedy"):
        a = advise(sites, devices, method=method, time_limit=2)
        for d in devices:
            if d.capacity is not None:
                placed = [p.site.live for p in a.placements if p.device == d.name]
                assert not placed or np.sum(placed, axis=0).max() <= d.capacity


def test_reasons_name_the_device_and_why():
    hot = Site((Frame("/app", None, 1),), bytes=80, peak_live_bytes=80, reads=80_000)
    warm = Site((Frame("/app", None, 2),), bytes=80, peak_live_bytes=80, reads=8_000)
    idle = Site((Frame("/app", None, 3),), bytes=8, peak_live_bytes=8, reads=0, writes=0)
    devices = [Device("hbm", read_latency=80, capacity=100), Device("ddr", read_latency=200)]
    a = advise([hot, warm, idle], devices)
    by = {p.site.frames[0].offset: p for p in a.placements}
    assert by[1].device == "hbm" and "saves" in by[1].reason and "hbm" in by[1].reason
    assert by[2].device == "ddr" and "hbm full" in by[2].reason
    assert by[3].device == "ddr" and "no accesses" in by[3].reason


def test_every_device_limited_is_a_user_error():
    s = [Site((Frame("/app", None, 1),), bytes=8, peak_live_bytes=8, reads=1)]
    with pytest.raises(UserError, match="every device has a capacity"):
        advise(s, [Device("a", read_latency=1, capacity=10)])
    with pytest.raises(UserError, match="no latency"):
        advise(s, [Device("a")])
