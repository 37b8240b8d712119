/* The exec family and posix_spawn: a program the runtime cannot host (musl, static, another
 * architecture, set-user-ID; or a script whose interpreter is one) is started with an
 * environment that no longer preloads us, so it runs exactly as it would without memplace,
 * and the stats name it. Before an exec replaces the image, the image's stats or profile are
 * written (entry/process.c); if the exec fails, the process goes on and writes them again.
 *
 * Each public entry has its own wrapper: glibc's execvp, execl*, posix_spawn*, system and
 * popen reach the kernel through libc-internal calls that no interposed execve sees.
 * system and popen run /bin/sh, which is itself preloaded and execs through here. Static
 * targets ignore LD_PRELOAD, but we take ourselves out of their environment too: what a
 * static program starts can no longer be inspected, and a musl or 32-bit grandchild that
 * inherited us would fail to start.
 *
 * These run in vfork children (the shell's, CPython's subprocess): no malloc, no lock, no
 * dlsym; the new environment is built in memory of its own (mmap), given back when the
 * exec fails or the spawn is done. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <spawn.h>
#include <stdarg.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>
#include "internal.h"

extern char **environ;

typedef int (*execve_fn)(const char *, char *const[], char *const[]);
typedef int (*fexecve_fn)(int, char *const[], char *const[]);
typedef int (*execveat_fn)(int, const char *, char *const[], char *const[], int);
typedef int (*spawn_fn)(pid_t *, const char *, const posix_spawn_file_actions_t *,
                        const posix_spawnattr_t *, char *const[], char *const[]);

static struct {
    execve_fn execve, execvpe;
    fexecve_fn fexecve;
    execveat_fn execveat;
    spawn_fn posix_spawn, posix_spawnp;
} next;
static char self_name[256] = "libmemplace.so"; /* our file's name, as LD_PRELOAD may give it */

void mp_exec_init(void)
{
    next.execve = (execve_fn)dlsym(RTLD_NEXT, "execve");
    next.execvpe = (execve_fn)dlsym(RTLD_NEXT, "execvpe");
    next.fexecve = (fexecve_fn)dlsym(RTLD_NEXT, "fexecve");
    next.execveat = (execveat_fn)dlsym(RTLD_NEXT, "execveat"); /* glibc 2.34 on */
    next.posix_spawn = (spawn_fn)dlsym(RTLD_NEXT, "posix_spawn");
    next.posix_spawnp = (spawn_fn)dlsym(RTLD_NEXT, "posix_spawnp");
    Dl_info info;
    if (dladdr((void *)mp_exec_init, &info) && info.dli_fname) {
        const char *b = strrchr(info.dli_fname, '/');
        b = b ? b + 1 : info.dli_fname;
        if (*b && strlen(b) < sizeof self_name)
            memcpy(self_name, b, strlen(b) + 1);
    }
}

/* Before start-up (another library's constructor execs): resolve now. */
#define NEXT(f) (next.f ? next.f : (mp_exec_init(), next.f))

static int is_preload(const char *e) { return strncmp(e, "LD_PRELOAD=", 11) == 0; }

/* Is this LD_PRELOAD entry (s, n bytes) us? */
static int is_self(const char *s, size_t n)
{
    size_t k = strlen(self_name);
    return n >= k && memcmp(s + n - k, self_name, k) == 0 && (n == k || s[n - k - 1] == '/');
}

static int preloads_us(char *const envp[])
{
    for (size_t i = 0; envp && envp[i]; i++) {
        if (!is_preload(envp[i]))
            continue;
        for (const char *p = envp[i] + 11; *p;) {
            size_t n = strcspn(p, " :");
            if (n && is_self(p, n))
                return 1;
            p += n + (p[n] != 0);
        }
    }
    return 0;
}

/* `envp` with our entry taken out of LD_PRELOAD (the user's others kept, the variable gone
 * when nothing is left), in a mapping of *size bytes; NULL without memory. */
static char **without_us(char *const envp[], size_t *size)
{
    size_t n = 0, text = 0;
    for (; envp[n]; n++)
        if (is_preload(envp[n]))
            text += strlen(envp[n]) + 1;
    *size = (n + 1) * sizeof(char *) + text;
    char **out = mmap(NULL, *size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (out == MAP_FAILED)
        return NULL;
    char *heap = (char *)(out + n + 1);
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        if (!is_preload(envp[i])) {
            out[k++] = envp[i];
            continue;
        }
        char *start = heap, *w = heap + 11;
        memcpy(heap, "LD_PRELOAD=", 11);
        for (const char *p = envp[i] + 11; *p;) {
            size_t len = strcspn(p, " :");
            if (len && !is_self(p, len)) {
                if (w > start + 11)
                    *w++ = ':';
                memcpy(w, p, len);
                w += len;
            }
            p += len + (p[len] != 0);
        }
        *w++ = 0;
        heap = w;
        if (w - 1 > start + 11)
            out[k++] = start;
    }
    out[k] = NULL;
    return out;
}

/* What a start of `target` needs: the environment to give it (envp itself, or a copy
 * without us: then map and size are set, and v says why). */
struct start {
    char *const *envp;
    void *map;
    size_t size;
    struct mp_exec_verdict v;
    off_t mark; /* the stats file's size before this exec */
};

static void judge(struct start *s, char *const envp[], int dirfd, const char *target, int fd,
                  int flags)
{
    s->envp = envp;
    s->map = NULL;
    s->v.reason = 0;
    if (!envp || !preloads_us(envp))
        return;
    int why = fd >= 0 ? mp_exec_verdict_fd(fd, &s->v)
                      : target ? mp_exec_verdict_path(dirfd, target, flags, &s->v) : 0;
    if (!why)
        return;
    char **e = without_us(envp, &s->size);
    if (!e) { /* no memory: start it as it would have been */
        s->v.reason = 0;
        return;
    }
    s->envp = e;
    s->map = e;
}

static void done(struct start *s)
{
    if (s->map)
        munmap(s->map, s->size);
}

static const struct mp_exec_verdict *aside(const struct start *s) { return s->v.reason ? &s->v : NULL; }

/* After a failed exec: the image goes on, its files are rewritten at its real end. */
static int failed(struct start *s, int r)
{
    int saved = errno;
    mp_process_exec_failed(s->mark);
    done(s);
    errno = saved;
    return r;
}

static int do_execve(const char *path, char *const argv[], char *const envp[])
{
    struct start s;
    judge(&s, envp, AT_FDCWD, path, -1, 0);
    s.mark = mp_process_exec_begins(path, aside(&s));
    execve_fn f = NEXT(execve);
    int r = f ? f(path, argv, s.envp) : (int)syscall(SYS_execve, path, argv, s.envp);
    return failed(&s, r);
}

static int do_execvpe(const char *file, char *const argv[], char *const envp[])
{
    char found[4096];
    const char *target = mp_exec_search(file, found, sizeof found);
    struct start s;
    judge(&s, envp, AT_FDCWD, target, -1, 0);
    s.mark = mp_process_exec_begins(target, aside(&s));
    execve_fn f = NEXT(execvpe);
    int r = f ? f(file, argv, s.envp) : (errno = ENOSYS, -1);
    return failed(&s, r);
}

MP_EXPORT int execve(const char *path, char *const argv[], char *const envp[])
{
    return do_execve(path, argv, envp);
}

MP_EXPORT int execv(const char *path, char *const argv[]) { return do_execve(path, argv, environ); }

MP_EXPORT int execvpe(const char *file, char *const argv[], char *const envp[])
{
    return do_execvpe(file, argv, envp);
}

MP_EXPORT int execvp(const char *file, char *const argv[]) { return do_execvpe(file, argv, environ); }

/* execl, execlp, execle: the arguments into an array on the stack (safe in a vfork child). */
#define COLLECT_ARGS(first, argv, after)                                                   \
    size_t argc_ = 1;                                                                      \
    va_list ap_;                                                                           \
    va_start(ap_, first);                                                                  \
    while (va_arg(ap_, char *))                                                            \
        argc_++;                                                                           \
    va_end(ap_);                                                                           \
    char *argv[argc_ + 1];                                                                 \
    argv[0] = (char *)(first);                                                             \
    va_start(ap_, first);                                                                  \
    for (size_t i_ = 1; i_ <= argc_; i_++)                                                 \
        argv[i_] = va_arg(ap_, char *); /* the last is the NULL */                         \
    after;                                                                                 \
    va_end(ap_)

MP_EXPORT int execl(const char *path, const char *arg, ...)
{
    COLLECT_ARGS(arg, argv, (void)0);
    return do_execve(path, argv, environ);
}

MP_EXPORT int execlp(const char *file, const char *arg, ...)
{
    COLLECT_ARGS(arg, argv, (void)0);
    return do_execvpe(file, argv, environ);
}

MP_EXPORT int execle(const char *path, const char *arg, ...)
{
    char *const *envp;
    COLLECT_ARGS(arg, argv, envp = va_arg(ap_, char *const *));
    return do_execve(path, argv, envp);
}

MP_EXPORT int fexecve(int fd, char *const argv[], char *const envp[])
{
    char link[64] = "/proc/self/fd/", target[4096];
    link[14 + mp_fmt_u64(link + 14, (uint64_t)(fd < 0 ? 0 : fd))] = 0;
    ssize_t n = readlink(link, target, sizeof target - 1);
    target[n > 0 ? n : 0] = 0;
    struct start s;
    judge(&s, envp, AT_FDCWD, NULL, fd, 0);
    s.mark = mp_process_exec_begins(target, aside(&s));
    fexecve_fn f = NEXT(fexecve);
    int r = f ? f(fd, argv, s.envp) : (errno = ENOSYS, -1);
    return failed(&s, r);
}

MP_EXPORT int execveat(int dirfd, const char *path, char *const argv[], char *const envp[], int flags)
{
    struct start s;
    int whole_fd = (flags & AT_EMPTY_PATH) && !*path;
    judge(&s, envp, dirfd, path, whole_fd ? dirfd : -1, flags);
    s.mark = mp_process_exec_begins(path, aside(&s));
    execveat_fn f = NEXT(execveat);
    int r = f ? f(dirfd, path, argv, s.envp, flags)
              : (int)syscall(SYS_execveat, dirfd, path, argv, s.envp, flags);
    return failed(&s, r);
}

/* posix_spawn: the parent goes on; a child we stepped aside for is named with its pid. */
static int spawn(spawn_fn f, pid_t *pid, const char *file, const char *target,
                 const posix_spawn_file_actions_t *actions, const posix_spawnattr_t *attr,
                 char *const argv[], char *const envp[])
{
    struct start s;
    judge(&s, envp, AT_FDCWD, target, -1, 0);
    pid_t child = 0;
    int r = f ? f(&child, file, actions, attr, argv, s.envp) : ENOSYS;
    if (r == 0 && s.v.reason)
        mp_process_spawned(child, &s.v, target);
    if (r == 0 && pid)
        *pid = child;
    done(&s);
    return r;
}

MP_EXPORT int posix_spawn(pid_t *pid, const char *path, const posix_spawn_file_actions_t *actions,
                          const posix_spawnattr_t *attr, char *const argv[], char *const envp[])
{
    return spawn(NEXT(posix_spawn), pid, path, path, actions, attr, argv, envp);
}

MP_EXPORT int posix_spawnp(pid_t *pid, const char *file, const posix_spawn_file_actions_t *actions,
                           const posix_spawnattr_t *attr, char *const argv[], char *const envp[])
{
    char found[4096];
    const char *target = mp_exec_search(file, found, sizeof found);
    return spawn(NEXT(posix_spawnp), pid, file, target, actions, attr, argv, envp);
}
