/* Every contact with the OS about device memory: reserving address space, backing it
 * with anonymous, file or huge-page memory, and binding it to NUMA nodes (see internal.h).
 * Raw syscalls, no libnuma: the runtime depends on libc alone. No descriptor outlives the
 * call that opened it. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <time.h>
#include <linux/fiemap.h>
#include <linux/fs.h>
#include <linux/futex.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/statfs.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>
#include "internal.h"

#ifndef MAP_HUGE_SHIFT
#define MAP_HUGE_SHIFT 26
#endif

void *mp_os_reserve(size_t size, size_t align)
{
    size_t span = size + align;
    unsigned char *p = mmap(NULL, span, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (p == MAP_FAILED)
        return NULL;
    unsigned char *start = (unsigned char *)(((uintptr_t)p + align - 1) & ~(uintptr_t)(align - 1));
    if (start > p)
        munmap(p, (size_t)(start - p));
    size_t tail = (size_t)((p + span) - (start + size));
    if (tail)
        munmap(start + size, tail);
    return start;
}

/* The address space this process may still map under RLIMIT_AS (`ulimit -v`): the limit
 * less the current size from /proc/self/statm; UINT64_MAX without a limit. */
uint64_t mp_os_address_headroom(void)
{
    struct rlimit r;
    if (getrlimit(RLIMIT_AS, &r) != 0 || r.rlim_cur == RLIM_INFINITY)
        return UINT64_MAX;
    uint64_t used = 0;
    char buf[128];
    int fd = open("/proc/self/statm", O_RDONLY | O_CLOEXEC);
    if (fd >= 0) {
        ssize_t n = read(fd, buf, sizeof buf - 1);
        close(fd);
        for (ssize_t i = 0; i < n && buf[i] >= '0' && buf[i] <= '9'; i++)
            used = used * 10 + (uint64_t)(buf[i] - '0');
        used *= mp_page_size();
    }
    return (uint64_t)r.rlim_cur > used ? (uint64_t)r.rlim_cur - used : 0;
}

int mp_os_back_anonymous(void *at, size_t size, int huge, int page_shift)
{
    if (huge < 0) /* give the memory back, keep the address range reserved */
        return mmap(at, size, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED | MAP_NORESERVE,
                    -1, 0) == MAP_FAILED ? errno : 0;
    int flags = MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED;
    if (huge == 1)
        flags |= MAP_HUGETLB | (page_shift ? page_shift << MAP_HUGE_SHIFT : 0);
    else
        flags |= MAP_NORESERVE; /* pages are taken at first touch, after mbind */
    void *p = mmap(at, size, PROT_READ | PROT_WRITE, flags, -1, 0);
    if (p == MAP_FAILED) {
        int e = errno;
        mmap(at, size, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED | MAP_NORESERVE, -1, 0);
        return e;
    }
    if (huge == 2)
        madvise(at, size, MADV_HUGEPAGE);
    return 0;
}

/* "<dir>/.memplace-<pid>-<counter>" without stdio. */
static int file_name(char *buf, size_t cap, const char *dir, unsigned counter)
{
    size_t n = strlen(dir);
    if (n + 64 > cap)
        return -1;
    memcpy(buf, dir, n);
    memcpy(buf + n, "/.memplace-", 11);
    n += 11;
    n += mp_fmt_u64(buf + n, (uint64_t)getpid());
    buf[n++] = '-';
    n += mp_fmt_u64(buf + n, counter);
    buf[n] = 0;
    return 0;
}

static int open_unlinked(const char *dir)
{
    int fd = open(dir, O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
    if (fd >= 0)
        return fd;
    static unsigned counter;
    char path[4096];
    for (int tries = 0; tries < 100; tries++) {
        if (file_name(path, sizeof path, dir, __atomic_fetch_add(&counter, 1, __ATOMIC_RELAXED)))
            return -ENAMETOOLONG;
        fd = open(path, O_CREAT | O_EXCL | O_RDWR | O_CLOEXEC, 0600);
        if (fd >= 0) {
            unlink(path);
            return fd;
        }
        if (errno != EEXIST)
            return -errno;
    }
    return -EEXIST;
}

int mp_os_back_file(void *at, size_t size, const char *dir)
{
    int fd = open_unlinked(dir);
    if (fd < 0)
        return -fd;
    /* Allocate the blocks now: a full filesystem is then an error here, never a SIGBUS
     * at some later first touch in the program. */
    int e = posix_fallocate(fd, 0, (off_t)size);
    if (e == 0) {
        void *p = mmap(at, size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_FIXED, fd, 0);
        /* The kernel's read-around stays on (no MADV_RANDOM): data that went to disk
         * under memory pressure comes back in large reads, not one page per fault
         * (3x faster on bench/capacity's cold arrays). Its cost: zero pages read around
         * never-written blocks, which a fork's copy then takes for data. */
        e = p == MAP_FAILED ? errno : 0;
    }
    close(fd);
    return e;
}

/* "/proc/self/map_files/<start>-<end>" (lower-case hex, no 0x): the mapping's file. */
static void map_files_name(char *buf, uintptr_t start, uintptr_t end)
{
    memcpy(buf, "/proc/self/map_files/", 21);
    char *q = buf + 21;
    for (int half = 0; half < 2; half++) {
        uintptr_t v = half ? end : start;
        char digits[16];
        int n = 0;
        do
            digits[n++] = "0123456789abcdef"[v & 15];
        while (v >>= 4);
        while (n)
            *q++ = digits[--n];
        *q++ = half ? 0 : '-';
    }
}

/* Bytes [from, to) of the mapping at `at` into `dst` at the same offsets: in the kernel
 * from the source file when it is open (extents shared on reflink filesystems), else
 * written from the mapping itself. */
static int copy_range(int src, int dst, const unsigned char *at, off_t from, off_t to)
{
    while (from < to) {
        ssize_t n = -1;
        if (src >= 0) {
            loff_t in = from, out = from;
            n = copy_file_range(src, &in, dst, &out, (size_t)(to - from), 0);
            if (n <= 0)
                src = -1; /* not supported between these files: write from the mapping */
        }
        if (n <= 0)
            n = pwrite(dst, at + from, (size_t)(to - from), from);
        if (n < 0 && errno != EINTR)
            return errno;
        if (n > 0)
            from += n;
    }
    return 0;
}

/* The next run of [pos, end) of the source that may hold data: its written extents, after
 * writing back what is dirty (FIEMAP_FLAG_SYNC, so data only in the page cache is on an
 * extent too). Clean pages cached over unwritten extents are zeros the kernel read around
 * a fault; SEEK_DATA would count them as data and, as copying them reads further ahead,
 * take the whole file for data. 1: [*from, *to) found; 0: no data left; -1: no FIEMAP
 * here (tmpfs). */
static int next_written(int src, off_t pos, off_t end, int first, off_t *from, off_t *to)
{
    struct {
        struct fiemap map;
        struct fiemap_extent extent[32];
    } q;
    while (pos < end) {
        memset(&q.map, 0, sizeof q.map);
        q.map.fm_start = (uint64_t)pos;
        q.map.fm_length = (uint64_t)(end - pos);
        q.map.fm_flags = first ? FIEMAP_FLAG_SYNC : 0;
        q.map.fm_extent_count = 32;
        if (ioctl(src, FS_IOC_FIEMAP, &q.map) != 0)
            return -1;
        first = 0;
        for (unsigned i = 0; i < q.map.fm_mapped_extents; i++) {
            const struct fiemap_extent *x = &q.extent[i];
            off_t lo = (off_t)x->fe_logical, hi = (off_t)(x->fe_logical + x->fe_length);
            if ((x->fe_flags & FIEMAP_EXTENT_UNWRITTEN) || hi <= pos)
                continue;
            *from = lo > pos ? lo : pos;
            *to = hi < end ? hi : end;
            return *from < *to;
        }
        if (q.map.fm_mapped_extents < 32) /* the rest is holes */
            return 0;
        const struct fiemap_extent *last = &q.extent[31]; /* all unwritten: ask past them */
        pos = (off_t)(last->fe_logical + last->fe_length);
    }
    return 0;
}

int mp_os_private_file_copy(void *at, size_t size, size_t used, const char *dir)
{
    int dst = open_unlinked(dir);
    if (dst < 0)
        return -dst;
    /* Blocks on disk: allocating all of them now (as mp_os_back_file does, so that a full
     * filesystem is never a SIGBUS at a later first touch) costs milliseconds per 256 MiB
     * at every fork, and as much again at the child's exit. With ample free space (twice
     * the range) the file stays sparse and blocks come at first write. */
    struct statfs fs;
    int e = fstatfs(dst, &fs) == 0 && (uint64_t)fs.f_bavail * (uint64_t)fs.f_bsize / 2 > size
                ? (ftruncate(dst, (off_t)size) ? errno : 0)
                : posix_fallocate(dst, 0, (off_t)size);
    /* The source file, to copy only what was written: reachable only through
     * /proc/self/map_files, which needs CAP_CHECKPOINT_RESTORE or CAP_SYS_ADMIN; without
     * it every used byte is copied. */
    char name[64];
    map_files_name(name, (uintptr_t)at, (uintptr_t)at + size);
    int src = e ? -1 : open(name, O_RDONLY | O_CLOEXEC);
    if (src >= 0)
        posix_fadvise(src, 0, 0, POSIX_FADV_RANDOM);
    off_t pos = 0, end = (off_t)used;
    int fiemap = src >= 0;
    while (!e && pos < end) {
        off_t data = pos, hole = end;
        int found = fiemap ? next_written(src, pos, end, pos == 0, &data, &hole) : -1;
        if (found == 0)
            break;
        if (found < 0 && src >= 0) { /* no FIEMAP: what SEEK_DATA calls data */
            fiemap = 0;
            data = lseek(src, pos, SEEK_DATA);
            if (data < 0 || data >= end)
                break; /* ENXIO: no data after pos */
            hole = lseek(src, data, SEEK_HOLE);
            if (hole < 0 || hole > end)
                hole = end;
        }
        e = copy_range(src, dst, at, data, hole);
        pos = hole;
    }
    if (src >= 0)
        close(src);
    if (!e && mmap(at, size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_FIXED, dst, 0) == MAP_FAILED)
        e = errno;
    close(dst);
    return e;
}

void *mp_os_shared_page(void)
{
    void *p = mmap(NULL, mp_page_size(), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    return p == MAP_FAILED ? NULL : p;
}

void mp_os_unmap(void *at, size_t size)
{
    munmap(at, size);
}

void mp_os_wait_word(int *word, int value, long nanoseconds)
{
    struct timespec t = {0, nanoseconds};
    syscall(SYS_futex, word, FUTEX_WAIT, value, &t, NULL, 0); /* shared: not FUTEX_PRIVATE */
}

void mp_os_wake_word(int *word)
{
    syscall(SYS_futex, word, FUTEX_WAKE, 1, NULL, NULL, 0);
}

int mp_os_bind(void *at, size_t size, uint32_t mode, const uint64_t *nodemask, int words)
{
    /* compiled mode -> MPOL_*: bind 2, preferred 1, interleave 3, weighted 6, preferred-many 5 */
    static const int mpol[] = {2, 1, 3, 6, 5};
    long r = syscall(SYS_mbind, at, size, mpol[mode], nodemask, (unsigned long)words * 64 + 1, 0);
    return r == 0 ? 0 : errno;
}

int mp_os_thp_disabled(void)
{
    return prctl(PR_GET_THP_DISABLE, 0, 0, 0, 0);
}

void mp_os_thp_disable(int off)
{
    prctl(PR_SET_THP_DISABLE, off, 0, 0, 0);
}

int mp_os_lock(void *at, size_t size)
{
    /* MLOCK_ONFAULT: pages are locked as they are touched, the range is not populated
     * (mlock2 by raw system call: glibc before 2.27 has no wrapper) */
    return syscall(SYS_mlock2, at, size, 1 /* MLOCK_ONFAULT */) == 0 ? 0 : errno;
}

int mp_os_unlock_release(void *at, size_t size)
{
    if (munlock(at, size) != 0)
        return errno;
    return madvise(at, size, MADV_DONTNEED) == 0 ? 0 : errno;
}

int mp_os_punch(void *at, size_t size)
{
    return madvise(at, size, MADV_REMOVE) == 0 ? 0 : errno;
}

void mp_os_drop_mapping(void *at, size_t size)
{
    madvise(at, size, MADV_DONTNEED);
}

uint64_t mp_os_free_bytes(const char *dir)
{
    struct statfs fs;
    return statfs(dir, &fs) == 0 ? (uint64_t)fs.f_bavail * (uint64_t)fs.f_frsize : 0;
}

int mp_os_back_device(const struct mp_device_spec *s, void *at, size_t size)
{
    int err = s->kind == MP_FILE ? mp_os_back_file(at, size, s->path)
                                 : mp_os_back_anonymous(at, size, (s->flags & MP_FLAG_HUGETLB) ? 1 :
                                                        (s->flags & MP_FLAG_THP) ? 2 : 0,
                                                        (int)((s->flags >> 8) & 0xff));
    if (!err && (s->kind == MP_NUMA || (s->kind == MP_HUGEPAGES && (s->nodemask[0] | s->nodemask[1]))))
        err = mp_os_bind(at, size, s->mode, s->nodemask, MP_NODEMASK_WORDS);
    if (!err && (s->flags & MP_FLAG_LOCK))
        mp_os_lock(at, size); /* unlocked if the limit refuses: arena.c said so at the first arena */
    if (err)
        mp_os_back_anonymous(at, size, -1, 0); /* back to reserved-only */
    return err;
}
