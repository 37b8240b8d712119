/* Blocks the runtime never allocated reach its free/realloc/malloc_usable_size:
 * from __libc_malloc, and from a library loaded with RTLD_DEEPBIND (which binds to
 * libc's malloc directly). The runtime must hand them to the next allocator. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

extern void *__libc_malloc(size_t);

int main(int argc, char **argv)
{
    int failures = 0;
    for (int i = 0; i < 1000; i++) {
        char *p = __libc_malloc(64 + i);
        strcpy(p, "libc");
        if (malloc_usable_size(p) < (size_t)(64 + i)) failures++;
        p = realloc(p, 10000 + i);
        if (strcmp(p, "libc")) failures++;
        free(p);
    }
    void *h = dlopen(argv[1], RTLD_NOW | RTLD_DEEPBIND);
    if (!h) { printf("dlopen: %s\n", dlerror()); return 1; }
    char *(*make)(size_t) = (char *(*)(size_t))dlsym(h, "deep_make");
    void (*drop)(void *) = (void (*)(void *))dlsym(h, "deep_drop");
    for (int i = 0; i < 1000; i++) {
        char *a = make(100 + i);     /* allocated inside the DEEPBIND library */
        free(a);                     /* freed by the program */
        char *b = malloc(50);        /* allocated by the program */
        strcpy(b, "x");
        drop(b);                     /* freed inside the DEEPBIND library */
    }
    printf("failures=%d\n", failures);
    return failures != 0;
}
