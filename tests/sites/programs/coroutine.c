/* One allocating function run once as a coroutine's entry (makecontext: its caller is
 * outermost, so a walk finds its return address alone), then called from main. A
 * two-frame rule for the call from main must match every later call; and where the
 * thread's very first allocation runs on the coroutine's stack, the thread must still
 * unwind on its own stack. Marked lines: SITE work, CALLER main.
 *
 *   coroutine ROUNDS COROUTINE_FIRST ATTACH_FIRST   prints "done" */
#include <stdio.h>
#include <stdlib.h>
#include <ucontext.h>

static ucontext_t uc_main, uc_co;
static char stack[1 << 16] __attribute__((aligned(16)));
void *volatile sink;

__attribute__((noinline)) static void work(void)
{
    sink = malloc(64); /* SITE work */
    free(sink);
}

int main(int argc, char **argv)
{
    int rounds = argc > 1 ? atoi(argv[1]) : 1000;
    if (argc > 3 && atoi(argv[3]))
        free(malloc(8)); /* the thread's first allocation, on its own stack */
    if (argc > 2 && atoi(argv[2])) {
        getcontext(&uc_co);
        uc_co.uc_stack.ss_sp = stack;
        uc_co.uc_stack.ss_size = sizeof stack;
        uc_co.uc_link = &uc_main;
        makecontext(&uc_co, work, 0);
        swapcontext(&uc_main, &uc_co);
    }
    for (int i = 0; i < rounds; i++)
        work(); /* CALLER main */
    printf("done\n");
    return 0;
}
