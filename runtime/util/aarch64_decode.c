/* One aarch64 instruction: its memory operand (loads and stores of every addressing form:
 * unsigned offset, unscaled, pre/post-index, register offset with extend and shift, pairs,
 * literals, exclusives and acquire/release, atomics, SIMD&FP registers, LD1-4/ST1-4
 * single and multiple structures), the general registers it writes, whether it ends
 * straight-line code, and - for the integer instructions that compute addresses (add,
 * sub, logical, moves, bitfields, shifts, multiply, divide, adr/adrp) - its result, so
 * the sampler can follow the registers of a sample forward to the loads and stores that
 * come next. Fixed 32-bit encodings: no tables, no allocation; checked against capstone
 * by tests/profiling/aarch64_decode_check.py. Builds on any host (the checker runs it on
 * x86_64). */
#include <string.h>
#include "internal.h"

#define BITS(x, hi, lo) (((x) >> (lo)) & ((1u << ((hi) - (lo) + 1)) - 1))
#define BIT(x, n) (((x) >> (n)) & 1u)

static int64_t sext(uint64_t v, int bits) { return (int64_t)(v << (64 - bits)) >> (64 - bits); }

static unsigned log2u(unsigned v)
{
    unsigned n = 0;
    while (v > 1)
        v >>= 1, n++;
    return n;
}

static void memory(struct mp_a64_insn *d, unsigned base, int access, unsigned size, int64_t disp, int writeback)
{
    d->memory = 1;
    d->base = (unsigned char)base;
    d->access = (unsigned char)access;
    d->size = (uint16_t)size;
    d->disp = disp;
    d->writeback = (unsigned char)writeback;
    if (writeback)
        d->written |= 1u << base;
}

static void writes(struct mp_a64_insn *d, unsigned reg) /* reg 31: xzr, no write */
{
    if (reg < 31)
        d->written |= 1u << reg;
}

/* LD1-4/ST1-4, multiple and single structures (Advanced SIMD load/store) */
static int simd_structures(uint32_t i, struct mp_a64_insn *d)
{
    unsigned q = BIT(i, 30), load = BIT(i, 22), rn = BITS(i, 9, 5), rm = BITS(i, 20, 16);
    int post = BIT(i, 23), bytes;
    if (!BIT(i, 24)) { /* multiple structures */
        static const signed char regs[16] = {4, -1, 4, -1, 3, -1, 3, 1, 2, -1, 2, -1, -1, -1, -1, -1};
        if (!post && rm)
            return 0;
        int n = regs[BITS(i, 15, 12)];
        if (n < 0)
            return 0;
        bytes = n * (q ? 16 : 8);
    } else { /* single structure: one lane, or LDxR replicated */
        unsigned opcode = BITS(i, 15, 13), size = BITS(i, 11, 10), s = BIT(i, 12);
        unsigned selem = ((opcode & 1) << 1 | BIT(i, 21)) + 1, scale = opcode >> 1;
        if (!post && rm)
            return 0;
        if (scale == 3) { /* LDxR */
            if (!load || s)
                return 0;
            scale = size;
        } else if (scale == 2 && (size & 1)) {
            if (size != 1 || s)
                return 0;
            scale = 3;
        } else if (scale == 1 && (size & 1)) {
            return 0;
        }
        bytes = (int)(selem << scale);
    }
    memory(d, rn, load ? MP_ACCESS_READ : MP_ACCESS_WRITE, (unsigned)bytes, 0, 0);
    if (post) {
        d->writeback = MP_A64_POST;
        d->written |= 1u << rn;
        if (rm == 31)
            d->disp = bytes;
        else
            d->index = (unsigned char)rm; /* base += xm after the access */
    }
    return 1;
}

static int loads_and_stores(uint32_t i, struct mp_a64_insn *d)
{
    unsigned rt = BITS(i, 4, 0), rn = BITS(i, 9, 5), v = BIT(i, 26), size = BITS(i, 31, 30);
    if ((i & 0xBF000000u) == 0x0C000000u || (i & 0xBF000000u) == 0x0D000000u)
        return simd_structures(i, d);
    if ((i & 0x3F000000u) == 0x08000000u && !v) { /* exclusives, acquire/release, compare-and-swap */
        unsigned o2 = BIT(i, 23), l = BIT(i, 22), o1 = BIT(i, 21), rs = BITS(i, 20, 16), rt2 = BITS(i, 14, 10);
        if (!o2 && !o1) { /* LDXR/LDAXR, STXR/STLXR */
            memory(d, rn, l ? MP_ACCESS_READ : MP_ACCESS_WRITE, 1u << size, 0, 0);
            writes(d, l ? rt : rs);
        } else if (!o2 && o1 && (size & 2)) { /* LDXP/LDAXP, STXP/STLXP */
            memory(d, rn, l ? MP_ACCESS_READ : MP_ACCESS_WRITE, (size & 1) ? 16 : 8, 0, 0);
            if (l)
                writes(d, rt), writes(d, rt2);
            else
                writes(d, rs);
        } else if (!o2 && o1) { /* CASP: rs, rs+1 get the old pair */
            memory(d, rn, MP_ACCESS_READ | MP_ACCESS_WRITE, (size & 1) ? 16 : 8, 0, 0);
            writes(d, rs), writes(d, rs + 1);
        } else if (o2 && !o1) { /* LDAR/LDLAR, STLR/STLLR */
            memory(d, rn, l ? MP_ACCESS_READ : MP_ACCESS_WRITE, 1u << size, 0, 0);
            if (l)
                writes(d, rt);
        } else { /* CAS */
            memory(d, rn, MP_ACCESS_READ | MP_ACCESS_WRITE, 1u << size, 0, 0);
            writes(d, rs);
        }
        return 1;
    }
    if ((i & 0xFF200000u) == 0xD9200000u) { /* memory tags (LDG, STG, ST2G, ...): not followed */
        writes(d, rt);
        d->written |= 1u << rn;
        return 1;
    }
    if ((i & 0x3B000000u) == 0x18000000u) { /* LDR (literal), LDRSW, PRFM */
        unsigned opc = size;
        if (!v && opc == 3)
            return 1; /* PRFM: no access */
        if (v && opc == 3)
            return 0;
        memory(d, MP_A64_PC, MP_ACCESS_READ, v ? 4u << opc : (opc == 1 ? 8 : 4), sext(BITS(i, 23, 5), 19) * 4, 0);
        if (!v)
            writes(d, rt);
        return 1;
    }
    if ((i & 0x3A000000u) == 0x28000000u) { /* pairs: LDP/STP/LDNP/STNP/LDPSW, GPR and SIMD&FP */
        unsigned opc = size, l = BIT(i, 22), mode = BITS(i, 24, 23), rt2 = BITS(i, 14, 10), scale;
        if (v)
            scale = opc == 3 ? 0 : 4u << opc;
        else if (opc == 0)
            scale = 4;
        else if (opc == 2)
            scale = 8;
        else if (opc == 1 && l)
            scale = 4; /* LDPSW */
        else if (opc == 1 && mode)
            scale = 16; /* STGP */
        else
            scale = 0;
        if (!scale)
            return 0;
        int wb = mode == 1 ? MP_A64_POST : mode == 3 ? MP_A64_PRE : MP_A64_OFFSET;
        memory(d, rn, l ? MP_ACCESS_READ : MP_ACCESS_WRITE, scale == 16 && !v ? 16 : 2 * scale,
               sext(BITS(i, 21, 15), 7) * (int64_t)scale, wb);
        if (l && !v)
            writes(d, rt), writes(d, rt2);
        return 1;
    }
    if ((i & 0x3F200C00u) == 0x19000000u && !v) { /* LDAPUR/STLUR (RCpc, unscaled) */
        unsigned opc = BITS(i, 23, 22);
        memory(d, rn, opc ? MP_ACCESS_READ : MP_ACCESS_WRITE, 1u << size, sext(BITS(i, 20, 12), 9), 0);
        if (opc)
            writes(d, rt);
        return 1;
    }
    if ((i & 0x3A000000u) != 0x38000000u)
        return 0;
    if (!BIT(i, 24) && BIT(i, 21) && BITS(i, 11, 10) == 0 && !v) { /* atomics: LDADD..., SWP, LDAPR */
        unsigned o3 = BIT(i, 15), op = BITS(i, 14, 12);
        if (o3 && op != 0 && op != 4)
            return 0; /* LD64B, ST64B, ... */
        memory(d, rn, o3 && op == 4 ? MP_ACCESS_READ : MP_ACCESS_READ | MP_ACCESS_WRITE, 1u << size, 0, 0);
        writes(d, rt);
        return 1;
    }
    /* single registers: LDR/STR and their B/H/SB/SH/SW forms, GPR and SIMD&FP */
    unsigned opc = BITS(i, 23, 22), bytes, load;
    if (v) {
        bytes = (opc & 2) ? (size == 0 ? 16 : 0) : 1u << size;
        load = opc & 1;
        if (!bytes)
            return 0;
    } else {
        bytes = 1u << size;
        load = opc != 0;
        if (size == 3 && opc == 2)
            bytes = 0; /* PRFM / PRFUM: no access */
        if ((size == 3 && opc == 3) || (size == 2 && opc == 3))
            return 0;
    }
    if (BIT(i, 24)) { /* unsigned offset */
        if (!bytes)
            return 1;
        memory(d, rn, load ? MP_ACCESS_READ : MP_ACCESS_WRITE, bytes, (int64_t)BITS(i, 21, 10) * bytes, 0);
        if (load && !v)
            writes(d, rt);
        return 1;
    }
    if (!BIT(i, 21)) { /* unscaled, post-index, unprivileged, pre-index */
        unsigned form = BITS(i, 11, 10);
        int wb = form == 1 ? MP_A64_POST : form == 3 ? MP_A64_PRE : MP_A64_OFFSET;
        if (!bytes)
            return form == 0 || form == 2; /* PRFUM; no prefetch with writeback */
        memory(d, rn, load ? MP_ACCESS_READ : MP_ACCESS_WRITE, bytes, sext(BITS(i, 20, 12), 9), wb);
        if (load && !v)
            writes(d, rt);
        return 1;
    }
    unsigned form = BITS(i, 11, 10);
    if (form == 2) { /* register offset */
        unsigned option = BITS(i, 15, 13);
        if (!(option & 2))
            return 0;
        if (!bytes)
            return 1;
        memory(d, rn, load ? MP_ACCESS_READ : MP_ACCESS_WRITE, bytes, 0, 0);
        d->index = (unsigned char)BITS(i, 20, 16);
        d->extend = option == 2 ? MP_A64_EXT_UXTW : option == 6 ? MP_A64_EXT_SXTW : MP_A64_EXT_X;
        d->shift = (unsigned char)(BIT(i, 12) ? log2u(bytes) : 0);
        if (load && !v)
            writes(d, rt);
        return 1;
    }
    return 0; /* LDRAA/LDRAB, ... */
}

static uint64_t ror(uint64_t v, unsigned r, unsigned width)
{
    uint64_t m = width == 64 ? ~0ull : (1ull << width) - 1;
    v &= m;
    r %= width;
    return r ? ((v >> r) | (v << (width - r))) & m : v;
}

static uint64_t replicate(uint64_t elem, unsigned esize)
{
    uint64_t out = 0;
    for (unsigned k = 0; k < 64; k += esize)
        out |= elem << k;
    return out;
}

/* DecodeBitMasks of the Arm ARM: 0 if the encoding is reserved */
static int bitmasks(unsigned n, unsigned imms, unsigned immr, unsigned width, uint64_t *wmask, uint64_t *tmask)
{
    unsigned combined = (n << 6) | (~imms & 0x3F), len = 0;
    for (int b = 6; b >= 0; b--)
        if (combined & (1u << b)) {
            len = (unsigned)b;
            break;
        }
    if (combined == 0 || len < 1 || (1u << len) > width)
        return 0;
    unsigned esize = 1u << len, levels = esize - 1, s = imms & levels, r = immr & levels;
    uint64_t welem = s + 1 == 64 ? ~0ull : (1ull << (s + 1)) - 1;
    unsigned dd = (s - r) & levels;
    uint64_t telem = dd + 1 == 64 ? ~0ull : (1ull << (dd + 1)) - 1;
    *wmask = replicate(ror(welem, r, esize), esize);
    *tmask = replicate(telem, esize);
    return 1;
}

static int branches_and_system(uint32_t i, struct mp_a64_insn *d)
{
    if ((i & 0x7C000000u) == 0x14000000u) { /* B, BL */
        d->branch = BIT(i, 31) ? MP_BRANCH_END : MP_BRANCH_JUMP;
        if (BIT(i, 31))
            d->written |= 1u << 30;
        return 1;
    }
    if ((i & 0xFF000000u) == 0x54000000u || (i & 0x7E000000u) == 0x34000000u || (i & 0x7E000000u) == 0x36000000u) {
        d->branch = MP_BRANCH_COND; /* B.cond, CBZ/CBNZ, TBZ/TBNZ */
        return 1;
    }
    if ((i & 0xFE000000u) == 0xD6000000u) { /* BR, BLR, RET, ERET, ... (and their PAC forms) */
        d->branch = MP_BRANCH_END;
        if (BITS(i, 24, 21) == 1 || BITS(i, 24, 21) == 9)
            d->written |= 1u << 30; /* BLR, BLRAA... */
        return 1;
    }
    if ((i & 0xFF000000u) == 0xD4000000u) { /* SVC, BRK, ...: the kernel's result in x0 */
        d->branch = MP_BRANCH_END;
        writes(d, 0);
        return 1;
    }
    if ((i & 0xFFFFF01Fu) == 0xD503201Fu) { /* hints: the pointer-authentication ones rewrite lr or x17 */
        unsigned op = BITS(i, 11, 5);
        if (op == 7 || (op >= 24 && op <= 31))
            d->written |= 1u << 30; /* XPACLRI, PACIASP, AUTIASP, ... */
        else if (op == 8 || op == 10 || op == 12 || op == 14)
            d->written |= 1u << 17; /* PACIA1716, ... */
        return 1;
    }
    if ((i & 0xFFC00000u) == 0xD5000000u) { /* system: MRS and SYSL write rt; hints, barriers, MSR nothing */
        if ((i & 0xFFF00000u) == 0xD5300000u || (i & 0xFFF80000u) == 0xD5280000u)
            writes(d, BITS(i, 4, 0));
        return 1;
    }
    return 0;
}

int mp_a64_decode(uint32_t i, struct mp_a64_insn *d)
{
    memset(d, 0, sizeof *d);
    d->base = d->index = MP_A64_NONE;
    unsigned op0 = BITS(i, 28, 25), rd = BITS(i, 4, 0);
    if ((op0 & 5) == 4) /* x1x0: loads and stores */
        return loads_and_stores(i, d);
    if ((op0 & 14) == 8) { /* 100x: data processing, immediate */
        unsigned op = BITS(i, 25, 23);
        if (op == 2 || op == 4) /* add/sub, logical: rd 31 is sp unless flags are set */
            d->written |= (rd < 31 || !BIT(i, 29) || (op == 4 && BITS(i, 30, 29) != 3)) ? 1u << rd : 0;
        else
            writes(d, rd);
        if (op == 4 && BITS(i, 30, 29) == 3 && rd == 31)
            d->written = 0; /* TST */
        return 1;
    }
    if ((op0 & 14) == 10) /* 101x: branches, exception generation, system */
        return branches_and_system(i, d);
    if ((op0 & 7) == 5) { /* x101: data processing, register: rd, xzr when 31 */
        if ((i & 0x1FE00000u) == 0x1A400000u) /* CCMP/CCMN: flags only */
            return 1;
        if ((i & 0x1FE00000u) == 0x0B200000u && !BIT(i, 29)) /* add/sub extended: rd 31 is sp */
            d->written |= 1u << rd;
        else
            writes(d, rd);
        return 1;
    }
    if ((op0 & 7) == 7) { /* x111: SIMD&FP: only moves and conversions to a general register write one */
        if ((i & 0x5F20FC00u) == 0x1E200000u) { /* FP <-> integer */
            unsigned opcode = BITS(i, 18, 16);
            if (opcode <= 1 || opcode == 4 || opcode == 5 || opcode == 6)
                writes(d, rd);
        } else if ((i & 0x5F200000u) == 0x1E000000u && BITS(i, 18, 17) == 0) { /* FCVTZ* fixed-point */
            writes(d, rd);
        } else if ((i & 0xBFE0FC00u) == 0x0E002C00u || (i & 0xBFE0FC00u) == 0x0E003C00u) { /* SMOV, UMOV */
            writes(d, rd);
        }
        return 1;
    }
    if (op0 == 2) { /* SVE: the few that write a general register put it in rd */
        writes(d, rd);
        return 1;
    }
    return 0;
}

static uint64_t reg(const struct mp_a64_regs *r, unsigned n, int sp, int *ok) /* n 31: sp or xzr */
{
    if (n == 31 && !sp)
        return 0;
    if (!(r->known & (1u << n)))
        *ok = 0;
    return r->x[n];
}

int mp_a64_address(const struct mp_a64_insn *d, const struct mp_a64_regs *r, uint64_t *addr)
{
    int ok = 1;
    if (!d->memory || d->base == MP_A64_PC)
        return 0;
    uint64_t a = reg(r, d->base, 1, &ok);
    if (d->index != MP_A64_NONE && d->writeback != MP_A64_POST) {
        uint64_t x = reg(r, d->index, 0, &ok);
        if (d->extend == MP_A64_EXT_UXTW)
            x = (uint32_t)x;
        else if (d->extend == MP_A64_EXT_SXTW)
            x = (uint64_t)(int64_t)(int32_t)x;
        a += x << d->shift;
    }
    if (d->writeback != MP_A64_POST)
        a += (uint64_t)d->disp;
    *addr = a;
    return ok;
}

static uint64_t shifted(uint64_t v, unsigned type, unsigned amount, unsigned width)
{
    uint64_t m = width == 64 ? ~0ull : 0xFFFFFFFFull;
    v &= m;
    switch (type) {
    case 0: return (v << amount) & m;
    case 1: return v >> amount;
    case 2: return (uint64_t)((width == 64 ? (int64_t)v : (int64_t)(int32_t)v) >> amount) & m;
    default: return ror(v, amount, width);
    }
}

static uint64_t extended(uint64_t v, unsigned option, unsigned amount)
{
    switch (option) {
    case 0: v = (uint8_t)v; break;
    case 1: v = (uint16_t)v; break;
    case 2: v = (uint32_t)v; break;
    case 4: v = (uint64_t)(int64_t)(int8_t)v; break;
    case 5: v = (uint64_t)(int64_t)(int16_t)v; break;
    case 6: v = (uint64_t)(int64_t)(int32_t)v; break;
    default: break;
    }
    return v << amount;
}

/* The integer result of `i`, if it is one this follows and its inputs are known. */
static int compute(uint32_t i, const struct mp_a64_regs *r, unsigned *dst, uint64_t *out)
{
    int ok = 1, sf = BIT(i, 31);
    unsigned width = sf ? 64 : 32, rd = BITS(i, 4, 0), rn = BITS(i, 9, 5), rm = BITS(i, 20, 16);
    uint64_t mask = sf ? ~0ull : 0xFFFFFFFFull, v;
    *dst = rd;
    if ((i & 0x1F000000u) == 0x10000000u) { /* ADR, ADRP */
        int64_t imm = sext(BITS(i, 23, 5) << 2 | BITS(i, 30, 29), 21);
        *out = BIT(i, 31) ? (r->pc & ~0xFFFull) + (uint64_t)(imm << 12) : r->pc + (uint64_t)imm;
        return 1;
    }
    if ((i & 0x1F800000u) == 0x11000000u) { /* ADD/SUB (immediate) */
        uint64_t imm = (uint64_t)BITS(i, 21, 10) << (BIT(i, 22) ? 12 : 0), a = reg(r, rn, 1, &ok);
        v = BIT(i, 30) ? a - imm : a + imm;
        if (BIT(i, 29) && rd == 31)
            return 0; /* CMP/CMN */
    } else if ((i & 0x1F200000u) == 0x0B000000u) { /* ADD/SUB (shifted register) */
        uint64_t a = reg(r, rn, 0, &ok), b = shifted(reg(r, rm, 0, &ok), BITS(i, 23, 22), BITS(i, 15, 10), width);
        v = BIT(i, 30) ? a - b : a + b;
        if (rd == 31)
            return 0;
    } else if ((i & 0x1FE00000u) == 0x0B200000u) { /* ADD/SUB (extended register) */
        uint64_t a = reg(r, rn, 1, &ok), b = extended(reg(r, rm, 0, &ok), BITS(i, 15, 13), BITS(i, 12, 10));
        v = BIT(i, 30) ? a - b : a + b;
        if (BIT(i, 29) && rd == 31)
            return 0;
    } else if ((i & 0x1F800000u) == 0x12000000u) { /* AND/ORR/EOR/ANDS (immediate) */
        uint64_t wmask, tmask, a = reg(r, rn, 0, &ok);
        if (!bitmasks(BIT(i, 22), BITS(i, 15, 10), BITS(i, 21, 16), width, &wmask, &tmask))
            return 0;
        unsigned opc = BITS(i, 30, 29);
        v = opc == 1 ? a | wmask : opc == 2 ? a ^ wmask : a & wmask;
        if (opc == 3 && rd == 31)
            return 0;
    } else if ((i & 0x1F000000u) == 0x0A000000u) { /* AND/BIC/ORR/ORN/EOR/EON/ANDS/BICS */
        uint64_t a = reg(r, rn, 0, &ok), b = shifted(reg(r, rm, 0, &ok), BITS(i, 23, 22), BITS(i, 15, 10), width);
        if (BIT(i, 21))
            b = ~b;
        unsigned opc = BITS(i, 30, 29);
        v = opc == 1 ? a | b : opc == 2 ? a ^ b : a & b;
        if (rd == 31)
            return 0;
    } else if ((i & 0x1F800000u) == 0x12800000u) { /* MOVN/MOVZ/MOVK */
        unsigned opc = BITS(i, 30, 29), sh = BITS(i, 22, 21) * 16;
        uint64_t imm = (uint64_t)BITS(i, 20, 5) << sh;
        if (opc == 0)
            v = ~imm;
        else if (opc == 2)
            v = imm;
        else if (opc == 3)
            v = (reg(r, rd, 0, &ok) & ~(0xFFFFull << sh)) | imm;
        else
            return 0;
        if (rd == 31)
            return 0;
    } else if ((i & 0x1F800000u) == 0x13000000u) { /* SBFM/BFM/UBFM: shifts, extensions, bitfields */
        unsigned opc = BITS(i, 30, 29), immr = BITS(i, 21, 16), imms = BITS(i, 15, 10);
        uint64_t wmask, tmask, src = reg(r, rn, 0, &ok) & mask;
        if (opc == 3 || !bitmasks(BIT(i, 22), imms, immr, width, &wmask, &tmask))
            return 0;
        uint64_t bot = ror(src, immr, width) & wmask;
        if (opc == 2) {
            v = bot & tmask;
        } else if (opc == 0) {
            uint64_t top = ((src >> imms) & 1) ? mask : 0;
            v = (top & ~tmask) | (bot & tmask);
        } else {
            uint64_t dst = reg(r, rd, 0, &ok);
            bot = (dst & ~wmask) | (ror(src, immr, width) & wmask);
            v = (dst & ~tmask) | (bot & tmask);
        }
        if (rd == 31)
            return 0;
    } else if ((i & 0x5FE00000u) == 0x1AC00000u) { /* UDIV, SDIV, LSLV, LSRV, ASRV, RORV */
        uint64_t a = reg(r, rn, 0, &ok) & mask, b = reg(r, rm, 0, &ok) & mask;
        switch (BITS(i, 15, 10)) {
        case 2: v = b ? a / b : 0; break;
        case 3:
            if (sf)
                v = !b ? 0 : ((int64_t)a == INT64_MIN && (int64_t)b == -1) ? a : (uint64_t)((int64_t)a / (int64_t)b);
            else
                v = !b ? 0 : ((int32_t)a == INT32_MIN && (int32_t)b == -1) ? a
                                                                          : (uint64_t)(uint32_t)((int32_t)a / (int32_t)b);
            break;
        case 8: case 9: case 10: case 11: v = shifted(a, BITS(i, 11, 10), (unsigned)(b % width), width); break;
        default: return 0;
        }
        if (rd == 31)
            return 0;
    } else if ((i & 0x7F000000u) == 0x1B000000u) { /* multiply */
        unsigned op31 = BITS(i, 23, 21), o0 = BIT(i, 15), ra = BITS(i, 14, 10);
        uint64_t a = reg(r, rn, 0, &ok), b = reg(r, rm, 0, &ok);
        if (op31 == 0) {
            uint64_t acc = reg(r, ra, 0, &ok);
            v = o0 ? acc - a * b : acc + a * b;
        } else if ((op31 == 1 || op31 == 5) && sf) {
            uint64_t acc = reg(r, ra, 0, &ok);
            uint64_t p = op31 == 1 ? (uint64_t)((int64_t)(int32_t)a * (int64_t)(int32_t)b) : (uint64_t)(uint32_t)a * (uint32_t)b;
            v = o0 ? acc - p : acc + p;
#ifdef __SIZEOF_INT128__ /* not on a 32-bit host (the checker may run anywhere) */
        } else if (op31 == 2 && sf && !o0) {
            v = (uint64_t)(((__int128)(int64_t)a * (int64_t)b) >> 64);
        } else if (op31 == 6 && sf && !o0) {
            v = (uint64_t)(((unsigned __int128)a * b) >> 64);
#endif
        } else {
            return 0;
        }
        if (rd == 31)
            return 0;
    } else {
        return 0;
    }
    if (!ok)
        return 0;
    *out = v & mask;
    return 1;
}

void mp_a64_step(uint32_t i, const struct mp_a64_insn *d, struct mp_a64_regs *r)
{
    unsigned dst;
    uint64_t v;
    int computed = !d->memory && !d->branch && compute(i, r, &dst, &v);
    if (d->memory && d->writeback) { /* the base moves by a known amount */
        int ok = 1;
        uint64_t base = reg(r, d->base, 1, &ok), step = (uint64_t)d->disp;
        if (d->index != MP_A64_NONE)
            step = reg(r, d->index, 0, &ok);
        r->known &= ~d->written;
        if (ok) {
            r->x[d->base] = base + step;
            r->known |= 1u << d->base;
        }
    } else {
        r->known &= ~d->written;
    }
    if (computed) {
        r->x[dst] = v;
        r->known |= 1u << dst;
    }
    r->pc += 4;
}
