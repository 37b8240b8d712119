"""aarch64 glibc cores made by qemu-user: TLS values, thread pointers and pthread keys.

qemu's guest cores have NT_PRSTATUS and NT_AUXV but neither NT_ARM_TLS nor NT_FILE,
so memplace must find every thread pointer in glibc's thread lists and every library
through the link_map under --sysroot. Each program prints what each thread sees
(including its own tpidr_el0) before crashing; memplace must say the same.
"""

from __future__ import annotations

import contextlib
import io
import re
import struct
from pathlib import Path

import pytest

from postmortem_support import (
    AARCH64_SYSROOT, build, found, memplace_json, memplace_run, need_aarch64, printed, qemu_crash,
)
from test_keys import _check
from test_tls_glibc import VARS, _expect

CC = "aarch64-linux-gnu-gcc"


def _tls(core: Path, exe: Path, *args: str) -> dict:
    return memplace_json("tls", str(core), "--exe", str(exe), "--sysroot", AARCH64_SYSROOT, *args)


def _printed_tps(out: str) -> dict[int, int]:
    return {tid: int(v, 16) for (tid, name), v in printed(out).items() if name == "tp"}


@pytest.fixture(scope="module")
def a64_core(tmp_path_factory):
    need_aarch64()
    tmp = tmp_path_factory.mktemp("a64")
    build(tmp, "libt.c", "libt.so", "-shared", "-fPIC", cc=CC)
    exe = build(tmp, "tlsprog.c", "prog", "-DWITH_LIB", "-pthread", f"-L{tmp}", "-lt", f"-Wl,-rpath,{tmp}", cc=CC)
    core, out = qemu_crash(tmp, exe)
    return tmp, exe, core, out


def test_values_equal_printed_with_a_shared_library(a64_core):
    _, exe, core, out = a64_core
    doc = _tls(core, exe, *VARS)
    assert doc["arch"] == "aarch64" and doc["libc"] == "glibc"
    assert _expect(doc, out) == 5 * len(VARS)  # main + 4 workers; lib_counter is libt.so's


def test_thread_pointers_from_glibc_lists_equal_tpidr(a64_core):
    _, exe, core, out = a64_core
    doc = _tls(core, exe, "t_long")
    want = _printed_tps(out)
    assert len(want) == 5
    assert {t["tid"]: t["thread_pointer"] for t in doc["threads"]} == want
    crashing = int(re.search(r"^(\d+) crashing$", out, re.M).group(1))
    assert [t["tid"] for t in doc["threads"] if t["crashed"]] == [crashing]


def test_every_variable_typed_from_dwarf_without_locations(a64_core):
    # GCC gives aarch64 TLS variables no DW_AT_location: types come from DWARF, offsets from STT_TLS.
    _, exe, core, _ = a64_core
    doc = _tls(core, exe)
    main = {(v["module"], v["name"]): v for v in doc["threads"][0]["variables"]}
    assert main[("prog", "t_pt")]["type"] == "struct point"
    assert main[("prog", "t_static")]["type"] == "short unsigned int"
    assert main[("libt.so", "lib_pad")]["text"] == '"\\001\\002\\003"'
    assert ("libc.so.6", "errno") in main
    assert not any(n.startswith("$") or n == "_TLS_MODULE_BASE_" for _, n in main)  # no mapping symbols


def test_human_output(a64_core):
    _, exe, core, out = a64_core
    r = memplace_run("tls", str(core), "t_arr", "--exe", str(exe), "--sysroot", AARCH64_SYSROOT)
    tid, text = next((t, v) for (t, n), v in printed(out).items() if n == "t_arr")
    assert f"thread {tid}" in r.stdout and f"prog:t_arr (int [3]) = {text}" in r.stdout


def test_segv_in_worker(tmp_path):
    need_aarch64()
    exe = build(tmp_path, "tlsprog.c", "prog", "-pthread", cc=CC)
    core, out = qemu_crash(tmp_path, exe, "segv")
    doc = _tls(core, exe, "t_long", "t_pt")
    assert _expect(doc, out, ["t_long", "t_pt"]) == 10
    crashed = [t for t in doc["threads"] if t["crashed"]]
    assert len(crashed) == 1 and crashed[0]["variables"][0]["text"] == "1002"


def test_static_executable(tmp_path):
    # No _rtld_global: the thread lists are static variables named by the executable's .symtab.
    need_aarch64()
    exe = build(tmp_path, "tlsprog.c", "prog", "-pthread", "-static", cc=CC)
    core, out = qemu_crash(tmp_path, exe)
    doc = memplace_json("tls", str(core), "--exe", str(exe), *VARS[:-1])
    assert _expect(doc, out, VARS[:-1]) == 5 * (len(VARS) - 1)
    assert {t["tid"]: t["thread_pointer"] for t in doc["threads"]} == _printed_tps(out)


def _dlopen_core(tmp: Path, *lib_flags: str):
    build(tmp, "libdyn_a.c", "libdyn_a.so", "-shared", "-fPIC", *lib_flags, cc=CC)
    build(tmp, "libdyn_b.c", "libdyn_b.so", "-shared", "-fPIC", *lib_flags, cc=CC)
    exe = build(tmp, "dlprog.c", "prog", "-pthread", "-ldl", cc=CC)
    core, out = qemu_crash(tmp, exe, str(tmp))
    return exe, core, out


def test_dlopen_through_the_dtv_after_slot_reuse(tmp_path):
    # Traditional TLS (__tls_get_addr): the re-opened module lives only in DTVs, and threads
    # whose DTV predates the slot's new generation have no block for it (not the old module's).
    need_aarch64()
    exe, core, out = _dlopen_core(tmp_path, "-mtls-dialect=trad")
    got = found(_tls(core, exe, "b_val", "b_arr"))
    want = printed(out)
    assert len([k for k in want if k[1] == "b_val"]) == 4
    for (tid, name), text in want.items():
        v = got[(tid, name)]
        if text == "none":
            assert v["state"] == "not allocated in this thread", v
        else:
            assert v["state"] == "ok" and v["text"] == text, (v, text)


def test_dlopen_with_tls_descriptors_uses_static_surplus(tmp_path):
    # aarch64's default TLS descriptors let glibc put a dlopen'ed module in the static TLS
    # surplus and initialise its block in every thread: threads that never touched it read
    # the initial image (libdyn_b.c: b_val = 22, b_arr zero).
    need_aarch64()
    exe, core, out = _dlopen_core(tmp_path)
    got = found(_tls(core, exe, "b_val", "b_arr"))
    for (tid, name), text in printed(out).items():
        if text == "none":
            assert got[(tid, "b_val")]["text"] == "22" and got[(tid, "b_arr")]["text"] == "{0, 0}"
        else:
            assert got[(tid, name)]["text"] == text, (got[(tid, name)], text)


def test_keys_equal_getspecific_and_misuse_flagged(tmp_path):
    need_aarch64()
    build(tmp_path, "libbad.c", "libbad.so", "-shared", "-fPIC", "-pthread", cc=CC)
    exe = build(tmp_path, "keysprog.c", "prog", "-pthread", f"-L{tmp_path}", "-lbad",
                f"-Wl,-rpath,{tmp_path}", cc=CC)
    core, out = qemu_crash(tmp_path, exe)
    doc = memplace_json("keys", str(core), "--exe", str(exe), "--sysroot", AARCH64_SYSROOT)
    assert doc["arch"] == "aarch64" and doc["libc"] == "glibc"
    _check(doc, out)


def test_drgn_helpers_on_a_qemu_core(a64_core):
    drgn = pytest.importorskip("drgn")
    import logging

    from memplace.postmortem.drgn_helpers import memplace_target, thread_pointer, tls_object

    _, exe, core, out = a64_core
    logging.getLogger("drgn").setLevel(logging.CRITICAL)
    prog = drgn.Program()
    prog.set_core_dump(str(core))
    memplace_target(prog, exe=str(exe), sysroot=AARCH64_SYSROOT)  # drgn alone finds no module here
    want = printed(out)
    for tid, tp in _printed_tps(out).items():
        assert thread_pointer(prog, tid) == tp
        pt = tls_object(prog, "t_pt", thread=tid)
        x, y, tag = want[(tid, "t_pt")].split()
        assert (pt.x.value_(), pt.y.value_(), pt.tag.string_().decode()) == (int(x), int(y), tag)
        assert tls_object(prog, "lib_counter", thread=tid).value_() == int(want[(tid, "lib_counter")])
        ptr = tls_object(prog, "t_ptr", thread=tid)
        assert ptr.value_() == int(want[(tid, "t_ptr")]) and (not ptr.value_() or ptr[0].value_() == 7)


# -- a kernel-style core: the same core with one NT_ARM_TLS note after each NT_PRSTATUS -------

def _with_arm_tls_notes(core: Path, tps: dict[int, int], dest: Path) -> None:
    """Copy `core` adding NT_ARM_TLS (tpidr_el0) after each thread's NT_PRSTATUS, as Linux writes them."""
    data = bytearray(core.read_bytes())
    phoff, = struct.unpack_from("<Q", data, 32)
    phentsize, phnum = struct.unpack_from("<HH", data, 54)
    phdrs = [phoff + i * phentsize for i in range(phnum)]
    ph = next(p for p in phdrs if struct.unpack_from("<I", data, p)[0] == 4)  # PT_NOTE
    off, = struct.unpack_from("<Q", data, ph + 8)  # p_offset
    size, = struct.unpack_from("<Q", data, ph + 32)  # p_filesz
    notes, new, pos = bytes(data[off:off + size]), bytearray(), 0
    while pos + 12 <= len(notes):
        namesz, descsz, ntype = struct.unpack_from("<III", notes, pos)
        end = pos + 12 + ((namesz + 3) & ~3) + ((descsz + 3) & ~3)
        new += notes[pos:end]
        if ntype == 1 and notes[pos + 12:pos + 16] == b"CORE":  # NT_PRSTATUS: pr_pid at +32
            tid, = struct.unpack_from("<i", notes, pos + 12 + ((namesz + 3) & ~3) + 32)
            new += struct.pack("<III", 6, 8, 0x401) + b"LINUX\0\0\0" + struct.pack("<Q", tps[tid])
        pos = end
    data += bytes(-len(data) % 8)
    struct.pack_into("<Q", data, ph + 8, len(data))
    struct.pack_into("<QQ", data, ph + 32, len(new), 0)
    dest.write_bytes(bytes(data) + bytes(new))


def test_nt_arm_tls_notes_are_used_when_present(a64_core, tmp_path):
    from memplace.postmortem.elfcore import Core
    from memplace.postmortem.threads import thread_pointer_from_notes

    _, exe, core, out = a64_core
    tps = _printed_tps(out)
    kcore = tmp_path / "kernel-style.core"
    _with_arm_tls_notes(core, tps, kcore)
    c = Core(str(kcore))
    assert {t.tid: thread_pointer_from_notes(c.arch, c.elf.machine, t) for t in c.threads} == tps
    doc = _tls(kcore, exe, *VARS)
    assert _expect(doc, out) == 5 * len(VARS)


# -- bad input ------------------------------------------------------------------------------

def _one_line_error(r, *words):
    assert r.returncode == 2, (r.returncode, r.stdout, r.stderr)
    err = r.stderr.strip()
    assert "\n" not in err and "Traceback" not in err, err
    for w in words:
        assert w in err, err


def test_qemu_core_without_exe_asks_for_it(a64_core):
    _, _, core, _ = a64_core
    _one_line_error(memplace_run("tls", str(core), check=False), "--exe")


def test_library_of_another_machine_under_sysroot(a64_core, tmp_path):
    _, exe, core, _ = a64_core
    x86_libc = next((p for p in ("/lib/x86_64-linux-gnu/libc.so.6", "/lib64/libc.so.6") if Path(p).is_file()), None)
    if x86_libc is None:
        pytest.skip("no host libc.so.6 to stand in for a wrong library")
    lib = tmp_path / "root" / "lib"
    lib.mkdir(parents=True)
    (lib / "libc.so.6").symlink_to(x86_libc)
    r = memplace_run("tls", str(core), "t_long", "--exe", str(exe), "--sysroot", str(tmp_path / "root"), check=False)
    _one_line_error(r, "libc.so.6", "another machine")


# -- hostile input where the qemu path reads: thread lists, struct pthread, DTVs, link_maps ---

@pytest.fixture(scope="module")
def small_a64_core(tmp_path_factory):
    """A small qemu core (256 KiB stacks) and the file offsets of what memplace reads there."""
    from memplace.postmortem.target import open_core

    need_aarch64()
    tmp = tmp_path_factory.mktemp("a64fuzz")
    build(tmp, "libt.c", "libt.so", "-shared", "-fPIC", cc=CC)
    exe = build(tmp, "tlsprog.c", "prog", "-DWITH_LIB", "-pthread", f"-L{tmp}", "-lt", f"-Wl,-rpath,{tmp}", cc=CC)
    core, _ = qemu_crash(tmp, exe, stack_kib=256)
    t = open_core(str(core), exe=str(exe), sysroot=AARCH64_SYSROOT)
    lay, w = t.glibc, 8
    addrs = [t.glibc_global(n) for n in ("_dl_stack_used", "_dl_stack_user", "_dl_tls_dtv_slotinfo_list")]
    for th in t.threads:
        pd = th.tp + t.pthread_offset
        addrs += [pd + lay.off(f) for f in ("pthread_list", "pthread_tid", "pthread_dtvp", "pthread_specific")]
        addrs += [pd + lay.off("pthread_list") + w]
        dtv = t.mem.read_word(th.tp)
        addrs += [dtv - 2 * w, dtv] + [dtv + 2 * w * k for k in range(1, 4)]
    for m in t.modules:
        if m.link_map:
            addrs += [m.link_map + i * w for i in range(4)]
            addrs += [m.link_map + lay.off("link_map_l_tls_modid"), m.link_map + lay.off("link_map_l_tls_offset")]
    offsets = []
    for a in filter(None, addrs):
        p = next((p for p in t.mem.loads if p.vaddr <= a < p.vaddr + p.filesz), None)
        if p is not None:
            offsets.append(p.offset + a - p.vaddr)
    assert len(offsets) > 40
    return exe, core.read_bytes(), tmp, sorted(set(offsets))


@pytest.mark.slow
def test_hostile_thread_lists_and_dtvs_give_an_answer_or_one_line(small_a64_core):
    pytest.importorskip("hypothesis")
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    from test_fuzz import _run

    exe, data, tmp, offsets = small_a64_core
    poke = st.tuples(st.sampled_from(offsets), st.integers(-8, 8), st.binary(min_size=1, max_size=8))

    @settings(max_examples=200, deadline=None, suppress_health_check=list(HealthCheck))
    @given(pokes=st.lists(poke, min_size=1, max_size=4), cmd=st.sampled_from(["tls", "keys"]))
    def run(pokes, cmd):
        buf = bytearray(data)
        for off, delta, payload in pokes:
            at = max(0, off + delta)
            buf[at:at + len(payload)] = payload
        path = tmp / "mutated.core"
        path.write_bytes(bytes(buf))
        err = io.StringIO()
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
            code = _run([cmd, str(path), "--exe", str(exe), "--sysroot", AARCH64_SYSROOT, "--json"])
        assert code in (0, 2), (code, err.getvalue())
        if code == 2:
            text = err.getvalue()
            assert text.count("\n") == 1 and text.startswith("memplace: "), text

    run()
