"""Compare the runtime's aarch64 decoder (runtime/util/aarch64_decode.c, compiled for this
host) with capstone's ARM64 decoding over every instruction of an aarch64 binary's
executable sections (memory operand parts, read/write, size, registers written,
branches), and its register following (mp_a64_step, mp_a64_address) with unicorn's
execution of the same instructions. Used by tests/profiling/test_aarch64_sampling.py;
`python tests/profiling/aarch64_decode_check.py ELF...` prints the disagreements."""

from __future__ import annotations

import ctypes
import random
import re
import subprocess
import sys
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SP, PC, NONE = 31, 32, 255
EXT_X, EXT_UXTW, EXT_SXTW = 0, 1, 2
OFFSET, PRE, POST = 0, 1, 2
READ, WRITE = 1, 2


class Insn(ctypes.Structure):
    _fields_ = [(n, ctypes.c_ubyte) for n in ("memory", "access", "branch", "base", "index", "extend",
                                               "shift", "writeback")] + [
        ("size", ctypes.c_uint16), ("written", ctypes.c_uint32), ("disp", ctypes.c_int64)]


class Regs(ctypes.Structure):
    _fields_ = [("x", ctypes.c_uint64 * 32), ("pc", ctypes.c_uint64), ("known", ctypes.c_uint32)]


def build_decoder(out_dir: Path) -> ctypes.CDLL:
    lib, wrapper = out_dir / "liba64decode.so", out_dir / "wrapper.c"
    wrapper.write_text(f'#include "{ROOT / "runtime/util/aarch64_decode.c"}"\n'
                       "#define X __attribute__((visibility(\"default\")))\n"
                       "X int decode(uint32_t i, struct mp_a64_insn *d) { return mp_a64_decode(i, d); }\n"
                       "X int address(uint32_t i, const struct mp_a64_regs *r, uint64_t *a) {\n"
                       "  struct mp_a64_insn d; return mp_a64_decode(i, &d) && mp_a64_address(&d, r, a); }\n"
                       "X int step(uint32_t i, struct mp_a64_regs *r) {\n"
                       "  struct mp_a64_insn d; if (!mp_a64_decode(i, &d)) return 0; mp_a64_step(i, &d, r); return 1; }\n")
    subprocess.run(["gcc", "-O2", "-shared", "-fPIC", "-I", str(ROOT / "runtime/include"),
                    "-o", str(lib), str(wrapper)], check=True)
    dll = ctypes.CDLL(str(lib))
    dll.decode.argtypes = [ctypes.c_uint32, ctypes.POINTER(Insn)]
    dll.address.argtypes = [ctypes.c_uint32, ctypes.POINTER(Regs), ctypes.POINTER(ctypes.c_uint64)]
    dll.step.argtypes = [ctypes.c_uint32, ctypes.POINTER(Regs)]
    return dll


def code_words(path: str):
    """(address, 32-bit word) of every instruction slot in the executable sections."""
    from elftools.elf.elffile import ELFFile
    with open(path, "rb") as f:
        elf = ELFFile(f)
        for s in elf.iter_sections():
            if s["sh_flags"] & 0x4 and s["sh_type"] == "SHT_PROGBITS" and s.data_size:
                data, base = s.data(), s["sh_addr"]
                for off in range(0, len(data) - 3, 4):
                    yield base + off, int.from_bytes(data[off:off + 4], "little")


def gpr(name: str) -> int | None:
    """x0-x30/w0-w30 -> 0-30, sp/wsp -> 31; anything else (xzr, vector, flags) -> None."""
    name = {"fp": "x29", "lr": "x30", "w29": "x29", "w30": "x30"}.get(name, name)
    if name in ("sp", "wsp"):
        return SP
    m = re.fullmatch(r"[xw](\d+)", name)
    return int(m.group(1)) if m and int(m.group(1)) < 31 else None


def signed(v: int) -> int:
    return v - (1 << 64) if v >= 1 << 63 else v


REG_BYTES = {"x": 8, "w": 4, "q": 16, "d": 8, "s": 4, "h": 2, "b": 1}
ARRANGEMENT = {"16b": 16, "8h": 16, "4s": 16, "2d": 16, "1q": 16, "8b": 8, "4h": 8, "2s": 8, "1d": 8}
ELEMENT = {"b": 1, "h": 2, "s": 4, "d": 8, "q": 16}
ATOMIC = re.compile(r"^(ld|st)(add|clr|eor|set|smax|smin|umax|umin)(a|l|al)?(b|h)?$|^swp(a|l|al)?(b|h)?$|^cas")
SKIP = re.compile(r"^(ldg|stg|stzg|st2g|stz2g|ldgm|stgm|stzgm|ldraa|ldrab|ld64b|st64b|prf|rprfm|gc|ldap.*\.|sys)")


def expected(ins) -> dict | None:
    """What the decoder must say about capstone's `ins`: a memory operand's parts, size and
    access (from the operand text and the mnemonic: capstone's own access flags for ARM64
    are incomplete), or None when the instruction is not a load or store it follows."""
    m, text = ins.mnemonic, ins.op_str
    if SKIP.match(m) or not (m.startswith(("ld", "st", "swp", "cas"))) or "{z" in text:
        return None  # memory tags, pointer authentication, prefetches, SVE: not followed
    out = {"writeback": OFFSET, "index": NONE, "extend": EXT_X, "shift": 0, "disp": 0}
    mem = re.search(r"\[((?:[xw]\d+|w?sp|fp|lr)\b[^\]]*)\](!?)(?:, (.+))?$", text)  # not a lane's [n]
    if mem is None:  # LDR (literal): "ldr x0, #0x1234"
        lit = re.search(r"#(-?0x[0-9a-f]+|-?\d+)$", text)
        if not lit:
            return None
        out.update(base=PC, disp=int(lit.group(1), 0) - ins.address)
    else:
        parts = [p.strip() for p in mem.group(1).split(",")]
        out["base"] = gpr(parts[0])
        for p in parts[1:]:
            if p.startswith("#"):
                out["disp"] = signed(int(p[1:], 0))
            elif gpr(p) is not None:
                out["index"] = gpr(p)
                if p.startswith("w"):
                    out["extend"] = EXT_UXTW  # capstone prints "uxtw"/"sxtw" next: set below
            else:
                ext, _, amount = p.partition(" #")
                out["extend"] = {"uxtw": EXT_UXTW, "sxtw": EXT_SXTW}.get(ext, EXT_X)
                out["shift"] = int(amount or "0", 0)
        if mem.group(2):
            out["writeback"] = PRE
        elif mem.group(3):
            out["writeback"] = POST
            after = mem.group(3).strip()
            if after.startswith("#"):
                out["disp"] = signed(int(after[1:], 0))
            else:
                out["index"] = gpr(after)
    before = text[:mem.start()] if mem else text[:text.rindex(",")]
    vector = re.search(r"\{([^}]*)\}(\[\d+\])?", before)
    if vector:
        regs = [r.strip() for r in vector.group(1).split(",")]
        if len(regs) == 1 and " - " in regs[0]:
            a, b = (int(re.search(r"v(\d+)", x).group(1)) for x in regs[0].split(" - "))
            arr = regs[0].split(".")[-1]
            regs = [f"v{a}.{arr}"] * ((b - a) % 32 + 1)
        arr = regs[0].split(".")[1]
        if vector.group(2) or m.endswith("r") or arr in ELEMENT:  # one lane, or replicated: elements
            size = len(regs) * ELEMENT[arr[-1]]
        else:
            size = len(regs) * ARRANGEMENT[arr]
    else:
        regs = [r.strip() for r in before.split(",") if r.strip()]
        if re.match(r"^st(l)?xr|^st(l)?xp", m):
            regs = regs[1:]  # the status register
        if ATOMIC.match(m):
            regs = regs[:2] if m.startswith("casp") else regs[:1]
        width = REG_BYTES.get(regs[0][0], 0) if regs else 0
        if m[-1] in "bh":  # ldrb, ldursh, stlrh, ldaddalb, casb, swph, ...
            width = 1 if m[-1] == "b" else 2
        elif m.endswith("sw"):
            width = 4
        size = width * len(regs)
    if ATOMIC.match(m) or m.startswith("cas"):
        access = READ | WRITE
    elif m.startswith("ldapr") and not m.startswith("ldapur"):
        access = READ
    else:
        access = READ if m.startswith("ld") else WRITE
    out.update(size=size, access=access)
    return out


# capstone 5 marks the first printed register of these as written, but they write only the
# flags (cmp: subs xzr, ...) or nothing a program sees (svc: the kernel's return in x0)
CAPSTONE_NO_WRITE = re.compile(r"^(cmp|cmn|tst|ccmp|ccmn|fcmp|fcmpe|fccmp|fccmpe)$")


def gpr_writes(md, ins) -> int:
    if CAPSTONE_NO_WRITE.match(ins.mnemonic):
        return 0
    if ins.mnemonic == "svc":
        return 1  # x0: the system call's result (capstone says x30)
    try:
        _, written = ins.regs_access()
    except Exception:  # noqa: BLE001 - capstone has no access table for it
        return 0
    mask = 0
    for r in written:
        n = gpr(md.reg_name(r))
        if n is not None:
            mask |= 1 << n
    return mask


def compare(decoder, path: str, limit: int | None = None) -> dict:
    """Counts of agreement and disagreement over `path`'s instructions, and examples."""
    import capstone
    from capstone import arm64_const as a

    md = capstone.Cs(capstone.CS_ARCH_ARM64, capstone.CS_MODE_ARM)
    md.detail = True
    counts, bad, mnemonics = Counter(), [], Counter()
    out = Insn()
    for addr, word in code_words(path):
        if limit is not None and counts["instructions"] >= limit:
            break
        ins = next(md.disasm(word.to_bytes(4, "little"), addr), None)
        if ins is None or ins.mnemonic == "udf":
            continue  # data in the code, padding
        counts["instructions"] += 1
        if not decoder.decode(word, ctypes.byref(out)):
            counts["not_decoded"] += 1
            bad.append(f"not_decoded {addr:#x} {word:08x} {ins.mnemonic} {ins.op_str}")
            continue
        what = f"{addr:#x} {word:08x} {ins.mnemonic} {ins.op_str}"
        # branches: what ends straight-line code
        ends = bool(set(ins.groups) & {a.ARM64_GRP_JUMP, a.ARM64_GRP_CALL, a.ARM64_GRP_RET, a.ARM64_GRP_INT}) \
            or ins.mnemonic in ("svc", "hvc", "smc", "brk", "hlt", "eret", "eretaa", "eretab", "drps")
        if ends != bool(out.branch):
            counts["branch_wrong"] += 1
            bad.append(f"branch {what}: ours {out.branch}")
        # general registers written: never fewer than capstone's
        cw = gpr_writes(md, ins)
        if cw & ~out.written:
            counts["clobbers_missed"] += 1
            bad.append(f"clobbers {what}: capstone {cw:#x} ours {out.written:#x}")
        elif out.written & ~cw:
            counts["clobbers_extra"] += 1
        e = expected(ins)
        if e is None:
            if out.memory and out.access and not SKIP.match(ins.mnemonic):
                counts["memory_extra"] += 1
                bad.append(f"memory_extra {what}")
            continue
        counts["memory"] += 1
        mnemonics[ins.mnemonic] += 1
        if not out.memory:
            counts["memory_missed"] += 1
            bad.append(f"memory_missed {what}")
            continue
        mnemonics.update(form for form, holds in (
            ("(literal)", e["base"] == PC), ("(register offset)", e["index"] != NONE and e["writeback"] == OFFSET),
            ("(pre-index)", e["writeback"] == PRE), ("(post-index)", e["writeback"] == POST),
            ("(simd&fp)", bool(re.match(r"^[qdsbh]\d|^\{v", ins.op_str)))) if holds)
        got = {"base": out.base, "index": out.index, "extend": out.extend, "shift": out.shift,
               "disp": out.disp, "writeback": out.writeback}
        want = {k: e[k] for k in got}
        if want["index"] == NONE:
            want["extend"] = got["extend"] = 0
        if got != want:
            counts["address_wrong"] += 1
            bad.append(f"address {what}: capstone {want} ours {got}")
        if out.size != e["size"]:
            counts["size_wrong"] += 1
            bad.append(f"size {what}: capstone {e['size']} ours {out.size}")
        if out.access != e["access"]:
            counts["access_wrong"] += 1
            bad.append(f"access {what}: expected {e['access']} ours {out.access}")
    return {"counts": counts, "bad": bad, "mnemonics": mnemonics}


def execute_compare(decoder, path: str, count: int, seed: int = 1) -> dict:
    """Run `count` instructions of `path` (spread over its code) in unicorn from random
    registers: the first data address each touches must be the one mp_a64_address
    computed, and every register mp_a64_step says it knows afterwards must hold
    unicorn's value."""
    import unicorn
    from unicorn import arm64_const as u

    words = list(code_words(path))
    rng = random.Random(seed)
    picks = sorted(rng.sample(range(len(words)), min(count, len(words))))
    regs_u = [getattr(u, f"UC_ARM64_REG_X{i}") for i in range(29)] + [u.UC_ARM64_REG_X29, u.UC_ARM64_REG_X30]
    counts, bad = Counter(), []
    code_at = 0x400000
    for k in picks:
        addr, word = words[k]
        mu = unicorn.Uc(unicorn.UC_ARCH_ARM64, unicorn.UC_MODE_ARM)
        mu.mem_map(code_at, 0x1000)
        mu.mem_write(code_at, word.to_bytes(4, "little"))
        touched = []

        def on_invalid(uc, access, address, size, value, data):
            touched.append(address)
            page = address & ~0xFFF
            try:
                uc.mem_map(page, 0x2000)
            except unicorn.UcError:
                return False
            return True

        def on_access(uc, access, address, size, value, data):
            touched.append(address)

        mu.hook_add(unicorn.UC_HOOK_MEM_INVALID, on_invalid)
        mu.hook_add(unicorn.UC_HOOK_MEM_READ | unicorn.UC_HOOK_MEM_WRITE, on_access)
        memory_like = rng.random() < 0.5
        values = [(rng.randrange(1 << 34) & ~0xF) + 0x10000000 if memory_like else rng.getrandbits(64)
                  for _ in range(32)]
        r = Regs()
        for i in range(31):
            mu.reg_write(regs_u[i], values[i])
            r.x[i] = values[i]
        mu.reg_write(u.UC_ARM64_REG_SP, values[31] & ~0xF)
        r.x[31] = values[31] & ~0xF
        r.pc = code_at
        r.known = 0xFFFFFFFF
        try:  # vector and FP instructions need FPEN
            mu.reg_write(u.UC_ARM64_REG_CPACR_EL1, 0x300000)
        except Exception:  # noqa: BLE001
            pass
        out = Insn()
        if not decoder.decode(word, ctypes.byref(out)) or out.branch:
            continue
        a = ctypes.c_uint64()
        has_address = decoder.address(word, ctypes.byref(r), ctypes.byref(a))
        try:
            mu.emu_start(code_at, code_at + 4, count=1)
        except unicorn.UcError:
            counts["unicorn_failed"] += 1
            continue
        counts["executed"] += 1
        if has_address:
            counts["addresses"] += 1
            if not touched:
                counts["address_untouched"] += 1
            elif min(touched) != a.value and touched[0] != a.value:
                counts["address_wrong"] += 1
                bad.append(f"address {addr:#x} {word:08x}: unicorn {[hex(t) for t in touched[:4]]} ours {a.value:#x}")
        decoder.step(word, ctypes.byref(r))
        if out.written & r.known & ~(1 << out.base if out.writeback else 0):
            counts["computed"] += 1  # a result mp_a64_step computed
        for i in range(32):
            if not r.known >> i & 1:
                continue
            real = mu.reg_read(u.UC_ARM64_REG_SP if i == 31 else regs_u[i])
            if real != r.x[i]:
                counts["value_wrong"] += 1
                bad.append(f"value {addr:#x} {word:08x} x{i}: unicorn {real:#x} ours {r.x[i]:#x}")
                break
        else:
            if r.known != 0xFFFFFFFF or out.written:
                counts["followed"] += 1
    return {"counts": counts, "bad": bad}


if __name__ == "__main__":
    import tempfile
    with tempfile.TemporaryDirectory() as d:
        dec = build_decoder(Path(d))
        for p in sys.argv[1:]:
            res = compare(dec, p)
            print(p, dict(res["counts"]))
            for line in res["bad"][:60]:
                print("  ", line)
            res = execute_compare(dec, p, 3000)
            print(p, "unicorn", dict(res["counts"]))
            for line in res["bad"][:30]:
                print("  ", line)
