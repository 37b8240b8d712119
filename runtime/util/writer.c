/* A buffered text writer for the runtime's exit files (stats, profiles): no malloc, no
 * stdio, no lock, so it also runs in a fatal signal's handler. */
#include <string.h>
#include "internal.h"

void mp_flush(struct mp_writer *w)
{
    mp_write_all(w->fd, w->buf, w->n);
    w->n = 0;
}

void mp_put(struct mp_writer *w, const char *s)
{
    for (size_t len = strlen(s); len;) {
        if (w->n == sizeof w->buf)
            mp_flush(w);
        size_t k = sizeof w->buf - w->n < len ? sizeof w->buf - w->n : len;
        memcpy(w->buf + w->n, s, k);
        w->n += k;
        s += k;
        len -= k;
    }
}

void mp_put_u64(struct mp_writer *w, uint64_t v)
{
    char b[24];
    b[0] = ' ';
    b[1 + mp_fmt_u64(b + 1, v)] = 0;
    mp_put(w, b);
}

void mp_put_hex(struct mp_writer *w, uint64_t v)
{
    static const char hex[] = "0123456789abcdef";
    char tmp[16], b[20] = " 0x";
    int n = 0;
    do {
        tmp[n++] = hex[v & 15];
        v >>= 4;
    } while (v);
    for (int i = 0; i < n; i++)
        b[3 + i] = tmp[n - 1 - i];
    b[3 + n] = 0;
    mp_put(w, b);
}
