"""bench/capacity's machine-wide helpers: a memory cgroup limits the child put in it (a
program beyond the limit is OOM-killed, one within it runs) and is removed afterwards;
the swap file is on only inside its block and gone after it. Root and a memory cgroup
controller needed, else skipped."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench" / "capacity"))
from limits import MemoryCgroup, ReadAround, SwapFile, filesystem_type, why_no_cgroup  # noqa: E402

pytestmark = pytest.mark.skipif(why_no_cgroup() is not None, reason=str(why_no_cgroup()))

TOUCH = r"""
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
int main(int argc, char **argv)
{
    size_t n = (size_t)atol(argv[1]) << 20;
    char *p = malloc(n);
    memset(p, 1, n);
    printf("touched %s MiB\n", argv[1] + (p[n / 2] - 1));    /* reads p: the memset stays */
    return 0;
}
"""


@pytest.fixture(scope="module")
def touch(tmp_path_factory):
    d = tmp_path_factory.mktemp("touch")
    (d / "touch.c").write_text(TOUCH)
    subprocess.run(["gcc", "-O1", "-o", str(d / "touch"), str(d / "touch.c")], check=True)
    return str(d / "touch")


def test_a_child_beyond_the_limit_is_oom_killed_and_the_cgroup_removed(touch, tmp_path):
    with MemoryCgroup("memplace-test", 64 << 20) as cg:
        path = cg.path
        assert path.is_dir()
        over = cg.run([touch, "256"], dict(os.environ), 60, tmp_path / "over")
    assert over.status == "OOM" and over.returncode == -9, over
    assert over.peak <= 64 << 20
    assert not path.exists()


def test_a_child_within_the_limit_runs_and_its_peak_is_seen(touch, tmp_path):
    with MemoryCgroup("memplace-test", 128 << 20) as cg:
        within = cg.run([touch, "32"], dict(os.environ), 60, tmp_path / "within")
    assert within.status == "ok" and within.output == "touched 32 MiB\n"
    assert 32 << 20 <= within.peak <= 128 << 20
    assert not cg.path.exists()


def test_the_swap_file_is_on_only_inside_its_block(tmp_path):
    if filesystem_type(tmp_path) in ("tmpfs", "ramfs"):
        pytest.skip(f"{tmp_path} is on {filesystem_type(tmp_path)}: no swap file there")
    path = tmp_path / "test.swap"
    swaps = lambda: Path("/proc/swaps").read_text()
    try:
        with SwapFile(path, 16 << 20):
            assert str(path) in swaps()
    except subprocess.CalledProcessError as e:
        pytest.skip(f"swapon refused here: {e}")
    assert str(path) not in swaps() and not path.exists()


def test_the_disks_read_around_is_set_only_inside_its_block(tmp_path):
    from memplace.placement.sysfs import read_around
    found = read_around(str(tmp_path))
    if found is None or not os.access(found[1], os.W_OK):
        pytest.skip(f"{tmp_path}: /sys gives no read-around it may set")
    before = found[0] // 1024
    other = 256 if before != 256 else 512
    with ReadAround(tmp_path, other) as around:
        assert around.kib == other and read_around(str(tmp_path))[0] == other << 10
    assert read_around(str(tmp_path))[0] == before << 10
    with ReadAround(tmp_path, None) as around:  # not asked: left as it is
        assert around.kib == before
    assert read_around(str(tmp_path))[0] == before << 10


def test_a_placed_run_of_a_policy_that_places_nothing_is_the_plain_program(tmp_path):
    """As `memplace run` does: no runtime preloaded, none of its settings; a policy that
    places something gets them."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))
    import run as bench
    base = {"PATH": os.environ.get("PATH", "")}
    nothing = tmp_path / "nothing.toml"
    nothing.write_text('version = 1\ndefault = "system"\n')
    assert bench.placed_env(nothing, ["/bin/true"], tmp_path / "s0", tmp_path, base) == base
    assert bench.fast_device_stats(tmp_path / "s0", 1, 0) == "the plan places nothing: run without the runtime"
    some = tmp_path / "some.toml"
    some.write_text('version = 1\ndefault = "fast"\n[devices.fast]\nkind = "numa"\nnodes = [0]\n')
    env = bench.placed_env(some, ["/bin/true"], tmp_path / "s1", tmp_path, base)
    assert "libmemplace" in env["LD_PRELOAD"] and env["MEMPLACE_STATS"] == str(tmp_path / "s1")


def test_side_by_side_counts_pages_written_and_read_back(tmp_path):
    """side_by_side's per-run counters are /proc/vmstat deltas: writing a file and syncing
    it moves nr_written by at least its pages."""
    import side_by_side

    assert {"nr_written", "workingset_refault_file"} <= set(side_by_side.VMSTAT) <= set(side_by_side.vmstat())
    if filesystem_type(tmp_path) in ("tmpfs", "ramfs"):
        pytest.skip(f"{tmp_path} is in memory: nothing is written to a disk")
    before = side_by_side.vmstat()
    f = tmp_path / "data"
    with open(f, "wb") as out:
        out.write(os.urandom(4 << 20))
        out.flush()
        os.fsync(out.fileno())
    assert side_by_side.vmstat()["nr_written"] - before["nr_written"] >= (4 << 20) // 4096


def test_explain_refusing_its_own_policy_says_so_in_one_line(tmp_path):
    """A --device-dir on a filesystem smaller than the file device's capacity: memplace
    refuses the policy explain.py wrote; one line naming it, exit 2, no traceback."""
    small = tmp_path / "small"
    small.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64m", "tmpfs", str(small)], check=True)
    try:
        r = subprocess.run([sys.executable, str(Path(__file__).resolve().parents[2] / "bench" / "capacity" /
                                                "explain.py"), "hotcold", "file", "100", "--device-dir", str(small),
                            "--out", str(tmp_path / "out")], capture_output=True, text=True, timeout=300)
    finally:
        subprocess.run(["umount", str(small)], check=True)
    assert r.returncode == 2, r.stdout + r.stderr
    assert "Traceback" not in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert r.stderr.startswith("explain.py: ") and "larger than the filesystem of" in r.stderr, r.stderr
