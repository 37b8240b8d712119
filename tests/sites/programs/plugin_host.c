/* Loads plugin.so with dlopen (path in argv[1]) and has it allocate 3 times. */
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
int main(int argc, char **argv)
{
    void *h = dlopen(argv[1], RTLD_NOW);
    if (!h) {
        fprintf(stderr, "%s\n", dlerror());
        return 1;
    }
    void *(*alloc)(size_t) = (void *(*)(size_t))dlsym(h, "plugin_alloc");
    for (int i = 0; i < 3; i++)
        free(alloc(1000)); /* SITE host_call */
    return 0;
}
