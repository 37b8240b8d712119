"""Call sites are found by unwinding real frames: the innermost frame of an allocation
that libc (or a signal handler) makes on the program's behalf is the program's call line,
frame 1 the call of that function, whatever the compiler did with frame pointers; the
profile and the placed run see the same sites with the same counts."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import sites_support as support
from sites_support import memplace

PROGRAMS = support.PROGRAMS
SOURCE = PROGRAMS / "libc_sites.c"
SITES = ["qsort", "strdup", "printf", "fopen", "getline", "handler"]
# bytes where libc's choice does not depend on the machine
BYTES = {"qsort": 300000 * 4, "strdup": len("a string to copy") + 1, "handler": 77}
# frame 1 where it is not the CALLER line of the same name
CALLER = {"handler": ("SITE", "raise"), "getline": ("CALLER", "fopen")}


def marker_line(kind: str, name: str) -> int:
    return support.marker_line(SOURCE, kind, name)


def build(tmp_path: Path, flags: list[str]) -> Path:
    return support.build(tmp_path, SOURCE, flags)


def frame_lines(site: dict) -> list[tuple[str | None, int | None]]:
    return [((f.get("file") or "").rsplit("/", 1)[-1] or None, f.get("line"))
            for f in site["frames"]]


def expected_frames(name: str) -> tuple[int, int]:
    return marker_line("SITE", name), marker_line(*CALLER.get(name, ("CALLER", name)))


def marked_sites(profile: dict) -> dict[str, dict]:
    """The profile's site of each marked call: innermost frame the SITE line, the next one
    its CALLER line; exactly one site each."""
    found = {}
    for site in profile["sites"]:
        frames = frame_lines(site)
        for name in SITES:
            inner, caller = expected_frames(name)
            # getline is an inline wrapper in <bits/stdio.h>: its line stands for the call
            innermost_ok = frames[0] == ("libc_sites.c", inner) or (
                name == "getline" and frames[0][0] == "stdio.h")
            if innermost_ok and len(frames) > 1 and frames[1] == ("libc_sites.c", caller):
                assert name not in found, f"two sites for {name}: {found[name]}, {site}"
                found[name] = site
    missing = set(SITES) - set(found)
    assert not missing, f"sites not found: {missing}; profile: " + json.dumps(
        [frame_lines(s) for s in profile["sites"]])
    return found


FLAGS = [["-O0", "-fno-omit-frame-pointer"], ["-O2", "-fomit-frame-pointer"],
         ["-O2", "-fno-omit-frame-pointer"]]


@pytest.mark.parametrize("flags", FLAGS, ids=[" ".join(f) for f in FLAGS])
def test_profile_blames_the_program_line_behind_every_libc_allocation(tmp_path, flags):
    exe = build(tmp_path, flags)
    r = memplace("profile", "--out", str(tmp_path / "prof"), "--", str(exe))
    assert r.returncode == 0, r.stderr
    profile, = [json.loads(p.read_text()) for p in (tmp_path / "prof").glob("*.json")]
    found = marked_sites(profile)
    for name in ("qsort", "strdup", "printf", "fopen", "handler"):
        assert found[name]["allocations"] == 1, (name, found[name])
    for name, size in BYTES.items():
        assert found[name]["bytes"] == size, (name, found[name])
    # nothing is blamed on a frame outside the program's code
    for site in profile["sites"]:
        assert frame_lines(site)[0][0] in ("libc_sites.c", "stdio.h"), site


def test_placed_run_matches_the_same_two_frame_sites(tmp_path):
    exe = build(tmp_path, ["-O2"])
    pmem = tmp_path / "pmem"
    pmem.mkdir()
    rules = []
    for name in ("qsort", "strdup", "printf", "fopen", "handler"):
        inner, caller = expected_frames(name)
        rules.append(f'[[rules]]\nname = "{name}"\n'
                     f'site = ["libc_sites.c:{inner}", "libc_sites.c:{caller}"]\n'
                     f'device = "{"fast" if name != "qsort" else "pmem"}"\n')
    policy = tmp_path / "policy.toml"
    policy.write_text(f"""version = 1
[devices.fast]
kind = "numa"
nodes = [0]
capacity = "64MiB"
[devices.pmem]
kind = "file"
path = "{pmem}"
capacity = "64MiB"
{chr(10).join(rules)}""")
    stats = tmp_path / "stats.json"
    r = memplace("run", "--policy", str(policy), "--stats", str(stats), "--", str(exe))
    assert r.returncode == 0, r.stderr
    assert r.stdout == "a string to copy\n"
    doc = json.loads(stats.read_text())
    hits = {rule["name"]: rule["hits"] for rule in doc["totals"]["rules"]}
    assert hits == {"qsort": 1, "strdup": 1, "printf": 1, "fopen": 1, "handler": 1}, hits
    devices = {d["name"]: d for d in doc["totals"]["devices"]}
    assert devices["pmem"]["allocations"] == 1
    assert devices["fast"]["allocations"] == 4


def test_a_dlopened_library_is_followed_once_its_table_exists(tmp_path):
    """The first profile cannot have the table of a library loaded later: its sites end
    at their first frame there (never completed by guessing), and the command says so;
    the table is made then, and the next profile follows the callers."""
    plugin, host = tmp_path / "plugin.so", tmp_path / "plugin_host"
    cache = tmp_path / "cache"
    subprocess.run(["gcc", "-O1", "-g", "-shared", "-fPIC", "-o", str(plugin),
                    str(PROGRAMS / "plugin.c")], check=True)
    subprocess.run(["gcc", "-O1", "-g", "-o", str(host), str(PROGRAMS / "plugin_host.c"),
                    "-ldl"], check=True)
    src = (PROGRAMS / "plugin.c").read_text().splitlines()
    inner = next(i for i, t in enumerate(src, 1) if "SITE plugin_malloc" in t)
    outer = next(i for i, t in enumerate(src, 1) if "SITE plugin_inner" in t)
    env = dict(os.environ, MEMPLACE_CACHE=str(cache))

    def plugin_site(out: str) -> tuple[subprocess.CompletedProcess, dict]:
        r = subprocess.run([sys.executable, "-m", "memplace", "profile", "--out",
                            str(tmp_path / out), "--", str(host), str(plugin)],
                           capture_output=True, text=True, env=env, timeout=300)
        assert r.returncode == 0, r.stderr
        profile, = [json.loads(p.read_text()) for p in (tmp_path / out).glob("*.json")]
        site, = [s for s in profile["sites"] if frame_lines(s)[0] == ("plugin.c", inner)]
        return r, site

    r, first = plugin_site("first")
    assert first["allocations"] == 3
    assert frame_lines(first) == [("plugin.c", inner)]
    assert "plugin.so" in r.stderr and "profile again" in r.stderr
    r, second = plugin_site("second")
    assert second["allocations"] == 3
    host_line = next(i for i, t in enumerate(
        (PROGRAMS / "plugin_host.c").read_text().splitlines(), 1) if "SITE host_call" in t)
    assert frame_lines(second) == [("plugin.c", inner), ("plugin.c", outer),
                                   ("plugin_host.c", host_line)]
    assert "profile again" not in r.stderr


def frame_ids(site: dict) -> list[tuple[str, str]]:
    """A site's frames by identity: module file name and return-address offset."""
    return [(f["module"].rsplit("/", 1)[-1], f["offset"]) for f in site["frames"]]


@pytest.mark.skipif(shutil.which("valgrind") is None,
                    reason="valgrind is not installed: no DHAT engine to compare with")
@pytest.mark.parametrize("flags", FLAGS, ids=[" ".join(f) for f in FLAGS])
def test_dhat_and_the_runtime_see_the_same_sites(tmp_path, flags):
    """The same program under both engines: every marked site has the same innermost frame
    (file:line and return address), the same counts and bytes, and the same frames (both
    keep 3, modules by their real path). Neither engine names a frame in libc,
    a signal trampoline or below _start, so a rule written from either profile matches
    when placed."""
    exe = build(tmp_path, flags)
    profiles = {}
    for engine in ("runtime", "dhat"):
        r = memplace("profile", "--engine", engine, "--out", str(tmp_path / engine), "--", str(exe))
        assert r.returncode == 0, r.stderr
        assert r.stdout == "a string to copy\n"
        profiles[engine], = [json.loads(p.read_text()) for p in (tmp_path / engine).glob("*.json")]
    runtime, dhat = marked_sites(profiles["runtime"]), marked_sites(profiles["dhat"])
    for name in SITES:
        rt, dh = runtime[name], dhat[name]
        assert frame_lines(rt)[0] == frame_lines(dh)[0], (name, rt, dh)
        assert frame_ids(rt)[0] == frame_ids(dh)[0], (name, rt, dh)
        assert (rt["allocations"], rt["bytes"]) == (dh["allocations"], dh["bytes"]), (name, rt, dh)
        assert frame_ids(dh) == frame_ids(rt), (name, frame_ids(rt), frame_ids(dh))
        assert [f["module"] for f in dh["frames"]] == [f["module"] for f in rt["frames"]], (name, rt, dh)
    # every site of the program's own code: the same in both, frames included
    mine = {engine: {tuple(frame_ids(s)[:3]): (s["allocations"], s["bytes"])
                     for s in p["sites"] if frame_lines(s)[0][0] in ("libc_sites.c", "stdio.h")}
            for engine, p in profiles.items()}
    assert mine["runtime"] == mine["dhat"]
    for site in profiles["dhat"]["sites"]:
        for module, _ in frame_ids(site):
            assert not module.startswith(("libc.so", "ld-linux", "vgpreload")), site
