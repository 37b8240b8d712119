"""The on-disk index of TLS variables: used when it holds, remade when a file changes or it is damaged."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from postmortem_support import SRC, crash, need

from memplace.elf import ElfFile


def _tls(core, env) -> str:
    r = subprocess.run([sys.executable, "-m", "memplace", "tls", str(core), "t_one"], capture_output=True,
                       text=True, env=dict(env, PYTHONPATH=SRC), check=True)
    return r.stdout


def test_index_used_while_it_holds_and_remade_when_the_program_changes(tmp_path):
    need("gcc", "gcc")
    src = tmp_path / "one.c"
    src.write_text("#include <stdlib.h>\n__thread int t_one = 7;\nint main(void){ abort(); }\n")
    exe = tmp_path / "one"
    subprocess.run(["gcc", "-g", "-o", str(exe), str(src)], check=True)
    core, _ = crash(tmp_path, exe)
    env = dict(os.environ, MEMPLACE_CACHE=str(tmp_path / "cache"))
    assert "one:t_one (int) = 7" in _tls(core, env)
    record = tmp_path / "cache" / "tls" / (ElfFile(str(exe)).build_id.hex() + ".json")
    doc = json.loads(record.read_text())
    assert [v[0] for v in doc["vars"]] == ["t_one"]
    # The next run reads the record, not the DWARF: a type changed in it shows.
    t = doc["vars"][0][3]
    doc["types"][t][1] = "indexed_int"
    record.write_text(json.dumps(doc))
    assert "one:t_one (indexed_int) = 7" in _tls(core, env)
    # The program's file changes (same build-id, new mtime): the record no longer holds.
    os.utime(exe, ns=(1, 1))
    assert "one:t_one (int) = 7" in _tls(core, env)
    # A damaged record is read from DWARF again and rewritten.
    record.write_text("{not json")
    assert "one:t_one (int) = 7" in _tls(core, env)
    assert json.loads(record.read_text())["format"] == 1
