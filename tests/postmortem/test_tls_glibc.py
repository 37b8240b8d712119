"""memplace tls on glibc x86_64 cores: values equal what each thread printed before the crash."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from postmortem_support import build, crash, found, memplace_json, memplace_run, need, printed

VARS = ["t_long", "t_arr", "t_pt", "t_color", "t_ptr", "t_name", "t_union", "t_static", "lib_counter"]


def _expect(doc: dict, out: str, names=VARS) -> int:
    """Every printed (tid, name) has the same value in memplace's JSON; returns how many."""
    got = found(doc)
    want = printed(out)
    n = 0
    for (tid, name), text in want.items():
        if name not in names:
            continue
        v = got[(tid, name)]
        assert v["state"] == "ok", (tid, name, v)
        if name == "t_ptr":
            assert v["value"] == int(text), (tid, name, v)
        elif name == "t_union":
            assert v["value"]["u"] == int(text), (tid, name, v)
        elif name in ("t_color", "t_name"):
            assert v["value"] == text, (tid, name, v)
        elif name == "t_pt":
            x, y, tag = text.split()
            assert v["value"] == {"x": int(x), "y": int(y), "tag": tag}, (tid, name, v)
        else:
            assert v["text"] == text, (tid, name, v, text)
        n += 1
    return n


@pytest.fixture(scope="module")
def pie_core(tmp_path_factory):
    need("gcc", "gcc")
    tmp = tmp_path_factory.mktemp("pie")
    lib = build(tmp, "libt.c", "libt.so", "-shared", "-fPIC")
    exe = build(tmp, "tlsprog.c", "prog", "-DWITH_LIB", "-pthread", f"-L{tmp}", "-lt", f"-Wl,-rpath,{tmp}")
    core, out = crash(tmp, exe)
    return tmp, exe, core, out, lib


def test_pie_dynamic_values_equal_printed(pie_core):
    tmp, exe, core, out, _ = pie_core
    doc = memplace_json("tls", str(core), *VARS)
    assert doc["libc"] == "glibc" and doc["arch"] == "x86_64"
    assert _expect(doc, out) == 5 * len(VARS)  # main + 4 workers, every variable


def test_crashed_thread_is_marked(pie_core):
    _, _, core, out, _ = pie_core
    doc = memplace_json("tls", str(core), "t_long")
    crashing = int(re.search(r"^(\d+) crashing$", out, re.M).group(1))
    marked = [t["tid"] for t in doc["threads"] if t["crashed"]]
    assert marked == [crashing]
    assert all(t["thread_pointer"] for t in doc["threads"])


def test_all_variables_of_all_modules_when_none_named(pie_core):
    _, _, core, out, _ = pie_core
    doc = memplace_json("tls", str(core))
    names = {(v["module"], v["name"]) for v in doc["threads"][0]["variables"]}
    assert ("prog", "t_long") in names and ("libt.so", "lib_counter") in names and ("libt.so", "lib_pad") in names
    assert any(m == "libc.so.6" and n == "errno" for m, n in names)
    pads = {v["text"] for t in doc["threads"] for v in t["variables"] if v["name"] == "lib_pad"}
    assert pads == {'"\\001\\002\\003"'} or pads == {"{1, 2, 3}"} or len(pads) == 1


def test_thread_filter_and_human_output(pie_core):
    _, _, core, out, _ = pie_core
    tid = next(t for (t, n) in printed(out) if n == "t_long")
    doc = memplace_json("tls", str(core), "t_long", "--thread", str(tid))
    assert [t["tid"] for t in doc["threads"]] == [tid]
    r = memplace_run("tls", str(core), "t_long", "--thread", str(tid))
    assert f"thread {tid}" in r.stdout and "prog:t_long (long int) = " in r.stdout


def test_segv_in_worker(tmp_path):
    need("gcc", "gcc")
    exe = build(tmp_path, "tlsprog.c", "prog", "-pthread")
    core, out = crash(tmp_path, exe, "segv")
    doc = memplace_json("tls", str(core), "t_long", "t_arr", "t_pt")
    assert _expect(doc, out, ["t_long", "t_arr", "t_pt"]) == 15
    crashed = [t for t in doc["threads"] if t["crashed"]]
    assert len(crashed) == 1 and crashed[0]["variables"][0]["text"] == "1002"


@pytest.mark.parametrize("flags", [["-no-pie"], ["-static"]], ids=["non-pie", "static"])
def test_non_pie_and_static(tmp_path, flags):
    need("gcc", "gcc")
    exe = build(tmp_path, "tlsprog.c", "prog", "-pthread", *flags)
    core, out = crash(tmp_path, exe)
    doc = memplace_json("tls", str(core), *VARS[:-1])
    assert _expect(doc, out, VARS[:-1]) == 5 * (len(VARS) - 1)


def test_equal_to_gdb(pie_core):
    need("gdb", "gdb")
    tmp, exe, core, out, _ = pie_core
    r = subprocess.run(["gdb", "-batch", "-nx", "-ex", "thread apply all print t_long",
                        "-ex", "thread apply all print t_arr", "-ex", "thread apply all print lib_counter",
                        str(exe), str(core)], capture_output=True, text=True, timeout=120)
    gdb = {}
    tid = None
    seen = 0
    for line in r.stdout.splitlines():
        m = re.match(r"Thread \d+ \(.*LWP (\d+)\)", line)
        if m:
            tid = int(m.group(1))
            continue
        m = re.match(r"\$\d+ = (.*)", line)
        if m and tid is not None:
            name = ["t_long", "t_arr", "lib_counter"][seen // 5]
            gdb[(tid, name)] = m.group(1)
            seen += 1
    assert seen == 15, r.stdout + r.stderr
    got = found(memplace_json("tls", str(core), "t_long", "t_arr", "lib_counter"))
    for key, text in gdb.items():
        assert got[key]["text"] == text, (key, got[key], text)


def _one_line_error(r, *words):
    assert r.returncode == 2, (r.returncode, r.stdout, r.stderr)
    err = r.stderr.strip()
    assert "\n" not in err and "Traceback" not in err, err
    for w in words:
        assert w in err, err


def test_bad_input_not_a_core(pie_core, tmp_path):
    _, exe, _, _, _ = pie_core
    _one_line_error(memplace_run("tls", str(exe), check=False), "not a core")
    junk = tmp_path / "junk"
    junk.write_bytes(b"hello, not an elf file at all" * 10)
    _one_line_error(memplace_run("tls", str(junk), check=False), "not an ELF")
    _one_line_error(memplace_run("tls", str(tmp_path / "missing"), check=False), "missing")


def test_bad_input_truncated_core(pie_core, tmp_path):
    _, _, core, _, _ = pie_core
    cut = tmp_path / "cut.core"
    cut.write_bytes(core.read_bytes()[: 64 * 1024])
    _one_line_error(memplace_run("tls", str(cut), check=False), "truncated")


def test_bad_input_mismatched_executable(pie_core, tmp_path):
    tmp, _, core, _, _ = pie_core
    other = build(tmp_path, "libt.c", "other", "-shared", "-fPIC")
    other_exe = tmp_path / "other_exe"
    (tmp_path / "o.c").write_text("int main(void){return 0;}\n")
    subprocess.run(["gcc", "-o", str(other_exe), str(tmp_path / "o.c")], check=True)
    _one_line_error(memplace_run("tls", str(core), "--exe", str(other_exe), check=False), "do not belong together")


def test_bad_input_missing_library(pie_core, tmp_path):
    tmp, exe, core, _, _ = pie_core
    # A sysroot with only the executable: the libraries are missing.
    (tmp_path / tmp.relative_to("/")).mkdir(parents=True)
    _one_line_error(memplace_run("tls", str(core), "--exe", str(exe), "--sysroot", str(tmp_path), check=False),
                    "not found")


def test_unknown_variable_is_an_error(pie_core):
    _, _, core, _, _ = pie_core
    _one_line_error(memplace_run("tls", str(core), "no_such_var", check=False), "no_such_var")
