/* The runtime loaded with dlopen after start (not preloaded): its initial-exec TLS must
 * fit the static TLS surplus and its entry points must work on foreign blocks. */
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int main(int argc, char **argv)
{
    char *before = malloc(100);
    strcpy(before, "allocated before the runtime was loaded");
    void *h = dlopen(argv[1], RTLD_NOW | RTLD_LOCAL);
    if (!h) { printf("dlopen failed: %s\n", dlerror()); return 1; }
    void *(*mp_malloc)(size_t) = (void *(*)(size_t))dlsym(h, "malloc");
    void (*mp_free)(void *) = (void (*)(void *))dlsym(h, "free");
    void *(*mp_realloc)(void *, size_t) = (void *(*)(void *, size_t))dlsym(h, "realloc");
    const char *(*next)(void) = (const char *(*)(void))dlsym(h, "memplace_next_allocator");
    char *p = mp_malloc(1000);
    strcpy(p, "via runtime");
    before = mp_realloc(before, 5000);          /* a foreign block through the runtime */
    printf("%s / %s / next=%s\n", p, before, strstr(next(), "libc.so") ? "libc" : next());
    mp_free(p);
    mp_free(before);
    return 0;
}
