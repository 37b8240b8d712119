#include <stdlib.h>
#include <string.h>

static __thread char tls_buffer[256];
static char *made_at_load;

__attribute__((constructor)) static void load(void) { made_at_load = strdup("loaded"); }
__attribute__((destructor)) static void unload(void) { free(made_at_load); }

long plugin_work(int i)
{
    char *p = calloc(i + 1, 16);
    tls_buffer[i % 256] = (char)i;
    long r = (long)strlen(made_at_load) + tls_buffer[i % 256];
    p = realloc(p, (i + 1) * 64);
    free(p);
    return r;
}
