/* Placement mode: the malloc family when a policy is in force (entry.c dispatches here). */
#ifndef MEMPLACE_PLACE_H
#define MEMPLACE_PLACE_H

#include <stddef.h>
#include <stdint.h>
#include "memplace.h"

/* Start placing with the compiled policy at `path`; 0 on success, else *why says why not. */
int mp_place_start(const char *path, const char **why);
void mp_place_write_stats(const char *dir);

void *mp_place_malloc(size_t n, uintptr_t ra);
void *mp_place_calloc(size_t n, size_t size, uintptr_t ra);
void *mp_place_realloc(void *p, size_t n, uintptr_t ra);
void *mp_place_aligned(size_t align, size_t n, uintptr_t ra); /* align: a valid power of two */

#endif
