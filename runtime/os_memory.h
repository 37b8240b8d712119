/* Every contact with the OS about device memory: reserving address space, backing it
 * with anonymous, file or huge-page memory, and binding it to NUMA nodes. */
#ifndef MEMPLACE_OS_MEMORY_H
#define MEMPLACE_OS_MEMORY_H

#include <stddef.h>
#include <stdint.h>

/* Reserve `size` bytes of address space aligned to `align` (inaccessible until backed). */
void *mp_os_reserve(size_t size, size_t align);
/* Back [at, at+size) with anonymous memory; huge: 0 none, 1 MAP_HUGETLB, 2 madvise THP,
 * -1 release the memory and leave the range reserved again.
 * Returns 0 or an errno value. */
int mp_os_back_anonymous(void *at, size_t size, int huge, int page_shift);
/* Back [at, at+size) with a new file in `dir`, allocated on disk and already unlinked. */
int mp_os_back_file(void *at, size_t size, const char *dir);
/* mbind [at, at+size) before first touch; mode as in the compiled policy. */
int mp_os_bind(void *at, size_t size, uint32_t mode, const uint64_t *nodemask, int words);

#endif
