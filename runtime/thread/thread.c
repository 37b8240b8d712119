/* Per-thread blocks (layout: types.h). Created on a thread's first placed or profiled
 * allocation, returned to a free list by a pthread key destructor at thread exit. What a
 * mode must do for an ending thread is its hook, so this file calls no mode. */
#define _GNU_SOURCE
#include <pthread.h>
#include <string.h>
#include <unistd.h>
#include "internal.h"

MP_HIDDEN MP_TLS struct mp_thread *mp_self;
static MP_TLS int attaching;
static struct mp_thread *all, *free_list;
static int list_lock;
static pthread_key_t exit_key;
static int have_exit_key;
static void (*exit_hook)(struct mp_thread *);
extern void *__libc_stack_end;

static void detach(void *p)
{
    struct mp_thread *t = p;
    if (exit_hook)
        exit_hook(t);
    mp_lock(&list_lock);
    t->next_free = free_list;
    free_list = t;
    mp_unlock(&list_lock);
    mp_self = NULL;
}

void mp_threads_init(void)
{
    have_exit_key = pthread_key_create(&exit_key, detach) == 0;
}

void mp_threads_on_exit(void (*hook)(struct mp_thread *)) { exit_hook = hook; }

struct mp_thread *mp_threads_all(void) { return __atomic_load_n(&all, __ATOMIC_ACQUIRE); }

/* This thread's own stack, whatever stack `sp` is on (a first allocation may run on a
 * coroutine's or a signal stack): unwinding reads only inside it. */
static void own_stack(struct mp_thread *t)
{
    t->stack_lo = t->stack_top = 0;
    if (gettid() == getpid()) { /* the main thread: its stack ends at __libc_stack_end */
        t->stack_top = ((uintptr_t)__libc_stack_end + 4095) & ~(uintptr_t)4095;
        t->stack_lo = t->stack_top - (256u << 20);
        return;
    }
    pthread_attr_t attr;
    void *addr;
    size_t size;
    if (pthread_getattr_np(pthread_self(), &attr) == 0) {
        if (pthread_attr_getstack(&attr, &addr, &size) == 0)
            t->stack_lo = (uintptr_t)addr, t->stack_top = (uintptr_t)addr + size;
        pthread_attr_destroy(&attr);
    }
}

struct mp_thread *mp_thread_attach(void)
{
    if (attaching)
        return NULL;
    attaching = 1;
    mp_lock(&list_lock);
    struct mp_thread *t = free_list;
    if (t)
        free_list = t->next_free;
    mp_unlock(&list_lock);
    if (!t) {
        t = mp_internal_alloc(sizeof *t);
        if (t) {
            mp_lock(&list_lock);
            t->next_all = all;
            __atomic_store_n(&all, t, __ATOMIC_RELEASE);
            mp_unlock(&list_lock);
        }
    }
    if (t) {
        own_stack(t);
        memset(t->theaps, 0, sizeof t->theaps); /* the previous thread's, now gone */
        memset(t->theap_of, 0, sizeof t->theap_of);
        t->unwind.modules = NULL; /* its entries were the previous thread's */
        t->busy = 0;
        t->deferred = NULL; /* the previous thread's were freed when it ended */
        memset(t->walks, 0, sizeof t->walks); /* walks on the previous thread's stack (their
                                                 hits were kept when it ended: place.c) */
        memset(t->crowd_hints, 0, sizeof t->crowd_hints); /* words on that stack */
        if (have_exit_key)
            pthread_setspecific(exit_key, t); /* our own key, created at start-up */
        mp_self = t;
    }
    attaching = 0;
    return t;
}

void mp_threads_fork_prepare(void) { mp_lock(&list_lock); }
void mp_threads_fork_release(void) { mp_unlock(&list_lock); }
