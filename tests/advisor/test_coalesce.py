"""Fewer, shorter rules: siblings the model does not tell apart go where their group is,
only where that costs nothing and fits."""

from __future__ import annotations

import random

import numpy as np
import pytest

from memplace.advisor.coalesce import coalesce
from memplace.advisor.policy_writer import policy_text
from memplace.advisor.solver import Device, advise, build_problem, solve_milp
from memplace.advisor.device_specs import parse_device
from memplace.profiling.profile import Frame, Site

HELPER, ADD = Frame("/app", None, 0x10), Frame("/app", None, 0x20)


def dispatched(callers: int, hot: set[int], size: int = 32) -> list[Site]:
    """A helper called through one function from `callers` callers at one depth: the sites
    part only at the third frame. `hot`: the callers whose sites are read."""
    return [Site((HELPER, ADD, Frame("/app", None, 0x1000 + 16 * c)), allocations=100, bytes=size * 100,
                 peak_live_bytes=size, reads=10_000 if c in hot else 0, writes=0)
            for c in range(callers)]


def devices(capacity: int) -> list[Device]:
    return [Device("fast", read_latency=80, write_latency=80, capacity=capacity),
            Device("slow", read_latency=300, write_latency=300)]


def rules(advice) -> list[list[str]]:
    specs = [parse_device(f"fast=numa:0,latency=80ns,capacity={advice.devices[0].capacity}"),
             parse_device("slow=numa:0,latency=300ns")]
    text = policy_text(advice, specs, "test")
    return [line for line in text.splitlines() if line.startswith("site = ")]


def test_a_dispatch_whose_cold_callers_fit_gets_one_short_rule():
    sites = dispatched(64, hot={3, 17, 40})
    a = advise(sites, devices(64 * 32), default="slow")
    assert {p.device for p in a.placements} == {"fast"}
    assert rules(a) == ['site = ["/app+0x10"]']
    assert any("61 site(s) put beside" in n for n in a.notes)
    # the model's cost is the solver's: the cold sites cost nothing anywhere
    pb = build_problem(sites, devices(64 * 32), "latency", default=1)
    assign, optimal, _ = solve_milp(pb)
    assert a.cost == pytest.approx(pb.total(assign))


def test_a_dispatch_that_does_not_fit_keeps_its_deep_rules():
    sites = dispatched(64, hot={3, 17, 40})
    a = advise(sites, devices(3 * 32), default="slow")  # room for the hot ones only
    assert sorted(p.device for p in a.placements).count("fast") == 3
    assert len(rules(a)) == 3 and all(r.count("/app+0x") == 3 for r in rules(a))
    assert not any("put beside" in n for n in a.notes)


def test_a_move_that_would_cost_more_is_not_taken():
    # two hot callers and a third that is hot too but does not fit: the group stays split,
    # and no hot site is moved to the slow device to make one rule
    sites = dispatched(3, hot={0, 1, 2}, size=32)
    a = advise(sites, devices(64), default="slow")
    assert sorted(p.device for p in a.placements) == ["fast", "fast", "slow"]
    assert len(rules(a)) == 2


@pytest.mark.parametrize("seed", range(30))
def test_never_more_cost_never_over_capacity(seed):
    rng = random.Random(seed)
    prefixes = [(HELPER,), (HELPER, ADD), (Frame("/app", None, 0x30),)]
    sites = []
    for i in range(rng.randrange(2, 40)):
        base = rng.choice(prefixes)
        frames = base + tuple(Frame("/app", None, 0x2000 + rng.randrange(8) * 16) for _ in range(rng.randrange(0, 3)))
        size = rng.randrange(1, 200)
        live = [size if rng.random() < 0.5 else 0 for _ in range(4)]
        sites.append(Site(frames, allocations=1, bytes=size, peak_live_bytes=size, live=live,
                          reads=rng.choice([0, 0, rng.randrange(1, 10_000)]), writes=0))
    devs = devices(rng.randrange(50, 2_000))
    pb = build_problem(sites, devs, "latency", default=1)
    assign = np.array([rng.randrange(2) for _ in sites])
    while not pb.feasible(assign):  # a feasible start, as the solver gives
        assign[np.flatnonzero(assign == 0)[0]] = 1
    got, moved = coalesce([s.identity for s in sites], pb, assign)
    assert pb.feasible(got)
    assert pb.total(got) <= pb.total(assign) + 1e-9
    assert moved == int(np.count_nonzero(got != assign))
