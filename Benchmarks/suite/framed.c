/*
 * framed: the framed-view workload (G/frames/), C clients built on the
 * project's helper header clients/c/mcastfs.h, and the line-message pipeline.
 * See Benchmarks/README.md, Scenario 1d and 1e.
 *
 *   framed stream|paced SIZE COUNT N BATCH [-b BYTES] WRITE_PATH READ_PATH_1 .. READ_PATH_N
 *   framed lines fs|pipe COUNT [-b BYTES] TARGET READ_PATH
 *
 * stream  one writer thread builds batches of BATCH messages
 *         (mcastfs_batch_add) and writes each with mcastfs_send_batch on
 *         WRITE_PATH (G/frames/send), which re-sends the rest after a short
 *         write; N reader threads each read READ_PATH_k (G/frames/rk) with a
 *         buffer of BYTES (default 1 MiB) and iterate the frames of every
 *         read (mcastfs_frame_next) until they have COUNT.
 *         msgs/s = COUNT / wall time until all threads are done.
 * paced   one message in flight: the writer sends message i as a batch of
 *         one and waits (futex) until all N readers have it. p50/p99 of
 *         send -> the reader's read returning, the readers already blocked
 *         in read(2).
 * Every frame is checked: payload of SIZE bytes, bytes 0..7 the next
 * sequence number of this program, and the frame's own `sequence` one more
 * than the previous frame's (the group numbers every message it accepts).
 * Bytes 8..15 hold CLOCK_MONOTONIC (ns) when the message was put in its
 * batch. 50 paced messages (batches of one) warm up first.
 *
 * lines   the line-message pipeline `seq COUNT | tee TARGET >/dev/null`
 *         (/bin/sh), and one reader of READ_PATH that checks every line,
 *         1..COUNT in order. fs: TARGET is G/send of a group with
 *         `set message=line`, READ_PATH G/frames/NAME of its one member
 *         (one frame per line). pipe: TARGET and READ_PATH are one FIFO
 *         (the same pipeline into a pipe). msgs/s = COUNT / time from just
 *         before the pipeline starts until the reader has the last line.
 *
 * Output: one line of key=value pairs, the keys of fanout.c plus batch=,
 * reads= (read(2) calls of all readers in the timed part) and
 * frames_per_read=.
 */
#include "benchutil.h"
#include "../../clients/c/mcastfs.h"

#include <fcntl.h>
#include <pthread.h>
#include <sys/resource.h>
#include <sys/wait.h>

#define WARMUP 50
#define MAX_READERS 64
#define MAX_BUF (1u << 20)

enum mode { STREAM, PACED, LINES };

static enum mode mode;
static size_t msg_size, read_buf = MAX_BUF;
static long count;
static int nreaders, batch = 1;

static int wfd, rfds[MAX_READERS];
static _Atomic uint32_t acks; /* messages received, summed over readers (paced and warm-up) */
static _Atomic long reads_timed;
static pthread_barrier_t start_line, timed_line;
static uint64_t *lat[MAX_READERS];

static double cpu_us(const struct rusage *a, const struct rusage *b) {
    double ua = (double)a->ru_utime.tv_sec * 1e6 + (double)a->ru_utime.tv_usec;
    double sa = (double)a->ru_stime.tv_sec * 1e6 + (double)a->ru_stime.tv_usec;
    double ub = (double)b->ru_utime.tv_sec * 1e6 + (double)b->ru_utime.tv_usec;
    double sb = (double)b->ru_stime.tv_sec * 1e6 + (double)b->ru_stime.tv_usec;
    return (ub + sb) - (ua + sa);
}

static void fail(const char *fmt, long a, long b) {
    fprintf(stderr, "framed: ");
    fprintf(stderr, fmt, a, b);
    fputc('\n', stderr);
    exit(1);
}

/* Builds messages first .. first+n-1 into b and sends them all. */
static void send_messages(struct mcastfs_batch *b, char *msg, uint64_t first, int n) {
    mcastfs_batch_clear(b);
    for (int j = 0; j < n; j++) {
        uint64_t seq = first + (uint64_t)j, t = now_ns();
        memcpy(msg, &seq, 8);
        memcpy(msg + 8, &t, 8);
        if (mcastfs_batch_add(b, msg, msg_size) != 0) die("mcastfs_batch_add");
    }
    if (mcastfs_send_batch(wfd, b->data, b->len, NULL, NULL) != 0) die("mcastfs_send_batch");
}

static void *reader_main(void *arg) {
    int r = (int)(intptr_t)arg;
    unsigned char *buf = malloc(read_buf);
    if (!buf) die("malloc");
    long i = 0, reads = 0;
    int timed = 0;
    uint64_t group_seq = 0;
    pthread_barrier_wait(&start_line);
    while (i < WARMUP + count) {
        /* warm-up is paced, so no read returns warm-up and timed messages together */
        if (i == WARMUP && !timed) {
            pthread_barrier_wait(&timed_line);
            timed = 1;
        }
        ssize_t n = read(rfds[r], buf, read_buf);
        uint64_t t1 = now_ns();
        if (n < 0) {
            if (errno == EINTR) continue;
            die("read");
        }
        if (n == 0) fail("reader %ld: end of stream after %ld messages", r, i);
        if (i >= WARMUP) reads++;
        struct mcastfs_frames it;
        struct mcastfs_frame f;
        int res;
        mcastfs_frames_init(&it, buf, (size_t)n);
        while ((res = mcastfs_frame_next(&it, &f)) == MCASTFS_FRAME_OK) {
            uint64_t s, t;
            if (f.size != msg_size) fail("frame of %ld bytes, expected %ld", (long)f.size, (long)msg_size);
            memcpy(&s, f.payload, 8);
            memcpy(&t, f.payload + 8, 8);
            if (s != (uint64_t)i) fail("message %ld where %ld was next", (long)s, i);
            if (i > 0 && f.sequence != group_seq + 1)
                fail("frame sequence %ld after %ld", (long)f.sequence, (long)group_seq);
            group_seq = f.sequence;
            if (i >= WARMUP && t <= t1) lat[r][i - WARMUP] = t1 - t;
            if (i < WARMUP || mode == PACED) {
                uint32_t v = atomic_fetch_add(&acks, 1) + 1;
                if (v == (uint32_t)nreaders * (uint32_t)(i + 1)) futex_wake(&acks);
            }
            i++;
        }
        if (res < 0) {
            fprintf(stderr, "framed: reader %d: %s at offset %zu\n", r, mcastfs_frame_error(res), it.offset);
            exit(1);
        }
    }
    atomic_fetch_add(&reads_timed, reads);
    free(buf);
    return NULL;
}

/* lines: checks that buf[0..n) continues the lines 1..COUNT; *next is the
 * next number, *partial the digits of a line that a pipe read cut. */
static void check_lines(const unsigned char *buf, size_t n, long *next, long *partial, int whole) {
    for (size_t k = 0; k < n; k++) {
        unsigned char c = buf[k];
        if (c == '\n') {
            if (*partial != *next) fail("line %ld where %ld was next", *partial, *next);
            ++*next;
            *partial = 0;
        } else if (c >= '0' && c <= '9') {
            *partial = *partial * 10 + (c - '0');
        } else {
            fail("byte %ld in line %ld", c, *next);
        }
    }
    if (whole && *partial != 0) fail("a frame ended inside line %ld (%ld)", *next, *partial);
}

static int run_lines(int argc, char **argv, int first) {
    if (argc - first != 3) {
        fprintf(stderr, "usage: framed lines fs|pipe COUNT [-b BYTES] TARGET READ_PATH\n");
        return 2;
    }
    int fs = strcmp(argv[first], "fs") == 0;
    const char *target = argv[first + 1], *path = argv[first + 2];
    unsigned char *buf = malloc(read_buf);
    if (!buf) die("malloc");
    int rfd = -1;
    if (fs && (rfd = open(path, O_RDONLY)) < 0) die(path);
    char cmd[4096];
    snprintf(cmd, sizeof cmd, "seq %ld | tee '%s' >/dev/null", count, target);
    struct rusage usage_start, usage_end;
    getrusage(RUSAGE_SELF, &usage_start);
    uint64_t t_start = now_ns();
    pid_t child = fork();
    if (child < 0) die("fork");
    if (child == 0) {
        if (rfd >= 0) close(rfd);
        execl("/bin/sh", "sh", "-c", cmd, (char *)NULL);
        _exit(127);
    }
    /* a FIFO opens once tee has opened it to write */
    if (!fs && (rfd = open(path, O_RDONLY)) < 0) die(path);
    long next = 1, partial = 0, reads = 0;
    while (next <= count) {
        ssize_t n = read(rfd, buf, read_buf);
        if (n < 0) {
            if (errno == EINTR) continue;
            die("read");
        }
        if (n == 0) fail("end of stream at line %ld of %ld", next, count);
        reads++;
        if (!fs) {
            check_lines(buf, (size_t)n, &next, &partial, 0);
            continue;
        }
        struct mcastfs_frames it;
        struct mcastfs_frame f;
        int res;
        mcastfs_frames_init(&it, buf, (size_t)n);
        while ((res = mcastfs_frame_next(&it, &f)) == MCASTFS_FRAME_OK) {
            if (f.size == 0 || f.payload[f.size - 1] != '\n') fail("frame %ld (line %ld) is not one line", (long)f.sequence, next);
            check_lines(f.payload, f.size, &next, &partial, 1);
        }
        if (res < 0) {
            fprintf(stderr, "framed: %s at offset %zu\n", mcastfs_frame_error(res), it.offset);
            exit(1);
        }
    }
    uint64_t t_end = now_ns();
    getrusage(RUSAGE_SELF, &usage_end);
    int status;
    if (waitpid(child, &status, 0) < 0) die("waitpid");
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) fail("the pipeline failed (status %ld)%ld", status, 0);
    double secs = (double)(t_end - t_start) / 1e9;
    printf("mode=lines system=%s size=0 n=1 count=%ld elapsed_s=%.3f msgs_per_s=%.0f deliveries_per_s=%.0f "
           "p50_us=0 p99_us=0 timed=0 client_cpu_us_per_msg=%.3f warmup=0 batch=0 read_buf=%zu reads=%ld "
           "frames_per_read=%.1f\n",
           fs ? "fs" : "pipe", count, secs, (double)count / secs, (double)count / secs,
           cpu_us(&usage_start, &usage_end) / (double)count, read_buf, reads, (double)count / (double)reads);
    return 0;
}

int main(int argc, char **argv) {
    if (argc < 4) {
        fprintf(stderr, "usage: framed stream|paced SIZE COUNT N BATCH [-b BYTES] WRITE_PATH READ_PATH...\n"
                        "       framed lines fs|pipe COUNT [-b BYTES] TARGET READ_PATH\n");
        return 2;
    }
    int first;
    if (strcmp(argv[1], "lines") == 0) {
        mode = LINES;
        count = strtol(argv[3], NULL, 10);
        nreaders = 1;
        first = 4;
    } else {
        if (strcmp(argv[1], "stream") == 0) mode = STREAM;
        else if (strcmp(argv[1], "paced") == 0) mode = PACED;
        else { fprintf(stderr, "framed: bad mode\n"); return 2; }
        if (argc < 7) { fprintf(stderr, "framed: too few arguments\n"); return 2; }
        msg_size = strtoul(argv[2], NULL, 10);
        count = strtol(argv[3], NULL, 10);
        nreaders = atoi(argv[4]);
        batch = atoi(argv[5]);
        first = 6;
    }
    if (first < argc && strcmp(argv[first], "-b") == 0 && first + 1 < argc) {
        read_buf = strtoul(argv[first + 1], NULL, 10);
        first += 2;
    }
    if (count < 1 || read_buf < 64 || read_buf > MAX_BUF) {
        fprintf(stderr, "framed: COUNT >= 1, -b 64..1048576\n");
        return 2;
    }
    if (mode == LINES) {
        argv[first - 1] = argv[2]; /* fs|pipe, then TARGET READ_PATH */
        return run_lines(argc, argv, first - 1);
    }
    if (msg_size < 16 || msg_size > MCASTFS_MAX_MESSAGE || nreaders < 1 || nreaders > MAX_READERS || batch < 1 ||
        (size_t)batch * (4 + msg_size) > MCASTFS_MAX_BATCH || read_buf < MCASTFS_FRAME_HEADER_SIZE + msg_size) {
        fprintf(stderr, "framed: SIZE >= 16, N 1..64, BATCH x (4 + SIZE) <= %u, -b >= 40 + SIZE\n",
                MCASTFS_MAX_BATCH);
        return 2;
    }
    if (argc - first != 1 + nreaders) {
        fprintf(stderr, "framed: needs WRITE_PATH and %d READ_PATHs\n", nreaders);
        return 2;
    }
    if ((wfd = open(argv[first], O_WRONLY)) < 0) die(argv[first]);
    for (int k = 0; k < nreaders; k++)
        if ((rfds[k] = open(argv[first + 1 + k], O_RDONLY)) < 0) die(argv[first + 1 + k]);
    for (int k = 0; k < nreaders; k++)
        if (!(lat[k] = calloc((size_t)count, sizeof(uint64_t)))) die("calloc");
    char *msg = calloc(1, msg_size);
    size_t cap = (size_t)batch * (4 + msg_size);
    unsigned char *out = malloc(cap);
    if (!msg || !out) die("malloc");
    struct mcastfs_batch b;
    mcastfs_batch_init(&b, out, cap);

    pthread_t th[MAX_READERS];
    pthread_barrier_init(&start_line, NULL, (unsigned)nreaders + 1);
    pthread_barrier_init(&timed_line, NULL, (unsigned)nreaders + 1);
    for (int k = 0; k < nreaders; k++)
        if (pthread_create(&th[k], NULL, reader_main, (void *)(intptr_t)k) != 0) die("pthread_create");
    pthread_barrier_wait(&start_line);
    for (long i = 0; i < WARMUP; i++) {
        send_messages(&b, msg, (uint64_t)i, 1);
        wait_at_least(&acks, (uint32_t)nreaders * (uint32_t)(i + 1));
    }
    pthread_barrier_wait(&timed_line);
    struct rusage usage_start, usage_end;
    uint64_t t_start = now_ns();
    getrusage(RUSAGE_SELF, &usage_start);
    for (long i = WARMUP; i < WARMUP + count;) {
        if (mode == PACED) {
            send_messages(&b, msg, (uint64_t)i, 1);
            wait_at_least(&acks, (uint32_t)nreaders * (uint32_t)(i + 1));
            i++;
        } else {
            int n = WARMUP + count - i < batch ? (int)(WARMUP + count - i) : batch;
            send_messages(&b, msg, (uint64_t)i, n);
            i += n;
        }
    }
    for (int k = 0; k < nreaders; k++) pthread_join(th[k], NULL);
    uint64_t t_end = now_ns();
    getrusage(RUSAGE_SELF, &usage_end);

    struct latencies l = collect_latencies(lat, nreaders, count);
    uint64_t *all = l.all, *last = l.last;
    long nall = l.nall, nlast = l.nlast;
    double secs = (double)(t_end - t_start) / 1e9;
    long reads = atomic_load(&reads_timed);
    printf("mode=%s system=frames size=%zu n=%d count=%ld elapsed_s=%.3f msgs_per_s=%.0f deliveries_per_s=%.0f "
           "p50_us=%.1f p99_us=%.1f max_us=%.1f timed=%ld last_p50_us=%.1f last_p99_us=%.1f "
           "client_cpu_us_per_msg=%.2f warmup=%d batch=%d read_buf=%zu reads=%ld frames_per_read=%.1f\n",
           mode == STREAM ? "stream" : "paced", msg_size, nreaders, count, secs, (double)count / secs,
           (double)count * nreaders / secs, pct_us(all, nall, 0.50), pct_us(all, nall, 0.99),
           nall ? (double)all[nall - 1] / 1000.0 : 0.0, nall, pct_us(last, nlast, 0.50),
           pct_us(last, nlast, 0.99), cpu_us(&usage_start, &usage_end) / (double)count, WARMUP, batch, read_buf,
           reads, reads ? (double)count * nreaders / (double)reads : 0.0);
    return 0;
}
