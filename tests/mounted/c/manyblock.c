/*
 * manyblock: N threads, each blocked in one read(2) or write(2) on its own
 * file, to show that blocked calls cost the daemon memory and not threads.
 *
 *   manyblock read  DIR PREFIX N EXPECT [TIMEOUT_S]
 *   manyblock write DIR PREFIX N DATA   [TIMEOUT_S]
 *
 * The main thread opens DIR/PREFIX0 .. DIR/PREFIX<N-1> (O_RDONLY to read,
 * O_WRONLY to write), starts one thread per file with a small stack, and
 * prints "ready N" once every thread is about to make its call. When all calls
 * have returned it prints
 *
 *   done ok=K err=E first_errno=X match=M spread_ms=S
 *
 * where match counts reads that returned exactly EXPECT (writes that wrote all
 * of DATA) and spread_ms is the time between the first and the last return.
 * An alarm ends the process after TIMEOUT_S seconds (default 120), so a bug
 * cannot leave it behind forever.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

struct job {
    int fd;
    ssize_t ret;
    int err;
    int match;
    double returned;
};

static int writing;
static const char *payload;
static size_t payload_len;
static atomic_int entered;

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

static void *run(void *arg)
{
    struct job *job = arg;
    char buf[4096];
    atomic_fetch_add(&entered, 1);
    if (writing) {
        job->ret = write(job->fd, payload, payload_len);
        job->match = job->ret == (ssize_t)payload_len;
    } else {
        job->ret = read(job->fd, buf, sizeof buf);
        job->match = job->ret == (ssize_t)payload_len && memcmp(buf, payload, payload_len) == 0;
    }
    job->err = job->ret < 0 ? errno : 0;
    job->returned = now_ms();
    return NULL;
}

int main(int argc, char **argv)
{
    if (argc < 6) {
        fprintf(stderr, "usage: manyblock read|write DIR PREFIX N EXPECT|DATA [TIMEOUT_S]\n");
        return 2;
    }
    writing = strcmp(argv[1], "write") == 0;
    const char *dir = argv[2], *prefix = argv[3];
    int n = atoi(argv[4]);
    payload = argv[5];
    payload_len = strlen(payload);
    alarm(argc > 6 ? (unsigned)atoi(argv[6]) : 120);

    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < (rlim_t)n + 64) {
        rl.rlim_cur = rl.rlim_max < (rlim_t)n + 64 ? rl.rlim_max : (rlim_t)n + 64;
        setrlimit(RLIMIT_NOFILE, &rl);
    }

    struct job *jobs = calloc((size_t)n, sizeof *jobs);
    pthread_t *threads = calloc((size_t)n, sizeof *threads);
    char path[4096];
    for (int i = 0; i < n; i++) {
        snprintf(path, sizeof path, "%s/%s%d", dir, prefix, i);
        jobs[i].fd = open(path, writing ? O_WRONLY : O_RDONLY);
        if (jobs[i].fd < 0) {
            printf("open %s errno=%d\n", path, errno);
            return 1;
        }
    }
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setstacksize(&attr, 64 * 1024);
    for (int i = 0; i < n; i++) {
        if (pthread_create(&threads[i], &attr, run, &jobs[i]) != 0) {
            printf("pthread_create failed at %d\n", i);
            return 1;
        }
    }
    while (atomic_load(&entered) < n)
        usleep(1000);
    printf("ready %d\n", n);
    fflush(stdout);

    int ok = 0, bad = 0, first_errno = 0, match = 0;
    double first = 0, last = 0;
    for (int i = 0; i < n; i++) {
        pthread_join(threads[i], NULL);
        if (jobs[i].ret >= 0)
            ok++;
        else {
            bad++;
            if (!first_errno)
                first_errno = jobs[i].err;
        }
        match += jobs[i].match;
        if (i == 0 || jobs[i].returned < first)
            first = jobs[i].returned;
        if (i == 0 || jobs[i].returned > last)
            last = jobs[i].returned;
    }
    printf("done ok=%d err=%d first_errno=%d match=%d spread_ms=%.1f\n", ok, bad, first_errno, match,
           last - first);
    fflush(stdout);
    return 0;
}
