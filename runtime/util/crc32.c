/* zlib's CRC-32 (the one Python's zlib.crc32 computes), bitwise: the runtime runs it once
 * at start-up over the compiled policy. The fuzz harness links this file too, so the
 * checksum it fixes up is the one the reader checks. */
#include "internal.h"

uint32_t mp_crc32(const unsigned char *p, uint64_t n)
{
    uint32_t c = 0xFFFFFFFFu;
    while (n--) {
        c ^= *p++;
        for (int k = 0; k < 8; k++)
            c = (c >> 1) ^ (0xEDB88320u & (0u - (c & 1)));
    }
    return ~c;
}
