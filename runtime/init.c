/* Process start and end, and fork: the top of the runtime, it calls into every layer.
 * At start: resolve the next allocator early (outside any malloc call when possible),
 * choose the mode and, when the launcher asked for it, append one status line to
 * MEMPLACE_STATUS. At exit: the stats file or the profile (entry/process.c).
 * The file is opened, written and closed here, never kept: the program's descriptors
 * stay exactly its own. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <pthread.h>
#include "internal.h"

/* Append "<pid> <key>=<value>..." to the launcher's status file; silently skip on error. */
static void write_status(const char *path)
{
    char line[4096];
    size_t n = mp_fmt_u64(line, (uint64_t)getpid());
    const char *parts[] = {" version=", MEMPLACE_VERSION, " mode=",
                           mp_mode == MP_PLACING ? "placing" :
                           mp_mode == MP_PROFILING ? "profiling" : "transparent", " next=",
                           mp_next_provider(), "\n"};
    for (size_t i = 0; i < sizeof parts / sizeof parts[0]; i++) {
        size_t len = strlen(parts[i]);
        if (n + len >= sizeof line)
            return;
        memcpy(line + n, parts[i], len);
        n += len;
    }
    int saved = errno;
    int fd = mp_open_for_append(path);
    if (fd >= 0) {
        mp_write_all(fd, line, n); /* one write with O_APPEND: lines from processes never mix */
        close(fd);
    }
    errno = saved;
}

/* "memplace: policy FILE: WHY; running transparent" on stderr, once per process. */
static void refuse(const char *what, const char *path, const char *why)
{
    const char *parts[] = {"memplace: ", what, " ", path, ": ", why,
                           "; running transparent (every allocation to the next allocator)\n"};
    for (size_t i = 0; i < sizeof parts / sizeof parts[0]; i++)
        mp_write_all(2, parts[i], strlen(parts[i]));
}

/* Placement cannot start. The process `memplace run` started ends here with status 2,
 * before the program's main; any other process runs transparent. MEMPLACE_REQUIRE (unset
 * with --best-effort) names it: "PID", the launcher that waits for it (its parent), or
 * "=PID", the launcher that exec'ed it (itself). The stats say why. */
static void cannot_place(const char *policy, const char *why)
{
    const char *require = getenv("MEMPLACE_REQUIRE"), *dir = getenv("MEMPLACE_STATS");
    int itself = require && *require == '=';
    uint64_t launcher = 0;
    for (const char *c = require ? require + itself : ""; *c >= '0' && *c <= '9'; c++)
        launcher = launcher * 10 + (uint64_t)(*c - '0');
    int stop = launcher && launcher == (uint64_t)(itself ? getpid() : getppid());
    if (dir && *dir)
        mp_place_write_unplaced(dir, why, !stop);
    if (!stop) {
        refuse("policy", policy, why);
        return;
    }
    const char *parts[] = {"memplace: placement cannot start: ", why, "; the program was not run "
                           "(memplace run --best-effort runs it without placement)\n"};
    for (size_t i = 0; i < sizeof parts / sizeof parts[0]; i++)
        mp_write_all(2, parts[i], strlen(parts[i]));
    _exit(2);
}

/* fork: take every runtime lock first, so none is held by a thread that does not exist in
 * the child. Only locks of the active mode; mimalloc's own are its business. */
static void fork_prepare(void)
{
    if (mp_mode == MP_PLACING)
        mp_device_heaps_fork_prepare();
    if (mp_mode == MP_PROFILING)
        mp_profile_fork_prepare();
    mp_threads_fork_prepare();
    mp_internal_fork_prepare();
}

static void fork_parent(void)
{
    mp_internal_fork_release();
    mp_threads_fork_release();
    if (mp_mode == MP_PROFILING)
        mp_profile_fork_release();
    if (mp_mode == MP_PLACING)
        mp_device_heaps_fork_parent();
}

static void fork_child(void)
{
    mp_internal_fork_release();
    mp_threads_fork_release();
    if (mp_mode == MP_PROFILING)
        mp_profile_fork_release();
    if (mp_mode == MP_PLACING) {
        mp_device_heaps_fork_child();
        mp_accounting_forked(); /* its copies of the parent's blocks count as its own */
    }
    mp_process_forked(); /* the child's own stats file */
}

/* Where the unwind tables are: $MEMPLACE_UNWIND (set by memplace run and profile; ""
 * for none), else the cache memplace keeps them in (launch/unwind_tables.py: cache_dir), so
 * that a program preloaded by hand finds the tables of modules memplace has seen. */
static void unwind_tables(void)
{
    const char *set = getenv("MEMPLACE_UNWIND");
    if (set) {
        mp_unwind_init(set);
        return;
    }
    static const struct { const char *var, *tail; } roots[] = {
        {"MEMPLACE_CACHE", "/unwind"}, {"XDG_CACHE_HOME", "/memplace/unwind"},
        {"HOME", "/.cache/memplace/unwind"}};
    for (size_t i = 0; i < sizeof roots / sizeof roots[0]; i++) {
        const char *root = getenv(roots[i].var);
        size_t n = root ? strlen(root) : 0, t = strlen(roots[i].tail);
        char path[512];
        if (n == 0 || n + t >= sizeof path)
            continue;
        memcpy(path, root, n);
        memcpy(path + n, roots[i].tail, t + 1);
        mp_unwind_init(path);
        return;
    }
}

__attribute__((constructor)) static void mp_init(void)
{
    mp_page_size_init();
    mp_resolve_next();
    unwind_tables(); /* before the first module snapshot */
    const char *policy = getenv("MEMPLACE_POLICY");
    const char *profile = getenv("MEMPLACE_PROFILE");
    const char *why = "";
    if (policy && *policy) {
        if (mp_place_start(policy, &why) == 0)
            __atomic_store_n(&mp_mode, MP_PLACING, __ATOMIC_RELEASE);
        else
            cannot_place(policy, why);
    } else if (profile && *profile) {
        if (mp_profile_start(profile, &why) == 0)
            __atomic_store_n(&mp_mode, MP_PROFILING, __ATOMIC_RELEASE);
        else
            refuse("profile directory", profile, why);
    }
    if (mp_mode != MP_TRANSPARENT)
        pthread_atfork(fork_prepare, fork_parent, fork_child);
    mp_entry_choose();
    mp_process_start(getenv("MEMPLACE_STATS"));
    mp_exec_init();
    const char *status = getenv("MEMPLACE_STATUS");
    if (status && *status)
        write_status(status);
}

/* The stats or the profile (entry/process.c: also on _exit and before an exec). */
__attribute__((destructor)) static void mp_fini(void) { mp_process_exits(); }
