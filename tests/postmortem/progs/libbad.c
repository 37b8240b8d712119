/* A library that uses a pthread_key_t it never created (zero-initialised = key 0). */
#include <pthread.h>
pthread_key_t bad_key;
static int bad_state[4] = {1, 2, 3, 4};
void bad_init(void) { pthread_setspecific(bad_key, bad_state); }
