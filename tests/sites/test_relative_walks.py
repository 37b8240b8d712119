"""A call chain met again at another depth of the stack (an interpreter's recursion, a
solver's) is the same walk at other addresses: the runtime keeps walks by their words'
offsets from sp (saved frame pointers as offsets from sp too) and does not unwind the
chain again at each new depth. Counts stay exact, with frame pointers and without."""

from __future__ import annotations

import json
import subprocess

import pytest

import sites_support as support
from sites_support import memplace

SOURCE = support.PROGRAMS / "depths.c"
ROUNDS = 6
DEPTHS = 120
CHAINS = {("a", "x"): "fast", ("b", "x"): "pmem", ("a", "y"): "system", ("b", "y"): "fast"}
NO_FP = ["-O2", "-fomit-frame-pointer"]
FP = ["-O2", "-fno-omit-frame-pointer"]


def frame(kind: str, name: str) -> str:
    return support.marked_frame(kind, name, SOURCE, support.PROGRAMS / "four_chains.h")


def run(tmp_path, flags, call):
    exe = support.build(tmp_path, SOURCE, flags)
    policy = support.chains_policy(tmp_path, {
        f"{caller}{outer}": ([frame('SITE', 'make'), frame('CALLER', caller),
                              frame('OUTER', outer)], device)
        for (caller, outer), device in CHAINS.items()})
    stats = tmp_path / "stats.json"
    how = ["malloc", "realloc"].index(call)
    r = memplace("run", "--policy", str(policy), "--stats", str(stats), "--", str(exe),
                 str(ROUNDS), str(DEPTHS), str(how))
    assert r.returncode == 0, r.stderr
    # bare: x-a 24^'a', x-b 25^'b', y-a (26^'a')+1, y-b (27^'b')+1 per round and depth
    per = (24 ^ 97) + (25 ^ 98) + (26 ^ 97) + 1 + (27 ^ 98) + 1
    assert r.stdout == f"sum={ROUNDS * DEPTHS * per}\n"
    doc = json.loads(stats.read_text())
    calls = ROUNDS * DEPTHS
    hits = {rule["name"]: rule["hits"] for rule in doc["totals"]["rules"]}
    assert hits == {"ax": calls, "bx": calls, "ay": calls, "by": calls}, hits
    devices = {d["name"]: d["allocations"] for d in doc["totals"]["devices"]}
    assert devices["fast"] == 2 * calls and devices["pmem"] == calls, devices
    return doc["totals"]["unwinds"]


FLAGS = [NO_FP, FP]


@pytest.mark.parametrize("flags", FLAGS, ids=[" ".join(f) for f in FLAGS])
@pytest.mark.parametrize("call", ["malloc", "realloc"])
def test_a_chain_met_at_many_depths_is_walked_about_once(tmp_path, flags, call):
    """4 chains at 120 depths, 6 rounds: 2,880 allocations from 480 starts, more than the
    walk cache holds. Without relative walks each start was unwound at least once (480),
    and again each round it had been pushed out (2,660-2,774 here); now each chain about
    once (5). realloc takes the general path, which finds relative walks too."""
    unwinds = run(tmp_path, flags, call)
    assert unwinds < 40, unwinds


TWO_LEVELS = support.PROGRAMS / "two_levels.c"


@pytest.mark.parametrize("flags", FLAGS, ids=[" ".join(f) for f in FLAGS])
@pytest.mark.parametrize("order", [0, 1])
def test_a_dispatch_under_a_dispatch_is_walked_once_per_chain(tmp_path, flags, order):
    """Sixteen callers under five outer functions, all at one depth: 80 chains that share
    malloc's return address, stack and frame pointers. The walk cache's crowded start
    parts them at one word, which many of them share, so every call walked (80,001 walks
    for 80,000 calls). Relative walks are kept by the chain's first two return addresses
    (not by saved frame pointers, alike in all 80): one walk per chain (81)."""
    exe = support.build(tmp_path, TWO_LEVELS, flags)
    site = f"two_levels.c:{support.marker_line(TWO_LEVELS, 'SITE', 'make')}"
    rules = {f"c{k}d{d}": ([site, f"two_levels.c:{support.marker_line(TWO_LEVELS, 'CALLER', str(k))}",
                            f"two_levels.c:{support.marker_line(TWO_LEVELS, 'OUTER', str(d))}"],
                           "fast" if (k + d) % 2 == 0 else "pmem")
             for k in range(16) for d in range(5)}
    policy = support.chains_policy(tmp_path, rules)
    stats = tmp_path / "stats.json"
    rounds = 1000
    r = memplace("run", "--policy", str(policy), "--stats", str(stats), "--", str(exe), str(rounds),
                 str(order))
    assert r.returncode == 0, r.stderr
    assert r.stdout == f"sum={rounds * sum(((24 + k) ^ (k + 1)) + d for k in range(16) for d in range(5))}\n"
    doc = json.loads(stats.read_text())
    hits = {rule["name"]: rule["hits"] for rule in doc["totals"]["rules"]}
    assert hits == {name: rounds for name in rules}, hits
    devices = {d["name"]: d["allocations"] for d in doc["totals"]["devices"]}
    assert devices["fast"] == devices["pmem"] == 40 * rounds, devices
    assert doc["totals"]["unwinds"] < 400, doc["totals"]["unwinds"]


VLA = support.PROGRAMS / "vla_depths.c"
# (how, mode) of vla_depths.c: see its header
CASES = {"vla-in-make": (0, 1), "vla-in-callers-calloc": (1, 2), "vla-between-realloc": (2, 4),
         "vla-everywhere-longjmp-aligned": (3, 1 | 2 | 4 | 8), "threads-vla-between": (0, 4 | 16),
         "coroutine-on-own-stack-vla": (0, 1 | 4 | 32),
         "timer-handler-vla-between": (0, 4 | 64), "timer-handler-longjmp-vla-calloc": (1, 1 | 2 | 4 | 8 | 64)}
TIMER = 64


@pytest.mark.parametrize("flags", FLAGS, ids=[" ".join(f) for f in FLAGS])
@pytest.mark.parametrize("case", list(CASES))
def test_chains_with_frames_of_changing_size_hit_exactly_their_rules(tmp_path, flags, case):
    """Frames whose size changes from call to call (variable-length arrays in the
    allocating function, its callers, or the recursion between) move fp - sp and the
    chain's words against sp: a relative walk may then miss, never stand for another
    chain. Each chain's rule is hit exactly as often as the program says it called it,
    through longjmp, threads whose blocks are reused, a coroutine's stack, and a timer's
    handler calling the chains from wherever it lands (its walks cross a signal frame
    only past the rules' frames; its allocations while the thread is inside placement
    are matched without the caches). The handler's chains go to arenas only: one to the
    next allocator could enter glibc's malloc while the program is inside it."""
    how, mode = CASES[case]
    chains = {chain: "pmem" if device == "system" and mode & TIMER else device
              for chain, device in CHAINS.items()}
    exe = support.build(tmp_path, VLA, [*flags, "-pthread"])
    site = f"vla_depths.c:{support.marker_line(VLA, 'SITE', 'make')}"
    policy = support.chains_policy(tmp_path, {
        f"{caller}{outer}": ([site, f"vla_depths.c:{support.marker_line(VLA, 'CALLER', caller)}",
                              f"vla_depths.c:{support.marker_line(VLA, 'OUTER', outer)}"], device)
        for (caller, outer), device in chains.items()})
    stats = tmp_path / "stats.json"
    argv = [str(exe), "30" if mode & TIMER else "3", "60", str(how)]  # the timer: ~100+ handler calls
    r = memplace("run", "--policy", str(policy), "--stats", str(stats), "--", *argv, str(mode))
    assert r.returncode == 0, r.stderr
    # the bare run without the timer: a handler's malloc inside glibc's is the program's bug
    bare = subprocess.run([*argv, str(mode & ~TIMER)], capture_output=True, text=True, timeout=60)
    same = r.stdout.splitlines()[0] == bare.stdout.splitlines()[0] if mode & TIMER else r.stdout == bare.stdout
    assert same, (r.stdout, bare.stdout)
    counts = [int(c) for c in r.stdout.split("counts ")[1].split()]
    doc = json.loads(stats.read_text())
    hits = {rule["name"]: rule["hits"] for rule in doc["totals"]["rules"]}
    assert hits == dict(zip(["ax", "bx", "ay", "by"], counts)), (hits, counts)
    if not mode & TIMER:  # (a handler's allocation inside placement goes to the next allocator)
        devices = {d["name"]: d["allocations"] for d in doc["totals"]["devices"]}
        assert devices["fast"] == counts[0] + counts[3] and devices["pmem"] == counts[1], devices
