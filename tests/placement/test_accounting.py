"""Exact counting on the placement fast path: every size, all freed, live bytes back to zero."""

import json

from placement_support import build, line_of, run_placed, stats_of

MAX = 20000


def test_every_size_is_counted_and_live_bytes_return_to_zero(tmp_path, pmem):
    prog = build(tmp_path, "sizes.c")
    policy = tmp_path / "policy.toml"
    # calloc's rule covers only part of the sizes: the rest go to the default device
    policy.write_text(f"""
version = 1
default = "pmem"
[devices.fast]
kind = "numa"
nodes = [0]
[devices.pmem]
kind = "file"
path = "{pmem}"
[[rules]]
name = "malloc"
site = ["sizes.c:{line_of('sizes.c', 'sizes_malloc')}"]
device = "fast"
[[rules]]
name = "calloc"
site = ["sizes.c:{line_of('sizes.c', 'sizes_calloc')}"]
size = "100..5000"
device = "fast"
""")
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
    procs = json.loads(stats.read_text())["processes"]
    assert [d["live_at_exit"] for p in procs for d in p["devices"] if d["name"] == "fast"] == [0]
