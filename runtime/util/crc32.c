/* zlib's CRC-32 (the one Python's zlib.crc32 computes), a byte at a time from a table: the
 * runtime runs it once at start-up over the compiled policy, which for a profile of
 * thousands of sites is megabytes (bitwise, 72 instructions a byte; this, about 7). The
 * table is made on the stack each call: no state to share between threads or with the
 * fuzz harness, which links this file too, so the checksum it fixes up is the one the
 * reader checks. */
#include "internal.h"

uint32_t mp_crc32(const unsigned char *p, uint64_t n)
{
    uint32_t table[256];
    for (uint32_t i = 0; i < 256; i++) {
        uint32_t c = i;
        for (int k = 0; k < 8; k++)
            c = (c >> 1) ^ (0xEDB88320u & (0u - (c & 1)));
        table[i] = c;
    }
    uint32_t c = 0xFFFFFFFFu;
    while (n--)
        c = table[(c ^ *p++) & 0xFF] ^ (c >> 8);
    return ~c;
}
