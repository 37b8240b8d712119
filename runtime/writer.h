/* A buffered text writer for the runtime's exit files (stats, profiles): no malloc, no
 * stdio, no lock, so it also runs in a fatal signal's handler. */
#ifndef MEMPLACE_WRITER_H
#define MEMPLACE_WRITER_H

#include <stddef.h>
#include <stdint.h>

struct mp_writer { char buf[16384]; size_t n; int fd; };

void mp_put(struct mp_writer *w, const char *s);
void mp_put_u64(struct mp_writer *w, uint64_t v); /* " <decimal>" */
void mp_put_hex(struct mp_writer *w, uint64_t v); /* " 0x<hex>" */
void mp_flush(struct mp_writer *w);

#endif
