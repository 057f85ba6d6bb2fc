/*
 * fanout: the record-path workload for one writer and N readers, the same
 * program for mcastfs, the bare libfuse filesystem, a pipe and Unix datagram
 * sockets. See Benchmarks/README.md.
 *
 *   fanout MODE SYSTEM SIZE COUNT N [-c] [-g] [-b BYTES] [WRITE_PATH READ_PATH_1 .. READ_PATH_N]
 *
 * MODE
 *   stream    a writer thread writes COUNT messages back to back; N reader
 *             threads each read COUNT times. msgs/s = COUNT / wall time of
 *             the timed part (all threads done); deliveries/s = N x msgs/s.
 *   paced     one message in flight: the writer writes message i and waits
 *             (futex) until all N readers have read it, then writes i + 1.
 *             Readers sit in read(2) when the message is written (except
 *             with -g). Gives the write->read latency without queueing.
 *   pingpong  N = 1, one thread: write one message, then read it. Latency =
 *             after the read - before the write: one write request plus one
 *             read request, back to back ("a bare FUSE round trip" on the
 *             bare filesystem).
 * SYSTEM
 *   fs        WRITE_PATH is opened O_WRONLY, READ_PATH_k O_RDONLY (one per
 *             reader). mcastfs: MNT/g/send and MNT/g/r0 .. r{N-1} (members).
 *             Bare libfuse: MNT/f and MNT/r0 .. r{N-1}.
 *   pipe      one pipe(2) (N must be 1); a read asks for exactly SIZE bytes
 *             (writes of <= PIPE_BUF bytes are atomic, so each read gets one
 *             whole message).
 *   dgram     N socketpair(AF_UNIX, SOCK_DGRAM); the writer send(2)s every
 *             message to each of the N sockets in turn (N syscalls per
 *             message), reader k recv(2)s from its own.
 * -c  check every read: exactly SIZE bytes and the next sequence number
 *     (mcastfs, pipe, dgram). Without it (bare filesystem, whose reads return
 *     the last write) a message is timed only the first time a reader sees it.
 * -b BYTES  the readers' buffer: every receive is one read(2) of BYTES
 *     (default 1 MiB, at least SIZE). The kernel pins the pages of as much
 *     of it as one FUSE request can take, on every read (docs/fuse-notes.md,
 *     "What a read's buffer size costs"), so the record path's cost depends
 *     on it.
 * -g  gate the readers: in warm-up and paced mode a reader calls read(2) only
 *     after the writer's write(2) has returned and woken it (futex). For the
 *     bare filesystem, whose reads never wait: its paced latency is then
 *     write request + wake-up + read request.
 *
 * Every message is one write(2) (dgram: one send(2) per reader) of SIZE bytes
 * (SIZE >= 16); bytes 0..7 hold its sequence number, 8..15 the
 * CLOCK_MONOTONIC time (ns) taken just before its first write. Every receive
 * is one read(2) with a 1 MiB buffer (-b; pipe: SIZE bytes). Before the timed
 * part, 50 paced messages warm up (pingpong: 200).
 *
 * Output: one line of key=value pairs. p50_us/p99_us are over every delivery
 * (each reader's latency for each message); in paced mode last_p50_us /
 * last_p99_us are over messages, taking the slowest of the N readers.
 * client_cpu_us_per_msg is this process's CPU time (every thread, user +
 * system) over the timed part, per message; warmup is how many untimed
 * messages came before it (the daemon served those too).
 */
#include "benchutil.h"

#include <fcntl.h>
#include <pthread.h>
#include <sys/resource.h>
#include <sys/socket.h>

#define MAX_BUF (1u << 20)
#define WARMUP 50
#define PINGPONG_WARMUP 200
#define MAX_READERS 64

enum mode { STREAM, PACED, PINGPONG };
enum sys { FS, PIPE, DGRAM };

static enum mode mode;
static enum sys sys;
static size_t msg_size;
static long count;
static int nreaders, check, gate;
static size_t read_buf = MAX_BUF; /* -b */

static int wfd;                    /* fs, pipe */
static int wfds[MAX_READERS];      /* dgram: the writer's end of each pair */
static int rfds[MAX_READERS];

static _Atomic uint32_t acks;      /* reads completed (paced and warm-up) */
static _Atomic uint32_t published; /* writes completed (gate) */
static pthread_barrier_t start_line, timed_line;

/* user + system time of every thread of this process between two samples */
static double cpu_us(const struct rusage *a, const struct rusage *b) {
    double ua = (double)a->ru_utime.tv_sec * 1e6 + (double)a->ru_utime.tv_usec;
    double sa = (double)a->ru_stime.tv_sec * 1e6 + (double)a->ru_stime.tv_usec;
    double ub = (double)b->ru_utime.tv_sec * 1e6 + (double)b->ru_utime.tv_usec;
    double sb = (double)b->ru_stime.tv_sec * 1e6 + (double)b->ru_stime.tv_usec;
    return (ub + sb) - (ua + sa);
}
static uint64_t *lat[MAX_READERS]; /* lat[r][i]: latency of message i at reader r, 0 = none */

static void send_one(char *msg, uint64_t seq, uint64_t *t_out) {
    uint64_t t = now_ns();
    memcpy(msg, &seq, 8);
    memcpy(msg + 8, &t, 8);
    if (sys == DGRAM) {
        for (int k = 0; k < nreaders; k++) {
            ssize_t n = send(wfds[k], msg, msg_size, 0);
            if (n < 0) die("send");
            if ((size_t)n != msg_size) { fprintf(stderr, "fanout: short send\n"); exit(1); }
        }
    } else {
        ssize_t n = write(wfd, msg, msg_size);
        if (n < 0) die("write");
        if ((size_t)n != msg_size) {
            fprintf(stderr, "fanout: short write %zd of %zu\n", n, msg_size);
            exit(1);
        }
    }
    if (t_out) *t_out = t;
}

/* One receive. Returns the payload's timestamp (0 if none), its sequence
 * number in *seq. */
static uint64_t recv_one(int fd, char *buf, uint64_t expect, uint64_t *seq) {
    ssize_t n;
    if (sys == PIPE) {
        size_t got = 0;
        while (got < msg_size) { /* one read per message unless the pipe splits it */
            n = read(fd, buf + got, msg_size - got);
            if (n <= 0) die("read (pipe)");
            got += (size_t)n;
        }
        n = (ssize_t)got;
    } else {
        n = read(fd, buf, read_buf);
        if (n < 0) die("read");
    }
    uint64_t s = 0, t = 0;
    if (n >= 16) {
        memcpy(&s, buf, 8);
        memcpy(&t, buf + 8, 8);
    }
    if (check && ((size_t)n != msg_size || s != expect)) {
        fprintf(stderr, "fanout: read %zd bytes seq %llu, expected %zu bytes seq %llu\n", n,
                (unsigned long long)s, msg_size, (unsigned long long)expect);
        exit(1);
    }
    *seq = s;
    return t;
}

static void *reader_main(void *arg) {
    int r = (int)(intptr_t)arg;
    char *buf = malloc(read_buf);
    if (!buf) die("malloc");
    uint64_t seq, last_timed = UINT64_MAX;
    pthread_barrier_wait(&start_line);
    for (long i = 0; i < WARMUP + count; i++) {
        int timed = i >= WARMUP;
        int acking = !timed || mode == PACED;
        if (timed && i == WARMUP) pthread_barrier_wait(&timed_line);
        if (gate && acking) wait_at_least(&published, (uint32_t)i + 1);
        uint64_t t = recv_one(rfds[r], buf, (uint64_t)i, &seq);
        uint64_t t1 = now_ns();
        if (timed && t != 0 && t <= t1 && seq >= WARMUP && seq < (uint64_t)(WARMUP + count) &&
            seq != last_timed) {
            lat[r][seq - WARMUP] = t1 - t;
            last_timed = seq;
        }
        if (acking) {
            uint32_t v = atomic_fetch_add(&acks, 1) + 1;
            if (v == (uint32_t)nreaders * (uint32_t)(i + 1)) futex_wake(&acks);
        }
    }
    free(buf);
    return NULL;
}

static void open_all(int argc, char **argv, int first) {
    if (sys == FS) {
        if (argc - first != 1 + nreaders) {
            fprintf(stderr, "fanout: fs needs WRITE_PATH and %d READ_PATHs\n", nreaders);
            exit(2);
        }
        wfd = open(argv[first], O_WRONLY);
        if (wfd < 0) die(argv[first]);
        for (int k = 0; k < nreaders; k++) {
            rfds[k] = open(argv[first + 1 + k], O_RDONLY);
            if (rfds[k] < 0) die(argv[first + 1 + k]);
        }
    } else if (sys == PIPE) {
        int p[2];
        if (nreaders != 1) { fprintf(stderr, "fanout: pipe needs N = 1\n"); exit(2); }
        if (pipe(p) != 0) die("pipe");
        rfds[0] = p[0];
        wfd = p[1];
    } else {
        for (int k = 0; k < nreaders; k++) {
            int sv[2];
            if (socketpair(AF_UNIX, SOCK_DGRAM, 0, sv) != 0) die("socketpair");
            wfds[k] = sv[0];
            rfds[k] = sv[1];
        }
    }
}

int main(int argc, char **argv) {
    if (argc < 6) {
        fprintf(stderr, "usage: %s stream|paced|pingpong fs|pipe|dgram SIZE COUNT N [-c] [-g] [-b BYTES] [WRITE_PATH READ_PATH...]\n", argv[0]);
        return 2;
    }
    if (strcmp(argv[1], "stream") == 0) mode = STREAM;
    else if (strcmp(argv[1], "paced") == 0) mode = PACED;
    else if (strcmp(argv[1], "pingpong") == 0) mode = PINGPONG;
    else { fprintf(stderr, "fanout: bad mode\n"); return 2; }
    if (strcmp(argv[2], "fs") == 0) sys = FS;
    else if (strcmp(argv[2], "pipe") == 0) sys = PIPE;
    else if (strcmp(argv[2], "dgram") == 0) sys = DGRAM;
    else { fprintf(stderr, "fanout: bad system\n"); return 2; }
    msg_size = strtoul(argv[3], NULL, 10);
    count = strtol(argv[4], NULL, 10);
    nreaders = atoi(argv[5]);
    if (msg_size < 16 || msg_size > MAX_BUF || count < 1 || nreaders < 1 || nreaders > MAX_READERS ||
        (mode == PINGPONG && nreaders != 1)) {
        fprintf(stderr, "fanout: SIZE 16..1048576, COUNT >= 1, N 1..64 (pingpong: 1)\n");
        return 2;
    }
    int first = 6;
    for (; first < argc && argv[first][0] == '-'; first++) {
        if (strcmp(argv[first], "-c") == 0) check = 1;
        else if (strcmp(argv[first], "-g") == 0) gate = 1;
        else if (strcmp(argv[first], "-b") == 0 && first + 1 < argc) read_buf = strtoul(argv[++first], NULL, 10);
        else { fprintf(stderr, "fanout: bad option %s\n", argv[first]); return 2; }
    }
    if (read_buf < msg_size || read_buf > MAX_BUF) {
        fprintf(stderr, "fanout: -b BYTES must be SIZE..1048576\n");
        return 2;
    }
    open_all(argc, argv, first);
    for (int k = 0; k < nreaders; k++) {
        lat[k] = calloc((size_t)count, sizeof(uint64_t));
        if (!lat[k]) die("calloc");
    }
    char *msg = calloc(1, msg_size);
    if (!msg) die("calloc");

    uint64_t t_start = 0, t_end;
    struct rusage usage_start, usage_end;
    if (mode == PINGPONG) {
        char *buf = malloc(read_buf);
        if (!buf) die("malloc");
        uint64_t seq, t0;
        for (long i = 0; i < PINGPONG_WARMUP + count; i++) {
            if (i == PINGPONG_WARMUP) {
                t_start = now_ns();
                getrusage(RUSAGE_SELF, &usage_start);
            }
            send_one(msg, (uint64_t)i, &t0);
            recv_one(rfds[0], buf, (uint64_t)i, &seq);
            if (i >= PINGPONG_WARMUP) lat[0][i - PINGPONG_WARMUP] = now_ns() - t0;
        }
        t_end = now_ns();
        getrusage(RUSAGE_SELF, &usage_end);
    } else {
        pthread_t th[MAX_READERS];
        pthread_barrier_init(&start_line, NULL, (unsigned)nreaders + 1);
        pthread_barrier_init(&timed_line, NULL, (unsigned)nreaders + 1);
        for (int k = 0; k < nreaders; k++)
            if (pthread_create(&th[k], NULL, reader_main, (void *)(intptr_t)k) != 0) die("pthread_create");
        pthread_barrier_wait(&start_line);
        for (long i = 0; i < WARMUP; i++) {
            send_one(msg, (uint64_t)i, NULL);
            if (gate) { atomic_store(&published, (uint32_t)i + 1); futex_wake(&published); }
            wait_at_least(&acks, (uint32_t)nreaders * (uint32_t)(i + 1));
        }
        pthread_barrier_wait(&timed_line);
        t_start = now_ns();
        getrusage(RUSAGE_SELF, &usage_start);
        for (long i = WARMUP; i < WARMUP + count; i++) {
            send_one(msg, (uint64_t)i, NULL);
            if (mode == PACED) {
                if (gate) { atomic_store(&published, (uint32_t)i + 1); futex_wake(&published); }
                wait_at_least(&acks, (uint32_t)nreaders * (uint32_t)(i + 1));
            }
        }
        for (int k = 0; k < nreaders; k++) pthread_join(th[k], NULL);
        t_end = now_ns();
        getrusage(RUSAGE_SELF, &usage_end);
    }

    /* every delivery, and (paced) the slowest reader of each message */
    struct latencies l = collect_latencies(lat, nreaders, count);
    uint64_t *all = l.all, *last = l.last;
    long nall = l.nall, nlast = l.nlast;
    double secs = (double)(t_end - t_start) / 1e9;
    static const char *mode_names[] = {"stream", "paced", "pingpong"};
    static const char *sys_names[] = {"fs", "pipe", "dgram"};
    printf("mode=%s system=%s size=%zu n=%d count=%ld elapsed_s=%.3f msgs_per_s=%.0f deliveries_per_s=%.0f "
           "p50_us=%.1f p99_us=%.1f max_us=%.1f timed=%ld last_p50_us=%.1f last_p99_us=%.1f "
           "client_cpu_us_per_msg=%.1f warmup=%d read_buf=%zu\n",
           mode_names[mode], sys_names[sys], msg_size, nreaders, count, secs, (double)count / secs,
           (double)count * nreaders / secs, pct_us(all, nall, 0.50), pct_us(all, nall, 0.99),
           nall ? (double)all[nall - 1] / 1000.0 : 0.0, nall, pct_us(last, nlast, 0.50),
           pct_us(last, nlast, 0.99), cpu_us(&usage_start, &usage_end) / (double)count,
           mode == PINGPONG ? PINGPONG_WARMUP : WARMUP, read_buf);
    return 0;
}
