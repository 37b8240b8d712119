/* Threads allocate and free continuously while several of them fork; each child
 * allocates before exec'ing /bin/true (the classic fork-under-malloc-lock case). */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#define THREADS 8
#define FORKS 20

static volatile int stop;

static void *churn(void *arg)
{
    unsigned seed = (unsigned)(size_t)arg;
    void *slots[64] = {0};
    while (!stop) {
        int i = rand_r(&seed) % 64;
        free(slots[i]);
        slots[i] = malloc(1 + rand_r(&seed) % 5000);
        if (slots[i]) memset(slots[i], 1, 1);
    }
    for (int i = 0; i < 64; i++) free(slots[i]);
    return NULL;
}

static void *forker(void *arg)
{
    int failures = 0;
    for (int i = 0; i < FORKS; i++) {
        pid_t pid = fork();
        if (pid == 0) {
            char *s = malloc(1000);            /* allocate in the child before exec */
            void *big = malloc(1 << 20);
            if (!s || !big) _exit(3);
            strcpy(s, "child");
            free(big);
            char *argv[] = {"/bin/true", NULL};
            execv(argv[0], argv);
            _exit(4);
        }
        int st;
        if (waitpid(pid, &st, 0) != pid || !WIFEXITED(st) || WEXITSTATUS(st) != 0) failures++;
    }
    return (void *)(size_t)failures;
}

int main(void)
{
    pthread_t churners[THREADS], forkers[3];
    for (int i = 0; i < THREADS; i++) pthread_create(&churners[i], NULL, churn, (void *)(size_t)(i + 1));
    for (int i = 0; i < 3; i++) pthread_create(&forkers[i], NULL, forker, NULL);
    size_t failures = 0;
    for (int i = 0; i < 3; i++) { void *r; pthread_join(forkers[i], &r); failures += (size_t)r; }
    stop = 1;
    for (int i = 0; i < THREADS; i++) pthread_join(churners[i], NULL);
    printf("forks=%d failures=%zu\n", 3 * FORKS, failures);
    return failures != 0;
}
