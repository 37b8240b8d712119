"""Advisor benchmark: time to advise and modelled cost, memplace (MILP) vs greedy value density.

Generated profiles of 100, 1,000 and 10,000 sites over 2-4 devices, two families:
  random    sizes log-uniform 64 B..64 MiB, access density log-uniform, lifetimes random
            (32-window timelines), fast devices holding 5-20% of the data;
  knapsack  few big dense objects against many slightly denser small ones: the case where
            filling by value density leaves the fast tier badly used.
The greedy baseline is ecoHMEM's method (sites by cost saved per byte, each onto the
fastest device where it fits, lifetime-aware). Every configuration is run REPEATS times
alternating the two methods; medians are printed, with cost and time ratios.

    python bench/advisor/run.py            # prints a table; exits 1 if 10k x 4 takes >= 5 s
"""

from __future__ import annotations

import os
import random
import statistics
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "src"))

from memplace.advisor.solver import Device, advise  # noqa: E402
from memplace.profiling.profile import Frame, Site  # noqa: E402

REPEATS = 3
WINDOWS = 32
LATENCIES = [(80, 90), (130, 160), (250, 400), (400, 900)]  # HBM, DDR, CXL, PMEM-like (read, write) ns


def random_profile(n: int, m: int, seed: int):
    rng = random.Random(seed)
    sites = []
    for i in range(n):
        size = int(2 ** rng.uniform(6, 26))
        acc = int(size * 2 ** rng.uniform(-4, 8))
        a = rng.randrange(WINDOWS)
        b = rng.randrange(a, WINDOWS) + 1
        sites.append(Site((Frame("/bench/app", None, 0x1000 + 16 * i),), allocations=1, bytes=size,
                          peak_live_bytes=size, reads=acc * 3 // 4, writes=acc // 4,
                          live=[size if a <= w < b else 0 for w in range(WINDOWS)]))
    return sites, devices_for(sites, m, rng)


def knapsack_profile(n: int, m: int, seed: int):
    rng = random.Random(seed)
    sites = []
    for i in range(n):
        if i % 10 == 0:  # big, dense
            size, density = rng.randrange(40, 60) << 20, rng.uniform(90, 100)
        else:  # small, a little denser
            size, density = rng.randrange(2, 8) << 20, rng.uniform(100, 110)
        acc = int(size * density)
        sites.append(Site((Frame("/bench/app", None, 0x1000 + 16 * i),), allocations=1, bytes=size,
                          peak_live_bytes=size, reads=acc, writes=0))
    return sites, devices_for(sites, m, rng)


def devices_for(sites, m: int, rng: random.Random):
    total = sum(s.peak_live_bytes for s in sites)
    devs = []
    for j in range(m - 1):
        r, w = LATENCIES[j]
        devs.append(Device(f"tier{j}", read_latency=r, write_latency=w, capacity=int(total * rng.uniform(0.05, 0.2))))
    r, w = LATENCIES[m - 1]
    devs.append(Device(f"tier{m - 1}", read_latency=r, write_latency=w))
    return devs


def main() -> int:
    advise(*random_profile(20, 2, 0))  # import scipy and warm caches outside the timings
    rows = []
    print(f"{'family':9} {'sites':>6} {'dev':>3} {'memplace s':>10} {'greedy s':>9} {'time x':>7} "
          f"{'cost ratio':>11} {'gap bound':>10}  method")
    over_budget = False
    for family, gen in (("random", random_profile), ("knapsack", knapsack_profile)):
        for n in (100, 1000, 10000):
            for m in (2, 3, 4):
                sites, devs = gen(n, m, seed=n * 10 + m)
                t_mp, t_gr, ratio, gaps, methods = [], [], [], [], set()
                for _ in range(REPEATS):
                    t0 = time.perf_counter()
                    a = advise(sites, devs)
                    t_mp.append(time.perf_counter() - t0)
                    t0 = time.perf_counter()
                    g = advise(sites, devs, method="greedy")
                    t_gr.append(time.perf_counter() - t0)
                    ratio.append(a.cost / g.cost if g.cost else 1.0)
                    gaps.append(a.gap)
                    methods.add(a.method)
                tm, tg = statistics.median(t_mp), statistics.median(t_gr)
                gap = [x for x in gaps if x is not None]
                print(f"{family:9} {n:>6} {m:>3} {tm:>10.3f} {tg:>9.3f} {tm / tg:>7.1f} "
                      f"{statistics.median(ratio):>11.5f} {(f'{100 * max(gap):.3f}%' if gap else '-'):>10}  "
                      f"{'/'.join(sorted(methods))}")
                rows.append((family, n, m, tm))
                if n == 10000 and m == 4 and tm >= 5.0:
                    over_budget = True
    print("cost ratio = memplace cost / greedy cost (lower is better); gap bound = distance to the proven")
    print("lower bound (0 = optimal); time x = memplace time / greedy time. Medians of", REPEATS, "runs.")
    worst = max(t for f, n, m, t in rows if n == 10000 and m == 4)
    print(f"10,000 sites x 4 devices: {worst:.2f} s (target < 5 s): {'FAIL' if over_budget else 'ok'}")
    return 1 if over_budget else 0


if __name__ == "__main__":
    sys.exit(main())
