/* Every size from 0 to MAX bytes, from two sites (malloc and calloc), all live at once,
 * then all freed: the runtime's live bytes must return to zero and its counts be exact. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX 20000

int main(void)
{
    static unsigned char *a[MAX + 1], *b[MAX + 1];
    long bad = 0;
    for (size_t n = 0; n <= MAX; n++) {
        a[n] = malloc(n);                                      /* SITE sizes_malloc */
        b[n] = calloc(1, n);                                   /* SITE sizes_calloc */
        for (size_t i = 0; i < n; i++)
            bad += b[n][i] != 0;
        memset(a[n], 0xa5, n);
        memset(b[n], 0x5a, n);
    }
    for (size_t n = 0; n <= MAX; n++) {
        bad += n && (a[n][n - 1] != 0xa5 || b[n][0] != 0x5a);
        free(a[n]);
        free(b[n]);
    }
    printf("sizes bad=%ld\n", bad);
    return 0;
}
