"""What `memplace tls` and `keys` print, beside gdb: plain text when piped, names and types
at least as good as gdb's, JSON numbers, threads in LWP order with the crashed one marked."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from postmortem_support import SRC, build, crash, found, memplace_json, memplace_run, need

LIBC = "/lib/x86_64-linux-gnu/libc.so.6"


@pytest.fixture(scope="module")
def owner_core(tmp_path_factory):
    need("gcc", "gcc")
    tmp = tmp_path_factory.mktemp("owner")
    exe = build(tmp, "keyowner.c", "prog", "-pthread")
    return crash(tmp, exe)


def _crashed_tid(core: Path) -> int:
    return next(t["tid"] for t in memplace_json("tls", str(core))["threads"] if t["crashed"])


def test_keys_piped_is_plain_text_with_deleted_key_and_owner_guess(owner_core):
    core, out = owner_core
    r = memplace_run("keys", str(core))
    lines = r.stdout.splitlines()
    assert not re.search(r"[━┃╇│]", r.stdout), r.stdout  # no rich table when piped
    assert lines[0].endswith("glibc, 2 keys in use, 3 values"), lines[0]  # the deleted key 1 is not counted
    rows = {ln.split()[0]: ln for ln in lines[2:5]}
    assert rows["0"].split()[2] == "prog:kept_destroy" and "not in use" not in rows["0"]
    assert "prog:gone_destroy" in rows["1"] and rows["1"].endswith("(not in use)")  # named and not in use
    assert "held by prog:worker_state_key, a guess" in rows["2"]
    crashed = _crashed_tid(core)
    values = [ln for ln in lines if ln.split()[:1] == [str(crashed)]]
    assert len(values) == 1 and "<- crashed" in values[0] and values[0].split()[-1] == "ok"


def test_keys_json_numbers_owner_and_values_equal_getspecific(owner_core):
    core, out = owner_core
    doc = memplace_json("keys", str(core))
    keys = {k["key"]: k for k in doc["keys"]}
    assert keys[1]["in_use"] is False and keys[1]["destructor_name"] == "prog:gone_destroy"
    assert isinstance(keys[0]["destructor"], int)
    assert keys[2]["held_by"] == ["prog:worker_state_key"] and keys[0]["held_by"] == []
    want = {int(ln.split()[0]): int(ln.split()[2]) for ln in out.splitlines() if " key2 " in ln}
    got = {v["tid"]: v["value"] for v in doc["values"] if v["key"] == 2 and v["status"] == "ok"}
    assert got == want and len(want) == 2
    assert [v["tid"] for v in doc["values"] if v["crashed"]] == [_crashed_tid(core)]
    assert doc["source"] == str(core) and doc["kind"] == "core"


@pytest.mark.parametrize("command", ["keys", "tls"])
def test_piped_into_head_exits_0(owner_core, command):
    core, _ = owner_core
    env = dict(os.environ, PYTHONPATH=SRC)
    r = subprocess.run(["bash", "-c", f'"{sys.executable}" -m memplace {command} "{core}" | head -1;'
                        ' exit ${PIPESTATUS[0]}'], capture_output=True, text=True, env=env)
    assert r.returncode == 0 and len(r.stdout.splitlines()) == 1, (r.returncode, r.stderr)
    assert r.stderr == ""


def test_tls_threads_sorted_crashed_marked_json_numbers(owner_core):
    core, _ = owner_core
    doc = memplace_json("tls", str(core))
    tids = [t["tid"] for t in doc["threads"]]
    assert tids == sorted(tids) and len(tids) == 3
    assert sum(t["crashed"] for t in doc["threads"]) == 1
    assert all(isinstance(t["thread_pointer"], int) for t in doc["threads"])
    assert all(isinstance(v["address"], int) for t in doc["threads"] for v in t["variables"] if v["state"] == "ok")
    text = memplace_run("tls", str(core)).stdout
    assert text.splitlines()[0].endswith("glibc, 3 threads")
    assert [int(m) for m in re.findall(r"^thread (\d+) ", text, re.M)] == tids
    assert re.search(rf"^thread {_crashed_tid(core)} .*<- crashed$", text, re.M)


def test_one_thread_is_singular(tmp_path):
    need("gcc", "gcc")
    src = tmp_path / "one.c"
    src.write_text("#include <stdlib.h>\n__thread int t_one = 7;\nint main(void){ abort(); }\n")
    exe = tmp_path / "one"
    subprocess.run(["gcc", "-g", "-o", str(exe), str(src)], check=True)
    core, _ = crash(tmp_path, exe)
    text = memplace_run("tls", str(core), "t_one").stdout
    assert text.splitlines()[0].endswith(", 1 thread") and "one:t_one (int) = 7" in text


def _libc_debug_file() -> bool:
    from memplace.elf import ElfFile
    from memplace.postmortem.modules import debug_file

    return debug_file(ElfFile(LIBC)) is not None


def test_libc_static_tls_typed_and_pointers_named_like_gdb(owner_core):
    if not Path(LIBC).is_file() or not _libc_debug_file():
        pytest.skip("libc's debug file is not installed (Debian package libc6-dbg)")
    core, _ = owner_core
    doc = memplace_json("tls", str(core))
    main = doc["threads"][0]  # the lowest tid: the main thread, which called malloc (tcache, arena)
    got = {v["name"]: v for v in main["variables"] if v["module"] == "libc.so.6"}
    # Static TLS of libc's own, untyped from .symtab alone, typed by libc6-dbg's DWARF.
    assert got["thread_arena"]["type"] == "mstate" and got["tls_dtor_list"]["type"] == "struct dtor_list *"
    assert got["lm_cache"]["type"] == "struct link_map *"
    # Named by the debug file's .symtab, as gdb names them; heap pointers labelled.
    assert got["__libc_tsd_LOCALE"]["text"].endswith("<libc.so.6:_nl_global_locale>")
    assert got["thread_arena"]["text"].endswith("<libc.so.6:main_arena>")
    assert got["tcache"]["text"].endswith("<heap>"), got["tcache"]
    assert all(isinstance(v["value"], int) for v in got.values() if v["type"].endswith("*"))


def test_cxx_static_member_once_and_typed(tmp_path):
    need("g++", "g++")
    src = tmp_path / "k.cc"
    src.write_text("#include <cstdlib>\nstruct K { static thread_local int another_thread_local; };\n"
                   "thread_local int K::another_thread_local = 42;\n"
                   "int main() { K::another_thread_local += 1; abort(); }\n")
    exe = tmp_path / "k"
    subprocess.run(["g++", "-g", "-O0", "-o", str(exe), str(src)], check=True)
    core, _ = crash(tmp_path, exe)
    doc = memplace_json("tls", str(core))
    mine = [v for v in doc["threads"][0]["variables"] if v["module"] == "k"]
    assert [(v["name"], v["type"], v["value"]) for v in mine] == [("K::another_thread_local", "int", 43)]


def _heavy_imports(*args: str, env: dict) -> list[str]:
    """Which of numpy, rich, pyelftools and drgn `memplace ARGS` imported."""
    code = ("import sys\nfrom memplace.cli import main\nsys.argv = ['memplace', *sys.argv[1:]]\n"
            "try:\n    main()\nexcept SystemExit:\n    pass\n"
            "sys.stderr.write(' '.join(sorted({m.split('.')[0] for m in sys.modules} & "
            "{'numpy', 'rich', 'elftools', 'drgn'})))\n")
    r = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True,
                       env=dict(env, PYTHONPATH=SRC))
    return r.stderr.split()


def test_help_and_tls_import_no_heavy_modules(owner_core, tmp_path):
    core, _ = owner_core
    env = dict(os.environ, MEMPLACE_CACHE=str(tmp_path / "cache"))
    assert _heavy_imports("--help", env=env) == []
    # A cold cache: the program's and libc6-dbg's DWARF are read by dwarf_reader.py, not
    # by pyelftools or drgn.
    assert _heavy_imports("tls", str(core), env=env) == []  # the index on disk: no DWARF reader
    assert _heavy_imports("keys", str(core), env=env) == []
    assert list((tmp_path / "cache" / "tls").glob("*.json"))
