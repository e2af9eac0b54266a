/* Crash test program: `crash MODE [args]`. Each mode dies in a function whose name the
 * tests look for in the backtrace file and in gdb's bt. */
#define _GNU_SOURCE
#include <fcntl.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

volatile int zero = 0;
volatile int sink;
/* Through a volatile global so the compiler cannot prove the NULL at -O2. */
int *volatile null_ptr = NULL;

__attribute__((noinline)) void crash_null_deref(void) {
    *null_ptr = 42;
}

__attribute__((noinline)) void crash_divide(void) {
    sink = 7 / zero;
}

__attribute__((noinline)) void crash_illegal(void) {
    __asm__ volatile("ud2");
}

__attribute__((noinline)) void crash_bus(const char *path) {
    int fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0600);
    if (fd < 0 || ftruncate(fd, 4096) != 0) { perror("bus setup"); exit(2); }
    volatile char *m = mmap(NULL, 8192, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (m == MAP_FAILED) { perror("mmap"); exit(2); }
    if (ftruncate(fd, 0) != 0) { perror("truncate"); exit(2); }
    m[100] = 1; /* beyond EOF now: SIGBUS */
}

__attribute__((noinline)) int crash_recurse(int n) {
    volatile char pad[512];
    pad[0] = (char)n;
    return crash_recurse(n + 1) + pad[0];
}

static void *spinner(void *arg) {
    (void)arg;
    for (;;) { sink++; usleep(1000); }
    return NULL;
}

static void *crashing_thread(void *arg) {
    (void)arg;
    usleep(50000);
    crash_null_deref();
    return NULL;
}

static pthread_barrier_t both;

__attribute__((noinline)) void crash_second_thread(void) {
    *null_ptr = 7;
}

static void *twin_a(void *arg) {
    (void)arg;
    pthread_barrier_wait(&both);
    crash_null_deref();
    return NULL;
}

static void *twin_b(void *arg) {
    (void)arg;
    pthread_barrier_wait(&both);
    crash_second_thread();
    return NULL;
}

static sigjmp_buf jb;
static volatile int recovered;
static void on_segv(int sig) { (void)sig; recovered++; siglongjmp(jb, 1); }

int main(int argc, char **argv) {
    const char *mode = argc > 1 ? argv[1] : "null";
    setvbuf(stdout, NULL, _IONBF, 0);
    if (!strcmp(mode, "null")) crash_null_deref();
    else if (!strcmp(mode, "fpe")) crash_divide();
    else if (!strcmp(mode, "ill")) crash_illegal();
    else if (!strcmp(mode, "bus")) crash_bus(argc > 2 ? argv[2] : "/tmp/crash-bus-file");
    else if (!strcmp(mode, "stack")) return crash_recurse(0);
    else if (!strcmp(mode, "thread")) {
        pthread_t a, b, c;
        pthread_create(&a, NULL, spinner, NULL);
        pthread_create(&b, NULL, spinner, NULL);
        pthread_create(&c, NULL, crashing_thread, NULL);
        pthread_join(c, NULL);
    } else if (!strcmp(mode, "twins")) {
        /* Two threads crash at the same moment: one bundle, both faults in its core. */
        pthread_t a, b;
        pthread_barrier_init(&both, NULL, 2);
        pthread_create(&a, NULL, twin_a, NULL);
        pthread_create(&b, NULL, twin_b, NULL);
        pthread_join(a, NULL);
        pthread_join(b, NULL);
    } else if (!strcmp(mode, "recover")) {
        /* Our own SIGSEGV handler recovers with siglongjmp: no bundle, exit 0. */
        signal(SIGSEGV, on_segv);
        for (int i = 0; i < 3; i++) {
            if (sigsetjmp(jb, 1) == 0) crash_null_deref();
        }
        struct sigaction cur;
        sigaction(SIGSEGV, NULL, &cur);
        if (cur.sa_handler != on_segv) { printf("handler not reported back\n"); return 3; }
        printf("recovered %d\n", recovered);
        return recovered == 3 ? 0 : 4;
    } else if (!strcmp(mode, "wait")) {
        /* Wait for a file to appear (the test turns capture on meanwhile), then crash. */
        const char *go = argc > 2 ? argv[2] : "/tmp/go";
        printf("waiting %d\n", getpid());
        for (int i = 0; i < 60000 && access(go, F_OK) != 0; i++) usleep(1000);
        crash_null_deref();
    } else if (!strcmp(mode, "sleep")) {
        pthread_t a;
        pthread_create(&a, NULL, spinner, NULL);
        printf("sleeping %d\n", getpid());
        for (;;) pause();
    }
    printf("no crash for mode %s\n", mode);
    return 1;
}
