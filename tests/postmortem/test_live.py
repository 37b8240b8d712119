"""memplace tls/keys --pid: a running process is read and keeps running."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from postmortem_support import build, memplace_json, need, printed, wait_for_line
from test_tls_glibc import VARS, _expect


@pytest.mark.parametrize("cc", ["gcc", "musl-gcc"])
def test_live_process_values_and_keeps_running(tmp_path, cc):
    need(cc, "musl-tools" if cc == "musl-gcc" else "gcc")
    build(tmp_path, "libt.c", "libt.so", "-shared", "-fPIC", cc=cc)
    exe = build(tmp_path, "tlsprog.c", "prog", "-DWITH_LIB", "-pthread", f"-L{tmp_path}", "-lt",
                f"-Wl,-rpath,{tmp_path}", cc=cc)
    p = subprocess.Popen([str(exe), "wait"], stdout=subprocess.PIPE, text=True)
    try:
        lines = wait_for_line(p, "ready")
        before = sorted(int(t.name) for t in Path(f"/proc/{p.pid}/task").iterdir())
        doc = memplace_json("tls", "--pid", str(p.pid), *VARS)
        assert _expect(doc, "\n".join(lines)) == 5 * len(VARS)
        assert all(not t["crashed"] for t in doc["threads"])
        # Still running, same threads, not left stopped or traced.
        assert p.poll() is None
        after = sorted(int(t.name) for t in Path(f"/proc/{p.pid}/task").iterdir())
        assert after == before
        for tid in after:
            st = Path(f"/proc/{p.pid}/task/{tid}/status").read_text()
            assert "TracerPid:\t0" in st
            assert Path(f"/proc/{p.pid}/task/{tid}/stat").read_text().rsplit(")", 1)[1].split()[0] in "SR"
    finally:
        p.kill()
        p.wait()


def test_live_bad_pid():
    from postmortem_support import memplace_run

    r = memplace_run("tls", "--pid", "999999999", check=False)
    assert r.returncode == 2 and "no such process" in r.stderr and "Traceback" not in r.stderr
