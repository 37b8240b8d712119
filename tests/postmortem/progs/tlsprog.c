/* Threads set thread-local variables of several types, print them as
 * "TID NAME VALUE" (memplace's text format), then the process crashes:
 * argv[1] = "abort" (default) or "segv" (a worker dereferences NULL);
 * "wait" keeps the process alive instead. */
#define _GNU_SOURCE
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

enum color { RED, GREEN, BLUE };
struct point { int x; long y; char tag[4]; };
union bits { unsigned int u; float f; };

int global_target = 7;
__thread long t_long = -1;
__thread int t_arr[3];
__thread struct point t_pt;
__thread enum color t_color;
__thread int *t_ptr;
__thread char t_name[8] = "init";
__thread union bits t_union;
static __thread unsigned short t_static = 3;

#ifdef WITH_LIB
extern __thread long lib_counter;
void lib_set(long v);
#endif

#define NTHREADS 4
static pthread_barrier_t ready, done;
static const char *color_names[] = {"RED", "GREEN", "BLUE"};
static int segv_mode;

static void fill_and_print(long i)
{
    long tid = syscall(SYS_gettid);
    t_long = 1000 + i;
    t_arr[0] = (int)i; t_arr[1] = (int)i * 2; t_arr[2] = (int)i * 3;
    t_pt.x = (int)i; t_pt.y = -i * 10; snprintf(t_pt.tag, sizeof t_pt.tag, "p%ld", i % 10);
    t_color = (enum color)(i % 3);
    t_ptr = (i % 2) ? &global_target : NULL;
    snprintf(t_name, sizeof t_name, "w%ld", i);
    t_union.u = 0x40490fdbu + (unsigned)i;
    t_static = (unsigned short)(i + 300);
#ifdef WITH_LIB
    lib_set(500 + i);
#endif
    flockfile(stdout);
    printf("%ld t_long %ld\n", tid, t_long);
    printf("%ld t_arr {%d, %d, %d}\n", tid, t_arr[0], t_arr[1], t_arr[2]);
    printf("%ld t_pt %d %ld %s\n", tid, t_pt.x, t_pt.y, t_pt.tag);
    printf("%ld t_color %s\n", tid, color_names[t_color]);
    printf("%ld t_ptr %lu\n", tid, (unsigned long)t_ptr);
    printf("%ld t_name %s\n", tid, t_name);
    printf("%ld t_union %u\n", tid, t_union.u);
    printf("%ld t_static %u\n", tid, (unsigned)t_static);
#ifdef WITH_LIB
    printf("%ld lib_counter %ld\n", tid, lib_counter);
#endif
#ifdef __aarch64__
    /* tpidr_el0, which qemu's cores do not record: memplace must find it in memory */
    printf("%ld tp %#lx\n", tid, (unsigned long)__builtin_thread_pointer());
#endif
    fflush(stdout);
    funlockfile(stdout);
}

static void *worker(void *arg)
{
    long i = (long)arg;
    fill_and_print(i);
    pthread_barrier_wait(&ready);
    if (segv_mode && i == 2)
        *(volatile int *)0 = 1;    /* this thread crashes */
    pthread_barrier_wait(&done);   /* never released */
    return NULL;
}

int main(int argc, char **argv)
{
    pthread_t th[NTHREADS];
    segv_mode = argc > 1 && strcmp(argv[1], "segv") == 0;
    pthread_barrier_init(&ready, NULL, NTHREADS + 1);
    pthread_barrier_init(&done, NULL, NTHREADS + 2);
    fill_and_print(99);
    for (long i = 0; i < NTHREADS; i++)
        pthread_create(&th[i], NULL, worker, (void *)(i + 1));
    pthread_barrier_wait(&ready);
    if (segv_mode)
        pthread_barrier_wait(&done);
    if (argc > 1 && strcmp(argv[1], "wait") == 0) {   /* stay alive for live reads */
        printf("ready\n");
        fflush(stdout);
        for (;;)
            pause();
    }
    printf("%ld crashing\n", (long)syscall(SYS_gettid));
    fflush(stdout);
    abort();
}
