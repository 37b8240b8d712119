"""C++ containers: operator new is interposed, so frame 0 is the return address of its
call, which may lie in an instantiated template (new_allocator.h) inlined into the
program's function; the program's own line of the container operation is then one of the
calls that code was inlined at (the frame's `inlined`). Optimised, the first line of the
program's source among a site's frames, inlined calls included, is the marked operation
and the next one the marked call; counts are exact, and a placed run's rule naming those
lines hits as often as the profile counted. Unoptimised, the three frames a site keeps
are the allocator's own instantiations, each element type's its own site."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

import sites_support as support
from sites_support import memplace

PROGRAMS = support.PROGRAMS
SOURCE = PROGRAMS / "containers.cc"
SITES = ["vector_reserve", "vector_push", "string", "map", "make_shared"]
CALLER = {"vector_push": "vector_reserve"}  # both in use_vector: one call line
INSERTS = 37


def marker_line(kind: str, name: str) -> int:
    return support.marker_line(SOURCE, kind, name)


def build(tmp_path: Path, flags: list[str]) -> Path:
    return support.build(tmp_path, SOURCE, flags)


def printed(stdout: str) -> dict[str, int]:
    words = stdout.split()
    return {k: int(v) for k, v in zip(words[::2], words[1::2])}


def profile_of(tmp_path: Path, exe: Path) -> tuple[dict, dict[str, int]]:
    r = memplace("profile", "--out", str(tmp_path / "prof"), "--", str(exe))
    assert r.returncode == 0, r.stderr
    profile, = [json.loads(p.read_text()) for p in (tmp_path / "prof").glob("*.json")]
    return profile, printed(r.stdout)


def base(name: str | None) -> str | None:
    return name.rsplit("/", 1)[-1] if name else None


def logical(site: dict) -> list[tuple[str | None, int | None]]:
    """A site's source lines, innermost first: each frame's line, then the calls it was
    inlined at."""
    out = []
    for f in site["frames"]:
        out.append((base(f.get("file")), f.get("line")))
        out += [(base(c.get("file")), c.get("line")) for c in f.get("inlined", [])]
    return out


def program_lines(site: dict) -> list[int]:
    return [line for file, line in logical(site) if file == SOURCE.name]


OPTIMISED = [["-O2", "-fomit-frame-pointer"], ["-O2", "-fno-omit-frame-pointer"]]


def sites_by_operation(profile: dict) -> dict[str, dict]:
    """Each marked operation's one site: the first program line among its frames is the
    SITE line and the next source line after it the CALLER line."""
    found = {}
    marks = {marker_line("SITE", n): n for n in SITES}
    for site in profile["sites"]:
        lines = logical(site)
        first = next((i for i, (file, _) in enumerate(lines) if file == SOURCE.name), None)
        if first is None or lines[first][1] not in marks:
            continue
        name = marks[lines[first][1]]
        assert name not in found, f"two sites for {name}: {found[name]}, {site}"
        caller = marker_line("CALLER", CALLER.get(name, name))
        assert lines[first + 1:first + 2] == [(SOURCE.name, caller)], (name, lines)
        found[name] = site
    assert set(found) == set(SITES), [logical(s) for s in profile["sites"]]
    return found


@pytest.mark.parametrize("flags", OPTIMISED, ids=[" ".join(f) for f in OPTIMISED])
def test_optimised_container_sites_name_the_program_lines(tmp_path, flags):
    profile, out = profile_of(tmp_path, build(tmp_path, flags))
    found = sites_by_operation(profile)
    count = {n: (s["allocations"], s["bytes"]) for n, s in found.items()}
    # reserve(N): one block of the capacity it reports; one push beyond: one more block
    assert count["vector_reserve"] == (1, out["reserved"] * 8)
    assert count["vector_push"] == (1, out["capacity"] * 8)
    assert count["string"] == (1, out["string"] + 1)
    # one node per inserted key; make_shared: one block for the count and the object
    assert count["map"][0] == out["map"] == INSERTS
    assert count["map"][1] % INSERTS == 0 and count["map"][1] >= INSERTS * out["pair"]
    assert count["make_shared"][0] == 1 and count["make_shared"][1] > 12 * 8
    # frame 0 is the call of operator new: in the allocator's header where it was inlined
    # or instantiated, except for std::string, whose members are in libstdc++.so
    for name in ("vector_reserve", "vector_push", "map", "make_shared"):
        assert base(found[name]["frames"][0].get("file")) == "new_allocator.h", found[name]
    assert base(found["string"]["frames"][0].get("file")) != "new_allocator.h"


def test_unoptimised_sites_are_the_allocator_instantiations(tmp_path):
    """-O0 keeps every template call: the frames a site records (3) are new_allocator,
    allocator_traits and the container's own allocation function, all exact, one site per
    element type; the program's line lies deeper than a site's frames go. std::string's
    members are in libstdc++.so, so its site is the program's lines."""
    profile, out = profile_of(tmp_path, build(tmp_path, ["-O0"]))
    kinds = {"vector": "long", "map": "std::_Rb_tree_node<std::pair<int const, Payload>",
             "make_shared": "std::_Sp_counted_ptr_inplace<Payload,"}
    found = {}
    for site in profile["sites"]:
        m = re.search(r"new_allocator<(.+)>::allocate", site["frames"][0].get("function") or "")
        for kind, element in kinds.items():
            if m and m.group(1).startswith(element):
                assert kind not in found, (kind, found.get(kind), site)
                found[kind] = site
    assert set(found) == set(kinds), [(s["frames"][0].get("function"), logical(s))
                                      for s in profile["sites"]]
    for kind, site in found.items():
        files = [file for file, _ in logical(site)]
        assert files[:2] == ["new_allocator.h", "alloc_traits.h"], (kind, logical(site))
        assert len(site["frames"]) == 3 and SOURCE.name not in files, (kind, logical(site))
    # reserve and the one reallocation share _M_allocate's frames: one site, both blocks
    assert (found["vector"]["allocations"], found["vector"]["bytes"]) == (
        2, (out["reserved"] + out["capacity"]) * 8)
    assert found["map"]["allocations"] == INSERTS
    assert found["make_shared"]["allocations"] == 1
    string, = [s for s in profile["sites"] if program_lines(s)[:1] == [marker_line("SITE", "string")]]
    assert logical(string)[:2] == [(SOURCE.name, marker_line("SITE", "string")),
                                  (SOURCE.name, marker_line("CALLER", "string"))]
    assert (string["allocations"], string["bytes"]) == (1, out["string"] + 1)


def test_placed_run_hits_the_profiled_container_sites(tmp_path):
    """Rules written with the program's lines (and frame 0's header line where the
    operation's code is out of line) hit exactly as often as the profile counted."""
    exe = build(tmp_path, ["-O2"])
    profile, _ = profile_of(tmp_path, exe)
    found = sites_by_operation(profile)
    push0 = found["vector_push"]["frames"][0]
    rules = {
        "map": [f"containers.cc:{marker_line('SITE', 'map')}",
                f"containers.cc:{marker_line('CALLER', 'map')}"],
        "make_shared": [f"containers.cc:{marker_line('SITE', 'make_shared')}",
                        f"containers.cc:{marker_line('CALLER', 'make_shared')}"],
        "vector_push": [f"{base(push0['file'])}:{push0['line']}",
                        f"containers.cc:{marker_line('SITE', 'vector_push')}",
                        f"containers.cc:{marker_line('CALLER', 'vector_reserve')}"],
    }
    policy = tmp_path / "policy.toml"
    policy.write_text("version = 1\n[devices.fast]\nkind = \"numa\"\nnodes = [0]\n"
                      "capacity = \"64MiB\"\n" + "".join(
                          f'[[rules]]\nname = "{n}"\nsite = {json.dumps(s)}\ndevice = "fast"\n'
                          for n, s in rules.items()))
    stats = tmp_path / "stats.json"
    r = memplace("run", "--policy", str(policy), "--stats", str(stats), "--", str(exe))
    assert r.returncode == 0, r.stderr
    assert "left out" not in r.stderr, r.stderr
    doc = json.loads(stats.read_text())
    hits = {rule["name"]: rule["hits"] for rule in doc["totals"]["rules"]}
    assert hits == {n: found[n]["allocations"] for n in rules}, (hits, rules)
    assert hits == {"map": INSERTS, "make_shared": 1, "vector_push": 1}
    fast, = [d for d in doc["totals"]["devices"] if d["name"] == "fast"]
    assert fast["allocations"] == INSERTS + 2
