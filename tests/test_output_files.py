"""Files memplace writes: whole or not at all, and never a device or FIFO replaced by a
file (renaming over /dev/null made it a regular file for every later program)."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
import threading

import pytest

from memplace.errors import UserError
from memplace.output_files import write_whole


def test_a_regular_file_is_replaced_whole(tmp_path):
    target = tmp_path / "out.json"
    target.write_text("old")
    write_whole(target, "new\n")
    assert target.read_text() == "new\n"
    assert [p.name for p in tmp_path.iterdir()] == ["out.json"]  # no temporary file left


def test_a_fifo_is_written_into_not_replaced(tmp_path):
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    got = []
    reader = threading.Thread(target=lambda: got.append(open(fifo, "rb").read()))
    reader.start()
    write_whole(fifo, b"through the pipe")
    reader.join(timeout=30)
    assert got == [b"through the pipe"]
    assert stat.S_ISFIFO(os.stat(fifo).st_mode)


def test_a_missing_directory_is_one_user_error(tmp_path):
    with pytest.raises(UserError, match="does not exist"):
        write_whole(tmp_path / "nowhere" / "out.json", "x")


def test_policy_compile_into_a_fifo_keeps_the_fifo(tmp_path):
    policy = tmp_path / "p.toml"
    policy.write_text('version = 1\n[devices.fast]\nkind = "numa"\nnodes = [0]\n')
    fifo = tmp_path / "compiled"
    os.mkfifo(fifo)
    got = []
    reader = threading.Thread(target=lambda: got.append(open(fifo, "rb").read()))
    reader.start()
    r = subprocess.run([sys.executable, "-m", "memplace", "policy", "compile", str(policy), "-o", str(fifo)],
                       capture_output=True, text=True, timeout=120)
    reader.join(timeout=30)
    assert r.returncode == 0, r.stderr
    assert got and got[0].startswith(b"MPLCPOL")
    assert stat.S_ISFIFO(os.stat(fifo).st_mode)
