"""Compare the runtime's x86_64 memory-operand decoder (runtime/util/x86_decode.c) with
capstone over every instruction of a binary's executable sections. Used by
tests/profiling/test_x86_decode.py; `python tests/profiling/x86_decode_check.py ELF...`
prints the disagreements."""

from __future__ import annotations

import ctypes
import subprocess
import sys
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


class Access(ctypes.Structure):
    _fields_ = [(n, ctypes.c_ubyte) for n in ("length", "memory", "access", "size", "base", "index",
                                               "scale", "segment", "string", "addr32", "vsib",
                                               "branch")] + [
        ("clobbers", ctypes.c_uint16), ("target", ctypes.c_int32), ("disp", ctypes.c_int64)]


def build_decoder(out_dir: Path) -> ctypes.CDLL:
    lib, wrapper = out_dir / "libx86decode.so", out_dir / "wrapper.c"
    wrapper.write_text(f'#include "{ROOT / "runtime/util/x86_decode.c"}"\n'
                       "__attribute__((visibility(\"default\"))) int decode(const unsigned char *c, "
                       "int n, struct mp_x86_access *o) { return mp_x86_decode(c, n, o); }\n")
    subprocess.run(["gcc", "-O2", "-shared", "-fPIC", "-I", str(ROOT / "runtime/include"),
                    "-o", str(lib), str(wrapper)], check=True)
    dll = ctypes.CDLL(str(lib))
    dll.decode.argtypes = [ctypes.c_char_p, ctypes.c_int, ctypes.POINTER(Access)]
    dll.decode.restype = ctypes.c_int
    return dll


def code_sections(path: str):
    from elftools.elf.elffile import ELFFile
    with open(path, "rb") as f:
        elf = ELFFile(f)
        for s in elf.iter_sections():
            if s["sh_flags"] & 0x4 and s["sh_type"] == "SHT_PROGBITS" and s.data_size:
                yield s.name, s["sh_addr"], s.data()


# capstone register ids -> encoding numbers (0 rax .. 15 r15), 16 rip
def _reg_table():
    from capstone import x86_const as x
    names = ["RAX", "RCX", "RDX", "RBX", "RSP", "RBP", "RSI", "RDI"] + [f"R{i}" for i in range(8, 16)]
    t = {getattr(x, "X86_REG_" + n): i for i, n in enumerate(names)}
    e = ["EAX", "ECX", "EDX", "EBX", "ESP", "EBP", "ESI", "EDI"] + [f"R{i}D" for i in range(8, 16)]
    t.update({getattr(x, "X86_REG_" + n): i for i, n in enumerate(e)})
    t[x.X86_REG_RIP] = 16
    t[x.X86_REG_EIP] = 16
    return t


_GPR = {}
for _i, _names in enumerate([("rax", "eax", "ax", "al", "ah"), ("rcx", "ecx", "cx", "cl", "ch"),
                             ("rdx", "edx", "dx", "dl", "dh"), ("rbx", "ebx", "bx", "bl", "bh"),
                             ("rsp", "esp", "sp", "spl"), ("rbp", "ebp", "bp", "bpl"),
                             ("rsi", "esi", "si", "sil"), ("rdi", "edi", "di", "dil")]):
    for _n in _names:
        _GPR[_n] = _i
for _i in range(8, 16):
    for _s in ("", "d", "w", "b"):
        _GPR[f"r{_i}{_s}"] = _i


def gpr_writes(md, ins) -> int:
    """capstone's general registers written by ins, as a bit mask (rsp left out: push/pop)."""
    try:
        _, written = ins.regs_access()
    except Exception:
        return 0
    mask = 0
    for r in written:
        n = _GPR.get(md.reg_name(r))
        if n is not None and n != 4:
            mask |= 1 << n
    return mask


# Instruction families whose memory read/write capstone 5 reports wrongly (checked by hand
# against the Intel SDM): for them the expectation comes from the operand's position in
# Intel syntax instead: the destination (first operand) is written, a source is read.
_STORE_FAMILIES = ("mov", "vmov", "set", "fst", "fist", "fnst", "stmxcsr", "vstmxcsr", "extract",
                   "vextract", "pextr", "vpextr", "vcvtps2ph", "vpmov", "vcompress", "vpcompress")
_READ_ONLY = ("test", "vgather", "vpgather", "vpcmp", "vcmp", "vptest", "vfpclass", "bt", "cmp")
_READ_WRITE = ("rol", "ror", "rcl", "rcr", "shl", "shr", "sar", "sal", "xadd", "xchg", "cmpxchg", "lock")


def expected_access(ins, m, mems) -> int:
    from capstone import CS_AC_READ, CS_AC_WRITE
    name = ins.mnemonic.split()[0]
    if name == "lock":
        return 3
    if name.startswith(_READ_WRITE) and ins.operands[0].type == m.type and ins.operands[0] is not None \
            and ins.op_str.startswith(("byte", "word", "dword", "qword")):
        return 3
    if name.startswith(_READ_ONLY) and not name.startswith("btc") and not name.startswith("btr") \
            and not name.startswith("bts"):
        return 1
    if name.startswith(_STORE_FAMILIES):
        first_is_memory = "[" in ins.op_str.split(",")[0]
        return 2 if first_is_memory else 1
    return (1 if m.access & CS_AC_READ else 0) | (2 if m.access & CS_AC_WRITE else 0)


def compare(dll, path: str, limit: int | None = None) -> dict:
    """Counts over every instruction capstone decodes: length agreement, memory-operand
    address agreement (base, index, scale, displacement) and read/write agreement."""
    import capstone
    from capstone import x86_const as x
    md = capstone.Cs(capstone.CS_ARCH_X86, capstone.CS_MODE_64)
    md.detail = True
    md.skipdata = True
    regs = _reg_table()
    c = Counter()
    bad: list[str] = []
    out = Access()
    for name, addr, data in code_sections(path):
        for ins in md.disasm(data, addr):
            if ins.id == 0:  # skipdata
                continue
            off = ins.address - addr
            chunk = data[off:off + 15]
            n = dll.decode(chunk, len(chunk), ctypes.byref(out))
            c["instructions"] += 1
            if n == 0:
                c["not_decoded"] += 1
                continue
            if n != ins.size:
                c["length_wrong"] += 1
                bad.append(f"length {n} != {ins.size}: {ins.bytes.hex()} {ins.mnemonic} {ins.op_str}")
                continue
            theirs = gpr_writes(md, ins)
            if theirs & ~out.clobbers:
                c["clobbers_missed"] += 1
                bad.append(f"clobbers {out.clobbers:#x} miss {theirs:#x}: {ins.bytes.hex()} {ins.mnemonic} {ins.op_str}")
            if ins.group(x.X86_GRP_JUMP) or ins.group(x.X86_GRP_CALL) or ins.group(x.X86_GRP_RET):
                c["branches"] += 1
                direct = ins.operands and ins.operands[0].type == x.X86_OP_IMM
                if not out.branch:
                    c["branch_missed"] += 1
                    bad.append(f"branch missed: {ins.bytes.hex()} {ins.mnemonic} {ins.op_str}")
                elif direct and out.branch in (1, 2) and ins.address + ins.size + out.target != ins.operands[0].imm:
                    c["target_wrong"] += 1
                    bad.append(f"target: {ins.bytes.hex()} {ins.mnemonic} {ins.op_str}")
            elif out.branch:
                c["branch_extra"] += 1
                bad.append(f"branch extra: {ins.bytes.hex()} {ins.mnemonic} {ins.op_str}")
            mems = [o for o in ins.operands if o.type == x.X86_OP_MEM]
            if ins.mnemonic == "lea" or ins.mnemonic.startswith("nop") or ins.mnemonic.startswith("prefetch"):
                mems = []
            if out.string:
                c["string"] += 1
                continue
            if not mems:
                if out.memory and out.access:
                    c["memory_extra"] += 1
                    bad.append(f"extra operand: {ins.bytes.hex()} {ins.mnemonic} {ins.op_str}")
                continue
            m = mems[0]
            c["memory"] += 1
            if not out.memory:
                c["memory_missed"] += 1
                bad.append(f"missed operand: {ins.bytes.hex()} {ins.mnemonic} {ins.op_str}")
                continue
            base = regs.get(m.mem.base, 255) if m.mem.base else 255
            index = regs.get(m.mem.index, 255) if m.mem.index else 255
            vsib = m.mem.index and m.mem.index not in regs
            ok = (base == out.base and m.mem.disp == out.disp and
                  (vsib and out.vsib or (index == out.index and (index == 255 or m.mem.scale == out.scale))))
            if not ok:
                c["address_wrong"] += 1
                bad.append(f"address b{out.base} i{out.index}*{out.scale}+{out.disp}: {ins.bytes.hex()} {ins.mnemonic} {ins.op_str}")
                continue
            c["address_right"] += 1
            want = expected_access(ins, m, mems)
            if want == out.access:
                c["access_right"] += 1
            else:
                c["access_wrong"] += 1
                bad.append(f"access {out.access} != {want}: {ins.bytes.hex()} {ins.mnemonic} {ins.op_str}")
            if m.size == out.size:
                c["size_right"] += 1
            else:
                c["size_wrong"] += 1
                bad.append(f"size {out.size} != {m.size}: {ins.bytes.hex()} {ins.mnemonic} {ins.op_str}")
            if limit and c["instructions"] >= limit:
                break
    return {"counts": dict(c), "bad": bad}


if __name__ == "__main__":
    import tempfile
    with tempfile.TemporaryDirectory() as d:
        dll = build_decoder(Path(d))
        for p in sys.argv[1:]:
            r = compare(dll, p)
            print(p, r["counts"])
            kinds = Counter(b.split(":")[0].split(" ")[0] + " " + b.split(": ")[1].split(" ")[-1 if False else 1] if ": " in b else b for b in r["bad"])
            for b in r["bad"][:0]:
                print(" ", b)
            mn = Counter((b.split(" ")[0], b.split(": ", 1)[1].split(" ")[1]) for b in r["bad"])
            for k, v in mn.most_common(40):
                print("  ", v, k)
