/* Profiling mode (`memplace profile`): every allocation is forwarded to the next allocator
 * and recorded against its call site; the profile is written at exit, or when the program
 * dies of a signal, as one text file per process that Python turns into a profile. */
#ifndef MEMPLACE_PROFILE_H
#define MEMPLACE_PROFILE_H

#include <stddef.h>
#include <stdint.h>

/* Start profiling into directory `dir`; 0 on success, else *why says why not. */
int mp_profile_start(const char *dir, const char **why);
void mp_profile_write(void);

void *mp_profile_malloc(size_t n, uintptr_t ra);
void *mp_profile_calloc(size_t n, size_t size, uintptr_t ra);
void *mp_profile_realloc(void *p, size_t n, uintptr_t ra);
void *mp_profile_aligned(size_t align, size_t n, uintptr_t ra);
void mp_profile_forget(void *p); /* p is being freed */

void mp_profile_fork_prepare(void);
void mp_profile_fork_release(void);

#endif
