"""dwarf_reader.py against pyelftools and drgn: the same TLS variables, offsets and types."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
from postmortem_support import PROGS, i386_compiler, need

from memplace.elf import ElfFile
from memplace.postmortem import tls_variables as tv
from memplace.postmortem.dwarf_reader import Dwarf, Unsupported
from memplace.postmortem.modules import debug_file
from memplace.postmortem.tls_index import encode_type

LIBC = "/lib/x86_64-linux-gnu/libc.so.6"

CXX = r"""
#include <cstdlib>
namespace outer { namespace inner { thread_local long deep = 5; } }
struct K { static thread_local int member; };
thread_local int K::member = 43;
struct Flags { unsigned a : 3; unsigned b : 5; int c : 7; long tail; };
thread_local Flags t_flags = {1, 2, -3, 4};
enum class Mode : short { Off = -1, On = 1 };
thread_local Mode t_mode = Mode::On;
struct Node { Node *next; int v; };
thread_local Node t_node = {nullptr, 9};
thread_local const char *t_text = "hello";
thread_local double t_grid[2][3];
int bump() { static thread_local int calls = 0; return ++calls; }
int main() { bump(); t_grid[1][2] = 1.5; return outer::inner::deep + K::member + t_node.v > 0 ? 0 : 1; }
"""


def _symbols(elf: ElfFile) -> dict:
    dbg = debug_file(elf)
    syms = {s.name: s for s in elf.tls_symbols}
    syms.update({s.name: s for s in dbg.tls_symbols if s.name not in syms})
    return syms


def _flat(variables) -> list:
    """Each variable with its whole type tree as plain lists: equal lists, equal types."""
    out = []
    for v in variables:
        rows: list = []
        out.append((v.name, v.offset, v.size, None if v.type is None else encode_type(v.type, {}, rows), rows))
    return out


def _builds(tmp: Path) -> list[Path]:
    need("gcc", "gcc")
    need("g++", "g++")
    cxx = tmp / "k.cc"
    cxx.write_text(CXX)
    variants = [("gcc", PROGS / "tlsprog.c", "c5", ["-gdwarf-5", "-pthread"]),
                ("gcc", PROGS / "tlsprog.c", "c4o2", ["-gdwarf-4", "-O2", "-pthread"]),
                ("gcc", PROGS / "tlsprog.c", "cgz", ["-gdwarf-5", "-gz=zlib", "-pthread"]),
                ("g++", cxx, "cc5", ["-gdwarf-5"]),
                ("g++", cxx, "cc4", ["-gdwarf-4", "-O1"])]
    if shutil.which("clang"):  # DWARF 5 with strx/addrx forms
        variants += [("clang", PROGS / "tlsprog.c", "clang5", ["-pthread"]),
                     ("clang++", cxx, "clangcc", [])]
    out = []
    for cc, src, name, flags in variants:
        exe = tmp / name
        subprocess.run([cc, "-g", *flags, "-o", str(exe), str(src)], check=True)
        out.append(exe)
    return out


def test_reader_finds_what_pyelftools_finds(tmp_path):
    for exe in _builds(tmp_path):
        elf = ElfFile(str(exe))
        syms = _symbols(elf)
        mine = tv._small_tls_variables(elf, elf.word, syms)
        theirs = tv._pyelftools_tls_variables(str(exe), elf.word, syms)
        assert len(mine) >= 8, exe
        assert _flat(mine) == _flat(theirs), exe
    names = {v.name for v in mine}
    assert {"outer::inner::deep", "K::member", "bump::calls", "t_grid"} <= names


def test_reader_on_i386(tmp_path):
    cc, flags = i386_compiler(tmp_path)
    exe = tmp_path / "t32"
    subprocess.run([cc, *flags, "-g", "-pthread", "-o", str(exe), str(PROGS / "tlsprog.c")], check=True)
    elf = ElfFile(str(exe))
    syms = _symbols(elf)
    mine = tv._small_tls_variables(elf, elf.word, syms)
    assert len(mine) >= 8
    assert _flat(mine) == _flat(tv._pyelftools_tls_variables(str(exe), elf.word, syms))


def test_units_with_a_tls_pattern_hold_every_tls_variable(tmp_path):
    """The raw-byte prefilter of big DWARF misses no variable a full read finds."""
    for exe in _builds(tmp_path):
        dwarf = Dwarf.open(ElfFile(str(exe)))
        full: list = []
        for unit in dwarf.units():
            tv._collect(unit.iter_DIEs(), tv.TypeBuilder(8), None, full, {})
        picked: list = []
        for unit, hits in dwarf.tls_units().items():
            tv._collect(unit.iter_DIEs(within=hits), tv.TypeBuilder(8), None, picked, {})
        assert full and _flat(picked) == _flat(full), exe


def test_type_units_fall_back_to_pyelftools(tmp_path):
    need("g++", "g++")
    src = tmp_path / "k.cc"
    src.write_text(CXX)
    exe = tmp_path / "tu"
    subprocess.run(["g++", "-gdwarf-4", "-fdebug-types-section", "-o", str(exe), str(src)], check=True)
    elf = ElfFile(str(exe))
    with pytest.raises(Unsupported):
        Dwarf.open(elf)
    got = tv.dwarf_tls_variables(elf)
    assert {"K::member": "int", "t_flags": "struct Flags"}.items() <= {v.name: v.type.display() for v in got}.items()


def test_libc_debug_file_typed_as_drgn_types_it():
    if not Path(LIBC).is_file():
        pytest.skip(f"no {LIBC}")
    elf = ElfFile(LIBC)
    dbg = debug_file(elf)
    if dbg is None or dbg.section(".debug_info")[4] <= tv.SMALL_DWARF:
        pytest.skip("libc's debug file is not installed (Debian package libc6-dbg)")
    pytest.importorskip("drgn")
    syms = _symbols(elf)
    mine = tv._big_tls_variables(dbg, elf.word, syms)
    theirs = tv._drgn_tls_variables(elf, dbg, None)
    assert [(v.name, v.offset, v.size) for v in mine] == [(v.name, v.offset, v.size) for v in theirs]
    for m, t in zip(mine, theirs):
        if t.type is not None:  # drgn drops qualifiers: `const uint16_t *` is its `uint16_t *`
            assert m.type is not None and m.type.display().replace("const ", "") == t.type.display(), m.name
    typed = {v.name: v.type.display() for v in mine if v.type is not None}
    assert typed["errno"] == "int" and typed["__libc_errno"] == "int"  # an alias at errno's offset
    assert typed["thread_arena"] == "mstate"


class _Hang(Exception):
    pass


def _raise_hang(signum, frame):
    raise _Hang()


def test_damaged_dwarf_gives_an_answer_never_an_error_or_a_hang(tmp_path, monkeypatch):
    """Bytes of .debug_info and .debug_abbrev overwritten: the reader's Unsupported or
    IndexError sends the call to pyelftools (or drgn), which answers or says None."""
    import random
    import signal

    need("gcc", "gcc")
    exe = tmp_path / "p"
    subprocess.run(["gcc", "-g", "-gdwarf-5", "-pthread", "-o", str(exe), str(PROGS / "tlsprog.c")], check=True)
    data = exe.read_bytes()
    elf = ElfFile(str(exe))
    spans = [(s[3], s[4]) for s in elf.sections if s[0] in (".debug_info", ".debug_abbrev")]
    rng = random.Random(14)  # fixed: the same damages every run
    old = signal.signal(signal.SIGALRM, _raise_hang)
    try:
        for n in range(40):
            buf = bytearray(data)
            for _ in range(rng.randint(1, 6)):
                off, size = rng.choice(spans)
                buf[off + rng.randrange(size)] = rng.randrange(256)
            path = tmp_path / f"p{n}"
            path.write_bytes(bytes(buf))
            tv._DWARF_CACHE.clear()
            # Every other one as big DWARF: the unit prefilter and symbol matching.
            monkeypatch.setattr(tv, "SMALL_DWARF", -1 if n % 2 else 256 << 10)
            signal.alarm(30)
            got = tv.dwarf_tls_variables(ElfFile(str(path)))
            signal.alarm(0)
            assert got is None or all(isinstance(v, tv.TlsVar) for v in got)
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)
