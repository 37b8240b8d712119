#include <stdio.h>
#include <stdlib.h>
#include <string.h>

extern unsigned long own_malloc_calls;
char *volatile sink; /* keeps the compiler from eliding malloc/free pairs */

int main(void)
{
    unsigned long before = own_malloc_calls;
    for (int i = 0; i < 1000; i++) {
        char *p = malloc(100 + i);
        strcpy(p, "hello");
        p = realloc(p, 5000);
        sink = p;
        free(sink);
    }
    printf("own_malloc_calls_grew=%d\n", own_malloc_calls - before >= 1000);
    return 0;
}
