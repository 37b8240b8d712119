/* The memory operand of one x86_64 instruction, for access sampling (os/sampler.c): its
 * length, whether it reads, writes or both, how many bytes, and the registers and
 * displacement its address is made of. Legacy prefixes, REX, the one-byte, 0F, 0F38 and
 * 0F3A maps, VEX and EVEX (disp8*N taken as the operand size, which is N for full-vector,
 * scalar, half/quarter and tuple loads and stores). Implicit stack accesses (push, pop,
 * call) and system instructions count as no access: they never touch a heap block.
 * No tables to initialise, no allocation, no libc: it runs in a signal handler.
 * tests/profiling/test_x86_decode.py checks it against capstone over whole binaries. */
#include <string.h>
#include "internal.h"

enum { N = MP_ACCESS_NONE, R = MP_ACCESS_READ, W = MP_ACCESS_WRITE, RW = MP_ACCESS_READ | MP_ACCESS_WRITE };

struct state {
    int opsize16, addr32, rex_w, rex_r, rex_x, rex_b, rep; /* rep: 0, 0xF2 or 0xF3 */
    int vex, evex, vl, evex_b, map;                        /* vl: vector bytes (16/32/64) */
    int pfx;                                               /* SIMD prefix: 0, 0x66, 0xF3, 0xF2 */
    int vvvv;                                              /* VEX/EVEX extra register */
    int rex;                                               /* a REX prefix: no AH..BH */
};

static int vsize(const struct state *s) { return s->rex_w ? 8 : s->opsize16 ? 2 : 4; }
static int gpr(const struct state *s) { return s->rex_w ? 8 : 4; } /* 32/64-bit only forms */

/* Access and size of a one-byte-map instruction with a ModRM memory operand; imm: bytes of
 * immediate after it. Returns 0 for an opcode that is invalid in 64-bit mode. */
static int map1(const struct state *s, int op, int reg, int *acc, int *size, int *imm)
{
    int v = vsize(s), immz = s->opsize16 ? 2 : 4;
    *imm = 0;
    if (op < 0x40) {
        *acc = (op & 2) ? R : (op & 0x38) == 0x38 ? R : RW;
        *size = (op & 1) ? v : 1;
        return 1;
    }
    switch (op) {
    case 0x63: *acc = R, *size = 4; return 1;
    case 0x69: *acc = R, *size = v, *imm = immz; return 1;
    case 0x6B: *acc = R, *size = v, *imm = 1; return 1;
    case 0x80: *acc = reg == 7 ? R : RW, *size = 1, *imm = 1; return 1;
    case 0x81: *acc = reg == 7 ? R : RW, *size = v, *imm = immz; return 1;
    case 0x83: *acc = reg == 7 ? R : RW, *size = v, *imm = 1; return 1;
    case 0x84: *acc = R, *size = 1; return 1;
    case 0x85: *acc = R, *size = v; return 1;
    case 0x86: *acc = RW, *size = 1; return 1;
    case 0x87: *acc = RW, *size = v; return 1;
    case 0x88: *acc = W, *size = 1; return 1;
    case 0x89: *acc = W, *size = v; return 1;
    case 0x8A: *acc = R, *size = 1; return 1;
    case 0x8B: *acc = R, *size = v; return 1;
    case 0x8C: *acc = W, *size = 2; return 1;
    case 0x8D: *acc = N, *size = 0; return 1; /* lea: an address, no access */
    case 0x8E: *acc = R, *size = 2; return 1;
    case 0x8F: *acc = W, *size = s->opsize16 ? 2 : 8; return 1;
    case 0xC0: *acc = RW, *size = 1, *imm = 1; return 1;
    case 0xC1: *acc = RW, *size = v, *imm = 1; return 1;
    case 0xC6: *acc = W, *size = 1, *imm = 1; return 1;
    case 0xC7: *acc = W, *size = v, *imm = immz; return 1;
    case 0xD0: case 0xD2: *acc = RW, *size = 1; return 1;
    case 0xD1: case 0xD3: *acc = RW, *size = v; return 1;
    case 0xF6: case 0xF7:
        *size = op == 0xF6 ? 1 : v;
        *acc = (reg == 2 || reg == 3) ? RW : R;
        if (reg < 2)
            *imm = op == 0xF6 ? 1 : immz;
        return 1;
    case 0xFE: *acc = reg < 2 ? RW : N, *size = 1; return 1;
    case 0xFF:
        *acc = reg < 2 ? RW : (reg == 2 || reg == 4 || reg == 6) ? R : reg == 7 ? N : R;
        *size = reg < 2 ? v : (reg == 3 || reg == 5) ? (s->rex_w ? 10 : 6) : (s->opsize16 ? 2 : 8);
        if (reg == 6 && s->opsize16) *size = 2;
        return 1;
    }
    if (op >= 0xD8 && op <= 0xDF) { /* x87 */
        static const unsigned char sz[8][8] = {
            {4, 4, 4, 4, 4, 4, 4, 4},     {4, 0, 4, 4, 28, 2, 28, 2}, {4, 4, 4, 4, 4, 4, 4, 4},
            {4, 4, 4, 4, 0, 10, 0, 10},   {8, 8, 8, 8, 8, 8, 8, 8},   {8, 8, 8, 8, 108, 0, 108, 2},
            {2, 2, 2, 2, 2, 2, 2, 2},     {2, 2, 2, 2, 10, 8, 10, 8}};
        static const unsigned char ac[8][8] = {
            {R, R, R, R, R, R, R, R}, {R, N, W, W, R, R, W, W}, {R, R, R, R, R, R, R, R},
            {R, W, W, W, N, R, N, W}, {R, R, R, R, R, R, R, R}, {R, W, W, W, R, N, W, W},
            {R, R, R, R, R, R, R, R}, {R, W, W, W, R, R, W, W}};
        *acc = ac[op - 0xD8][reg], *size = sz[op - 0xD8][reg];
        return 1;
    }
    return 0;
}

/* Access and size of a legacy (non-VEX) 0F-map instruction; *imm set for those with one. */
static void map2(const struct state *s, int op, int reg, int *acc, int *size, int *imm)
{
    int p = s->pfx, v = vsize(s), x = p == 0x66 ? 16 : 8; /* MMX forms: 8 bytes */
    *acc = R, *imm = 0;
    *size = 16;
    if (op <= 0x03 || (op >= 0x18 && op <= 0x1F) || op == 0x0D || (op >= 0x20 && op <= 0x23)) {
        *acc = N, *size = 0;
        if (op == 0x02 || op == 0x03)
            *acc = R, *size = 2;
        return;
    }
    if (op >= 0x40 && op <= 0x4F) { *size = v; return; }
    if (op >= 0x90 && op <= 0x9F) { *acc = W, *size = 1; return; }
    switch (op) {
    case 0x10: case 0x11:
        *acc = op == 0x11 ? W : R, *size = p == 0xF3 ? 4 : p == 0xF2 ? 8 : 16; return;
    case 0x12: case 0x16: *size = p == 0xF3 ? 16 : 8; return; /* movsldup/movshdup: 16 */
    case 0x13: case 0x17: *acc = W, *size = 8; return;
    case 0x29: case 0x2B: *acc = W; return;
    case 0x2A: *size = (p == 0xF3 || p == 0xF2) ? gpr(s) : 8; return;
    case 0x2C: case 0x2D: *size = p == 0xF3 ? 4 : 8; return;
    case 0x2E: case 0x2F: *size = p == 0x66 ? 8 : 4; return;
    case 0x0F: *imm = 1, *size = 8; return; /* 3DNow! */
    case 0x6E: *size = gpr(s); return;
    case 0x6F: *size = p ? 16 : 8; return;
    case 0x70: *imm = 1, *size = p ? 16 : 8; return;
    case 0x71: case 0x72: case 0x73: *imm = 1, *acc = N, *size = 0; return;
    case 0x78: case 0x79: *acc = N, *size = 0; return;
    case 0x7E: if (p == 0xF3) *size = 8; else *acc = W, *size = gpr(s); return;
    case 0x7F: *acc = W, *size = p ? 16 : 8; return;
    case 0xA3: *size = v; return;
    case 0xAB: case 0xB3: case 0xBB: *acc = RW, *size = v; return;
    case 0xA4: case 0xAC: *imm = 1; /* fallthrough */
    case 0xA5: case 0xAD: *acc = RW, *size = v; return;
    case 0xAE:
        *size = reg == 2 || reg == 3 ? 4 : 512;
        *acc = reg == 1 || reg == 2 || reg == 5 ? R : reg == 0 || reg == 3 || reg == 4 || reg == 6 ? W : N;
        if (reg == 7) *size = 0;
        return;
    case 0xAF: *size = v; return;
    case 0xB0: case 0xC0: *acc = RW, *size = 1; return;
    case 0xB1: case 0xC1: *acc = RW, *size = v; return;
    case 0xB2: case 0xB4: case 0xB5: *size = v + 2; return;
    case 0xB6: case 0xBE: *size = 1; return;
    case 0xB7: case 0xBF: *size = 2; return;
    case 0xB8: case 0xBC: case 0xBD: *size = v; return;
    case 0xB9: case 0xFF: *acc = N, *size = 0; return;
    case 0xBA: *imm = 1, *acc = reg == 4 ? R : reg > 4 ? RW : N, *size = v; return;
    case 0xC2: *imm = 1, *size = p == 0xF3 ? 4 : p == 0xF2 ? 8 : 16; return;
    case 0xC3: *acc = W, *size = gpr(s); return;
    case 0xC4: *imm = 1, *size = 2; return;
    case 0xC5: *imm = 1, *acc = N, *size = 0; return;
    case 0xC6: *imm = 1; return;
    case 0xC7: *acc = reg == 1 ? RW : N, *size = reg == 1 ? (s->rex_w ? 16 : 8) : 0; return;
    case 0xD6: *acc = W, *size = 8; return;
    case 0xE7: *acc = W, *size = x; return;
    case 0xF0: *size = 16; return;
    case 0xF7: *acc = N, *size = 0; return;
    }
    if (op >= 0x51 && op <= 0x5F && (p == 0xF3 || p == 0xF2)) { *size = p == 0xF3 ? 4 : 8; return; }
    if ((op >= 0x60 && op <= 0x7F) || op >= 0xD0)
        *size = x;
}

/* 0F38 map, legacy encoding. */
static void map3(const struct state *s, int op, int *acc, int *size)
{
    static const unsigned char movx[6] = {8, 4, 2, 8, 4, 8}; /* pmovsx/zx 20-25, 30-35 */
    *acc = R, *size = s->pfx == 0x66 ? 16 : 8;
    if ((op >= 0x20 && op <= 0x25) || (op >= 0x30 && op <= 0x35))
        *size = movx[op & 0xF];
    else if (op >= 0xC8)
        *size = 16;
    if (op == 0xF0 || op == 0xF1) {
        if (s->rep == 0xF2)
            *size = op == 0xF0 ? 1 : vsize(s);
        else
            *acc = op == 0xF0 ? R : W, *size = vsize(s);
    } else if (op == 0xF6 || op == 0xF5) {
        *size = gpr(s);
    }
}

/* 0F3A map, legacy encoding (every one has an imm8). */
static void map4(const struct state *s, int op, int *acc, int *size)
{
    *acc = R, *size = 16;
    switch (op) {
    case 0x0A: *size = 4; return;
    case 0x0B: *size = 8; return;
    case 0x0F: *size = s->pfx == 0x66 ? 16 : 8; return;
    case 0x14: *acc = W, *size = 1; return;
    case 0x15: *acc = W, *size = 2; return;
    case 0x16: *acc = W, *size = gpr(s); return;
    case 0x17: *acc = W, *size = 4; return;
    case 0x20: *size = 1; return;
    case 0x21: *size = 4; return;
    case 0x22: *size = gpr(s); return;
    }
}

/* VEX and EVEX: map 1 (0F), 2 (0F38), 3 (0F3A). *vsib set for gathers and scatters, whose
 * index is a vector register. Returns the immediate's length (0 or 1). */
static int vector(const struct state *s, int op, int reg, int *acc, int *size, int *vsib)
{
    int p = s->pfx, vl = s->vl, el = s->rex_w ? 8 : 4;
    *acc = R, *size = vl, *vsib = 0;
    if (s->map == 1) {
        switch (op) {
        case 0x10: case 0x11: *acc = op == 0x11 ? W : R; if (p == 0xF3) *size = 4; else if (p == 0xF2) *size = 8; break;
        case 0x12: case 0x16: if (p != 0xF3 && p != 0xF2) *size = 8; else if (p == 0xF2) *size = vl == 16 ? 8 : vl; break;
        case 0x13: case 0x17: *acc = W, *size = 8; break;
        case 0x29: case 0x2B: case 0xE7: *acc = W; break;
        case 0x2A: *size = gpr(s); break;
        case 0x2C: case 0x2D: *size = p == 0xF3 ? 4 : 8; break;
        case 0x2E: case 0x2F: *size = p == 0x66 ? 8 : 4; break;
        case 0x5A: if (p == 0xF3) *size = 4; else if (p == 0xF2) *size = 8; else if (p == 0) *size = vl / 2; break;
        case 0xE6: if (p == 0xF3) *size = vl / 2; break;
        case 0x6E: *size = gpr(s); break;
        case 0x7E: if (p == 0xF3) *size = 8; else *acc = W, *size = gpr(s); break;
        case 0x7F: *acc = W; break;
        case 0xC4: *size = 2; break;
        case 0xAE: *acc = reg == 2 ? R : reg == 3 ? W : N, *size = 4; break; /* vldmxcsr, vstmxcsr */
        case 0xD6: *acc = W, *size = 8; break;
        case 0x77: *acc = N, *size = 0; break;
        case 0x71: case 0x72: case 0x73: *acc = N, *size = 0; break;
        case 0xC2: if (p == 0xF3) *size = 4; else if (p == 0xF2) *size = 8; break;
        default:
            if (op >= 0x51 && op <= 0x5F && (p == 0xF3 || p == 0xF2))
                *size = p == 0xF3 ? 4 : 8;
        }
        if (s->evex && op == 0x7A && p == 0xF3) *size = vl / 2; /* vcvtudq2pd */
        return (op >= 0x70 && op <= 0x73) || op == 0xC2 || op == 0xC4 || op == 0xC5 || op == 0xC6;
    }
    if (s->map == 2) {
        static const unsigned char movx[6] = {2, 4, 8, 2, 4, 2}; /* vl divided by */
        if (s->evex && p == 0xF3 && ((op >= 0x10 && op <= 0x15) || (op >= 0x20 && op <= 0x25) || (op >= 0x30 && op <= 0x35))) {
            *acc = W, *size = vl / movx[op & 0xF]; /* vpmov* down-converting stores */
            return 0;
        }
        if ((op >= 0x20 && op <= 0x25) || (op >= 0x30 && op <= 0x35)) { *size = vl / movx[op & 0xF]; return 0; }
        switch (op) {
        case 0x18: case 0x58: *size = 4; break;
        case 0x19: case 0x59: *size = 8; break;
        case 0x1A: case 0x5A: *size = 16; break;
        case 0x1B: case 0x5B: *size = 32; break;
        case 0x78: *size = 1; break;
        case 0x79: *size = 2; break;
        case 0x2E: case 0x2F: case 0x8E: *acc = W; break;
        case 0x8A: case 0x8B: case 0x63: if (s->evex) *acc = W; break;
        case 0x90: case 0x91: case 0x92: case 0x93: case 0xA0: case 0xA1: case 0xA2: case 0xA3:
        case 0xC6: case 0xC7:
            *vsib = 1, *acc = op >= 0xA0 && op <= 0xA3 ? W : op >= 0xC6 ? N : R; break;
        case 0xF0: case 0xF1: *acc = op == 0xF0 ? R : W, *size = gpr(s); break;
        case 0xF2: case 0xF3: case 0xF5: case 0xF6: case 0xF7: *size = gpr(s); break;
        default:
            if (op >= 0x99 && op <= 0xBF && (op & 1) && ((op & 0xF) >= 9))
                *size = el; /* scalar FMA */
            else if ((op == 0x2D || op == 0x3D || op == 0x43 || op == 0x4D || op == 0x4F || op == 0xCB || op == 0xCD) && s->evex)
                *size = el;
        }
        return 0;
    }
    /* map 3 */
    switch (op) {
    case 0x0A: *size = 4; break;
    case 0x0B: *size = 8; break;
    case 0x14: *acc = W, *size = 1; break;
    case 0x15: *acc = W, *size = 2; break;
    case 0x16: *acc = W, *size = gpr(s); break;
    case 0x17: *acc = W, *size = 4; break;
    case 0x18: case 0x38: *size = 16; break;
    case 0x1A: case 0x3A: *size = 32; break;
    case 0x19: case 0x39: *acc = W, *size = 16; break;
    case 0x1B: case 0x3B: *acc = W, *size = 32; break;
    case 0x1D: *acc = W, *size = vl / 2; break;
    case 0x20: *size = 1; break;
    case 0x21: *size = 4; break;
    case 0x22: *size = gpr(s); break;
    case 0xF0: *size = gpr(s); break;
    case 0x6A: case 0x6E: case 0x7A: case 0x7E: *size = 4; break; /* FMA4 scalar */
    case 0x6B: case 0x6F: case 0x7B: case 0x7F: *size = 8; break;
    }
    return 1;
}

/* General registers a ModRM instruction writes (bit n: register n); `r`, `b`: its reg and
 * r/m registers with their REX bits, `reg`: the 3-bit reg field (a group's operation). A
 * register is never left out: an address computed from registers after the instruction
 * ran is then known to be wrong rather than used. */
static uint16_t writes_modrm(const struct state *s, int map, int op, int mod, int r, int b, int reg)
{
    uint16_t R_ = (uint16_t)(1u << r), B = mod == 3 ? (uint16_t)(1u << b) : 0, ax = 1, cx = 2, dx = 4, sp = 16;
    if (map == 0) {
        int byte = (op < 0x40 && !(op & 1)) || op == 0x84 || op == 0x86 || op == 0x88 || op == 0x8A ||
                   op == 0x80 || op == 0xC0 || op == 0xC6 || op == 0xD0 || op == 0xD2 || op == 0xF6 || op == 0xFE;
        if (byte && !s->rex) { /* ah, ch, dh, bh are the second bytes of rax..rbx */
            if (r >= 4 && r < 8) R_ = (uint16_t)(1u << (r - 4));
            if (mod == 3 && b >= 4 && b < 8) B = (uint16_t)(1u << (b - 4));
        }
        if (op < 0x40) {
            if ((op & 0x38) == 0x38) return 0; /* cmp */
            return (op & 2) ? R_ : B;
        }
        switch (op) {
        case 0x63: case 0x69: case 0x6B: case 0x8A: case 0x8B: case 0x8D: return R_;
        case 0x86: case 0x87: return (uint16_t)(R_ | B);
        case 0x88: case 0x89: case 0x8C: case 0xC0: case 0xC1: case 0xC6: case 0xC7:
        case 0xD0: case 0xD1: case 0xD2: case 0xD3: return B;
        case 0x8F: return (uint16_t)(B | sp);
        case 0x80: case 0x81: case 0x83: return reg == 7 ? 0 : B;
        case 0xF6: case 0xF7: return reg < 2 ? 0 : reg < 4 ? B : op == 0xF6 && reg < 6 ? ax : (uint16_t)(ax | dx);
        case 0xFE: return reg < 2 ? B : 0;
        case 0xFF: return reg < 2 ? B : (uint16_t)sp;
        case 0xDF: return mod == 3 && reg == 4 ? ax : 0; /* fnstsw ax */
        }
        return 0;
    }
    if (s->vex) {
        if (map == 1 && (op == 0x2C || op == 0x2D || op == 0x50 || op == 0xD7 || op == 0xC5 ||
                         ((op == 0x78 || op == 0x79) && s->evex && (s->pfx == 0xF3 || s->pfx == 0xF2))))
            return R_;
        if (map == 1 && op == 0x7E && s->pfx == 0x66) return B;
        if (map == 1 && op == 0x93) return R_; /* kmov to a general register */
        if (map == 2 && (op == 0xF2 || op == 0xF5 || op == 0xF7)) return R_;
        if (map == 2 && op == 0xF3) return (uint16_t)(1u << s->vvvv);
        if (map == 2 && op == 0xF6) return (uint16_t)(R_ | (1u << s->vvvv));
        if (map == 3 && op >= 0x14 && op <= 0x17) return B;
        if (map == 3 && op == 0xF0) return R_;
        if (map == 3 && (op == 0x61 || op == 0x63)) return cx;
        return 0;
    }
    if (map == 1) {
        if ((op >= 0x40 && op <= 0x4F) || op == 0x02 || op == 0x03 || op == 0xAF || op == 0xB6 ||
            op == 0xB7 || op == 0xBE || op == 0xBF || op == 0xB8 || op == 0xBC || op == 0xBD ||
            op == 0xB2 || op == 0xB4 || op == 0xB5 || op == 0x50 || op == 0xD7 || op == 0xC5 ||
            ((op == 0x2C || op == 0x2D) && (s->pfx == 0xF3 || s->pfx == 0xF2)))
            return R_;
        if ((op >= 0x90 && op <= 0x9F) || op == 0xAB || op == 0xB3 || op == 0xBB || op == 0xA4 ||
            op == 0xA5 || op == 0xAC || op == 0xAD || (op == 0x7E && s->pfx != 0xF3) ||
            (op == 0xBA && reg >= 5) || (op == 0xC7 && reg >= 6))
            return (op >= 0x90 && op <= 0x9F && !s->rex && b >= 4 && b < 8 && mod == 3) ? (uint16_t)(1u << (b - 4)) : B;
        if (op == 0xB0 || op == 0xB1) return (uint16_t)(ax | B);
        if (op == 0xC0 || op == 0xC1) return (uint16_t)(R_ | B);
        if (op == 0xC7 && reg == 1) return (uint16_t)(ax | dx);
        if (op == 0x01 && mod == 3) return (uint16_t)(ax | cx | dx); /* xgetbv, rdtscp, ... */
        if (op == 0x00 && mod == 3 && reg < 2) return B; /* sldt, str */
        return 0;
    }
    if (map == 2) {
        if (op == 0xF0 || (op == 0xF1 && s->rep == 0xF2) || op == 0xF6) return R_;
        return 0;
    }
    if (op >= 0x14 && op <= 0x17) return B; /* pextr*, extractps */
    if (op == 0x61 || op == 0x63) return cx; /* pcmp[ei]stri */
    return 0;
}

/* Instructions without ModRM: the registers they write, and whether they end a run of
 * straight-line code (with the target of a direct branch). `imm` points at the immediate. */
static void plain(const struct state *s, int map, int op, const unsigned char *imm, int n, struct mp_x86_access *out)
{
    uint16_t ax = 1, cx = 2, dx = 4, bx = 8, sp = 16, bp = 32, si = 64, di = 128;
    int reg = (op & 7) | (s->rex_b << 3);
    int32_t rel = n == 1 ? (int8_t)imm[0] : n == 4 ? (int32_t)((uint32_t)imm[0] | (uint32_t)imm[1] << 8 |
                                                               (uint32_t)imm[2] << 16 | (uint32_t)imm[3] << 24) : 0;
    if (map == 1) {
        if (op >= 0x80 && op <= 0x8F) out->branch = MP_BRANCH_COND, out->target = rel;
        else if (op == 0x05 || op == 0x0B || op == 0x34 || op == 0x35 || op == 0x07) out->branch = MP_BRANCH_END;
        if (op == 0x05) out->clobbers = (uint16_t)(ax | cx | (1u << 11));
        else if (op == 0xA2) out->clobbers = (uint16_t)(ax | bx | cx | dx);
        else if (op == 0x31 || op == 0x32 || op == 0x33) out->clobbers = (uint16_t)(ax | dx);
        else if (op >= 0xC8 && op <= 0xCF) out->clobbers = (uint16_t)(1u << reg);
        else if (op == 0xA0 || op == 0xA1 || op == 0xA8 || op == 0xA9) out->clobbers = sp;
        return;
    }
    if (map != 0)
        return;
    if (op >= 0x70 && op <= 0x7F) out->branch = MP_BRANCH_COND, out->target = rel;
    else if (op >= 0xE0 && op <= 0xE3) out->branch = MP_BRANCH_COND, out->target = rel, out->clobbers = cx;
    else if (op == 0xEB || op == 0xE9) out->branch = MP_BRANCH_JUMP, out->target = rel;
    else if (op == 0xE8) out->branch = MP_BRANCH_END, out->clobbers = sp;
    else if (op == 0xC2 || op == 0xC3 || op == 0xCA || op == 0xCB || op == 0xCF || op == 0xCC ||
             op == 0xCD || op == 0xF4 || op == 0xF1)
        out->branch = MP_BRANCH_END, out->clobbers = sp;
    else if (op >= 0x50 && op <= 0x57) out->clobbers = sp;
    else if (op >= 0x58 && op <= 0x5F) out->clobbers = (uint16_t)(sp | (1u << reg));
    else if (op >= 0x91 && op <= 0x97) out->clobbers = (uint16_t)(ax | (1u << reg));
    else if (op == 0x90 && s->rex_b) out->clobbers = (uint16_t)(ax | (1u << 8));
    else if (op == 0x98 || op == 0x9F || op == 0xD7 || op == 0xE4 || op == 0xE5 || op == 0xEC || op == 0xED)
        out->clobbers = ax;
    else if (op == 0x99) out->clobbers = (uint16_t)(ax | dx);
    else if (op == 0xA8 || op == 0xA9) out->clobbers = ax; /* test writes nothing; as capstone: only costs credits */
    else if (op == 0x9C || op == 0x9D) out->clobbers = sp;
    else if (op == 0xC8 || op == 0xC9) out->clobbers = (uint16_t)(sp | bp);
    else if (op >= 0x6C && op <= 0x6F) out->clobbers = (uint16_t)(si | di | cx);
    else if (op >= 0xB0 && op <= 0xB7) out->clobbers = (uint16_t)(1u << (!s->rex && reg >= 4 ? reg - 4 : reg));
    else if (op >= 0xB8 && op <= 0xBF) out->clobbers = (uint16_t)(1u << reg);
    /* the accumulator forms of the ALU ops (04, 05, 0C ...): al/ax/eax/rax, but not cmp, test */
    else if (op < 0x40 && ((op & 7) == 4 || (op & 7) == 5) && (op & 0x38) != 0x38) out->clobbers = ax;
}

int mp_x86_decode(const unsigned char *c, int avail, struct mp_x86_access *out)
{
    struct state s;
    int i = 0, op, acc = N, size = 0, imm = 0, vsib = 0, seg = 0;
    memset(&s, 0, sizeof s);
    memset(out, 0, sizeof *out);
    out->base = out->index = MP_REG_NONE;
    if (avail > 15)
        avail = 15;
#define NEED(k) do { if (i + (k) > avail) return 0; } while (0)
    for (;; i++) { /* legacy prefixes */
        NEED(1);
        int b = c[i];
        if (b == 0x66) s.opsize16 = 1;
        else if (b == 0x67) s.addr32 = 1;
        else if (b == 0xF2 || b == 0xF3) s.rep = b;
        else if (b == 0x64) seg = 1;
        else if (b == 0x65) seg = 2;
        else if (b != 0xF0 && b != 0x2E && b != 0x36 && b != 0x3E && b != 0x26) break;
    }
    s.pfx = s.rep ? s.rep : s.opsize16 ? 0x66 : 0;
    if ((c[i] & 0xF0) == 0x40) { /* REX: the last prefix */
        s.rex = 1;
        s.rex_w = (c[i] >> 3) & 1, s.rex_r = (c[i] >> 2) & 1, s.rex_x = (c[i] >> 1) & 1, s.rex_b = c[i] & 1;
        i++;
        NEED(1);
    }
    op = c[i++];
    int modrm = 0, map = 0;
    if (op == 0xC4 || op == 0xC5 || op == 0x62) {
        int n = op == 0xC5 ? 1 : op == 0xC4 ? 2 : 3;
        NEED(n + 1);
        const unsigned char *v = c + i;
        int pp;
        if (op == 0xC5) {
            s.rex_r = !(v[0] & 0x80), map = 1, s.vl = (v[0] & 4) ? 32 : 16, pp = v[0] & 3;
            s.vvvv = (~v[0] >> 3) & 15;
        } else if (op == 0xC4) {
            s.rex_r = !(v[0] & 0x80), s.rex_x = !(v[0] & 0x40), s.rex_b = !(v[0] & 0x20);
            map = v[0] & 0x1F, s.rex_w = v[1] >> 7, s.vl = (v[1] & 4) ? 32 : 16, pp = v[1] & 3;
            s.vvvv = (~v[1] >> 3) & 15;
        } else {
            s.rex_r = !(v[0] & 0x80), s.rex_x = !(v[0] & 0x40), s.rex_b = !(v[0] & 0x20);
            map = v[0] & 7, s.rex_w = v[1] >> 7, pp = v[1] & 3;
            s.vl = 16 << ((v[2] >> 5) & 3), s.evex_b = (v[2] >> 4) & 1, s.evex = 1;
            if (s.vl > 64) return 0;
        }
        if (map < 1 || map > 3) return 0; /* XOP, AMX/FP16 maps: not decoded */
        static const int pfx[4] = {0, 0x66, 0xF3, 0xF2};
        s.pfx = pfx[pp], s.vex = 1, s.map = map;
        i += n;
        NEED(1);
        op = c[i++];
        modrm = op != 0x77 || map != 1;
    } else if (op == 0x0F) {
        NEED(1);
        op = c[i++];
        map = 1;
        if (op == 0x38 || op == 0x3A) {
            NEED(1);
            map = op == 0x38 ? 2 : 3;
            op = c[i++];
            modrm = 1;
        } else {
            modrm = !((op >= 0x04 && op <= 0x0C && op != 0x0D) || op == 0x0E ||
                      (op >= 0x30 && op <= 0x37) || op == 0x77 || (op >= 0x80 && op <= 0x8F) ||
                      op == 0xA0 || op == 0xA1 || op == 0xA2 || op == 0xA8 || op == 0xA9 ||
                      op == 0xAA || (op >= 0xC8 && op <= 0xCF) || op == 0x24 || op == 0x25 ||
                      op == 0x26 || op == 0x27 || op == 0x36 || op == 0x39 || op == 0x3B ||
                      op == 0x3C || op == 0x3D || op == 0x3E || op == 0x3F || op == 0x7A || op == 0x7B);
            if (op >= 0x80 && op <= 0x8F)
                imm = 4;
        }
    } else {
        switch (op) { /* one-byte opcodes without ModRM: length, and the odd memory ones */
        case 0x06: case 0x07: case 0x0E: case 0x16: case 0x17: case 0x1E: case 0x1F:
        case 0x27: case 0x2F: case 0x37: case 0x3F: case 0x60: case 0x61: case 0x62:
        case 0x82: case 0x9A: case 0xC4: case 0xC5: case 0xCE: case 0xD4: case 0xD5:
        case 0xD6: case 0xEA:
            return 0; /* invalid in 64-bit mode */
        case 0x04: case 0x0C: case 0x14: case 0x1C: case 0x24: case 0x2C: case 0x34: case 0x3C:
        case 0x6A: case 0xA8: case 0xCD: case 0xE4: case 0xE5: case 0xE6: case 0xE7:
        case 0xEB: case 0xE0: case 0xE1: case 0xE2: case 0xE3:
            imm = 1; break;
        case 0x05: case 0x0D: case 0x15: case 0x1D: case 0x25: case 0x2D: case 0x35: case 0x3D:
        case 0x68: case 0xA9:
            imm = s.opsize16 ? 2 : 4; break;
        case 0xE8: case 0xE9: imm = 4; break;
        case 0xC2: case 0xCA: imm = 2; break;
        case 0xC8: imm = 3; break;
        case 0xA0: case 0xA1: case 0xA2: case 0xA3: {
            int n = s.addr32 ? 4 : 8;
            NEED(n);
            int64_t a = 0;
            memcpy(&a, c + i, (size_t)n);
            i += n;
            out->length = (unsigned char)i;
            out->access = op < 0xA2 ? R : W;
            out->size = (unsigned char)((op & 1) ? vsize(&s) : 1);
            out->disp = a;
            out->memory = 1; /* no base, no index: disp is the address */
            out->clobbers = op < 0xA2 ? 1 : 0;
            out->segment = (unsigned char)seg;
            return i;
        }
        case 0xA4: case 0xA5: case 0xA6: case 0xA7: case 0xAA: case 0xAB: case 0xAC: case 0xAD:
        case 0xAE: case 0xAF:
            out->length = (unsigned char)i;
            out->string = (unsigned char)op;
            { /* rsi for movs, cmps, lods; rdi for movs, cmps, stos, scas; rax for lods; rcx with rep */
                int o = op & ~1, si = o == 0xA4 || o == 0xA6 || o == 0xAC, di = o != 0xAC;
                out->clobbers = (uint16_t)((si ? 1u << 6 : 0) | (di ? 1u << 7 : 0) | (o == 0xAC ? 1 : 0) | (s.rep ? 2 : 0));
            }
            out->access = op == 0xAA || op == 0xAB ? W : op == 0xA4 || op == 0xA5 ? RW : R;
            out->size = (unsigned char)((op & 1) ? vsize(&s) : 1);
            out->segment = (unsigned char)seg;
            out->addr32 = (unsigned char)s.addr32;
            return i;
        default:
            if (op >= 0xB0 && op <= 0xB7) imm = 1;
            else if (op >= 0xB8 && op <= 0xBF) imm = s.rex_w ? 8 : s.opsize16 ? 2 : 4;
            else if (op >= 0x70 && op <= 0x7F) imm = 1;
            else if (op < 0x40) modrm = (op & 7) < 4;
            else modrm = op == 0x63 || op == 0x69 || op == 0x6B || (op >= 0x80 && op <= 0x8F) ||
                         op == 0xC0 || op == 0xC1 || op == 0xC6 || op == 0xC7 ||
                         (op >= 0xD0 && op <= 0xD3) || (op >= 0xD8 && op <= 0xDF) ||
                         op == 0xF6 || op == 0xF7 || op == 0xFE || op == 0xFF;
        }
    }
    if (!modrm) {
        NEED(imm);
        out->length = (unsigned char)(i + imm);
        plain(&s, map, op, c + i, imm, out);
        return i + imm;
    }
    NEED(1);
    int m = c[i++], mod = m >> 6, reg = (m >> 3) & 7, rm = m & 7;
    out->clobbers = writes_modrm(&s, map, op, mod, reg | (s.rex_r << 3), rm | (s.rex_b << 3), reg);
    if (map == 0 && op == 0xFF && reg >= 2 && reg <= 5)
        out->branch = MP_BRANCH_END; /* indirect call or jump */
    if (s.vex) {
        imm = vector(&s, op, reg, &acc, &size, &vsib);
    } else if (map == 0) {
        if (!map1(&s, op, reg, &acc, &size, &imm))
            return 0;
        if ((op == 0xC6 || op == 0xC7) && m == 0xF8) { /* xabort imm8, xbegin rel */
            imm = op == 0xC6 ? 1 : 4;
            out->branch = MP_BRANCH_END;
        }
    } else if (map == 1) {
        map2(&s, op, reg, &acc, &size, &imm);
    } else if (map == 2) {
        map3(&s, op, &acc, &size);
    } else {
        map4(&s, op, &acc, &size);
        imm = 1;
    }
    if (s.evex && s.evex_b && mod != 3) /* broadcast: one element */
        size = s.rex_w ? 8 : 4;
    if (mod == 3) { /* register operand: no memory */
        NEED(imm);
        out->length = (unsigned char)(i + imm);
        return i + imm;
    }
    int base = rm, index = -1, scale = 1;
    int64_t disp = 0;
    if (rm == 4) { /* SIB */
        NEED(1);
        int sib = c[i++];
        scale = 1 << (sib >> 6);
        index = ((sib >> 3) & 7) | (s.rex_x << 3);
        if (index == 4 && !vsib)
            index = -1; /* no index */
        base = sib & 7;
        if (base == 5 && mod == 0)
            base = -1, disp = 4; /* disp32, no base */
    }
    if (base >= 0)
        base |= s.rex_b << 3;
    int dispsize = mod == 1 ? 1 : mod == 2 ? 4 : (disp == 4 ? 4 : 0);
    disp = 0;
    if (mod == 0 && rm == 5) { /* RIP-relative */
        base = MP_REG_RIP;
        dispsize = 4;
    }
    NEED(dispsize + imm);
    if (dispsize == 1) {
        disp = (int8_t)c[i];
        if (s.evex)
            disp *= (size > 0 ? size : 1);
    } else if (dispsize == 4) {
        int32_t d;
        memcpy(&d, c + i, 4);
        disp = d;
    }
    i += dispsize + imm;
    out->length = (unsigned char)i;
    out->access = (unsigned char)acc;
    out->size = (unsigned char)(size > 255 ? 255 : size);
    out->base = (unsigned char)(base < 0 ? MP_REG_NONE : base);
    out->index = (unsigned char)(index < 0 ? MP_REG_NONE : index);
    out->scale = (unsigned char)scale;
    out->disp = disp;
    out->segment = (unsigned char)seg;
    out->addr32 = (unsigned char)s.addr32;
    out->vsib = (unsigned char)vsib;
    out->memory = 1;
    return i;
#undef NEED
}
