/*
 * idle: N members of one mcastfs group, each with one reader blocked in
 * read(2), for measuring what blocked readers cost the daemon.
 *
 *   idle GROUP_DIR N
 *
 * Talks to the driver on stdin/stdout, one line each way per step:
 *   1. raises RLIMIT_NOFILE, creates and opens members m0 .. m{N-1}
 *      (open O_RDONLY|O_CREAT), prints "members created_s=..." and waits for a
 *      line on stdin (the driver samples the daemon: members, no readers);
 *   2. starts N threads with the smallest stack (PTHREAD_STACK_MIN), each
 *      doing one read(2) of at most 64 bytes on its own member; waits until
 *      every one of them sleeps in the kernel (state S in
 *      /proc/self/task/TID/stat; a thread only ever sleeps inside that read),
 *      prints "blocked blocked_s=..." and waits for a line on stdin (the
 *      driver samples the daemon: N readers blocked);
 *   3. writes one message to GROUP_DIR/send, which wakes every reader, joins
 *      them, prints "woken wake_ms=... (write to last reader back)" and exits.
 *      Leaving the group is left to the daemon's unmount.
 */
#include "benchutil.h"

#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <sys/resource.h>

static int *fds;
static pid_t *tids;
static uint64_t *woke;
static _Atomic int started;

static void wait_line(void) {
    char line[64];
    fflush(stdout);
    if (fgets(line, sizeof line, stdin) == NULL) exit(1);
}

static void *reader_main(void *arg) {
    long k = (long)(intptr_t)arg;
    char buf[64];
    tids[k] = (pid_t)syscall(SYS_gettid);
    atomic_fetch_add(&started, 1);
    ssize_t n = read(fds[k], buf, sizeof buf);
    woke[k] = now_ns();
    if (n < 0) die("read");
    return NULL;
}

/* 1 if thread `tid` of this process is sleeping (state S). */
static int sleeping(pid_t tid) {
    char path[64], buf[512];
    snprintf(path, sizeof path, "/proc/self/task/%d/stat", (int)tid);
    int fd = open(path, O_RDONLY);
    if (fd < 0) return 0;
    ssize_t n = read(fd, buf, sizeof buf - 1);
    close(fd);
    if (n <= 0) return 0;
    buf[n] = '\0';
    char *p = strrchr(buf, ')');
    return p && p[1] == ' ' && p[2] == 'S';
}

int main(int argc, char **argv) {
    if (argc != 3) {
        fprintf(stderr, "usage: %s GROUP_DIR N\n", argv[0]);
        return 2;
    }
    const char *dir = argv[1];
    long n = strtol(argv[2], NULL, 10);
    if (n < 1) return 2;
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) != 0) die("getrlimit");
    if (rl.rlim_cur < (rlim_t)n + 64) {
        rl.rlim_cur = (rlim_t)n + 64;
        if (rl.rlim_max < rl.rlim_cur) rl.rlim_max = rl.rlim_cur;
        if (setrlimit(RLIMIT_NOFILE, &rl) != 0) die("setrlimit RLIMIT_NOFILE");
    }
    fds = calloc((size_t)n, sizeof *fds);
    tids = calloc((size_t)n, sizeof *tids);
    woke = calloc((size_t)n, sizeof *woke);
    if (!fds || !tids || !woke) die("calloc");

    char path[4096];
    uint64_t t0 = now_ns();
    for (long k = 0; k < n; k++) {
        snprintf(path, sizeof path, "%s/m%ld", dir, k);
        fds[k] = open(path, O_RDONLY | O_CREAT, 0644);
        if (fds[k] < 0) die(path);
    }
    printf("members created_s=%.3f\n", (double)(now_ns() - t0) / 1e9);
    wait_line();

    pthread_attr_t attr;
    pthread_attr_init(&attr);
    if (pthread_attr_setstacksize(&attr, PTHREAD_STACK_MIN) != 0) die("pthread_attr_setstacksize");
    pthread_t *th = calloc((size_t)n, sizeof *th);
    if (!th) die("calloc");
    t0 = now_ns();
    for (long k = 0; k < n; k++) {
        int rc = pthread_create(&th[k], &attr, reader_main, (void *)(intptr_t)k);
        if (rc != 0) { errno = rc; die("pthread_create"); }
    }
    while (atomic_load(&started) < n) usleep(1000);
    /* every reader asleep in its read(2), twice in a row 50 ms apart */
    for (int stable = 0, tries = 0; stable < 2; tries++) {
        if (tries > 600) { fprintf(stderr, "idle: readers not all blocked after 30 s\n"); return 1; }
        long asleep = 0;
        for (long k = 0; k < n; k++) asleep += sleeping(tids[k]);
        stable = asleep == n ? stable + 1 : 0;
        usleep(50000);
    }
    printf("blocked blocked_s=%.3f\n", (double)(now_ns() - t0) / 1e9);
    wait_line();

    snprintf(path, sizeof path, "%s/send", dir);
    int wfd = open(path, O_WRONLY);
    if (wfd < 0) die(path);
    t0 = now_ns();
    if (write(wfd, "x", 1) != 1) die("write");
    uint64_t last = t0;
    for (long k = 0; k < n; k++) {
        pthread_join(th[k], NULL);
        if (woke[k] > last) last = woke[k];
    }
    printf("woken wake_ms=%.1f\n", (double)(last - t0) / 1e6);
    close(wfd);
    for (long k = 0; k < n; k++) close(fds[k]);
    return 0;
}
