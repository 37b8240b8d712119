"""`memplace demo`, the README's main job: profile -> advise -> run with the advised policy ->
report, on the built-in example; the advised policy passes `policy check` and the program
reports (through the kernel) that its hot arrays are on node 0 and its cold ones in the file."""

import shutil
import subprocess
import sys

import pytest

pytestmark = pytest.mark.skipif(shutil.which("gcc") is None, reason="needs Debian package gcc")


def test_demo_places_hot_data_on_the_fast_device(tmp_path):
    work = tmp_path / "demo"
    r = subprocess.run([sys.executable, "-m", "memplace", "demo", "--dir", str(work)],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    lines = {l.split()[0]: l for l in r.stderr.splitlines()
             if l.strip().startswith(("grid ", "next ", "rhs ", "input ", "history "))}
    for name in ("grid", "next", "rhs"):
        assert "node 0 (bound)" in lines[name] and lines[name].rstrip().endswith("ok"), lines
    for name in ("input", "history"):
        assert f"file {work}/pmem/" in lines[name] and lines[name].rstrip().endswith("ok"), lines
    assert (work / "report.html").read_text().count("<svg") >= 2

    check = subprocess.run([sys.executable, "-m", "memplace", "policy", "check",
                            str(work / "policy.toml"), "--exe", str(work / "hotcold")],
                           capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr
