/*
 * anchors: the message-passing systems the framed view will be compared
 * with (Benchmarks/README.md, Scenario 1d): libzmq PUB/SUB
 * over ipc://, and Unix datagram socket pairs sent and received in batches
 * with sendmmsg/recvmmsg. One writer thread, N reader threads, the same
 * message layout, warm-up, timing and output as fanout.c.
 *
 *   anchors MODE zmq  SIZE COUNT N IPC_PATH
 *   anchors stream mmsg SIZE COUNT N BATCH
 *
 * zmq   one PUB socket bound to ipc://IPC_PATH, one SUB socket per reader
 *       thread (subscribed to everything), one context with libzmq's default
 *       single I/O thread. SNDHWM = RCVHWM = 0: PUB/SUB has no flow control
 *       (at a finite high-water mark it drops), so with no limit nothing is
 *       lost and a stream run measures the rate at which every subscriber
 *       gets every message, the promise mcastfs makes. Before the warm-up the
 *       writer publishes a join message every millisecond until every
 *       subscriber has seen one (a SUB that connects late misses what came
 *       before: the slow-joiner problem).
 *         stream: the writer sends COUNT messages back to back; each reader
 *                 receives COUNT. msgs/s = COUNT / wall time until all done.
 *         paced:  one message in flight: the writer sends message i and waits
 *                 (futex) until all N readers have it. Gives p50/p99 of
 *                 send -> receive with the readers waiting in zmq_recv.
 * mmsg  N socketpair(AF_UNIX, SOCK_DGRAM); the writer sendmmsg(2)s BATCH
 *       messages at a time to each of the N sockets, each reader
 *       recvmmsg(2)s up to BATCH at a time (MSG_WAITFORONE: it waits for the
 *       first and takes what is queued). Stream mode only: batching needs
 *       messages in flight. A socket pair's queue is bounded by the sender's
 *       SO_SNDBUF (212,992 bytes: ~278 datagrams of 64 B, 26 of 4 KiB), so a
 *       full batch can wait in sendmmsg; net.unix.max_dgram_qlen does not
 *       apply between the two ends of a pair.
 *
 * Every receive is checked: exactly SIZE bytes and the next sequence number.
 * Output: one line of key=value pairs, the keys of fanout.c plus batch=.
 */
#include "benchutil.h"

#include <pthread.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <zmq.h>

#define WARMUP 50
#define MAX_READERS 64
#define MAX_BATCH 1024
#define JOIN_SEQ UINT64_MAX

enum mode { STREAM, PACED };
enum sys { ZMQ, MMSG };

static enum mode mode;
static enum sys sys;
static size_t msg_size;
static long count;
static int nreaders, batch = 1;
static const char *ipc_path;

static void *zctx, *zpub;
static int wfds[MAX_READERS], rfds[MAX_READERS];

static _Atomic uint32_t acks;   /* reads completed (paced and warm-up) */
static _Atomic uint32_t joined; /* zmq: subscribers that have seen a join message */
static pthread_barrier_t start_line, timed_line;
static uint64_t *lat[MAX_READERS];

static double cpu_us(const struct rusage *a, const struct rusage *b) {
    double ua = (double)a->ru_utime.tv_sec * 1e6 + (double)a->ru_utime.tv_usec;
    double sa = (double)a->ru_stime.tv_sec * 1e6 + (double)a->ru_stime.tv_usec;
    double ub = (double)b->ru_utime.tv_sec * 1e6 + (double)b->ru_utime.tv_usec;
    double sb = (double)b->ru_stime.tv_sec * 1e6 + (double)b->ru_stime.tv_usec;
    return (ub + sb) - (ua + sa);
}

static void zdie(const char *what) {
    fprintf(stderr, "anchors: %s: %s\n", what, zmq_strerror(zmq_errno()));
    exit(1);
}

static void stamp(char *msg, uint64_t seq) {
    uint64_t t = now_ns();
    memcpy(msg, &seq, 8);
    memcpy(msg + 8, &t, 8);
}

static void zsend(char *msg, uint64_t seq) {
    stamp(msg, seq);
    if (zmq_send(zpub, msg, msg_size, 0) != (int)msg_size) zdie("zmq_send");
}

/* Sends messages first .. first+n-1 to every reader, n <= batch. */
static void msend(char **msgs, struct mmsghdr *hdr, uint64_t first, int n) {
    for (int j = 0; j < n; j++) stamp(msgs[j], first + (uint64_t)j);
    for (int k = 0; k < nreaders; k++) {
        int sent = 0;
        while (sent < n) {
            int r = sendmmsg(wfds[k], hdr + sent, (unsigned)(n - sent), 0);
            if (r < 0) {
                if (errno == EINTR) continue;
                die("sendmmsg");
            }
            sent += r;
        }
    }
}

/* Checks one received message; records its latency if timed. */
static void got(int r, const char *buf, size_t len, uint64_t expect, uint64_t t1) {
    uint64_t s, t;
    memcpy(&s, buf, 8);
    memcpy(&t, buf + 8, 8);
    if (len != msg_size || s != expect) {
        fprintf(stderr, "anchors: reader %d got %zu bytes seq %llu, expected %zu bytes seq %llu\n", r, len,
                (unsigned long long)s, msg_size, (unsigned long long)expect);
        exit(1);
    }
    if (s >= WARMUP && t <= t1) lat[r][s - WARMUP] = t1 - t;
}

static void ack(long i) {
    uint32_t v = atomic_fetch_add(&acks, 1) + 1;
    if (v == (uint32_t)nreaders * (uint32_t)(i + 1)) futex_wake(&acks);
}

static void *zreader(void *arg) {
    int r = (int)(intptr_t)arg, zero = 0;
    void *sub = zmq_socket(zctx, ZMQ_SUB);
    if (!sub) zdie("zmq_socket");
    if (zmq_setsockopt(sub, ZMQ_RCVHWM, &zero, sizeof zero) != 0) zdie("ZMQ_RCVHWM");
    if (zmq_setsockopt(sub, ZMQ_SUBSCRIBE, "", 0) != 0) zdie("ZMQ_SUBSCRIBE");
    char ep[512];
    snprintf(ep, sizeof ep, "ipc://%s", ipc_path);
    if (zmq_connect(sub, ep) != 0) zdie("zmq_connect");
    char *buf = malloc(msg_size + 1);
    if (!buf) die("malloc");
    pthread_barrier_wait(&start_line);
    int seen_join = 0, timed = 0;
    for (long i = 0; i < WARMUP + count;) {
        if (i == WARMUP && !timed) { pthread_barrier_wait(&timed_line); timed = 1; }
        int n = zmq_recv(sub, buf, msg_size + 1, 0);
        uint64_t t1 = now_ns();
        if (n < 0) {
            if (zmq_errno() == EINTR) continue;
            zdie("zmq_recv");
        }
        uint64_t s;
        memcpy(&s, buf, 8);
        if (s == JOIN_SEQ) {
            if (!seen_join) { seen_join = 1; atomic_fetch_add(&joined, 1); futex_wake(&joined); }
            continue;
        }
        got(r, buf, (size_t)n, (uint64_t)i, t1);
        if (i < WARMUP || mode == PACED) ack(i);
        i++;
    }
    free(buf);
    zmq_close(sub);
    return NULL;
}

static void *mreader(void *arg) {
    int r = (int)(intptr_t)arg;
    struct mmsghdr *hdr = calloc((size_t)batch, sizeof *hdr);
    struct iovec *iov = calloc((size_t)batch, sizeof *iov);
    char *bufs = malloc((size_t)batch * (msg_size + 1));
    if (!hdr || !iov || !bufs) die("malloc");
    for (int j = 0; j < batch; j++) {
        iov[j].iov_base = bufs + (size_t)j * (msg_size + 1);
        iov[j].iov_len = msg_size + 1;
        hdr[j].msg_hdr.msg_iov = &iov[j];
        hdr[j].msg_hdr.msg_iovlen = 1;
    }
    pthread_barrier_wait(&start_line);
    int timed = 0;
    for (long i = 0; i < WARMUP + count;) {
        if (i == WARMUP && !timed) { pthread_barrier_wait(&timed_line); timed = 1; }
        /* warm-up messages come one at a time and are acked one by one */
        unsigned want = i < WARMUP ? 1 : (unsigned)batch;
        int n = recvmmsg(rfds[r], hdr, want, MSG_WAITFORONE, NULL);
        uint64_t t1 = now_ns();
        if (n < 0) {
            if (errno == EINTR) continue;
            die("recvmmsg");
        }
        for (int j = 0; j < n; j++, i++) {
            got(r, iov[j].iov_base, hdr[j].msg_len, (uint64_t)i, t1);
            if (i < WARMUP) ack(i);
        }
    }
    free(bufs);
    free(iov);
    free(hdr);
    return NULL;
}

int main(int argc, char **argv) {
    if (argc != 7) {
        fprintf(stderr, "usage: %s stream|paced zmq SIZE COUNT N IPC_PATH\n"
                        "       %s stream mmsg SIZE COUNT N BATCH\n", argv[0], argv[0]);
        return 2;
    }
    if (strcmp(argv[1], "stream") == 0) mode = STREAM;
    else if (strcmp(argv[1], "paced") == 0) mode = PACED;
    else { fprintf(stderr, "anchors: bad mode\n"); return 2; }
    if (strcmp(argv[2], "zmq") == 0) sys = ZMQ;
    else if (strcmp(argv[2], "mmsg") == 0) sys = MMSG;
    else { fprintf(stderr, "anchors: bad system\n"); return 2; }
    msg_size = strtoul(argv[3], NULL, 10);
    count = strtol(argv[4], NULL, 10);
    nreaders = atoi(argv[5]);
    if (sys == ZMQ) ipc_path = argv[6];
    else batch = atoi(argv[6]);
    if (msg_size < 16 || msg_size > (1u << 20) || count < 1 || nreaders < 1 || nreaders > MAX_READERS ||
        batch < 1 || batch > MAX_BATCH || (sys == MMSG && mode != STREAM)) {
        fprintf(stderr, "anchors: SIZE 16..1048576, COUNT >= 1, N 1..64, BATCH 1..1024; mmsg: stream only\n");
        return 2;
    }
    for (int k = 0; k < nreaders; k++) {
        lat[k] = calloc((size_t)count, sizeof(uint64_t));
        if (!lat[k]) die("calloc");
    }

    pthread_t th[MAX_READERS];
    pthread_barrier_init(&start_line, NULL, (unsigned)nreaders + 1);
    pthread_barrier_init(&timed_line, NULL, (unsigned)nreaders + 1);
    char **msgs = calloc((size_t)batch, sizeof *msgs);
    struct mmsghdr *hdr = calloc((size_t)batch, sizeof *hdr);
    struct iovec *iov = calloc((size_t)batch, sizeof *iov);
    if (!msgs || !hdr || !iov) die("calloc");
    for (int j = 0; j < batch; j++) {
        if (!(msgs[j] = calloc(1, msg_size))) die("calloc");
        iov[j] = (struct iovec){msgs[j], msg_size};
        hdr[j].msg_hdr.msg_iov = &iov[j];
        hdr[j].msg_hdr.msg_iovlen = 1;
    }
    if (sys == ZMQ) {
        int zero = 0;
        char ep[512];
        snprintf(ep, sizeof ep, "ipc://%s", ipc_path);
        if (!(zctx = zmq_ctx_new())) zdie("zmq_ctx_new");
        if (!(zpub = zmq_socket(zctx, ZMQ_PUB))) zdie("zmq_socket");
        if (zmq_setsockopt(zpub, ZMQ_SNDHWM, &zero, sizeof zero) != 0) zdie("ZMQ_SNDHWM");
        if (zmq_setsockopt(zpub, ZMQ_LINGER, &zero, sizeof zero) != 0) zdie("ZMQ_LINGER");
        if (zmq_bind(zpub, ep) != 0) zdie("zmq_bind");
    } else {
        for (int k = 0; k < nreaders; k++) {
            int sv[2];
            if (socketpair(AF_UNIX, SOCK_DGRAM, 0, sv) != 0) die("socketpair");
            wfds[k] = sv[0];
            rfds[k] = sv[1];
        }
    }
    for (int k = 0; k < nreaders; k++)
        if (pthread_create(&th[k], NULL, sys == ZMQ ? zreader : mreader, (void *)(intptr_t)k) != 0)
            die("pthread_create");
    pthread_barrier_wait(&start_line);
    if (sys == ZMQ) {
        while (atomic_load(&joined) < (uint32_t)nreaders) {
            zsend(msgs[0], JOIN_SEQ);
            usleep(1000);
        }
    }
    for (long i = 0; i < WARMUP; i++) {
        if (sys == ZMQ) zsend(msgs[0], (uint64_t)i);
        else msend(msgs, hdr, (uint64_t)i, 1);
        wait_at_least(&acks, (uint32_t)nreaders * (uint32_t)(i + 1));
    }
    pthread_barrier_wait(&timed_line);
    struct rusage usage_start, usage_end;
    uint64_t t_start = now_ns();
    getrusage(RUSAGE_SELF, &usage_start);
    for (long i = WARMUP; i < WARMUP + count;) {
        if (sys == ZMQ) {
            zsend(msgs[0], (uint64_t)i);
            if (mode == PACED) wait_at_least(&acks, (uint32_t)nreaders * (uint32_t)(i + 1));
            i++;
        } else {
            int n = WARMUP + count - i < batch ? (int)(WARMUP + count - i) : batch;
            msend(msgs, hdr, (uint64_t)i, n);
            i += n;
        }
    }
    for (int k = 0; k < nreaders; k++) pthread_join(th[k], NULL);
    uint64_t t_end = now_ns();
    getrusage(RUSAGE_SELF, &usage_end);
    if (sys == ZMQ) {
        zmq_close(zpub);
        zmq_ctx_term(zctx);
    }

    struct latencies l = collect_latencies(lat, nreaders, count);
    uint64_t *all = l.all, *last = l.last;
    long nall = l.nall, nlast = l.nlast;
    double secs = (double)(t_end - t_start) / 1e9;
    printf("mode=%s system=%s size=%zu n=%d count=%ld elapsed_s=%.3f msgs_per_s=%.0f deliveries_per_s=%.0f "
           "p50_us=%.1f p99_us=%.1f max_us=%.1f timed=%ld last_p50_us=%.1f last_p99_us=%.1f "
           "client_cpu_us_per_msg=%.2f warmup=%d batch=%d\n",
           mode == STREAM ? "stream" : "paced", sys == ZMQ ? "zmq" : "mmsg", msg_size, nreaders, count, secs,
           (double)count / secs, (double)count * nreaders / secs, pct_us(all, nall, 0.50),
           pct_us(all, nall, 0.99), nall ? (double)all[nall - 1] / 1000.0 : 0.0, nall,
           pct_us(last, nlast, 0.50), pct_us(last, nlast, 0.99), cpu_us(&usage_start, &usage_end) / (double)count,
           WARMUP, batch);
    return 0;
}
