/* A plugin the host dlopen()s after it has started: its one malloc call is named by a
 * rule as libplug.so+OFFSET (the return address, found with objdump by the test). */
#include <stdlib.h>

void *plug_alloc(size_t n)
{
    void *p = malloc(n);
    __asm__ volatile("" ::: "memory"); /* a call, not a tail jump: its return address is ours */
    return p;
}
