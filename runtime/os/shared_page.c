/* Counters shared by the processes of one job on this node: a small file (under /dev/shm,
 * named by `memplace run` in MEMPLACE_SHARED) that every process maps. Opened or created,
 * grown to its size, mapped and closed: no descriptor is kept. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>
#include "internal.h"

void *mp_shared_page(const char *path, size_t size)
{
    int saved = errno;
    int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
    void *p = MAP_FAILED;
    struct stat st;
    /* ours alone (another user's file under the expected name is not trusted); ftruncate
     * only grows it: a file another process of the job made is never cut (or zeroed) */
    if (fd >= 0 && fstat(fd, &st) == 0 && S_ISREG(st.st_mode) && st.st_uid == geteuid() &&
        ((size_t)st.st_size >= size || ftruncate(fd, (off_t)size) == 0))
        p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (fd >= 0)
        close(fd);
    errno = saved;
    return p == MAP_FAILED ? NULL : p;
}
