/*
 * mcblock: many threads, each blocked in one read(2) or write(2) on its own
 * open file of a mcastfs mount, to watch what happens to blocked clients when
 * the daemon is killed or unmounted. Every call's result and the time it
 * returned are reported, so the caller can measure how long after its signal
 * every client was released.
 *
 *   mcblock [-A ALARM_S] SPEC...
 *
 *   SPEC = r:PREFIX:N   N readers on PREFIX0 .. PREFIX<N-1> (O_RDONLY)
 *        | w:PREFIX:N   N writers on PREFIX0 .. PREFIX<N-1> (O_WRONLY)
 *        | W:PATH:N     N writers, each on its own open of PATH (e.g. G/send)
 *
 * Every file is opened first (a failure prints "open PATH errno=E", exit 1),
 * then one thread per file (64 KiB stacks) makes its call. stdout:
 *   ready N                       every thread is about to make its call
 *   call I OP RET ERRNO T_NS      one line per call once all have returned
 *                                 (T_NS: CLOCK_MONOTONIC when it returned)
 *   done ok=K err=E
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
    char op;
    ssize_t ret;
    int err;
    long long t;
};

static atomic_int entered;

static long long now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static void *run(void *arg)
{
    struct job *job = arg;
    char buf[256];
    static const char msg[] = "blocked-client";
    atomic_fetch_add(&entered, 1);
    if (job->op == 'r')
        job->ret = read(job->fd, buf, sizeof buf);
    else
        job->ret = write(job->fd, msg, sizeof msg - 1);
    job->err = job->ret < 0 ? errno : 0;
    job->t = now_ns();
    return NULL;
}

int main(int argc, char **argv)
{
    int opt;
    unsigned alarm_s = 120;
    while ((opt = getopt(argc, argv, "A:")) != -1) {
        if (opt == 'A')
            alarm_s = (unsigned)atoi(optarg);
        else
            return 2;
    }
    alarm(alarm_s);
    int total = 0;
    for (int i = optind; i < argc; i++) {
        char *last = strrchr(argv[i], ':');
        if (!last || argv[i][1] != ':')
            return 2;
        total += atoi(last + 1);
    }
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < (rlim_t)total + 64) {
        rl.rlim_cur = rl.rlim_max < (rlim_t)total + 64 ? rl.rlim_max : (rlim_t)total + 64;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
    struct job *jobs = calloc((size_t)total, sizeof *jobs);
    pthread_t *threads = calloc((size_t)total, sizeof *threads);
    int k = 0;
    char path[4096];
    for (int i = optind; i < argc; i++) {
        char kind = argv[i][0];
        char *spec = strdup(argv[i] + 2);
        char *colon = strrchr(spec, ':');
        *colon = 0;
        int n = atoi(colon + 1);
        for (int j = 0; j < n; j++, k++) {
            if (kind == 'W')
                snprintf(path, sizeof path, "%s", spec);
            else
                snprintf(path, sizeof path, "%s%d", spec, j);
            jobs[k].op = kind == 'r' ? 'r' : 'w';
            jobs[k].fd = open(path, kind == 'r' ? O_RDONLY : O_WRONLY);
            if (jobs[k].fd < 0) {
                printf("open %s errno=%d\n", path, errno);
                return 1;
            }
        }
        free(spec);
    }
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setstacksize(&attr, 64 * 1024);
    for (int i = 0; i < total; i++)
        if (pthread_create(&threads[i], &attr, run, &jobs[i]) != 0) {
            printf("pthread_create failed at %d\n", i);
            return 1;
        }
    while (atomic_load(&entered) < total)
        usleep(1000);
    printf("ready %d\n", total);
    fflush(stdout);
    int ok = 0, bad = 0;
    for (int i = 0; i < total; i++) {
        pthread_join(threads[i], NULL);
        if (jobs[i].ret >= 0)
            ok++;
        else
            bad++;
    }
    for (int i = 0; i < total; i++)
        printf("call %d %c %zd %d %lld\n", i, jobs[i].op, jobs[i].ret, jobs[i].err, jobs[i].t);
    printf("done ok=%d err=%d\n", ok, bad);
    fflush(stdout);
    return 0;
}
