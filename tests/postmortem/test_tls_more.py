"""TLS beyond the x86_64 glibc basics: dlopen'ed modules and slot reuse, musl, i386."""

from __future__ import annotations

from postmortem_support import build, crash, found, i386_compiler, memplace_json, need, printed
from test_tls_glibc import VARS, _expect


def test_dlopen_after_dlclose_reuses_slot_with_generation_check(tmp_path):
    need("gcc", "gcc")
    build(tmp_path, "libdyn_a.c", "libdyn_a.so", "-shared", "-fPIC")
    build(tmp_path, "libdyn_b.c", "libdyn_b.so", "-shared", "-fPIC")
    exe = build(tmp_path, "dlprog.c", "prog", "-pthread", "-ldl")
    core, out = crash(tmp_path, exe, str(tmp_path))
    doc = memplace_json("tls", str(core), "b_val", "b_arr")
    got = found(doc)
    want = printed(out)
    assert len([k for k in want if k[1] == "b_val"]) == 4
    for (tid, name), text in want.items():
        v = got[(tid, name)]
        if text == "none":  # this thread never touched the re-opened module's TLS
            assert v["state"] == "not allocated in this thread", v
        else:
            assert v["state"] == "ok" and v["text"] == text, (v, text)


def _musl_or_skip():
    need("musl-gcc", "musl-tools")


def test_musl_dynamic(tmp_path):
    _musl_or_skip()
    build(tmp_path, "libt.c", "libt.so", "-shared", "-fPIC", cc="musl-gcc")
    exe = build(tmp_path, "tlsprog.c", "prog", "-DWITH_LIB", f"-L{tmp_path}", "-lt", f"-Wl,-rpath,{tmp_path}",
                cc="musl-gcc")
    core, out = crash(tmp_path, exe)
    doc = memplace_json("tls", str(core), *VARS)
    assert doc["libc"] == "musl"
    assert _expect(doc, out) == 5 * len(VARS)


def test_musl_static(tmp_path):
    _musl_or_skip()
    exe = build(tmp_path, "tlsprog.c", "prog", "-static", cc="musl-gcc")
    core, out = crash(tmp_path, exe)
    doc = memplace_json("tls", str(core), *VARS[:-1])
    assert doc["libc"] == "musl"
    assert _expect(doc, out, VARS[:-1]) == 5 * (len(VARS) - 1)


def test_i386_glibc_gdt_path(tmp_path):
    cc, m32 = i386_compiler(tmp_path)
    build(tmp_path, "libt.c", "libt.so", *m32, "-shared", "-fPIC", cc=cc)
    exe = build(tmp_path, "tlsprog.c", "prog", *m32, "-DWITH_LIB", "-pthread", f"-L{tmp_path}", "-lt",
                f"-Wl,-rpath,{tmp_path}", cc=cc)
    core, out = crash(tmp_path, exe)
    doc = memplace_json("tls", str(core), *VARS)
    assert doc["arch"] == "i386" and doc["libc"] == "glibc"
    assert _expect(doc, out) == 5 * len(VARS)


def test_i386_keys(tmp_path):
    cc, m32 = i386_compiler(tmp_path)
    from test_keys import _check

    build(tmp_path, "libbad.c", "libbad.so", *m32, "-shared", "-fPIC", "-pthread", cc=cc)
    exe = build(tmp_path, "keysprog.c", "prog", *m32, "-pthread", f"-L{tmp_path}", "-lbad",
                f"-Wl,-rpath,{tmp_path}", cc=cc)
    core, out = crash(tmp_path, exe)
    _check(memplace_json("keys", str(core)), out)
