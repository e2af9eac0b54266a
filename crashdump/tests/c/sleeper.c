/* Two threads parked in known functions, for the ptrace core test. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static volatile int ready;

__attribute__((noinline)) void worker_parked_here(void) {
    for (;;) pause();
}

static void *worker(void *arg) {
    (void)arg;
    worker_parked_here();
    return NULL;
}

__attribute__((noinline)) void main_parked_here(char *heap) {
    printf("ready %p\n", (void *)heap);
    fflush(stdout);
    for (;;) pause();
}

int main(void) {
    pthread_t t;
    pthread_create(&t, NULL, worker, NULL);
    char *heap = malloc(1 << 20);
    memset(heap, 0x5a, 1 << 20);
    strcpy(heap, "heap-marker-31337");
    main_parked_here(heap);
    return 0;
}
