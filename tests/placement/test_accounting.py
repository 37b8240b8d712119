"""Exact counting on the placement fast path: every size, all freed, live bytes back to zero."""

import json
import subprocess
import sys

from placement_support import build, line_of, run_placed, stats_of, where

MAX = 20000


def two_devices(tmp_path, pmem, rules: str, default: str = "system"):
    """A policy with a node-0 device "fast" and a file device "pmem", and these rules."""
    policy = tmp_path / "policy.toml"
    policy.write_text(f"""
version = 1
default = "{default}"
[devices.fast]
kind = "numa"
nodes = [0]
[devices.pmem]
kind = "file"
path = "{pmem}"
{rules}""")
    return policy


def live_at_exit(stats, device: str) -> list[int]:
    procs = json.loads(stats.read_text())["processes"]
    return [d["live_at_exit"] for p in procs for d in p["devices"] if d["name"] == device]


def test_every_size_is_counted_and_live_bytes_return_to_zero(tmp_path, pmem):
    prog = build(tmp_path, "sizes.c")
    # calloc's rule covers only part of the sizes: the rest go to the default device
    policy = two_devices(tmp_path, pmem, f"""[[rules]]
name = "malloc"
site = ["sizes.c:{line_of('sizes.c', 'sizes_malloc')}"]
device = "fast"
[[rules]]
name = "calloc"
site = ["sizes.c:{line_of('sizes.c', 'sizes_calloc')}"]
size = "100..5000"
device = "fast"
""", default="pmem")
    stats = tmp_path / "stats.json"
    r = run_placed(prog, policy, stats=stats)
    assert r.returncode == 0, r.stderr
    assert r.stdout == "sizes bad=0\n"
    s = stats_of(stats)
    sizes = range(MAX + 1)
    in_range = [n for n in sizes if 100 <= n <= 5000]
    assert s["rules"]["malloc"]["hits"] == MAX + 1
    assert s["rules"]["malloc"]["bytes"] == sum(sizes)
    assert s["rules"]["calloc"]["hits"] == len(in_range)
    assert s["rules"]["calloc"]["bytes"] == sum(in_range)
    fast, pm = s["devices"]["fast"], s["devices"]["pmem"]
    assert fast["allocations"] == MAX + 1 + len(in_range)
    assert fast["bytes"] == sum(sizes) + sum(in_range)
    # pmem: the other calloc sizes, plus the program's own start-up allocations (stdio)
    assert pm["allocations"] >= MAX + 1 - len(in_range)
    assert fast["peak"] >= sum(sizes) + sum(in_range)  # all were live at once
    assert live_at_exit(stats, "fast") == [0]


def grow_policy(tmp_path, pmem, site, device="fast"):
    return two_devices(tmp_path, pmem, f"""[[rules]]
name = "grow"
site = ["grow.c:{line_of('grow.c', site)}"]
device = "{device}"
""")


def test_a_growing_block_grows_in_place_on_its_device(tmp_path, pmem):
    prog = build(tmp_path, "grow.c")
    stats = tmp_path / "stats.json"
    r = run_placed(prog, grow_policy(tmp_path, pmem, "grow_one"), "one", stats=stats)
    assert r.returncode == 0, r.stderr
    assert r.stdout.endswith("bad=0\n")
    moved = [int(line.split()[-1]) for line in r.stdout.splitlines() if line.startswith("moved at")]
    # in its growth area from 512 bytes to 1 MiB, copied only beyond (the control run
    # without memplace moves at 4 KiB and 230 KiB on glibc)
    assert moved and all(n > 900 << 10 for n in moved), moved
    w = where(r.stdout)
    for label in ("at4k", "at512k", "at3m"):
        assert w[label]["policy"] == "bind:0" and w[label]["node"] == "0", (label, w[label])
    s = stats_of(stats)
    assert s["devices"]["fast"]["peak"] >= 3 << 20
    assert live_at_exit(stats, "fast") == [0]


def test_many_growing_blocks_across_threads_keep_their_contents(tmp_path, pmem):
    """40 buffers (more than a device has growth areas) grown by 4 threads and freed by
    others, on a file device: contents intact, every live byte returned."""
    prog = build(tmp_path, "grow.c", "-pthread")
    stats = tmp_path / "stats.json"
    r = run_placed(prog, grow_policy(tmp_path, pmem, "grow_many", "pmem"), "many", stats=stats)
    assert r.returncode == 0, r.stderr
    assert r.stdout == "bad=0\n"
    s = stats_of(stats)
    assert s["rules"]["grow"]["hits"] > 40 * 100
    assert live_at_exit(stats, "pmem") == [0]


def test_rules_apply_in_policy_order_size_only_rules_included(tmp_path, pmem):
    """A size-only rule ahead of two rules for the same site: each allocation takes the
    first rule that matches it, in the policy's order."""
    prog = build(tmp_path, "sizes.c")
    site = f"sizes.c:{line_of('sizes.c', 'sizes_malloc')}"
    policy = two_devices(tmp_path, pmem, f"""[[rules]]
name = "tiny"
size = "..64"
device = "pmem"
[[rules]]
name = "mid"
site = ["{site}"]
size = "65..1000"
device = "fast"
[[rules]]
name = "rest"
site = ["{site}"]
device = "pmem"
""")
    stats = tmp_path / "stats.json"
    r = run_placed(prog, policy, stats=stats)
    assert r.returncode == 0, r.stderr
    assert r.stdout == "sizes bad=0\n"
    rules = stats_of(stats)["rules"]
    assert rules["tiny"]["hits"] >= 2 * 65            # sizes 0..64 from both sites
    assert rules["mid"]["hits"] == 1000 - 65 + 1
    assert rules["mid"]["bytes"] == sum(range(65, 1001))
    assert rules["rest"]["hits"] == MAX + 1 - 65 - 936
    assert stats_of(stats)["devices"]["fast"]["allocations"] == 936


def test_two_frame_rules_tell_callers_apart_at_the_same_stack_depth(tmp_path, pmem):
    """The stack scan's per-thread memo (same return address, same stack pointer) must not
    hand one caller's frames to the other: alternating calls each take their own rule."""
    prog = build(tmp_path, "two_callers.c")
    site = f"two_callers.c:{line_of('two_callers.c', 'tc_alloc')}"
    policy = two_devices(tmp_path, pmem, f"""[[rules]]
name = "first"
site = ["{site}", "two_callers.c:{line_of('two_callers.c', 'tc_first')}"]
device = "fast"
[[rules]]
name = "second"
site = ["{site}", "two_callers.c:{line_of('two_callers.c', 'tc_second')}"]
device = "pmem"
""")
    stats = tmp_path / "stats.json"
    r = run_placed(prog, policy, stats=stats)
    assert r.returncode == 0, r.stderr
    assert r.stdout == "done\n"
    s = stats_of(stats)
    assert s["rules"]["first"]["hits"] == 5000 and s["rules"]["second"]["hits"] == 5000
    assert s["devices"]["fast"]["allocations"] == 5000
    assert s["devices"]["pmem"]["allocations"] == 5000


def test_reused_pages_of_other_sizes_keep_blocks_apart_and_count_every_byte(tmp_path, pmem):
    """Free finds a small block's size from the size its 64 KiB slice last served; rounds
    that empty mimalloc's pages and reuse them for other sizes, with aligned blocks among
    them (whose pointers may lie inside a block), must neither hand out bytes twice nor
    leave live bytes behind. Without rules too: every site is then the default device's."""
    prog = build(tmp_path, "size_mix.c")
    bare = subprocess.run([str(prog)], capture_output=True, text=True)
    assert bare.returncode == 0 and bare.stdout.startswith("bad=0 "), bare.stdout
    for rules in ("", f"""[[rules]]
name = "any"
site = ["size_mix.c:{line_of('size_mix.c', 'size_mix_malloc')}"]
device = "fast"
"""):
        stats = tmp_path / "stats.json"
        r = run_placed(prog, two_devices(tmp_path, pmem, rules, default="pmem"), stats=stats)
        assert (r.returncode, r.stdout) == (0, bare.stdout), r.stderr
        s = stats_of(stats)
        placed = s["devices"]["pmem"]["allocations"] + s["devices"]["fast"]["allocations"]
        assert placed >= int(bare.stdout.split("blocks=")[1])
        assert live_at_exit(stats, "pmem") == [0] and live_at_exit(stats, "fast") == [0]


def test_the_profile_counts_live_bytes_as_the_placed_run_does(tmp_path, pmem):
    """Profile and run agree on a device's peak: the profile records each site's peak in
    the units the device heaps count (size classes; a block realloc shrinks in place
    keeps its size), and the advisor plans capacities in them. 200 blocks of 4000 bytes
    shrunk to 2100: 420,000 bytes asked for, about 800 KiB held."""
    prog = build(tmp_path, "shrink.c")
    r = subprocess.run([sys.executable, "-m", "memplace", "profile", "--out", str(tmp_path / "prof"), "--",
                        str(prog), "200"], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    profile, = (tmp_path / "prof").glob("*.json")
    sites = {}
    for s in json.loads(profile.read_text())["sites"]:
        sites[s["frames"][0].get("line")] = s
    shrink = sites[line_of("shrink.c", "shrink")]
    assert shrink["peak_live_bytes"] == 200 * 2100
    assert 200 * 4000 <= shrink["peak_usable_bytes"] <= 200 * 4096 * 1.25, shrink
    # the placed run, both sites on a device of 4 MiB (its threads publish every 128 KiB)
    policy = tmp_path / "policy.toml"
    policy.write_text(f"""
version = 1
[devices.fast]
kind = "numa"
nodes = [0]
capacity = "4MiB"
[[rules]]
site = ["shrink.c:{line_of('shrink.c', 'grow')}"]
device = "fast"
[[rules]]
site = ["shrink.c:{line_of('shrink.c', 'shrink')}"]
device = "fast"
""")
    stats = tmp_path / "stats.json"
    r = run_placed(prog, policy, "200", stats=stats)
    assert r.returncode == 0, r.stderr
    peak = stats_of(stats)["devices"]["fast"]["peak"]
    assert abs(peak - shrink["peak_usable_bytes"]) <= 128 << 10, (peak, shrink["peak_usable_bytes"])
