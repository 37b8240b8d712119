"""memplace keys: key table, per-thread values equal pthread_getspecific, misuse flagged."""

from __future__ import annotations

import shutil

import pytest

from postmortem_support import build, crash, memplace_json, memplace_run, need
from support import memplace_to_closed_pipe


def _getspecific(out: str) -> dict[tuple[int, int], int]:
    res = {}
    for line in out.splitlines():
        p = line.split()
        if len(p) == 3 and p[1].startswith("key"):
            res[(int(p[0]), int(p[1][3:]))] = int(p[2])
    return res


def _check(doc: dict, out: str, musl: bool = False) -> None:
    want = _getspecific(out)
    assert want, out
    ok = {(v["tid"], v["key"]): v["value"] for v in doc["values"] if v["status"] == "ok"}
    for (tid, key), val in want.items():
        if val:
            assert ok.get((tid, key)) == val, (tid, key, hex(val), doc["values"])
        else:
            assert (tid, key) not in ok, (tid, key)
    keys = {k["key"]: k for k in doc["keys"]}
    assert keys[0]["destructor_name"] == "prog:exe_key_destroy"
    assert keys[1]["destructor_name"] == "prog:other_destroy"
    assert keys[2]["destructor"] is None and keys[3]["destructor"] is None
    misuse = [f for f in doc["findings"] if f["key"] == 0 and "libbad.so" in f["message"]]
    assert len(misuse) == 1, doc["findings"]
    # The misusing thread's value points into libbad.so's data (bad_state).
    bad = [v for v in doc["values"] if v["key"] == 0 and v["points_to"] and "libbad.so" in v["points_to"]]
    assert len(bad) == 1 and "bad_state" in bad[0]["points_to"]
    if not musl:
        stale = [v for v in doc["values"] if v["key"] == 3 and v["status"] == "stale"]
        assert len(stale) == 3  # the three workers' values from before the delete


@pytest.fixture(scope="module")
def keys_core(tmp_path_factory):
    need("gcc", "gcc")
    tmp = tmp_path_factory.mktemp("keys")
    build(tmp, "libbad.c", "libbad.so", "-shared", "-fPIC", "-pthread")
    exe = build(tmp, "keysprog.c", "prog", "-pthread", f"-L{tmp}", "-lbad", f"-Wl,-rpath,{tmp}")
    return crash(tmp, exe)


def test_glibc_keys_equal_getspecific_and_misuse_flagged(keys_core):
    core, out = keys_core
    doc = memplace_json("keys", str(core))
    assert doc["libc"] == "glibc"
    _check(doc, out)


def test_keys_human_report_names_the_misuse(keys_core):
    core, _ = keys_core
    r = memplace_run("keys", str(core))
    assert "misuse" in r.stdout and "never created" in r.stdout


def test_musl_dynamic_keys(tmp_path):
    need("musl-gcc", "musl-tools")
    build(tmp_path, "libbad.c", "libbad.so", "-shared", "-fPIC", cc="musl-gcc")
    exe = build(tmp_path, "keysprog.c", "prog", f"-L{tmp_path}", "-lbad", f"-Wl,-rpath,{tmp_path}", cc="musl-gcc")
    core, out = crash(tmp_path, exe)
    doc = memplace_json("keys", str(core))
    assert doc["libc"] == "musl"
    _check(doc, out, musl=True)


@pytest.mark.parametrize("command", ["keys", "tls"])
@pytest.mark.parametrize("as_json", [[], ["--json"]])
def test_a_reader_that_stops_early_ends_memplace_quietly(keys_core, command, as_json):
    """`memplace keys core | head -1`: status 0 and nothing on stderr (keys exited 1 before)."""
    core, _ = keys_core
    r = memplace_to_closed_pipe(command, str(core), *as_json)
    assert (r.returncode, r.stderr) == (0, "")


@pytest.mark.parametrize("option", ["--exe", "--sysroot"])
@pytest.mark.parametrize("bad", ["/dev/zero", "fifo", "missing", "directory"])
def test_a_bad_exe_or_sysroot_is_one_line_naming_it(keys_core, tmp_path, option, bad):
    """Given with a real core, so that the option itself is read (not a missing core)."""
    import os

    from support import assert_one_line_error, memplace

    core, _ = keys_core
    path = {"fifo": tmp_path / "fifo", "missing": tmp_path / "missing", "directory": tmp_path}.get(bad, bad)
    if bad == "fifo":
        os.mkfifo(path)
    r = memplace("keys", str(core), option, str(path), timeout=60)
    # a directory is a sysroot: one without the core's program, which the line names
    assert_one_line_error(r, *(["not found", "--sysroot"] if (option, bad) == ("--sysroot", "directory") else [str(path)]))
