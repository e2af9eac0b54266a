/* Benchmark target: touches N MiB of heap, says "ready", then on the go file either
 * sleeps forever (gcore target) or crashes with a null dereference after printing the
 * crash time in ns (CLOCK_REALTIME). */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

int *volatile null_ptr = NULL;

__attribute__((noinline)) void crash_now(void) { *null_ptr = 1; }

int main(int argc, char **argv) {
    size_t mib = argc > 1 ? strtoul(argv[1], NULL, 10) : 1024;
    const char *go = argc > 2 ? argv[2] : NULL;
    const char *mode = argc > 3 ? argv[3] : "crash";
    char *p = malloc(mib << 20);
    for (size_t i = 0; i < (mib << 20); i += 4096) p[i] = (char)(i >> 12) | 1;
    printf("ready %d\n", getpid());
    fflush(stdout);
    while (go && access(go, F_OK) != 0) usleep(1000);
    if (!strcmp(mode, "sleep")) for (;;) pause();
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    printf("crash_at %ld.%09ld\n", (long)ts.tv_sec, ts.tv_nsec);
    fflush(stdout);
    crash_now();
    return p[0];
}
