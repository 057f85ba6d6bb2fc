/*
 * client: the record-path workload, the same program for mcastfs and for the
 * bare_fuse anchor.
 *
 *   client pingpong|stream WRITE_PATH READ_PATH SIZE COUNT
 *
 * Opens WRITE_PATH O_WRONLY and READ_PATH O_RDONLY. Every message is one
 * write(2) of SIZE bytes (SIZE >= 16); every receive is one read(2) with a
 * 1 MiB buffer. Bytes 0..7 of a message hold its sequence number, bytes
 * 8..15 the CLOCK_MONOTONIC time (ns) taken just before its write(2).
 *
 * pingpong  one thread: write one message, read one message, COUNT times.
 *           Latency = clock after the read returns - clock before the write.
 * stream    a writer thread writes COUNT messages back to back while a reader
 *           thread reads COUNT times. Latency = clock after the read returns -
 *           timestamp in the payload it got. On mcastfs the writer blocks
 *           whenever the member's queue is full (capacity 256 by default), so
 *           that latency includes the time a message waits in the queue.
 *
 * Both modes first exchange 200 untimed ping-pong messages (warm-up).
 * msgs/s = COUNT / wall time of the timed part (both threads finished).
 *
 * When WRITE_PATH and READ_PATH differ (mcastfs: G/send and member G/r) every
 * read is checked: exactly SIZE bytes and the next sequence number. When they
 * are the same file (the anchor) reads return whatever was written last, so
 * nothing is checked; in stream mode a read is timed only when it returns a
 * message of the timed part not timed before (`timed` in the output says how
 * many were), so a message read twice, or the warm-up's last, is not counted.
 *
 * Output: one line of key=value pairs on stdout, e.g.
 *   mode=pingpong size=64 count=100000 elapsed_s=2.013 msgs_per_s=49677 p50_us=19.1 p99_us=35.2 max_us=411.0 timed=100000
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define READ_BUF (1u << 20)
#define WARMUP 200

static int wfd, rfd;
static size_t msg_size;
static long count;
static int check;
static uint64_t next_seq; /* next sequence number to write */

static uint64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void die(const char *what) {
    fprintf(stderr, "client: %s: %s\n", what, strerror(errno));
    exit(1);
}

static void send_one(char *msg, uint64_t seq, uint64_t *t_out) {
    uint64_t t = now_ns();
    memcpy(msg, &seq, 8);
    memcpy(msg + 8, &t, 8);
    ssize_t n = write(wfd, msg, msg_size);
    if (n < 0) die("write");
    if ((size_t)n != msg_size) {
        fprintf(stderr, "client: short write %zd of %zu\n", n, msg_size);
        exit(1);
    }
    if (t_out) *t_out = t;
}

/* Returns the timestamp carried by the message (0 if none); its sequence
 * number in *seq_out. */
static uint64_t recv_one(char *buf, uint64_t expect_seq, uint64_t *seq_out) {
    ssize_t n = read(rfd, buf, READ_BUF);
    if (n < 0) die("read");
    if (check) {
        uint64_t seq = 0;
        if ((size_t)n != msg_size) {
            fprintf(stderr, "client: read %zd bytes, expected %zu\n", n, msg_size);
            exit(1);
        }
        memcpy(&seq, buf, 8);
        if (seq != expect_seq) {
            fprintf(stderr, "client: got message %llu, expected %llu\n",
                    (unsigned long long)seq, (unsigned long long)expect_seq);
            exit(1);
        }
    }
    if (n < 16) return 0;
    uint64_t t;
    memcpy(&t, buf + 8, 8);
    if (seq_out) memcpy(seq_out, buf, 8);
    return t;
}

static int cmp_u64(const void *a, const void *b) {
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

static double pct_us(const uint64_t *v, long n, double p) {
    if (n == 0) return 0;
    long i = (long)(p * (double)(n - 1) + 0.5);
    return (double)v[i] / 1000.0;
}

/* ---- stream ---- */

static uint64_t *lat;
static long timed;
static pthread_barrier_t start_line;

static void *writer_main(void *arg) {
    (void)arg;
    char *msg = calloc(1, msg_size);
    if (!msg) die("calloc");
    pthread_barrier_wait(&start_line);
    for (long i = 0; i < count; i++) send_one(msg, next_seq + (uint64_t)i, NULL);
    free(msg);
    return NULL;
}

static void *reader_main(void *arg) {
    (void)arg;
    char *buf = malloc(READ_BUF);
    if (!buf) die("malloc");
    uint64_t first = next_seq, seq = 0, last_timed = first - 1;
    pthread_barrier_wait(&start_line);
    for (long i = 0; i < count; i++) {
        uint64_t t = recv_one(buf, first + (uint64_t)i, &seq);
        uint64_t t1 = now_ns();
        /* Time each message once, when it is first seen (on the anchor a
           read may return the same last-written message again). */
        if (t != 0 && t <= t1 && seq >= first && seq != last_timed) {
            lat[timed++] = t1 - t;
            last_timed = seq;
        }
    }
    free(buf);
    return NULL;
}

int main(int argc, char **argv) {
    if (argc != 6) {
        fprintf(stderr, "usage: %s pingpong|stream WRITE_PATH READ_PATH SIZE COUNT\n", argv[0]);
        return 2;
    }
    const char *mode = argv[1];
    int stream = strcmp(mode, "stream") == 0;
    if (!stream && strcmp(mode, "pingpong") != 0) {
        fprintf(stderr, "client: mode must be pingpong or stream\n");
        return 2;
    }
    msg_size = strtoul(argv[4], NULL, 10);
    count = strtol(argv[5], NULL, 10);
    if (msg_size < 16 || msg_size > READ_BUF || count < 1) {
        fprintf(stderr, "client: SIZE must be 16..1048576 and COUNT >= 1\n");
        return 2;
    }
    check = strcmp(argv[2], argv[3]) != 0;

    wfd = open(argv[2], O_WRONLY);
    if (wfd < 0) die(argv[2]);
    rfd = open(argv[3], O_RDONLY);
    if (rfd < 0) die(argv[3]);

    char *msg = calloc(1, msg_size);
    char *buf = malloc(READ_BUF);
    lat = malloc(sizeof(uint64_t) * (size_t)count);
    if (!msg || !buf || !lat) die("malloc");

    for (int i = 0; i < WARMUP; i++) {
        send_one(msg, next_seq, NULL);
        recv_one(buf, next_seq, NULL);
        next_seq++;
    }

    uint64_t t_start, t_end;
    if (!stream) {
        t_start = now_ns();
        for (long i = 0; i < count; i++) {
            uint64_t t0;
            send_one(msg, next_seq, &t0);
            recv_one(buf, next_seq, NULL);
            lat[timed++] = now_ns() - t0;
            next_seq++;
        }
        t_end = now_ns();
    } else {
        pthread_t w, r;
        pthread_barrier_init(&start_line, NULL, 3);
        if (pthread_create(&r, NULL, reader_main, NULL) != 0) die("pthread_create");
        if (pthread_create(&w, NULL, writer_main, NULL) != 0) die("pthread_create");
        pthread_barrier_wait(&start_line);
        t_start = now_ns();
        pthread_join(w, NULL);
        pthread_join(r, NULL);
        t_end = now_ns();
        next_seq += (uint64_t)count;
    }

    qsort(lat, (size_t)timed, sizeof(uint64_t), cmp_u64);
    double secs = (double)(t_end - t_start) / 1e9;
    printf("mode=%s size=%zu count=%ld elapsed_s=%.3f msgs_per_s=%.0f p50_us=%.1f p99_us=%.1f max_us=%.1f timed=%ld\n",
           mode, msg_size, count, secs, (double)count / secs, pct_us(lat, timed, 0.50),
           pct_us(lat, timed, 0.99), timed ? (double)lat[timed - 1] / 1000.0 : 0.0, timed);
    close(wfd);
    close(rfd);
    return 0;
}
