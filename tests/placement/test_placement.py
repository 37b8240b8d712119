"""Objects of a rule land on the rule's device, as the kernel reports it."""

import os
import subprocess

from placement_support import build, calls_to, line_of, run_placed, stats_of, where


def policy(tmp_path, text):
    p = tmp_path / "policy.toml"
    p.write_text(text)
    return p


def test_file_line_rules_bind_to_node_and_file(tmp_path, pmem):
    prog = build(tmp_path, "sites.c")
    pol = policy(tmp_path, f"""
version = 1
[devices.fast]
kind = "numa"
nodes = [0]
capacity = "256MiB"
[devices.pmem]
kind = "file"
path = "{pmem}"
capacity = "256MiB"
[[rules]]
name = "hot"
site = ["sites.c:{line_of('sites.c', 'hot')}"]
device = "fast"
[[rules]]
name = "cold"
site = ["sites.c:{line_of('sites.c', 'cold')}"]
device = "pmem"
""")
    stats = tmp_path / "stats.json"
    r = run_placed(prog, pol, stats=stats)
    assert r.returncode == 0, r.stderr
    w = where(r.stdout)
    assert w["hot"]["policy"] == "bind:0" and w["hot"]["node"] == "0" and w["hot"]["file"] == "-"
    assert w["cold"]["file"].startswith(str(pmem) + "/") and w["cold"]["file"].endswith("(deleted)")
    for other in ("helper", "strdup"):  # no rule: the next allocator's ordinary heap
        assert w[other]["policy"] == "default:" and w[other]["file"] == "-"
    s = stats_of(stats)
    assert s["rules"]["hot"]["hits"] == 1 and s["rules"]["cold"]["hits"] == 1
    assert s["devices"]["fast"]["bytes"] == 1 << 20 and s["devices"]["pmem"]["bytes"] == 1 << 20
    assert not os.listdir(pmem), "the device file must be unlinked"


def test_cxx_sites_skip_operator_new_and_realloc_moves_by_copy(tmp_path, pmem):
    """Frame 0 of a C++ allocation is in libstdc++ (operator new): the rule names the code
    that called operator new, which the runtime must find past libstdc++'s frame."""
    prog = build(tmp_path, "moves.cc")
    news = calls_to(prog, "_Znwm")
    reallocs = [off for fn, off in calls_to(prog, "realloc") if fn == "main"]
    assert news and len(reallocs) == 1, (news, reallocs)
    pol = policy(tmp_path, f"""
version = 1
[devices.fast]
kind = "numa"
nodes = [0]
capacity = "256MiB"
[devices.pmem]
kind = "file"
path = "{pmem}"
capacity = "256MiB"
[[rules]]
name = "grow"
site = ["{prog.name}+{reallocs[0]:#x}"]
device = "pmem"
""" + "".join(f"""
[[rules]]
name = "new"
site = ["{prog.name}+{off:#x}"]
device = "fast"
""" for _, off in news))
    stats = tmp_path / "stats.json"
    r = run_placed(prog, pol, stats=stats)
    assert r.returncode == 0, r.stdout + r.stderr
    w = where(r.stdout)
    assert "intact=1" in r.stdout
    assert w["grid"]["policy"] == "bind:0"                 # std::vector's buffer, via operator new
    assert w["block"]["policy"] == "default:"              # plain malloc, no rule
    assert w["grown"]["file"].startswith(str(pmem))        # moved by realloc's rule, content intact
    assert stats_of(stats)["rules"]["new"]["hits"] >= 1


def test_alignment_above_64k_gets_a_bound_mapping_of_its_own(tmp_path, pmem):
    prog = build(tmp_path, "big_aligned.c")
    pol = policy(tmp_path, f"""
version = 1
[devices.fast]
kind = "numa"
nodes = [0]
capacity = "64MiB"
[devices.pmem]
kind = "file"
path = "{pmem}"
capacity = "64MiB"
[[rules]]
name = "big"
site = ["big_aligned.c:{line_of('big_aligned.c', 'big')}"]
device = "fast"
[[rules]]
name = "big2"
site = ["big_aligned.c:{line_of('big_aligned.c', 'big2')}"]
device = "pmem"
""")
    stats = tmp_path / "stats.json"
    r = run_placed(prog, pol, stats=stats)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "bad=0" in r.stdout
    w = where(r.stdout)
    assert w["big"]["policy"] == "bind:0"
    assert w["big2"]["file"].startswith(str(pmem))
    s = stats_of(stats)
    fast, pm = s["devices"]["fast"], s["devices"]["pmem"]
    assert fast["allocations"] >= 50 and fast["fallbacks"]["alignment"] == 0
    assert pm["allocations"] == 50 and pm["fallbacks"]["alignment"] == 0
    assert fast["peak"] <= 8 << 20  # freed mappings are given back: no growth over 50 rounds
