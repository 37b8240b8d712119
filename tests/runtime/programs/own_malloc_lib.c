/* A library that exports its own malloc family on top of glibc's __libc_* functions,
 * as Debian's libOpenFOAM.so does. It counts the calls it sees. */
#include <stddef.h>

extern void *__libc_malloc(size_t);
extern void __libc_free(void *);
extern void *__libc_calloc(size_t, size_t);
extern void *__libc_realloc(void *, size_t);

unsigned long own_malloc_calls;

void *malloc(size_t n) { __atomic_add_fetch(&own_malloc_calls, 1, __ATOMIC_RELAXED); return __libc_malloc(n); }
void free(void *p) { __libc_free(p); }
void *calloc(size_t n, size_t s) { return __libc_calloc(n, s); }
void *realloc(void *p, size_t n) { return __libc_realloc(p, n); }
