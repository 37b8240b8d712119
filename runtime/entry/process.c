/* How a process image ends, whatever the way: exit (the destructor init.c runs), or _exit,
 * _Exit and quick_exit, which run no destructor (stress-ng's workers, forked servers), or
 * an exec that replaces the image (entry/exec.c). One hook writes the mode's exit file
 * first: the stats (placing) or the profile (profiling). A vfork child shares its parent's
 * memory and has no file of its own: it writes nothing. A process killed by a signal runs
 * none of this; its stats file, made when it started, says so by having no end.
 * No signal handler is installed for it. */
#define _GNU_SOURCE
#include <stdlib.h>
#include <sys/syscall.h>
#include <unistd.h>
#include "internal.h"

static int image_pid;        /* the process this image's files are about */
static int exit_status = -1; /* exit()'s argument, when the program called it through us */

typedef void (*exit_fn)(int);
static void *next_exit, *next_quick_exit;

static exit_fn resolve(void **slot, const char *name) { return (exit_fn)mp_next_symbol(slot, name); }

void mp_process_start(const char *stats_dir)
{
    image_pid = getpid();
    resolve(&next_exit, "exit");
    resolve(&next_quick_exit, "quick_exit");
    if (mp_mode == MP_PLACING && stats_dir && *stats_dir)
        mp_place_stats_begin(stats_dir, "start");
}

void mp_process_forked(void)
{
    image_pid = getpid();
    exit_status = -1;
    if (mp_mode == MP_PLACING)
        mp_place_stats_begin(NULL, "fork");
}

static int is_image(void) { return image_pid == getpid(); }

void mp_process_ends(const char *how, int status, const char *target)
{
    if (!is_image())
        return;
    if (mp_mode == MP_PLACING) {
        mp_place_write_stats(how, status, target);
        mp_accounting_leave(); /* its live bytes leave the node's shared capacities */
    } else if (mp_mode == MP_PROFILING)
        mp_profile_write();
}

void mp_process_exits(void) { mp_process_ends("exit", exit_status, NULL); }

off_t mp_process_exec_begins(const char *target, const struct mp_exec_verdict *aside)
{
    off_t mark = -1;
    if (mp_mode == MP_PLACING) {
        mark = mp_place_stats_checkpoint();
        if (aside)
            mp_place_stats_aside(getpid(), aside, target);
    }
    mp_process_ends("exec", -1, target);
    return mark;
}

void mp_process_exec_failed(off_t mark)
{
    if (mp_mode == MP_PLACING) {
        mp_place_stats_rollback(mark);
        if (is_image()) /* it left the node's capacities in mp_process_ends */
            mp_accounting_join();
    }
    else if (mp_mode == MP_PROFILING && is_image())
        mp_profile_rollback();
}

void mp_process_spawned(int pid, const struct mp_exec_verdict *aside, const char *target)
{
    if (mp_mode == MP_PLACING)
        mp_place_stats_aside(pid, aside, target);
}

/* ---- the exported ways out ---- */

__attribute__((noreturn)) static void leave(int status)
{
    for (;;) { /* as glibc's _exit */
        syscall(SYS_exit_group, status);
        syscall(SYS_exit, status);
    }
}

MP_EXPORT void _exit(int status)
{
    mp_process_ends("_exit", status & 0xff, NULL);
    leave(status);
}

MP_EXPORT void _Exit(int status)
{
    mp_process_ends("_exit", status & 0xff, NULL);
    leave(status);
}

/* exit itself runs the destructors (ours writes the file); only its status is noted. A
 * return from main calls exit inside libc, not through here: its status stays unknown. */
MP_EXPORT void exit(int status)
{
    exit_status = status & 0xff;
    exit_fn f = resolve(&next_exit, "exit");
    if (f)
        f(status);
    mp_process_ends("exit", exit_status, NULL);
    leave(status);
}

MP_EXPORT void quick_exit(int status)
{
    mp_process_ends("quick_exit", status & 0xff, NULL);
    exit_fn f = resolve(&next_quick_exit, "quick_exit");
    if (f)
        f(status);
    leave(status);
}
