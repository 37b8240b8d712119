"""Fewer, shorter rules: siblings the model does not tell apart go where their group is,
only where that costs nothing and fits; spills keep their room; the result does not
depend on the order of the profile's sites."""

from __future__ import annotations

import random
import re

import numpy as np
import pytest

from memplace.advisor import coalesce
from memplace.advisor.device_specs import parse_device
from memplace.advisor.policy_writer import policy_text
from memplace.advisor.solver import Device, advise, build_problem, solve_milp
from memplace.profiling.profile import Frame, Site

MiB = 1 << 20
HELPER, ADD = Frame("/app", None, 0x10), Frame("/app", None, 0x20)


def site(*offsets: int, size: int = 32, reads: int = 0, allocations: int = 100, blocks: bool = False) -> Site:
    """A site of `allocations` blocks of `size` bytes, one live at a time; blocks=True:
    all live at once (a peak of `size`, made of `allocations` blocks)."""
    return Site(tuple(Frame("/app", None, o) for o in offsets), allocations=allocations,
                bytes=size if blocks else size * allocations, peak_live_bytes=size, reads=reads, writes=0)


def dispatched(callers: int, hot: set[int], size: int = 32) -> list[Site]:
    """A helper called through one function from `callers` callers at one depth: the sites
    part only at the third frame. `hot`: the callers whose sites are read."""
    return [site(0x10, 0x20, 0x1000 + 16 * c, size=size, reads=10_000 if c in hot else 0)
            for c in range(callers)]


def two(capacity: int) -> list[Device]:
    return [Device("fast", read_latency=80, write_latency=80, capacity=capacity),
            Device("slow", read_latency=300, write_latency=300)]


def rules(advice, devices) -> list[tuple[tuple[str, ...], str]]:
    """The policy's rules as (frames, device), in the order written."""
    specs = [parse_device(f"{d.name}=numa:0,latency={d.read_latency:g}ns"
                          + (f",capacity={d.capacity}" if d.capacity else "")) for d in devices]
    text = policy_text(advice, specs, "test")
    found = re.findall(r'^site = (\[.*\])\ndevice = "([^"]+)"', text, re.M)
    return [(tuple(re.findall(r'"([^"]+)"', frames)), dev) for frames, dev in found]


def where(rule_list, s: Site, default: str) -> str:
    """Where the runtime sends site s under the rules: the first whose frames begin s's."""
    names = tuple(f"{f.module}+0x{f.offset:x}" for f in s.frames)
    return next((dev.removesuffix("-spill") for frames, dev in rule_list if names[:len(frames)] == frames), default)


@pytest.fixture
def without_pass(monkeypatch):
    def off():
        monkeypatch.setattr(coalesce, "to_default", lambda pb, a: np.array(a, copy=True))
        monkeypatch.setattr(coalesce, "unify", lambda ids, pb, a, reserved=None, fixed=frozenset(): np.array(a, copy=True))
    return off


def test_a_dispatch_whose_cold_callers_fit_gets_one_short_rule():
    sites = dispatched(64, hot={3, 17, 40})
    a = advise(sites, two(64 * 32), default="slow")
    assert {p.device for p in a.placements} == {"fast"}
    assert rules(a, two(64 * 32)) == [(("/app+0x10",), "fast")]
    assert any(n.startswith("61 site(s), 1.9KiB at peak, put on fast beside") for n in a.notes)
    moved = [p for p in a.placements if "one shorter rule" in p.reason]
    assert len(moved) == 61
    # the plan's modelled cost is the solver's: the cold sites cost nothing anywhere
    pb = build_problem(sites, two(64 * 32), "latency", default=1)
    assign, _, _ = solve_milp(pb)
    assert a.cost == pytest.approx(pb.total(assign))


def test_a_dispatch_that_does_not_fit_keeps_its_deep_rules():
    sites = dispatched(64, hot={3, 17, 40})
    a = advise(sites, two(3 * 32), default="slow")  # room for the hot ones only
    assert sorted(p.device for p in a.placements).count("fast") == 3
    got = rules(a, two(3 * 32))
    assert len(got) == 3 and all(len(frames) == 3 for frames, _ in got)
    assert not any("beside" in n for n in a.notes)


def test_a_move_that_would_cost_more_is_not_taken():
    # three hot callers, room for two: no hot site goes to the slow device to make one rule
    a = advise(dispatched(3, hot={0, 1, 2}), two(64), default="slow")
    assert sorted(p.device for p in a.placements) == ["fast", "fast", "slow"]
    assert len(rules(a, two(64))) == 2


def test_never_read_sites_go_to_the_default_not_to_a_limited_device():
    # nothing is read: every plan costs 0, and the one that needs no rule is everything on
    # the default device (the solver may leave some on the limited one)
    devs = [Device("mid", read_latency=150, write_latency=150, capacity=21 * MiB),
            Device("slow", read_latency=300, write_latency=300)]
    sites = [site(0x10, 0x100 + 16 * i, size=3 * MiB, allocations=1) for i in range(7)]
    a = advise(sites, devs, default="slow")
    assert {p.device for p in a.placements} == {"slow"}
    assert rules(a, devs) == []


def test_a_spill_keeps_its_room(without_pass):
    # a hot 10 MiB caller of a helper beside eight never-read 10 MiB ones, and a hot 200 MiB
    # array in 25 MiB blocks that does not fit whole: the room the plan leaves on fast is
    # the array's spill, not space for the cold siblings
    sites = [site(0x10, 0x100, size=10 * MiB, reads=10**8, allocations=1),
             *[site(0x10, 0x200 + 16 * c, size=10 * MiB, allocations=1) for c in range(8)],
             site(0x30, size=200 * MiB, reads=10**9, allocations=8, blocks=True)]
    devs = two(100 * MiB)
    a = advise(sites, devs, default="slow")
    without_pass()
    b = advise(sites, devs, default="slow")
    spill = lambda adv: [(p.site.frames, p.spill.capacity, p.spill.saving) for p in adv.placements if p.spill]
    assert spill(a) == spill(b) and spill(a)[0][1] == 90 * MiB
    assert a.peak["fast"] == b.peak["fast"] == 10 * MiB
    assert len(rules(a, devs)) <= len(rules(b, devs))


def test_a_spilled_site_keeps_its_group_apart(without_pass):
    # a hot 8 MiB site on mid spills into fast's room; its never-read siblings are not put
    # beside it on mid (its rule names fast-spill: that would only add rules)
    devs = [Device("fast", read_latency=50, write_latency=50, capacity=4 * MiB),
            Device("mid", read_latency=150, write_latency=150, capacity=20 * MiB),
            Device("slow", read_latency=300, write_latency=300)]
    sites = [site(0xA, 0xB, 0xC, size=8 * MiB, reads=10**7, allocations=8, blocks=True),
             site(0xA, 0xB, size=MiB, allocations=1), site(0xA, 0xB, 0xD, size=MiB, allocations=1)]
    a = advise(sites, devs, default="slow")
    without_pass()
    b = advise(sites, devs, default="slow")
    assert len(rules(a, devs)) <= len(rules(b, devs))
    assert any(p.spill for p in a.placements)


@pytest.mark.parametrize("seed", range(40))
def test_policy_sends_every_site_where_the_advice_says_whatever_the_order(seed):
    rng = random.Random(seed)
    helpers = [(0x10,), (0x10, 0x20), (0x30,), (0x40, 0x50)]
    sites = []
    for i in range(rng.randrange(3, 30)):
        frames = rng.choice(helpers) + tuple(0x1000 + 16 * rng.randrange(6) for _ in range(rng.randrange(0, 3)))
        if any(s.identity == tuple(("/app", o) for o in frames) for s in sites):
            continue
        sites.append(site(*frames, size=rng.randrange(1, 64) * 1024, allocations=rng.randrange(1, 8),
                          reads=rng.choice([0, 0, rng.randrange(1, 10**6)])))
    devs = [Device("fast", read_latency=80, write_latency=80, capacity=rng.randrange(64, 1024) * 1024),
            Device("slow", read_latency=300, write_latency=300)]
    a = advise(sites, devs, default="slow")
    got = rules(a, devs)
    for p in a.placements:
        assert where(got, p.site, a.default) == p.device
    b = advise(list(reversed(sites)), devs, default="slow")
    assert sorted(rules(b, devs)) == sorted(got)


@pytest.mark.parametrize("seed", range(30))
def test_never_more_cost_never_over_capacity(seed):
    rng = random.Random(seed)
    prefixes = [(HELPER,), (HELPER, ADD), (Frame("/app", None, 0x30),)]
    sites = []
    for _ in range(rng.randrange(2, 40)):
        base = rng.choice(prefixes)
        frames = base + tuple(Frame("/app", None, 0x2000 + rng.randrange(8) * 16) for _ in range(rng.randrange(0, 3)))
        size = rng.randrange(1, 200)
        live = [size if rng.random() < 0.5 else 0 for _ in range(4)]
        sites.append(Site(frames, allocations=1, bytes=size, peak_live_bytes=size, live=live,
                          reads=rng.choice([0, 0, rng.randrange(1, 10_000)]), writes=0))
    pb = build_problem(sites, two(rng.randrange(50, 2_000)), "latency", default=1)
    assign = np.array([rng.randrange(2) for _ in sites])
    while not pb.feasible(assign):  # a feasible start, as the solver gives
        assign[np.flatnonzero(assign == 0)[0]] = 1
    got = coalesce.unify([s.identity for s in sites], pb, coalesce.to_default(pb, assign))
    assert pb.feasible(got)
    assert pb.total(got) <= pb.total(assign) + 1e-9
    assert np.all(pb.cost[np.arange(pb.n), got] <= pb.cost[np.arange(pb.n), assign] + 1e-9)
