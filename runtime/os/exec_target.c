/* Can a program about to be executed host the runtime? Read what the kernel and the
 * dynamic loader will read: the ELF header (class, machine), PT_INTERP (glibc's ld.so, not
 * musl's; none: static), the set-user-ID bits, a script's `#!` interpreter (recursively, as
 * the kernel does). Only system calls and the caller's buffers: it runs in a vfork child,
 * before exec, where malloc and locks are off limits. */
#define _GNU_SOURCE
#include <elf.h>
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include "internal.h"

#if UINTPTR_MAX == 0xffffffffffffffffu
#define OUR_CLASS ELFCLASS64
typedef Elf64_Ehdr Ehdr;
typedef Elf64_Phdr Phdr;
#else
#define OUR_CLASS ELFCLASS32
typedef Elf32_Ehdr Ehdr;
typedef Elf32_Phdr Phdr;
#endif

#if defined(__x86_64__)
#define OUR_MACHINE EM_X86_64
#elif defined(__aarch64__)
#define OUR_MACHINE EM_AARCH64
#elif defined(__i386__)
#define OUR_MACHINE EM_386
#elif defined(__riscv)
#define OUR_MACHINE EM_RISCV
#elif defined(__arm__)
#define OUR_MACHINE EM_ARM
#endif

#define SCRIPT_DEPTH 4 /* the kernel's own limit on nested interpreters */
/* A FIFO or a terminal named as the program must not block us or become our terminal: exec
 * refuses anything but a regular file, and so does verdict_fd before reading. */
#define OPEN_FLAGS (O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY)

static int read_at(int fd, void *buf, size_t n, off_t at)
{
    ssize_t r;
    do
        r = pread(fd, buf, n, at);
    while (r < 0 && errno == EINTR);
    return r == (ssize_t)n ? 0 : -1;
}

static const char *base_name(const char *p)
{
    const char *s = strrchr(p, '/');
    return s ? s + 1 : p;
}

static int starts(const char *s, const char *prefix) { return strncmp(s, prefix, strlen(prefix)) == 0; }

/* The verdict for an ELF file open on fd: 0 (hosts), or a reason. */
static int elf_verdict(int fd, const unsigned char *head, size_t n, struct mp_exec_verdict *v)
{
    if (n < EI_NIDENT || head[EI_CLASS] != OUR_CLASS || n < sizeof(Ehdr)) {
        uint16_t machine = 0;
        if (n >= 20)
            memcpy(&machine, head + 18, 2); /* e_machine: the same offset in both classes */
        v->machine = machine;
        v->bits = head[EI_CLASS] == ELFCLASS32 ? 32 : head[EI_CLASS] == ELFCLASS64 ? 64 : 0;
        return v->reason = MP_ASIDE_MACHINE;
    }
    Ehdr eh;
    memcpy(&eh, head, sizeof eh);
    if (eh.e_machine != OUR_MACHINE) {
        v->machine = eh.e_machine;
        v->bits = OUR_CLASS == ELFCLASS64 ? 64 : 32;
        return v->reason = MP_ASIDE_MACHINE;
    }
    if (eh.e_phentsize != sizeof(Phdr) || eh.e_phnum == 0)
        return v->reason = MP_ASIDE_STATIC; /* no program headers: nothing loads us */
    for (unsigned i = 0; i < eh.e_phnum && i < 256; i++) {
        Phdr ph;
        if (read_at(fd, &ph, sizeof ph, (off_t)(eh.e_phoff + (uint64_t)i * sizeof ph)) != 0)
            return 0; /* unreadable: let the kernel decide, as without us */
        if (ph.p_type != PT_INTERP)
            continue;
        size_t len = ph.p_filesz < sizeof v->loader ? (size_t)ph.p_filesz : sizeof v->loader - 1;
        if (len == 0 || read_at(fd, v->loader, len, (off_t)ph.p_offset) != 0)
            return 0;
        v->loader[len] = 0;
        const char *b = base_name(v->loader);
        if (starts(b, "ld-musl"))
            return v->reason = MP_ASIDE_MUSL;
        if (starts(b, "ld-linux") || starts(b, "ld64.so") || starts(b, "ld.so"))
            return 0; /* glibc's loader, which preloads us */
        return v->reason = MP_ASIDE_LOADER;
    }
    return v->reason = MP_ASIDE_STATIC;
}

/* A `#!` line's interpreter into `out`; 0 when there is one. */
static int script_interpreter(const unsigned char *head, size_t n, char *out, size_t cap)
{
    size_t i = 2, k = 0;
    while (i < n && (head[i] == ' ' || head[i] == '\t'))
        i++;
    while (i < n && head[i] != ' ' && head[i] != '\t' && head[i] != '\n' && head[i] != 0 && k + 1 < cap)
        out[k++] = (char)head[i++];
    out[k] = 0;
    return k ? 0 : -1;
}

static int verdict_fd(int fd, struct mp_exec_verdict *v, int depth)
{
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode))
        return 0;
    unsigned char head[256];
    ssize_t n;
    do
        n = pread(fd, head, sizeof head, 0);
    while (n < 0 && errno == EINTR);
    if (n < 4)
        return 0;
    if (memcmp(head, ELFMAG, SELFMAG) == 0) {
        if (st.st_mode & (S_ISUID | S_ISGID)) /* the loader would ignore LD_PRELOAD anyway */
            return v->reason = MP_ASIDE_SETID;
        return elf_verdict(fd, head, (size_t)n, v);
    }
    if (head[0] != '#' || head[1] != '!' || depth >= SCRIPT_DEPTH)
        return 0; /* not ours to judge: the kernel (or execvp's /bin/sh) decides */
    char interp[sizeof v->interpreter];
    if (script_interpreter(head, (size_t)n, interp, sizeof interp) != 0)
        return 0;
    int ifd = open(interp, OPEN_FLAGS);
    if (ifd < 0)
        return 0;
    int r = verdict_fd(ifd, v, depth + 1);
    close(ifd);
    if (r) /* the reason is an interpreter's; name the one the script itself names */
        memcpy(v->interpreter, interp, sizeof interp);
    return r;
}

int mp_exec_verdict_fd(int fd, struct mp_exec_verdict *v)
{
    memset(v, 0, sizeof *v);
    int r = verdict_fd(fd, v, 0);
    if (!r)
        memset(v, 0, sizeof *v);
    return r;
}

int mp_exec_verdict_path(int dirfd, const char *path, int flags, struct mp_exec_verdict *v)
{
    memset(v, 0, sizeof *v);
    int fd = openat(dirfd, path, OPEN_FLAGS | (flags & AT_SYMLINK_NOFOLLOW ? O_NOFOLLOW : 0));
    if (fd < 0)
        return 0;
    int r = mp_exec_verdict_fd(fd, v);
    close(fd);
    return r;
}

/* As execvp searches: a name with a slash is itself, else the first executable regular
 * file in $PATH (glibc's default when unset). */
const char *mp_exec_search(const char *file, char *buf, size_t cap)
{
    if (!file || !*file || strchr(file, '/'))
        return file;
    const char *path = getenv("PATH");
    if (!path)
        path = "/bin:/usr/bin";
    size_t flen = strlen(file);
    for (const char *p = path;; p++) {
        const char *end = strchrnul(p, ':');
        size_t dlen = (size_t)(end - p);
        if (dlen + 1 + flen < cap) {
            memcpy(buf, p, dlen);
            size_t at = dlen;
            if (dlen)
                buf[at++] = '/';
            memcpy(buf + at, file, flen + 1);
            struct stat st;
            if (stat(buf, &st) == 0 && S_ISREG(st.st_mode) && access(buf, X_OK) == 0)
                return buf;
        }
        if (!*end)
            return file;
        p = end;
    }
}
