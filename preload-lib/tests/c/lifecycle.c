/* Process lifecycle cases, each run with and without the library by tests/lifecycle.rs,
 * which compares what they print and how they end. Usage: lifecycle CASE.
 * Cases that wait for a signal print "ready" first; the test then signals them. */
#define _GNU_SOURCE
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <sys/wait.h>
#include <unistd.h>

static void say(const char *s) {
    /* One write per line: the order of lines from several threads is the test's. */
    char b[256];
    int n = snprintf(b, sizeof b, "%s\n", s);
    if (write(1, b, (size_t)n) < 0) _exit(99);
}

static void *worker_prints(void *a) {
    (void)a;
    usleep(100 * 1000);
    say("worker done");
    return NULL;
}

static void *worker_pthread_exit(void *a) {
    (void)a;
    usleep(100 * 1000);
    say("worker exits");
    pthread_exit(NULL);
}

static pthread_t main_thread;

/* Says "ready" once the main thread has ended: a signal then finds only this thread. */
static void *worker_pauses(void *a) {
    (void)a;
    pthread_join(main_thread, NULL);
    say("ready");
    for (;;) pause();
}

/* Buffered stdio output must reach the pipe: the process ends through exit(). */
static void at_exit_handler(void) { printf("atexit ran\n"); }

static int main_pthread_exit(void *(*w)(void *)) {
    pthread_t t;
    main_thread = pthread_self();
    atexit(at_exit_handler);
    if (pthread_create(&t, NULL, w, NULL) != 0) return 2;
    say("main exits");
    pthread_exit(NULL);
}

static void *forker(void *a) {
    (void)a;
    pid_t p = fork();
    if (p == 0) {
        /* The child: this thread is its main thread. */
        pthread_t t;
        if (pthread_create(&t, NULL, worker_prints, NULL) != 0) _exit(2);
        say("child main exits");
        pthread_exit(NULL);
    }
    int st = 0;
    if (waitpid(p, &st, 0) != p) return (void *)1;
    char b[64];
    snprintf(b, sizeof b, "child exited=%d status=%d", WIFEXITED(st), WEXITSTATUS(st));
    say(b);
    return NULL;
}

static void *thread_exits(void *a) {
    (void)a;
    say("thread calls exit(3)");
    exit(3);
}

static void *thread_execs(void *a) {
    (void)a;
    char *argv[] = {"/bin/echo", "exec from a thread", NULL};
    execv(argv[0], argv);
    _exit(127);
}

static void wait_go(void) {
    char c;
    while (read(0, &c, 1) == 1 && c != '\n') {
    }
}

int main(int argc, char **argv) {
    if (argc < 2) return 2;
    const char *c = argv[1];
    if (!strcmp(c, "main-pthread-exit")) return main_pthread_exit(worker_prints);
    if (!strcmp(c, "main-then-worker-pthread-exit")) return main_pthread_exit(worker_pthread_exit);
    if (!strcmp(c, "fork-child-of-worker")) {
        pthread_t t;
        if (pthread_create(&t, NULL, forker, NULL) != 0) return 2;
        pthread_join(t, NULL);
        say("parent done");
        return 0;
    }
    if (!strcmp(c, "exit-from-thread")) {
        pthread_t t;
        pthread_create(&t, NULL, thread_exits, NULL);
        for (;;) pause();
    }
    if (!strcmp(c, "exec-from-thread")) {
        pthread_t t;
        pthread_create(&t, NULL, thread_execs, NULL);
        for (;;) pause();
    }
    if (!strcmp(c, "vfork")) {
        pid_t p = vfork();
        if (p == 0) _exit(7);
        int st = 0;
        waitpid(p, &st, 0);
        char b[64];
        snprintf(b, sizeof b, "vfork child status %d", WEXITSTATUS(st));
        say(b);
        return 0;
    }
    /* One thread left after pthread_exit of main: a signal ends the process. */
    if (!strcmp(c, "last-thread-waits")) return main_pthread_exit(worker_pauses);
    /* Every signal blocked: a SIGTERM stays pending, the process reports it and exits. */
    if (!strcmp(c, "blocks-all")) {
        sigset_t all, pend;
        sigfillset(&all);
        sigprocmask(SIG_BLOCK, &all, NULL);
        say("ready");
        wait_go();
        sigpending(&pend);
        say(sigismember(&pend, SIGTERM) ? "SIGTERM pending" : "SIGTERM not pending");
        return 0;
    }
    /* SIGTERM read from a signalfd. */
    if (!strcmp(c, "signalfd")) {
        sigset_t s;
        sigemptyset(&s);
        sigaddset(&s, SIGTERM);
        sigprocmask(SIG_BLOCK, &s, NULL);
        int fd = signalfd(-1, &s, SFD_CLOEXEC);
        if (fd < 0) return 2;
        say("ready");
        struct signalfd_siginfo si;
        if (read(fd, &si, sizeof si) != sizeof si) return 3;
        say(si.ssi_signo == SIGTERM ? "signalfd got SIGTERM" : "signalfd got something else");
        return 0;
    }
    /* A signal to a process whose main thread is still there. */
    if (!strcmp(c, "plain-waits")) {
        say("ready");
        for (;;) pause();
    }
    return 2;
}
