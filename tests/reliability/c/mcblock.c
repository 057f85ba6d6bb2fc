/*
 * mcblock: many threads, each blocked in one read(2) or write(2) on its own
 * open file of a mcastfs mount, to watch what happens to blocked clients when
 * the daemon is killed or unmounted. Every call's result and the time it
 * returned are reported, so the caller can measure how long after its signal
 * every client was released.
 *
 *   mcblock [-A ALARM_S] SPEC...
 *
 *   SPEC = KIND:PREFIX:N   (a lower-case KIND) N clients on PREFIX0 .. PREFIX<N-1>
 *        | KIND:PATH:N     (an upper-case KIND) N clients, each on its own open of PATH
 *
 *   KIND  r R   read(2) of 256 bytes: a member (G/NAME) or a peer (G/peers/NAME)
 *         f F   read(2) of 1 MiB: a framed member (G/frames/NAME)
 *         w W   write(2) of one message: G/send, a member, a peer file (private)
 *         b B   write(2) of a batch of two records: G/frames/send, G/frames/NAME
 *         l L   in a message=line group: write(2) of a partial line first (it
 *               must return at once: the bytes wait in the open file), then the
 *               write(2) that blocks, the rest of that line and a new partial
 *               one ("...\nnext")
 *
 * Every file is opened first (a failure prints "open PATH errno=E", exit 1),
 * then one thread per file (64 KiB stacks) makes its call (a line writer's
 * first write failing prints "partial I RET ERRNO", exit 1). stdout:
 *   ready N                       every thread is about to make its call
 *   call I KIND RET ERRNO T_NS    one line per call once all have returned
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
    char op; /* the KIND, lower case */
    char kind; /* as given */
    int partial_bad; /* a line writer's first write did not return its length */
    ssize_t ret;
    int err;
    long long t;
};

static atomic_int entered, partial_failed;
static char frame_buf[1 << 20]; /* shared: a blocked framed read never fills it */

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
    /* two records: u32 length (little-endian), then the payload */
    static const char batch[] = "\x05\0\0\0batch\x06\0\0\0batch2";
    static const char partial[] = "a line begun", rest[] = " and ended\nnext";
    if (job->op == 'l') {
        ssize_t n = write(job->fd, partial, sizeof partial - 1);
        if (n != (ssize_t)(sizeof partial - 1)) {
            job->ret = n;
            job->err = n < 0 ? errno : 0;
            job->partial_bad = 1;
            atomic_fetch_add(&partial_failed, 1);
        }
    }
    atomic_fetch_add(&entered, 1);
    if (job->partial_bad)
        return NULL; /* reported by main */
    switch (job->op) {
    case 'r': job->ret = read(job->fd, buf, sizeof buf); break;
    case 'f': job->ret = read(job->fd, frame_buf, sizeof frame_buf); break;
    case 'w': job->ret = write(job->fd, msg, sizeof msg - 1); break;
    case 'b': job->ret = write(job->fd, batch, sizeof batch - 1); break;
    default: job->ret = write(job->fd, rest, sizeof rest - 1); break;
    }
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
        if (!last || argv[i][1] != ':' || !strchr("rRfFwWbBlL", argv[i][0]))
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
            if (kind >= 'A' && kind <= 'Z')
                snprintf(path, sizeof path, "%s", spec);
            else
                snprintf(path, sizeof path, "%s%d", spec, j);
            jobs[k].kind = kind;
            jobs[k].op = (char)(kind | 0x20);
            int reads = jobs[k].op == 'r' || jobs[k].op == 'f';
            jobs[k].fd = open(path, reads ? O_RDONLY : O_WRONLY);
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
    if (atomic_load(&partial_failed)) {
        for (int i = 0; i < total; i++)
            if (jobs[i].partial_bad)
                printf("partial %d %zd %d\n", i, jobs[i].ret, jobs[i].err);
        fflush(stdout);
        return 1;
    }
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
        printf("call %d %c %zd %d %lld\n", i, jobs[i].kind, jobs[i].ret, jobs[i].err, jobs[i].t);
    printf("done ok=%d err=%d\n", ok, bad);
    fflush(stdout);
    return 0;
}
