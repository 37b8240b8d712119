/* Small I/O helpers every layer uses (see internal.h): they never allocate and never
 * touch stdio, so they are safe inside malloc and in a fatal signal's handler. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <unistd.h>
#include "internal.h"

void mp_write_all(int fd, const char *s, size_t n)
{
    while (n > 0) {
        ssize_t w = write(fd, s, n);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return;
        s += w;
        n -= (size_t)w;
    }
}

size_t mp_fmt_u64(char *buf, uint64_t v)
{
    char tmp[20];
    size_t n = 0;
    do {
        tmp[n++] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    for (size_t i = 0; i < n; i++)
        buf[i] = tmp[n - 1 - i];
    return n;
}

int mp_open_for_append(const char *path)
{
    return open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
}

int mp_create_numbered(char *path, size_t cap, const char *dir, const char *stem)
{
    size_t d = strlen(dir), s = strlen(stem);
    if (d + s + 64 > cap)
        return -1;
    memcpy(path, dir, d);
    path[d++] = '/';
    memcpy(path + d, stem, s);
    d += s;
    path[d++] = '.';
    d += mp_fmt_u64(path + d, (uint64_t)getpid());
    for (uint64_t n = 0; n < 1000; n++) {
        size_t e = d;
        if (n) {
            path[e++] = '.';
            e += mp_fmt_u64(path + e, n);
        }
        memcpy(path + e, ".txt", 5);
        int fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
        if (fd >= 0 || errno != EEXIST)
            return fd;
    }
    return -1;
}

static size_t page_size;

void mp_page_size_init(void)
{
    long ps = sysconf(_SC_PAGESIZE);
    page_size = ps > 0 ? (size_t)ps : 4096;
}

size_t mp_page_size(void) { return page_size; }
