"""What the runtime itself costs in memory: under a memory limit every MiB it keeps is a
MiB less for the program's data (bench/capacity). mimalloc madvises its own metadata for
transparent huge pages, and its page map then took two 2 MiB pages for a few KiB of
entries: 4 MiB of the 5.2 MiB a placed empty program used beyond the bare one."""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from placement_support import build


def figures(out: str) -> dict[str, int]:
    m = re.search(r"rss (\d+) kB huge (\d+) kB thp (-?\d+)", out)
    return {"rss": int(m.group(1)), "huge": int(m.group(2)), "thp": int(m.group(3))}


def placed(prog, tmp_path):
    pol = tmp_path / "policy.toml"
    pol.write_text('version = 1\ndefault = "fast"\n[devices.fast]\nkind = "numa"\nnodes = [0]\n')
    r = subprocess.run([sys.executable, "-m", "memplace", "run", "--policy", str(pol), "--", str(prog)],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    return figures(r.stdout)


def thp_mode() -> str | None:
    try:
        return re.search(r"\[(\w+)\]", Path("/sys/kernel/mm/transparent_hugepage/enabled").read_text()).group(1)
    except (OSError, AttributeError):
        return None


def test_the_runtime_keeps_less_than_3_mib_and_no_huge_pages_of_its_own(tmp_path):
    prog = build(tmp_path, "footprint.c")
    bare = figures(subprocess.run([str(prog)], capture_output=True, text=True, check=True).stdout)
    mine = placed(prog, tmp_path)
    assert mine["rss"] - bare["rss"] < 3 << 10, (bare, mine)
    if thp_mode() == "madvise":  # "always" would give any mapping huge pages
        assert mine["huge"] == 0, mine


def test_the_program_keeps_transparent_huge_pages(tmp_path):
    """mimalloc's option off makes it set PR_SET_THP_DISABLE for the process; the runtime
    puts the flag back, so the program (and THP devices) still get huge pages."""
    prog = build(tmp_path, "footprint.c")
    bare = figures(subprocess.run([str(prog)], capture_output=True, text=True, check=True).stdout)
    if bare["thp"] == -1:
        pytest.skip("this kernel does not show THP_enabled in /proc/PID/status")
    assert placed(prog, tmp_path)["thp"] == bare["thp"]


def test_freed_device_memory_goes_back_to_the_kernel_after_a_tenth_of_a_second(tmp_path):
    """mimalloc keeps freed memory for its purge delay (1 s by default) before giving it
    back; under a memory limit that memory is swapped or taken from the page cache, so the
    runtime sets 100 ms. A 32 MiB block freed, 500 ms of waiting, then allocations (which
    run mimalloc's purge): its pages are gone. MIMALLOC_PURGE_DELAY still rules."""
    prog = build(tmp_path, "purge.c")
    pol = tmp_path / "policy.toml"
    pol.write_text('version = 1\ndefault = "fast"\n[devices.fast]\nkind = "numa"\nnodes = [0]\n')

    def run(env=None):
        import os
        r = subprocess.run([sys.executable, "-m", "memplace", "run", "--policy", str(pol), "--", str(prog), "500"],
                           capture_output=True, text=True, timeout=120, env={**os.environ, **(env or {})})
        assert r.returncode == 0, r.stderr
        before, after = map(int, re.search(r"before (\d+) kB after (\d+) kB", r.stdout).groups())
        return before - after

    assert run() > 24 << 10                                   # most of the 32 MiB given back
    assert run({"MIMALLOC_PURGE_DELAY": "60000"}) < 8 << 10   # a minute: kept


def test_with_a_file_device_freed_memory_goes_back_after_a_hundredth_of_a_second(tmp_path):
    """A policy with a file device is for a program that does not fit in memory: there a
    fast device full of temporaries held 137 MiB for 78 MiB of live blocks at 100 ms, and
    OpenFOAM at 50% of its peak was OOM-killed. The delay is 10 ms: a 32 MiB block freed on
    the fast device, 40 ms of waiting, and its pages are gone."""
    prog = build(tmp_path, "purge.c")
    (tmp_path / "dev").mkdir()
    pol = tmp_path / "policy.toml"
    pol.write_text(f'version = 1\ndefault = "fast"\n[devices.fast]\nkind = "numa"\nnodes = [0]\n'
                   f'[devices.slow]\nkind = "file"\npath = "{tmp_path / "dev"}"\n')
    r = subprocess.run([sys.executable, "-m", "memplace", "run", "--policy", str(pol), "--", str(prog), "40"],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    before, after = map(int, re.search(r"before (\d+) kB after (\d+) kB", r.stdout).groups())
    assert before - after > 24 << 10, r.stdout  # at 100 ms: about 0 given back


def file_policy(tmp_path):
    pol = tmp_path / "file.toml"
    (tmp_path / "dev").mkdir()
    pol.write_text(f'version = 1\ndefault = "slow"\n[devices.slow]\nkind = "file"\npath = "{tmp_path / "dev"}"\n'
                   'capacity = "512MiB"\n')
    return pol


def test_freed_file_device_memory_leaves_the_page_cache_unwritten(tmp_path):
    """On a file device, unmapping freed pages (mimalloc's purge) would leave them in the
    page cache, dirty: written to disk under memory pressure and read back when reused. The
    runtime punches them out of the file instead: after the purge, none of the freed 32 MiB
    block's pages are in memory (mincore), mapped or not."""
    prog = build(tmp_path, "purge.c")
    r = subprocess.run([sys.executable, "-m", "memplace", "run", "--policy", str(file_policy(tmp_path)), "--",
                        str(prog), "500"], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    cached = int(re.search(r"cached (-?\d+) kB", r.stdout).group(1))
    assert 0 <= cached < 4 << 10, r.stdout   # before the change: 32768 kB


@pytest.mark.skipif(os.geteuid() != 0, reason="mounts a tmpfs: root only")
@pytest.mark.parametrize("fs_mib, punched", [(400, True), (150, False)])
def test_freed_file_device_memory_is_punched_only_while_the_filesystem_has_room(tmp_path, fs_mib, punched):
    """A punched hole takes disk blocks again when it is written: on a filesystem with less
    free than twice the device's files, freed pages stay (a later write never finds the
    disk full). A 96 MiB device file on a tmpfs of 400 MiB (304 free) and of 150 (54)."""
    prog = build(tmp_path, "purge.c")
    dev = tmp_path / "dev"
    dev.mkdir()
    pol = tmp_path / "file.toml"
    pol.write_text(f'version = 1\ndefault = "slow"\n[devices.slow]\nkind = "file"\npath = "{dev}"\n'
                   'capacity = "64MiB"\n')
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={fs_mib}m", "tmpfs", str(dev)], check=True)
    try:
        r = subprocess.run([sys.executable, "-m", "memplace", "run", "--policy", str(pol), "--", str(prog), "500"],
                           capture_output=True, text=True, timeout=120)
    finally:
        subprocess.run(["umount", str(dev)], check=True)
    assert r.returncode == 0, r.stderr
    cached = int(re.search(r"cached (-?\d+) kB", r.stdout).group(1))
    assert (cached < 4 << 10) if punched else (cached > 28 << 10), r.stdout


def test_calloc_on_a_file_device_reads_zeros_where_freed_blocks_were(tmp_path):
    prog = build(tmp_path, "calloc_reuse.c")
    r = subprocess.run([sys.executable, "-m", "memplace", "run", "--policy", str(file_policy(tmp_path)), "--",
                        str(prog), "1500"], capture_output=True, text=True, timeout=300,
                       env={**os.environ, "MIMALLOC_PURGE_DELAY": "10"})
    assert r.returncode == 0 and "callocs 770 not zero 0" in r.stdout, r.stdout + r.stderr


def memplace_run(policy, *argv, stats=None):
    extra = ["--stats", str(stats)] if stats else []
    return subprocess.run([sys.executable, "-m", "memplace", "run", "--policy", str(policy), *extra, "--", *argv],
                          capture_output=True, text=True, timeout=120)


def test_a_policy_that_places_nothing_runs_the_program_without_the_runtime(tmp_path):
    """What `memplace advise --swap` writes when every site stays where malloc puts it: the
    runtime would only add its own memory (over a limit sized to the program: swapping).
    Devices it defines but never names do not count; a rule to a device does."""
    nothing = tmp_path / "nothing.toml"
    nothing.write_text('version = 1\ndefault = "system"\n[devices.fast]\nkind = "numa"\nnodes = [0]\n'
                       '[[rules]]\nsize = "..4KiB"\ndevice = "system"\n')
    r = memplace_run(nothing, "cat", "/proc/self/maps")
    assert r.returncode == 0 and "libc" in r.stdout and "libmemplace" not in r.stdout, r.stdout + r.stderr
    some = tmp_path / "some.toml"
    some.write_text(nothing.read_text() + '[[rules]]\nsize = "4KiB.."\ndevice = "fast"\n')
    assert "libmemplace" in memplace_run(some, "cat", "/proc/self/maps").stdout


def test_without_the_runtime_the_stats_say_so_and_the_exit_is_the_programs(tmp_path):
    nothing = tmp_path / "nothing.toml"
    nothing.write_text("version = 1\n")
    r = memplace_run(nothing, "sh", "-c", "exit 3", stats=tmp_path / "stats.json")
    assert r.returncode == 3, r.stderr
    doc = json.loads((tmp_path / "stats.json").read_text())
    (proc,) = doc["processes"]
    assert (proc["placing"], proc["ran"], proc["status"], doc["returncode"]) == (False, True, 3, 3)
    assert "places nothing" in proc["reason"] and doc["totals"]["devices"] == []
    r = memplace_run(nothing, "sh", "-c", "kill -TERM $$", stats=tmp_path / "killed.json")
    assert r.returncode == -15
    (proc,) = json.loads((tmp_path / "killed.json").read_text())["processes"]
    assert (proc["ended"], proc["signal"]) == ("signal", 15)
    bad = tmp_path / "bad.toml"
    bad.write_text('version = 1\ndefault = "nowhere"\n')                # invalid: the usual one-line error
    r = memplace_run(bad, "true")
    assert r.returncode == 2 and "nowhere" in r.stderr and len(r.stderr.strip().splitlines()) == 1
