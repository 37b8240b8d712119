"""Devices with `lock = true`: their pages stay resident once touched (mlock2 on fault), so
that under a memory limit with swap the kernel swaps everything else but never them."""

import os
import re
import shutil
import subprocess
import sys

import pytest

from placement_support import build, line_of


def policy(tmp_path, lock: str):
    p = tmp_path / f"policy-{lock}.toml"
    p.write_text(f"""
version = 1
[devices.fast]
kind = "numa"
nodes = [0]
capacity = "64MiB"
{"lock = " + lock if lock != "absent" else ""}
[[rules]]
name = "locked"
site = ["locked.c:{line_of('locked.c', 'locked')}"]
device = "fast"
""")
    return p


def locked_kb(out: str) -> int:
    return int(re.search(r"locked (\d+) kB", out).group(1))


def run(prog, pol, *prefix):
    return subprocess.run([*prefix, sys.executable, "-m", "memplace", "run", "--policy", str(pol), "--",
                           str(prog), str(16 << 20)], capture_output=True, text=True, timeout=120)


def test_a_locked_device_keeps_what_the_program_touched_resident(tmp_path):
    prog = build(tmp_path, "locked.c")
    r = run(prog, policy(tmp_path, "true"))
    assert r.returncode == 0, r.stderr
    assert locked_kb(r.stdout) >= 16 << 10   # the 16 MiB block, touched
    assert locked_kb(r.stdout) < 64 << 10    # on fault: the rest of the device's range is not populated
    for lock in ("false", "absent"):
        r = run(prog, policy(tmp_path, lock))
        assert r.returncode == 0, r.stderr
        assert locked_kb(r.stdout) == 0


@pytest.mark.parametrize("delay", ["10", "100"])
def test_calloc_on_a_locked_device_reads_zeros_where_freed_blocks_were(tmp_path, delay):
    """A locked device's purge unlocks and releases freed ranges; a block that spans a
    released range and one still holding old data (freed within mimalloc's purge delay)
    must not be taken for zeros. (Before the fix: 189 of 770 callocs returned 0xab.)"""
    prog = build(tmp_path, "calloc_reuse.c")
    pol = tmp_path / "locked.toml"
    pol.write_text('version = 1\ndefault = "fast"\n[devices.fast]\nkind = "numa"\nnodes = [0]\n'
                   'capacity = "512MiB"\nlock = true\n')
    r = subprocess.run([sys.executable, "-m", "memplace", "run", "--policy", str(pol), "--", str(prog), "1500"],
                       capture_output=True, text=True, timeout=300, env={**os.environ, "MIMALLOC_PURGE_DELAY": delay})
    assert r.returncode == 0 and "callocs 770 not zero 0" in r.stdout, r.stdout + r.stderr


def test_lock_must_be_a_boolean(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text('version = 1\n[devices.fast]\nkind = "numa"\nnodes = [0]\nlock = "yes"\n')
    r = subprocess.run([sys.executable, "-m", "memplace", "policy", "check", str(bad)], capture_output=True, text=True)
    assert r.returncode == 2
    out = r.stdout + r.stderr
    assert "lock = 'yes' must be true or false" in out and "Traceback" not in out


def test_a_file_device_takes_no_lock(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text(f'version = 1\n[devices.slow]\nkind = "file"\npath = "{tmp_path}"\nlock = true\n')
    r = subprocess.run([sys.executable, "-m", "memplace", "policy", "check", str(bad)], capture_output=True, text=True)
    out = r.stdout + r.stderr
    assert r.returncode == 2 and "unknown key" in out and "lock" in out and "Traceback" not in out


@pytest.mark.skipif(shutil.which("setpriv") is None or shutil.which("prlimit") is None,
                    reason="setpriv/prlimit not installed (Debian package util-linux)")
def test_a_refused_lock_is_said_once_and_the_program_runs_unlocked(tmp_path):
    """RLIMIT_MEMLOCK 0 and no CAP_IPC_LOCK: mlock fails; the device still serves."""
    prog = build(tmp_path, "locked.c")
    prefix = ["prlimit", "--memlock=0:0"]
    if subprocess.run(["id", "-u"], capture_output=True, text=True).stdout.strip() == "0":
        prefix += ["setpriv", "--inh-caps=-ipc_lock", "--ambient-caps=-ipc_lock", "--bounding-set=-ipc_lock"]
    r = run(prog, policy(tmp_path, "true"), *prefix)
    assert r.returncode == 0, r.stderr
    assert locked_kb(r.stdout) == 0
    assert r.stderr.count("memplace: device 'fast': cannot lock its memory") == 1, r.stderr
