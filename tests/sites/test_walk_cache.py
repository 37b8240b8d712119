"""The placed fast path remembers the walk that found a multi-frame site, keyed by where
the walk started: one helper called in alternation by two callers from the same stack
depth (same return address, stack and frame pointers at malloc), each by two outer
functions, must still be told apart on every call, the walks' other stack words decide;
and told apart from the cache, not by walking again each time."""

from __future__ import annotations

import json
import platform
import subprocess

import pytest

import sites_support as support
from sites_support import memplace

SOURCE = support.PROGRAMS / "same_depth.c"
ROUNDS = 3000
CHAINS = {("a", "x"): "fast", ("b", "x"): "pmem", ("a", "y"): "system", ("b", "y"): "fast"}


def frame(kind: str, name: str) -> str:
    return support.marked_frame(kind, name, SOURCE, support.PROGRAMS / "four_chains.h")


FLAGS = [["-O2", "-fno-omit-frame-pointer"], ["-O2", "-fomit-frame-pointer"]]


@pytest.mark.parametrize("flags", FLAGS, ids=[" ".join(f) for f in FLAGS])
@pytest.mark.parametrize("frames", [2, 3])
def test_alternating_callers_at_one_depth_each_hit_their_own_rule(tmp_path, flags, frames):
    run_chains(tmp_path, flags, frames, "malloc")


@pytest.mark.parametrize("call", ["realloc", "aligned_alloc"])
def test_realloc_and_aligned_sites_are_found_from_the_walk_cache_too(tmp_path, call):
    """realloc and aligned allocations take the general path (a realloc can move a block
    between devices); they must find their site in the same caches as malloc, not walk
    on every call (CPython with PYTHONMALLOC=malloc walked for 8% of its allocations)."""
    run_chains(tmp_path, FLAGS[1], 3, call)


def run_chains(tmp_path, flags, frames, call):
    exe = support.build(tmp_path, SOURCE, flags)
    policy = support.chains_policy(tmp_path, {
        f"{caller}{outer}": ([frame('SITE', 'make'), frame('CALLER', caller),
                              frame('OUTER', outer)][:frames], device)
        for (caller, outer), device in CHAINS.items()})
    stats = tmp_path / "stats.json"
    how = ["malloc", "realloc", "aligned_alloc"].index(call)
    r = memplace("run", "--policy", str(policy), "--stats", str(stats), "--", str(exe),
                 str(ROUNDS), str(how))
    assert r.returncode == 0, r.stderr
    # bare: x-a 24^'a', x-b 25^'b', y-a (26^'a')+1, y-b (27^'b')+1 per round
    assert r.stdout == f"sum={ROUNDS * ((24 ^ 97) + (25 ^ 98) + (26 ^ 97) + 1 + (27 ^ 98) + 1)}\n"
    doc = json.loads(stats.read_text())
    hits = {rule["name"]: rule["hits"] for rule in doc["totals"]["rules"]}
    if frames == 3:
        assert hits == {"ax": ROUNDS, "bx": ROUNDS, "ay": ROUNDS, "by": ROUNDS}, hits
        expected = {"fast": 2 * ROUNDS, "pmem": ROUNDS}
    else:  # two frames cannot tell x from y: the first rule of each caller takes both
        assert hits == {"ax": 2 * ROUNDS, "bx": 2 * ROUNDS, "ay": 0, "by": 0}, hits
        expected = {"fast": 2 * ROUNDS, "pmem": 2 * ROUNDS}
    # each chain is walked once and its walk remembered, not walked on every call: the
    # four chains' walks are kept side by side, and where there are no frame pointers the
    # register (holding the loop's data in main) is not part of a walk that never read it
    assert doc["totals"]["unwinds"] < 50, doc["totals"]["unwinds"]
    devices = {d["name"]: d for d in doc["totals"]["devices"]}
    for name, allocations in expected.items():
        assert devices[name]["allocations"] == allocations, (name, devices[name])


@pytest.mark.parametrize("flags", FLAGS, ids=[" ".join(f) for f in FLAGS])
def test_chains_that_differ_only_in_their_fourth_frame_hit_their_own_rule(tmp_path, flags):
    """Four-frame rules: with frame pointers such a walk reads six stack words, and the
    two chains differ only in the last (the fast path compares the first four without a
    loop, the others after them)."""
    exe = support.build(tmp_path, SOURCE, flags)
    frames = [frame('SITE', 'make'), frame('CALLER', 'a'),
              frame('OUTER', 'x')]
    policy = support.chains_policy(tmp_path, {top: ([*frames, frame('TOP', top)], device)
                                      for top, device in (("p", "fast"), ("q", "pmem"))})
    stats = tmp_path / "stats.json"
    r = memplace("run", "--policy", str(policy), "--stats", str(stats), "--", str(exe),
                 str(ROUNDS), "0", "1")
    assert r.returncode == 0, r.stderr
    assert r.stdout == f"sum={ROUNDS // 2 * (2 * (24 ^ 97) + 2 * (24 ^ 97) + 1)}\n"
    doc = json.loads(stats.read_text())
    hits = {rule["name"]: rule["hits"] for rule in doc["totals"]["rules"]}
    assert hits == {"p": ROUNDS // 2, "q": ROUNDS // 2}, hits
    assert doc["totals"]["unwinds"] < 50, doc["totals"]["unwinds"]
    devices = {d["name"]: d["allocations"] for d in doc["totals"]["devices"]}
    assert devices["fast"] == devices["pmem"] == ROUNDS // 2, devices


@pytest.mark.skipif(platform.machine() != "x86_64", reason="the program sets rbp (x86_64)")
def test_saved_registers_holding_data_do_not_key_the_walk(tmp_path):
    """Without frame pointers, rbp is a register like any other: the frames between malloc
    and the program's outer function save it, holding the program's data (a new value on
    every call), and a walk reads those saved words. No frame depends on them, so the walk
    must be remembered all the same, not redone on every call."""
    source = support.PROGRAMS / "saved_rbp.c"
    exe = support.build(tmp_path, source, ["-O2", "-fomit-frame-pointer"])
    site = [f"saved_rbp.c:{support.marker_line(source, kind, name)}"
            for kind, name in (("SITE", "make"), ("CALLER", "mid"), ("OUTER", "outer"))]
    policy = tmp_path / "policy.toml"
    quoted = ", ".join(f'"{s}"' for s in site)
    policy.write_text(f'version = 1\n[devices.fast]\nkind = "numa"\nnodes = [0]\n'
                      f'[[rules]]\nname = "chain"\nsite = [{quoted}]\ndevice = "fast"\n')
    stats = tmp_path / "stats.json"
    rounds = 10000
    r = memplace("run", "--policy", str(policy), "--stats", str(stats), "--", str(exe), str(rounds))
    assert r.returncode == 0, r.stderr
    bare = subprocess.run([str(exe), str(rounds)], capture_output=True, text=True, check=True)
    assert r.stdout == bare.stdout
    doc = json.loads(stats.read_text())
    assert {rule["name"]: rule["hits"] for rule in doc["totals"]["rules"]} == {"chain": rounds}
    assert doc["totals"]["unwinds"] < 50, doc["totals"]["unwinds"]


def test_report_says_when_many_sites_took_a_whole_walk(tmp_path):
    """`memplace report --stats` notes it when a good share of the allocations needed a
    whole stack walk (a cost the user can act on: rules of fewer frames), and not when
    the caches held the chains."""
    stats = {"version": 2, "command": ["prog"], "policy": None, "returncode": 0, "processes": [],
             "totals": {"devices": [{"name": "fast", "allocations": 100_000, "bytes": 800_000,
                                     "peak": 4096, "fallbacks": {"full": 0}}],
                        "rules": [], "unwinds": 40_000}}
    path = tmp_path / "stats.json"
    path.write_text(json.dumps(stats))
    r = memplace("report", "--stats", str(path))
    assert r.returncode == 0, r.stderr
    assert "40,000 of 100,000 allocations (40%)" in " ".join(r.stdout.split()), r.stdout
    stats["totals"]["unwinds"] = 12
    path.write_text(json.dumps(stats))
    r = memplace("report", "--stats", str(path))
    assert r.returncode == 0 and "whole stack walk" not in r.stdout, r.stdout


@pytest.mark.parametrize("reuse", [0, 1], ids=["block kept", "block reused"])
def test_hits_counted_in_a_threads_walks_survive_its_end(tmp_path, reuse):
    """Hits found through the walk cache are counted in the walk and reach the rule's
    totals when it is evicted or at exit; a thread that ended leaves its block to the
    next thread, which must not wipe those hits with the walks."""
    source = support.PROGRAMS / "thread_reuse.c"
    exe = support.build(tmp_path, source, ["-O2", "-pthread"])
    policy = tmp_path / "policy.toml"
    site = [f"thread_reuse.c:{support.marker_line(source, 'SITE', 'make')}",
            f"thread_reuse.c:{support.marker_line(source, 'CALLER', 'c')}"]
    policy.write_text(f"""version = 1
[devices.fast]
kind = "numa"
nodes = [0]
[[rules]]
name = "chain"
site = ["{site[0]}", "{site[1]}"]
device = "fast"
""")
    stats = tmp_path / "stats.json"
    r = memplace("run", "--policy", str(policy), "--stats", str(stats), "--", str(exe), "1000", str(reuse))
    assert r.returncode == 0, r.stderr
    doc = json.loads(stats.read_text())
    assert {rule["name"]: rule["hits"] for rule in doc["totals"]["rules"]} == {"chain": 1000}
    assert doc["totals"]["unwinds"] < 50, doc["totals"]["unwinds"]


DISPATCH = support.PROGRAMS / "dispatch.c"


@pytest.mark.parametrize("flags", FLAGS, ids=[" ".join(f) for f in FLAGS])
@pytest.mark.parametrize("frames", [2, 3])
def test_sixteen_callers_at_one_depth_each_hit_their_own_rule_from_the_cache(tmp_path, flags, frames):
    """A dispatch through a table of sixteen callers of one allocating helper: more walks
    from one start than a set keeps, so the start is crowded and its walks are kept by the
    word where they part. Before that, every call took a whole walk (48,001 walks here;
    6.0x the bare program's instructions on bench/sites' dispatch workload)."""
    run_dispatch(tmp_path, flags, frames, "malloc")


@pytest.mark.parametrize("call", ["realloc", "aligned_alloc"])
def test_a_crowded_start_serves_realloc_from_the_cache_too(tmp_path, call):
    """realloc and aligned allocations take the general path, which must key a crowded
    start's walks as the fast path does. (The program's realloc is of a NULL the compiler does not
    know: of a known NULL gcc made a malloc, and this test passed through malloc's path.)"""
    run_dispatch(tmp_path, FLAGS[1], 3, call)


@pytest.mark.parametrize("call", ["realloc", "aligned_alloc"])
def test_a_crowded_start_serves_the_general_path_from_the_cache_after_modules_change(tmp_path, call):
    """A library loaded (and a new site met) makes the rules' addresses anew, so the
    walks made before no longer count; the crowded start's hint does (it names a stack
    word, not a site). With the mark of an earlier design, which counted as a walk, the
    general path had to put it back as the fast path did: it did not, so every later
    realloc or aligned allocation of the dispatch took a whole walk (24,000 walks for
    48,000 calls, the reload at half way)."""
    run_dispatch(tmp_path, FLAGS[1], 3, call, reload=ROUNDS // 2)


def run_dispatch(tmp_path, flags, frames, call, reload=None):
    exe = support.build(tmp_path, DISPATCH, flags)
    site = f"dispatch.c:{support.marker_line(DISPATCH, 'SITE', 'make')}"
    dispatch_line = next(i for i, t in enumerate(DISPATCH.read_text().splitlines(), 1)
                         if "/* DISPATCH */" in t)
    rules = {}
    for k in range(16):
        chain = [site, f"dispatch.c:{support.marker_line(DISPATCH, 'CALLER', str(k))}",
                 f"dispatch.c:{dispatch_line}"][:frames]
        rules[f"c{k}"] = (chain, "fast" if k % 2 == 0 else "pmem")
    policy = support.chains_policy(tmp_path, rules)
    stats = tmp_path / "stats.json"
    r = memplace("run", "--policy", str(policy), "--stats", str(stats), "--", str(exe), str(ROUNDS),
                 str(["malloc", "realloc", "aligned_alloc"].index(call)),
                 *([] if reload is None else [str(reload)]))
    assert r.returncode == 0, r.stderr
    assert r.stdout == f"sum={ROUNDS * sum((24 + k) ^ (k + 1) for k in range(16))}\n"
    doc = json.loads(stats.read_text())
    hits = {rule["name"]: rule["hits"] for rule in doc["totals"]["rules"]}
    assert hits == {f"c{k}": ROUNDS for k in range(16)}, hits
    devices = {d["name"]: d["allocations"] for d in doc["totals"]["devices"]}
    assert devices["fast"] == devices["pmem"] == 8 * ROUNDS, devices
    # each chain walked about once (21 walks here: 16, then again the four the crowded
    # set held; as many again after a reload), not on each of its 3000 calls (48,001 walks
    # before)
    assert doc["totals"]["unwinds"] < (50 if reload is None else 100), doc["totals"]["unwinds"]


TWO_DEPTHS = support.PROGRAMS / "two_depths.c"


@pytest.mark.parametrize("flags", FLAGS, ids=[" ".join(f) for f in FLAGS])
def test_two_dispatches_that_pick_one_set_are_both_crowded(tmp_path, flags):
    """One dispatch at two stack depths, called in turn, in 600 steps of two new depths
    each: in about nine steps the two starts pick one walk-cache set. Each must still be
    recorded as crowded there. With one record per set, recorded only when the set was
    full of one start's walks, the two kept each other from it and every call of those
    steps took a whole walk (24,000-33,000 walks in all; about 12,000 now, most the
    steps' new starts)."""
    exe = support.build(tmp_path, TWO_DEPTHS, flags)
    site = f"two_depths.c:{support.marker_line(TWO_DEPTHS, 'SITE', 'make')}"
    policy = support.chains_policy(tmp_path, {
        f"c{k}": ([site, f"two_depths.c:{support.marker_line(TWO_DEPTHS, 'CALLER', str(k))}"],
                  "fast" if k % 2 == 0 else "pmem") for k in range(8)})
    stats = tmp_path / "stats.json"
    rounds, pads = 100, 600
    r = memplace("run", "--policy", str(policy), "--stats", str(stats), "--", str(exe), str(rounds),
                 str(pads))
    assert r.returncode == 0, r.stderr
    assert r.stdout == f"sum={2 * rounds * pads * sum((24 + k) ^ (k + 1) for k in range(8))}\n"
    doc = json.loads(stats.read_text())
    hits = {rule["name"]: rule["hits"] for rule in doc["totals"]["rules"]}
    assert hits == {f"c{k}": 2 * rounds * pads for k in range(8)}, hits
    # a step's two new starts: their walks until crowded, then the ones crowding evicted
    # (about 20 a step); a step whose starts thrash one set walks 1,600 times
    assert doc["totals"]["unwinds"] < 28 * pads, doc["totals"]["unwinds"]


CROWD_AND_BULKY = support.PROGRAMS / "crowd_and_bulky.c"


@pytest.mark.parametrize("flags", FLAGS, ids=[" ".join(f) for f in FLAGS])
def test_a_crowded_start_does_not_key_another_start_of_its_return_address(tmp_path, flags):
    """A dispatch whose chains part two frames above malloc's caller, and another caller
    of the same helper whose frame holds data that changes every call. A first version of
    the crowd hint kept it by return address alone, the parting word as an offset from
    sp: at the other caller's start that offset read its data, a new key every call,
    and the allocation missed the walk cache every time (bench/sites' bignum: 7% of its
    allocations). Kept by return address and stack pointer, each start misses about once."""
    source = CROWD_AND_BULKY
    exe = support.build(tmp_path, source, flags)
    lines = source.read_text().splitlines()
    at = lambda comment: f"{source.name}:{next(i for i, t in enumerate(lines, 1) if comment in t)}"
    rules = {f"c{k}": ([at("/* SITE make */"), at("/* VIA */"), at(f"/* CALLER {k} */")],
                       "fast" if k % 2 == 0 else "pmem") for k in range(16)}
    rules["bulky"] = ([at("/* SITE make */"), at("/* BULKY */")], "pmem")
    policy = support.chains_policy(tmp_path, rules)
    stats = tmp_path / "stats.json"
    rounds = 2000
    r = memplace("run", "--policy", str(policy), "--stats", str(stats), "--", str(exe), str(rounds))
    assert r.returncode == 0, r.stderr
    assert r.stdout == f"sum={rounds * (sum((24 + k) ^ (k + 1) for k in range(16)) + 24)}\n"
    doc = json.loads(stats.read_text())
    hits = {rule["name"]: rule["hits"] for rule in doc["totals"]["rules"]}
    assert hits == {**{f"c{k}": rounds for k in range(16)}, "bulky": rounds}, hits
    # the walk cache missed at bulky's start on every call with the hint by return
    # address: then a walk made at another depth answered (relative_walks 2,000), not a
    # whole walk, so unwinds alone do not show it
    totals = doc["totals"]
    assert totals["unwinds"] + totals["relative_walks"] < 100, totals
