/* fork and _Fork: a child never runs on sharing file-device memory with its parent.
 * The child makes its copy private in its atfork handler (heaps/fork.c) and reports on a
 * shared page whether that worked; until it has, fork waits in the parent, so nothing the
 * parent writes after fork returns reaches the child. A child that could not has exited
 * with status 127 before running any of the program's code: the parent reaps it and fork
 * fails with ENOMEM, as the kernel's fork does when it cannot copy the memory. Only with
 * file devices in use does fork cost more than the next fork (see docs/architecture.md).
 * vfork and posix_spawn share the parent's memory until exec and copy nothing: they
 * need no copy (posix_spawn is interposed only to step aside, entry/exec.c). */
#define _GNU_SOURCE
#include <errno.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>
#include "internal.h"

typedef pid_t (*fork_fn)(void);

static fork_fn next_of(void **cache, const char *name) { return (fork_fn)mp_next_symbol(cache, name); }

/* Has the child ended (or been reaped by SIGCHLD's SIG_IGN) without reporting? Leaves
 * its status for whoever waits for it. */
static int gone(pid_t child)
{
    siginfo_t si;
    si.si_pid = 0;
    return waitid(P_PID, (id_t)child, &si, WEXITED | WNOHANG | WNOWAIT) != 0 || si.si_pid == child;
}

/* `asked` forks; with `lock`, the device locks are held across it (for _Fork, which runs
 * no atfork handlers) and the child makes its copy private here. */
static pid_t checked_fork(fork_fn asked, int lock)
{
    if (!asked) {
        errno = ENOSYS;
        return -1;
    }
    if (mp_mode != MP_PLACING)
        return asked();
    if (mp_fork_talk_open() != 0) {
        errno = ENOMEM;
        return -1;
    }
    if (lock)
        mp_device_heaps_fork_prepare();
    pid_t pid = asked();
    int saved = errno;
    if (lock) { /* _Fork: what init.c's atfork handlers do for fork */
        if (pid == 0) {
            mp_device_heaps_fork_child();
            mp_accounting_forked();
            mp_process_forked(); /* its own stats file */
        } else {
            mp_device_heaps_fork_parent();
        }
    }
    if (mp_fork_talk_close(pid, gone) != 0) {
        while (waitpid(pid, NULL, __WALL) < 0 && errno == EINTR)
            ;
        errno = ENOMEM;
        return -1;
    }
    errno = saved;
    return pid;
}

MP_EXPORT pid_t fork(void)
{
    static void *next;
    return checked_fork(next_of(&next, "fork"), 0);
}

MP_EXPORT pid_t _Fork(void)
{
    static void *next;
    return checked_fork(next_of(&next, "_Fork"), 1);
}
