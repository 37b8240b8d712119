"""The guests' shared parts without booting: console parsing, files sent back over the
console, and the libraries of another machine's program found without running it."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from guest_base import MARK, foreign_libraries, parse_steps, received_file, send_file_step

SYSROOT = "/usr/aarch64-linux-gnu"


def test_steps_cut_by_their_markers_and_an_unfinished_step_has_no_status():
    t = "abcd1234"
    console = (f"[boot noise]\n{MARK} {t} begin one\nhello\n\n{MARK} {t} end one 3\n"
               f"{MARK} other begin stale\nx\n{MARK} {t} begin two\npartial output")
    steps = parse_steps(console, t)
    assert (steps["one"].status, steps["one"].output) == (3, "hello\n")
    assert steps["two"].status is None and steps["two"].output == "partial output"
    assert "stale" not in steps


def test_a_sent_file_comes_back_byte_for_byte(tmp_path):
    # The same shell pipeline the guest runs (busybox there, gzip and base64 here).
    for tool in ("gzip", "base64"):
        if shutil.which(tool) is None:
            pytest.skip(f"{tool} not installed")
    data = os.urandom(5000) + bytes(1 << 20) + b"end"  # a core is mostly zeros
    f = tmp_path / "core"
    f.write_bytes(data)
    out = subprocess.run(["sh", "-c", send_file_step("core", str(f)).shell], capture_output=True, text=True,
                         check=True).stdout
    assert len(out) < 20000 and received_file(out) == data


def test_foreign_libraries_of_an_aarch64_program(tmp_path):
    if shutil.which("aarch64-linux-gnu-gcc") is None or not Path(SYSROOT, "lib", "libc.so.6").is_file():
        pytest.skip("aarch64 cross compiler or libc missing (Debian packages gcc-aarch64-linux-gnu, "
                    "libc6-dev-arm64-cross)")
    (tmp_path / "lib.c").write_text("int f(void) { return 1; }\n")
    (tmp_path / "main.c").write_text("int f(void);\nint main(void) { return f(); }\n")
    cc = ["aarch64-linux-gnu-gcc", "-o"]
    subprocess.run([*cc, str(tmp_path / "libf.so"), "-shared", "-fPIC", str(tmp_path / "lib.c")], check=True)
    subprocess.run([*cc, str(tmp_path / "prog"), str(tmp_path / "main.c"), f"-L{tmp_path}", "-lf",
                    f"-Wl,-rpath,{tmp_path}"], check=True)
    libs = dict(foreign_libraries(tmp_path / "prog", [(f"{SYSROOT}/lib", "/lib")]))
    assert libs == {f"{SYSROOT}/lib/ld-linux-aarch64.so.1": "/lib/ld-linux-aarch64.so.1",
                    f"{SYSROOT}/lib/libc.so.6": "/lib/libc.so.6",
                    str(tmp_path / "libf.so"): str(tmp_path / "libf.so")}
    (tmp_path / "libf.so").unlink()
    with pytest.raises(RuntimeError, match="libf.so not found"):
        foreign_libraries(tmp_path / "prog", [(f"{SYSROOT}/lib", "/lib")])
