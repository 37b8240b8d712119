"""fork with data on a file device (MAP_SHARED underneath): the child gets a private
snapshot, or fork fails with ENOMEM; fork+exec, vfork and posix_spawn are unaffected.

Every program (programs/fork_private.c) runs without memplace and under `memplace run
--policy`; stdout and exit status must match (except where privatizing is made impossible,
which a plain fork does not need)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from placement_support import build, run_placed


def file_policy(tmp_path: Path, pmem: Path) -> Path:
    """Every allocation on a file device."""
    p = tmp_path / "policy.toml"
    p.write_text(f"""
version = 1
default = "pmem"
[devices.pmem]
kind = "file"
path = "{pmem}"
capacity = "256MiB"
""")
    return p


def both(prog: Path, policy: Path, *args: str):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LD_PRELOAD", "MEMPLACE_"))}
    plain = subprocess.run([str(prog), *args], capture_output=True, text=True, env=env, timeout=300)
    placed = run_placed(prog, policy, *args)
    return plain, placed


@pytest.mark.parametrize("how", ["privacy", "privacy_Fork"])
def test_parent_and_child_see_only_their_own_writes_under_an_address_space_limit(tmp_path, pmem, how):
    """fork, and _Fork (which runs no atfork handlers)."""
    prog = build(tmp_path, "fork_private.c", "-pthread")
    plain, placed = both(prog, file_policy(tmp_path, pmem), how)
    assert plain.returncode == 0, plain.stdout + plain.stderr
    assert plain.stdout == ("child: fork-time data intact, sees p[0]=B p[1]=A p[end]=A s=child!\n"
                            "parent: child status 0, sees p[0]=A p[1]=C s=parent2\n")
    assert (placed.returncode, placed.stdout) == (0, plain.stdout), placed.stderr[-3000:]
    # both blocks (an arena block and one grown in place) really were on the file device
    assert f"PLACED privacy file:{pmem}=2" in placed.stderr.splitlines()


def test_memory_the_parent_frees_after_fork_is_punched_out_of_its_own_file_only(tmp_path, pmem, monkeypatch):
    """A file device's purge punches freed pages out of the file (heaps/arena.c): after
    fork returns the child's copy is its own file, so the parent's frees and punches never
    reach the block the child still holds. Purges at once (MIMALLOC_PURGE_DELAY=0)."""
    prog = build(tmp_path, "fork_private.c", "-pthread")
    monkeypatch.setenv("MIMALLOC_PURGE_DELAY", "0")
    plain, placed = both(prog, file_policy(tmp_path, pmem), "freeing")
    assert plain.stdout == "freeing: 0 of 20 children saw the block changed\n", plain.stdout + plain.stderr
    assert (placed.returncode, placed.stdout) == (0, plain.stdout), placed.stderr[-3000:]
    assert f"PLACED freeing file:{pmem}=1" in placed.stderr.splitlines()


@pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("setpriv"), reason="needs root and setpriv")
def test_privacy_without_the_capability_to_open_map_files(tmp_path, pmem):
    """Without CAP_SYS_ADMIN and CAP_CHECKPOINT_RESTORE /proc/self/map_files cannot be
    opened: the child copies every used byte from the mapping instead; same result."""
    prog = build(tmp_path, "fork_private.c", "-pthread")
    plain, _ = both(prog, file_policy(tmp_path, pmem), "privacy")
    placed = subprocess.run(["setpriv", "--bounding-set", "-sys_admin,-checkpoint_restore", "--",
                             sys.executable, "-m", "memplace", "run", "--policy",
                             str(file_policy(tmp_path, pmem)), "--", str(prog), "privacy"],
                            capture_output=True, text=True, timeout=300)
    assert (placed.returncode, placed.stdout) == (0, plain.stdout), placed.stderr[-3000:]
    assert f"PLACED privacy file:{pmem}=2" in placed.stderr.splitlines()


def test_threads_forking_while_threads_allocate_on_a_small_device_falling_back_to_a_file(tmp_path, pmem):
    prog = build(tmp_path, "fork_private.c", "-pthread")
    policy = tmp_path / "policy.toml"
    policy.write_text(f"""
version = 1
default = "fast"
[devices.fast]
kind = "numa"
nodes = [0]
capacity = "64KiB"
fallback = "pmem"
[devices.pmem]
kind = "file"
path = "{pmem}"
capacity = "2MiB"
""")
    stats = tmp_path / "stats.json"
    plain, _ = both(prog, policy, "stress")
    placed = run_placed(prog, policy, "stress", stats=stats)
    assert plain.stdout == "forks=120 failed=0 bad=0\n" and plain.returncode == 0
    assert (placed.returncode, placed.stdout) == (0, plain.stdout), placed.stderr[-3000:]
    devices = {d["name"]: d for d in json.loads(stats.read_text())["totals"]["devices"]}
    assert devices["pmem"]["allocations"] > 0  # the file device was in use while forking
    assert f"file:{pmem}=" in next(l for l in placed.stderr.splitlines() if l.startswith("PLACED held"))


def test_fork_fails_with_enomem_and_leaves_no_child_when_the_copy_cannot_be_made(tmp_path, pmem):
    """No descriptor left for the child's new file: a plain fork needs none and succeeds;
    under memplace fork must fail as the kernel's would, not give a child that shares."""
    prog = build(tmp_path, "fork_private.c", "-pthread")
    plain, placed = both(prog, file_policy(tmp_path, pmem), "nofile")
    assert plain.stdout == "fork ok errno=0 exit=0; children left: none\n"
    assert placed.returncode == 0, placed.stderr[-3000:]
    assert placed.stdout == "fork -1 errno=ENOMEM exit=-1; children left: none\n"
    assert f"PLACED nofile file:{pmem}=1" in placed.stderr.splitlines()


def test_fork_exec_vfork_posix_spawn_and_system_return_the_childs_status(tmp_path, pmem):
    prog = build(tmp_path, "fork_private.c", "-pthread")
    plain, placed = both(prog, file_policy(tmp_path, pmem), "spawn")
    assert plain.stdout == "fork+exec: 7\nvfork+exec: 3\nposix_spawn: 5\nsystem: 9\ndata intact: 1\n"
    assert (placed.returncode, placed.stdout) == (0, plain.stdout), placed.stderr[-3000:]
    assert f"PLACED spawn file:{pmem}=1" in placed.stderr.splitlines()


def test_the_child_copies_what_was_written_not_the_zero_pages_read_around_it(tmp_path, pmem):
    """The parent's first write faults in a page of the device's file and the kernel
    reads megabytes of never-written zero pages around it into the page cache; the child
    copies the written data only (its file holds a few pages, not the parent's 256 MiB
    arena). Needs root for /proc/self/map_files (else every used byte is copied)."""
    if os.geteuid() != 0:
        pytest.skip("needs CAP_CHECKPOINT_RESTORE or root to open /proc/self/map_files")
    prog = build(tmp_path, "fork_copy_size.c")
    r = run_placed(prog, file_policy(tmp_path, pmem))
    assert r.returncode == 0, r.stderr
    fields = dict(kv.split("=") for kv in r.stdout.split())
    assert fields["intact"] == "1"
    assert 0 < int(fields["child_file_bytes"]) <= 2 << 20, r.stdout
