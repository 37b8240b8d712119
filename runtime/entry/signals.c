/* sigaction and signal, exported so that a program taking over the signal access
 * sampling uses (os/sampler.c) stops the sampling first: its handler then never sees one
 * of our timer's signals, and it sees the default action as the signal's previous one,
 * as it would without memplace. Any other signal goes straight to libc. (glibc's
 * sysv_signal and sigset are not covered; the profile still says when the handler was
 * replaced behind our back, as the samples stop.) */
#define _GNU_SOURCE
#include <signal.h>
#include <string.h>
#include "internal.h"

extern int __sigaction(int, const struct sigaction *, struct sigaction *);
extern __sighandler_t bsd_signal(int, __sighandler_t); /* libc's signal() under its other name */

MP_EXPORT int sigaction(int sig, const struct sigaction *act, struct sigaction *old)
{
    int ours = sig != 0 && sig == mp_sampler_signal();
    if (ours && act)
        mp_sampler_yield(sig);
    int r = __sigaction(sig, act, old);
    if (r == 0 && ours && old) {
        memset(old, 0, sizeof *old);
        old->sa_handler = SIG_DFL;
    }
    return r;
}

MP_EXPORT __sighandler_t signal(int sig, __sighandler_t handler)
{
    int ours = sig != 0 && sig == mp_sampler_signal();
    if (ours)
        mp_sampler_yield(sig);
    __sighandler_t old = bsd_signal(sig, handler);
    return ours && old != SIG_ERR ? SIG_DFL : old;
}
