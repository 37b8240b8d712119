/* Pins glibc's malloc-family semantics; must pass with and without the runtime. */
#define _GNU_SOURCE
#include <errno.h>
#include <malloc.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static int failures, checks;
#define CHECK(cond) do { checks++; if (!(cond)) { failures++; \
    printf("FAIL line %d: %s\n", __LINE__, #cond); } } while (0)

int main(void)
{
    long page = sysconf(_SC_PAGESIZE);

    void *a = malloc(0), *b = malloc(0);
    CHECK(a != NULL && b != NULL && a != b);     /* glibc: unique non-NULL */
    CHECK(malloc_usable_size(a) >= 0);
    free(a); free(b);

    char *p = realloc(NULL, 100);                  /* realloc(NULL, n) == malloc(n) */
    CHECK(p != NULL && malloc_usable_size(p) >= 100);
    memset(p, 'x', 100);
    p = realloc(p, 100000);
    CHECK(p != NULL && p[99] == 'x');
    errno = 0;
    CHECK(realloc(p, 0) == NULL);                  /* glibc frees and returns NULL */

    errno = 0;
    CHECK(calloc(SIZE_MAX / 2, 4) == NULL && errno == ENOMEM);   /* overflow */
    int *z = calloc(1000, sizeof(int));
    int zero = 1;
    for (int i = 0; i < 1000; i++) zero &= z[i] == 0;
    CHECK(z != NULL && zero);
    free(z);

    errno = 0;
    CHECK(reallocarray(NULL, SIZE_MAX / 2, 4) == NULL && errno == ENOMEM);
    void *ra = reallocarray(NULL, 10, 10);
    CHECK(ra != NULL && malloc_usable_size(ra) >= 100);
    free(ra);

    errno = 0;
    CHECK(malloc(SIZE_MAX - 4096) == NULL && errno == ENOMEM);

    void *out = (void *)0x1234;
    CHECK(posix_memalign(&out, 3, 64) == EINVAL && out == (void *)0x1234);  /* *out untouched */
    CHECK(posix_memalign(&out, 4, 64) == EINVAL && out == (void *)0x1234);  /* < sizeof(void*) */
    CHECK(posix_memalign(&out, 64, SIZE_MAX - 4096) == ENOMEM && out == (void *)0x1234);
    CHECK(posix_memalign(&out, 4096, 100) == 0 && ((uintptr_t)out & 4095) == 0);
    free(out);

    void *al = aligned_alloc(256, 1024);
    CHECK(al != NULL && ((uintptr_t)al & 255) == 0);
    free(al);
    void *ma = memalign(1 << 16, 10);
    CHECK(ma != NULL && ((uintptr_t)ma & 0xffff) == 0);
    free(ma);
    void *va = valloc(10);
    CHECK(va != NULL && ((uintptr_t)va & (page - 1)) == 0);
    free(va);
    void *pv = pvalloc(10);
    CHECK(pv != NULL && ((uintptr_t)pv & (page - 1)) == 0 && malloc_usable_size(pv) >= (size_t)page);
    free(pv);

    CHECK(malloc_usable_size(NULL) == 0);

    errno = 12345;                                  /* free preserves errno */
    free(malloc(10));
    free(NULL);
    CHECK(errno == 12345);

    printf("%d checks, %d failures\n", checks, failures);
    return failures != 0;
}
