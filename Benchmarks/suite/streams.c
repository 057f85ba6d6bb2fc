/*
 * streams: N independent streams through one mcastfs group, for the locking
 * measurement (docs/locking.md, Benchmarks/suite/locking.py).
 *
 *   streams N COUNT SIZE [-u | -s | -w] [-b BYTES] GROUP_DIR
 *
 * N writer threads: writer k opens GROUP_DIR/send and writes COUNT messages
 * of SIZE bytes (one write(2) each), whose payload begins with the topic
 * "stream.k " and then, at byte 16, its sequence number in that stream.
 * N reader threads: reader k opens GROUP_DIR/rk (the member of that name)
 * and reads (one read(2) per message, a BYTES buffer, default 4096) until
 * it has its share: COUNT when member rk subscribes to stream.k alone (the
 * filtered case), N x COUNT with -u (no filters: every member receives
 * every message). With -s, a group per stream instead: writer k writes to
 * GROUP_DIR.k/send and reader k reads GROUP_DIR.k/r0 (one lock per stream:
 * the ceiling of any lock design for one group). With -w, writer k writes
 * to its own member file GROUP_DIR/wk instead of send (a member whose
 * filter matches none of the streams): the same group and the same
 * deliveries, but no file shared by the writers. Every read is checked:
 * SIZE bytes, a stream this member may receive, and each stream's messages
 * in the order written.
 *
 * Output: one line of key=value pairs: deliveries/s over the wall time from
 * the start line until every reader has its share, and this process's CPU
 * time (every thread, user + system) per delivery.
 */
#include "benchutil.h"

#include <fcntl.h>
#include <pthread.h>
#include <sys/resource.h>

#define MAX_STREAMS 64
#define TOPIC_BYTES 16

static int nstreams, unfiltered, separate, own_files;
static long count;
static size_t msg_size, read_buf = 4096;
static int wfds[MAX_STREAMS], rfds[MAX_STREAMS];
static pthread_barrier_t start_line;

static void *writer_main(void *arg) {
    int k = (int)(intptr_t)arg;
    char *msg = calloc(1, msg_size);
    if (!msg) die("calloc");
    int n = snprintf(msg, TOPIC_BYTES, "stream.%d ", k);
    memset(msg + n, ' ', TOPIC_BYTES - (size_t)n);
    pthread_barrier_wait(&start_line);
    for (long i = 0; i < count; i++) {
        uint64_t seq = (uint64_t)i;
        memcpy(msg + TOPIC_BYTES, &seq, 8);
        ssize_t w = write(wfds[k], msg, msg_size);
        if (w < 0) die("write");
        if ((size_t)w != msg_size) {
            fprintf(stderr, "streams: short write %zd of %zu\n", w, msg_size);
            exit(1);
        }
    }
    free(msg);
    return NULL;
}

static void *reader_main(void *arg) {
    int k = (int)(intptr_t)arg;
    char *buf = malloc(read_buf);
    if (!buf) die("malloc");
    long share = unfiltered ? count * nstreams : count;
    uint64_t next[MAX_STREAMS] = {0};
    pthread_barrier_wait(&start_line);
    for (long i = 0; i < share; i++) {
        ssize_t n = read(rfds[k], buf, read_buf);
        if (n < 0) die("read");
        int stream = -1;
        if ((size_t)n == msg_size && memcmp(buf, "stream.", 7) == 0) stream = atoi(buf + 7);
        if (stream < 0 || stream >= nstreams || (!unfiltered && stream != k)) {
            fprintf(stderr, "streams: reader %d read %zd bytes of stream %d\n", k, n, stream);
            exit(1);
        }
        uint64_t seq;
        memcpy(&seq, buf + TOPIC_BYTES, 8);
        if (seq != next[stream]) {
            fprintf(stderr, "streams: reader %d: stream %d message %llu, expected %llu\n", k, stream,
                    (unsigned long long)seq, (unsigned long long)next[stream]);
            exit(1);
        }
        next[stream]++;
    }
    free(buf);
    return NULL;
}

static double cpu_us(const struct rusage *a, const struct rusage *b) {
    double ua = (double)a->ru_utime.tv_sec * 1e6 + (double)a->ru_utime.tv_usec;
    double sa = (double)a->ru_stime.tv_sec * 1e6 + (double)a->ru_stime.tv_usec;
    double ub = (double)b->ru_utime.tv_sec * 1e6 + (double)b->ru_utime.tv_usec;
    double sb = (double)b->ru_stime.tv_sec * 1e6 + (double)b->ru_stime.tv_usec;
    return (ub + sb) - (ua + sa);
}

int main(int argc, char **argv) {
    int first = 4;
    if (argc < 5) {
        fprintf(stderr, "usage: %s N COUNT SIZE [-u] [-b BYTES] GROUP_DIR\n", argv[0]);
        return 2;
    }
    nstreams = atoi(argv[1]);
    count = strtol(argv[2], NULL, 10);
    msg_size = strtoul(argv[3], NULL, 10);
    for (; first < argc - 1 && argv[first][0] == '-'; first++) {
        if (strcmp(argv[first], "-u") == 0) unfiltered = 1;
        else if (strcmp(argv[first], "-s") == 0) separate = 1;
        else if (strcmp(argv[first], "-w") == 0) own_files = 1;
        else if (strcmp(argv[first], "-b") == 0 && first + 1 < argc - 1) read_buf = strtoul(argv[++first], NULL, 10);
        else { fprintf(stderr, "streams: bad option %s\n", argv[first]); return 2; }
    }
    if (nstreams < 1 || nstreams > MAX_STREAMS || count < 1 || msg_size < TOPIC_BYTES + 8 || read_buf < msg_size ||
        first != argc - 1 || unfiltered + separate + own_files > 1) {
        fprintf(stderr, "streams: N 1..64, COUNT >= 1, SIZE >= 24, BYTES >= SIZE, one of -u -s -w, then GROUP_DIR\n");
        return 2;
    }
    const char *group = argv[first];
    char path[4096];
    for (int k = 0; k < nstreams; k++) {
        if (separate) snprintf(path, sizeof path, "%s.%d/send", group, k);
        else if (own_files) snprintf(path, sizeof path, "%s/w%d", group, k);
        else snprintf(path, sizeof path, "%s/send", group);
        if ((wfds[k] = open(path, O_WRONLY)) < 0) die(path);
        if (separate) snprintf(path, sizeof path, "%s.%d/r0", group, k);
        else snprintf(path, sizeof path, "%s/r%d", group, k);
        if ((rfds[k] = open(path, O_RDONLY)) < 0) die(path);
    }
    pthread_t th[2 * MAX_STREAMS];
    pthread_barrier_init(&start_line, NULL, (unsigned)(2 * nstreams + 1));
    for (int k = 0; k < nstreams; k++) {
        if (pthread_create(&th[2 * k], NULL, reader_main, (void *)(intptr_t)k) != 0) die("pthread_create");
        if (pthread_create(&th[2 * k + 1], NULL, writer_main, (void *)(intptr_t)k) != 0) die("pthread_create");
    }
    struct rusage usage_start, usage_end;
    pthread_barrier_wait(&start_line);
    uint64_t t_start = now_ns();
    getrusage(RUSAGE_SELF, &usage_start);
    for (int k = 0; k < 2 * nstreams; k++) pthread_join(th[k], NULL);
    uint64_t t_end = now_ns();
    getrusage(RUSAGE_SELF, &usage_end);
    double secs = (double)(t_end - t_start) / 1e9;
    double deliveries = (double)count * nstreams * (unfiltered ? nstreams : 1);
    printf("n=%d filtered=%d separate=%d own_files=%d count=%ld size=%zu elapsed_s=%.3f deliveries=%.0f deliveries_per_s=%.0f "
           "client_cpu_us_per_delivery=%.2f read_buf=%zu\n",
           nstreams, !unfiltered, separate, own_files, count, msg_size, secs, deliveries, deliveries / secs,
           cpu_us(&usage_start, &usage_end) / deliveries, read_buf);
    return 0;
}
