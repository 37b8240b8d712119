#include <stdlib.h>
#include <string.h>
char *deep_make(size_t n) { char *p = malloc(n); memset(p, 'd', n - 1); p[n - 1] = 0; return p; }
void deep_drop(void *p) { free(p); }
