/* A library the program loads with dlopen: its allocation is two calls deep inside it. */
#include <stdlib.h>
static volatile int sink;
__attribute__((noinline)) static void *plugin_inner(size_t n)
{
    void *p = malloc(n); /* SITE plugin_malloc */
    sink++;
    return p;
}
void *plugin_alloc(size_t n)
{
    void *p = plugin_inner(n); /* SITE plugin_inner */
    sink++;
    return p;
}
