/* fork and the device heaps: no device lock held across it, and the child gets its own
 * copy of file devices.
 *
 * File-device memory is MAP_SHARED (heaps/arena.c), and the kernel keeps shared mappings
 * shared across fork, with no copy-on-write. So the child, in its atfork handler, before
 * fork returns in it and while the parent waits, replaces each file mapping with a new
 * unlinked file in the same directory holding a copy of the bytes in use (os_memory.c:
 * only data extents, in the kernel; on a reflink filesystem the extents are shared). The
 * child thus sees the data as it was at fork, and neither sees the other's later writes.
 *
 * The fork is asked of the kernel by entry/fork.c, which hands over a shared page first
 * (mp_fork_talk_open): the child reports on it whether its copy is private, and a child
 * that could not make it so exits at once, before any other code runs in it; the parent
 * reaps it and fork fails with ENOMEM. A fork that did not go through that wrapper (one
 * libc makes internally, as daemon() does) has no one to report to: its child says so on
 * stderr and exits with status 127 rather than run on sharing the parent's memory. */
#define _GNU_SOURCE
#include <errno.h>
#include <string.h>
#include <unistd.h>
#include "internal.h"

enum { TALK_WAITING, TALK_PRIVATE, TALK_FAILED };

/* The page of the fork this thread is making (entry/fork.c); the child inherits the
 * pointer from the thread that forked. */
static MP_TLS int *talk;

static int has_file_device(void)
{
    for (int i = 0; i < mp_ndevices; i++)
        if (mp_device_heaps[i].spec->kind == MP_FILE)
            return 1;
    return 0;
}

int mp_fork_talk_open(void)
{
    talk = NULL;
    if (!has_file_device())
        return 0;
    talk = mp_os_shared_page();
    return talk ? 0 : -1;
}

int mp_fork_talk_close(pid_t child, int (*gone)(pid_t))
{
    int *t = talk, result = 0;
    talk = NULL;
    if (!t)
        return 0;
    if (child > 0) {
        /* The child never reports if something kills it first: stop waiting then. */
        while (__atomic_load_n(t, __ATOMIC_ACQUIRE) == TALK_WAITING && !gone(child))
            mp_os_wait_word(t, TALK_WAITING, 20 * 1000 * 1000);
        result = __atomic_load_n(t, __ATOMIC_ACQUIRE) == TALK_FAILED ? -1 : 0;
    }
    if (child != 0) /* the parent (the child has none in progress) */
        __atomic_fetch_sub(&mp_file_forks, 1, __ATOMIC_RELEASE); /* the child's copy is made */
    mp_os_unmap(t, mp_page_size());
    return result;
}

/* Every device lock, and the punch locks of file devices: no purge punches a hole in a
 * file the child is about to copy, and none until the copy is made (mp_file_forks: the
 * parent waits for it in mp_fork_talk_close; a fork without that wrapper does not wait). */
void mp_device_heaps_fork_prepare(void)
{
    for (int i = 0; i < mp_ndevices; i++)
        mp_lock(&mp_device_heaps[i].lock);
    if (has_file_device())
        __atomic_fetch_add(&mp_file_forks, 1, __ATOMIC_ACQUIRE);
    for (int i = 0; i < mp_ndevices; i++)
        mp_lock(&mp_device_heaps[i].punch_lock);
}

static void unlock_all(void)
{
    for (int i = mp_ndevices - 1; i >= 0; i--) {
        mp_unlock(&mp_device_heaps[i].punch_lock);
        mp_unlock(&mp_device_heaps[i].lock);
    }
}

void mp_device_heaps_fork_parent(void)
{
    if (!talk && has_file_device()) /* no one waits for this child's copy */
        __atomic_fetch_sub(&mp_file_forks, 1, __ATOMIC_RELEASE);
    unlock_all();
}

/* Every file mapping of device `h` made the child's own; 0 or an errno value. */
static int privatize(struct mp_device_heap *h)
{
    const char *dir = h->spec->path;
    int e = 0;
    /* arenas: one file each, MP_BACKED_ARENA at most (arena.c); a guess that does not
     * match a mapping only costs the skipping of never-written extents */
    for (uint64_t at = 0; !e && at < h->arranged; at += MP_BACKED_ARENA) {
        uint64_t n = h->arranged - at < MP_BACKED_ARENA ? h->arranged - at : MP_BACKED_ARENA;
        e = mp_os_private_file_copy(h->slot + at, n, n, dir);
    }
    for (int x = 0; x < mp_nextents; x++) /* arenas in extents the device grew into */
        for (uint64_t at = 0; !e && mp_extents[x].dev == h - mp_device_heaps && at < mp_extents[x].arranged;
             at += MP_BACKED_ARENA) {
            uint64_t left = mp_extents[x].arranged - at, n = left < MP_BACKED_ARENA ? left : MP_BACKED_ARENA;
            e = mp_os_private_file_copy((unsigned char *)mp_extents[x].base + at, n, n, dir);
        }
    for (int d = 0; !e && d < h->ndirect; d++)
        e = mp_os_private_file_copy(h->slot + h->direct[d].offset, h->direct[d].length,
                                    h->direct[d].length, dir);
    uint64_t page = mp_page_size();
    for (int g = 0; !e && g < MP_MAX_GROWTH; g++) {
        struct mp_growth *gr = &h->growth[g];
        if (gr->state == MP_GROWTH_SPARE) { /* nothing in it: give it back in the child */
            e = mp_os_back_anonymous(mp_growth_area(h, g), MP_GROWTH_AREA, -1, 0);
            gr->state = MP_GROWTH_UNMAPPED;
            h->nspare--;
        } else if (gr->state == MP_GROWTH_GROWING) { /* only the block's bytes */
            e = mp_os_private_file_copy(mp_growth_area(h, g), MP_GROWTH_AREA,
                                        (gr->used + page - 1) & ~(page - 1), dir);
        }
    }
    return e;
}

static void say_and_exit(int err)
{
    const char *parts[] = {"memplace: fork: the child's copy of file-device memory could not "
                           "be made private (", err == ENOMEM ? "ENOMEM" : err == ENOSPC ? "ENOSPC" :
                           err == EMFILE ? "EMFILE" : err == EPERM ? "EPERM" : "error",
                           "); the child exits with status 127 instead of sharing it\n"};
    for (size_t i = 0; i < sizeof parts / sizeof parts[0]; i++)
        mp_write_all(2, parts[i], strlen(parts[i]));
    _exit(127);
}

void mp_device_heaps_fork_child(void)
{
    int e = 0;
    for (int i = 0; !e && i < mp_ndevices; i++)
        if (mp_device_heaps[i].spec->kind == MP_FILE)
            e = privatize(&mp_device_heaps[i]);
    int *t = talk;
    if (t) {
        __atomic_store_n(t, e ? TALK_FAILED : TALK_PRIVATE, __ATOMIC_RELEASE);
        mp_os_wake_word(t);
        if (e)
            _exit(127); /* the parent reaps this child and fails fork with ENOMEM */
    } else if (e) {
        say_and_exit(e);
    }
    mp_file_forks = 0; /* its files are its own now, and no other thread runs */
    unlock_all();
}
