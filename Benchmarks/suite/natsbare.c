/*
 * natsbare: the bare libnats anchor of the cluster benchmark (issue 13,
 * Benchmarks/README.md, "Scenario 5"). It does on NATS JetStream what
 * mcastfs's cluster path does (docs/cluster.md), without mcastfs: one
 * writer publishes with acks into a group's stream, N nodes each consume it
 * through their own durable pull consumer on their own connection, in
 * stream order, acking every message.
 *
 *   natsbare stream|paced URL SIZE COUNT N [-b BATCH] [-w WINDOW] [-k BACKLOG] [-B] [-F] [-s GAP_US]
 *
 * The stream (made for the run, deleted after it) is configured as a
 * group's: interest retention, discard new, max_msgs BACKLOG (default
 * 65536, the default cluster_backlog), file storage, one replica,
 * duplicate window 2 min. Consumer k (one per reader, all made before the
 * first publish): durable, deliver from the stream's next sequence,
 * explicit acks, ack wait 1 h, max_ack_pending min(BACKLOG, 1024), inactive
 * threshold 5 s, no filter.
 *
 * Every message carries Nats-Msg-Id (writer.<boot>.<i>) and an `Mcastfs`
 * header of the size a node writes, so the bytes on the wire are a group's;
 * bytes 0..7 of the payload hold i, 8..15 CLOCK_MONOTONIC (ns) just before
 * it was published (one machine, one clock).
 *
 * stream  COUNT messages as fast as the stream takes them. Default: batches
 *         of BATCH (64) published asynchronously back to back, each but the
 *         first with Nats-Expected-Last-Msg-Id = the previous one's id, and
 *         the next batch only once every PubAck of this one is in: what one
 *         framed write of BATCH messages does. A batch cut by a full stream
 *         ("maximum messages exceeded", and the chain refusing the rest) goes
 *         on from the first refused message after a short sleep (100 µs,
 *         doubling up to 16 ms while nothing gets in), as a framed writer
 *         re-sends the rest of a short write once there is room. -b 1: one message per
 *         publish-and-wait, what one record-view write does.
 *         -w WINDOW instead: libnats's own pipelining, up to WINDOW
 *         publishes awaiting their PubAck at any moment, every message
 *         chained to the one before; after a refusal it waits for the
 *         PubAcks in flight and goes on from the first refused.
 *         msgs/s = COUNT / wall time until every reader has them all.
 * paced   one message in flight: the writer publishes message i
 *         synchronously (js_PublishMsg, waiting for its PubAck), then waits
 *         (futex) until all N readers have it. Latency = the reader's fetch
 *         returning - just before the publish: publish-to-consume.
 *         -s GAP_US: the writer sleeps GAP_US µs after each message has
 *         reached every reader, so that each reader's next pull request is
 *         waiting at the server when the message is stored (without it the
 *         next message is published while the readers' pulls are on their
 *         way: see -B).
 *
 * A reader (one thread, its own connection) is a node's delivery thread:
 * natsSubscription_Fetch(min(256, max_ack_pending) messages, 1 s), in a
 * loop, or of one message when the last one fetched said none were pending
 * (its metadata's NumPending), as a node does (docs/cluster.md): a pull for
 * one ends with the message, a pull for more with a status message after
 * it. -F: always the whole batch. (nats.c 3.4's fetch asks with no_wait and an expiry: nats-server
 * 2.9.10 answers such a pull as soon as it has delivered something and no
 * more is pending, but not while the consumer is at max_ack_pending
 * (consumer.go, processWaiting(err != errMaxAckPending)); a pull for more
 * than max_ack_pending then holds what it got, unacked, until the 1 s
 * expiry, and with a full stream every writer waits that long.) Each message is
 * checked (SIZE bytes, the writer's next i, stream sequence one more than
 * the previous one), timed when the fetch returns, and acked (+ACK, not
 * waiting for an answer).
 *
 * Every connection sends at once (natsOptions_SetSendAsap). -B: nats.c's
 * default instead, whose flusher thread waits 1 ms for more to write before
 * it writes what a publish, pull request or ack buffered (conn.c _flusher):
 * up to a millisecond on every hop that is not a request (a synchronous
 * publish flushes itself).
 *
 * 50 paced messages warm up first (synchronous publishes). Output: one line
 * of key=value pairs, the keys of fanout.c and framed.c plus batch=,
 * window=, send_asap=, refused_full= and refused_chain= (publishes the stream refused
 * as full, and by the chain after such a refusal), fetches= (pull requests
 * answered with messages, all readers, timed part), msgs_per_fetch= and
 * fetch_batch=.
 */
#include "benchutil.h"
#include "natsbench.h"

#include <limits.h>
#include <nats/nats.h>
#include <pthread.h>
#include <sys/resource.h>

#define WARMUP 50
#define MAX_READERS 64
#define FETCH_BATCH 256
#define FETCH_WAIT_MS 1000
#define MAX_ACK_PENDING 1024
#define ID_LEN 48

enum mode { STREAM, PACED };

static enum mode mode;
static const char *url;
static size_t msg_size;
static long count;
static int nreaders, batch = 64, window, send_asap = 1, gap_us, fixed_fetch;
static int64_t backlog = 65536, max_ack_pending, fetch_batch;
static char stream_name[64], subject[64], boot[16], mcastfs_header[96];

static _Atomic uint32_t received; /* messages received, summed over readers (paced and warm-up) */
static _Atomic uint32_t acked;    /* asynchronous publishes answered (PubAck or refusal) */
static _Atomic uint32_t ack_goal; /* the writer sleeps until `acked` reaches it */
static _Atomic long first_refused = LONG_MAX;
static _Atomic long refused_full, refused_chain, fetches_timed;
static pthread_barrier_t start_line, timed_line;
static uint64_t *lat[MAX_READERS];

struct reader {
    int k;
    natsConnection *nc;
    jsCtx *js;
    natsSubscription *sub;
    char consumer[64];
};

static void nats_die(const char *what, natsStatus s, jsErrCode code) {
    const char *text = nats_GetLastError(NULL);
    fprintf(stderr, "natsbare: %s: %s (err_code %d)%s%s\n", what, natsStatus_GetText(s), (int)code,
            text ? ": " : "", text ? text : "");
    exit(1);
}

static void fail(const char *fmt, long a, long b) {
    fprintf(stderr, "natsbare: ");
    fprintf(stderr, fmt, a, b);
    fputc('\n', stderr);
    exit(1);
}

static double cpu_us(const struct rusage *a, const struct rusage *b) {
    double ua = (double)a->ru_utime.tv_sec * 1e6 + (double)a->ru_utime.tv_usec;
    double sa = (double)a->ru_stime.tv_sec * 1e6 + (double)a->ru_stime.tv_usec;
    double ub = (double)b->ru_utime.tv_sec * 1e6 + (double)b->ru_utime.tv_usec;
    double sb = (double)b->ru_stime.tv_sec * 1e6 + (double)b->ru_stime.tv_usec;
    return (ub + sb) - (ua + sa);
}

static void msg_id(char *out, long i) { snprintf(out, ID_LEN, "writer.%s.%ld", boot, i); }

static natsConnection *connect_to(const char *name) {
    natsOptions *o;
    natsConnection *nc;
    natsStatus s = natsOptions_Create(&o);
    if (s == NATS_OK) s = natsOptions_SetURL(o, url);
    if (s == NATS_OK) s = natsOptions_SetName(o, name);
    if (s == NATS_OK) s = natsOptions_SetNoRandomize(o, true);
    if (s == NATS_OK) s = natsOptions_SetSendAsap(o, send_asap);
    if (s == NATS_OK) s = natsConnection_Connect(&nc, o);
    if (s != NATS_OK) nats_die(url, s, 0);
    natsOptions_Destroy(o);
    return nc;
}

/* Message i, stamped now. */
static natsMsg *make_msg(char *payload, long i) {
    natsMsg *m;
    uint64_t seq = (uint64_t)i, t = now_ns();
    memcpy(payload, &seq, 8);
    memcpy(payload + 8, &t, 8);
    natsStatus s = natsMsg_Create(&m, subject, NULL, payload, (int)msg_size);
    if (s == NATS_OK) s = natsMsgHeader_Set(m, "Mcastfs", mcastfs_header);
    if (s != NATS_OK) nats_die("natsMsg_Create", s, 0);
    return m;
}

static long msg_index(natsMsg *m) {
    uint64_t i;
    if (natsMsg_GetDataLength(m) < 8) return -1;
    memcpy(&i, natsMsg_GetData(m), 8);
    return (long)i;
}

/* nats.c's PubAck thread: counts answers, notes the first refused message. */
static void on_puback(jsCtx *js, natsMsg *m, jsPubAck *pa, jsPubAckErr *pae, void *closure) {
    (void)js, (void)pa, (void)closure;
    if (pae != NULL) {
        long i = msg_index(m);
        if (pae->ErrCode == JSStreamStoreFailedErr) {
            atomic_fetch_add(&refused_full, 1);
        } else if (pae->ErrCode == JSStreamWrongLastMsgIDErr) {
            atomic_fetch_add(&refused_chain, 1);
        } else {
            fprintf(stderr, "natsbare: publish of message %ld: %s (err_code %d) %s\n", i, natsStatus_GetText(pae->Err),
                    (int)pae->ErrCode, pae->ErrText ? pae->ErrText : "");
            exit(1);
        }
        long seen = atomic_load(&first_refused);
        while (i < seen && !atomic_compare_exchange_weak(&first_refused, &seen, i)) {
        }
    }
    natsMsg_Destroy(m);
    /* Only the answer that reaches the goal wakes the writer: the writer
     * stores the goal before it looks at `acked`, and this adds to `acked`
     * before it looks at the goal, so one of the two sees the other. */
    uint32_t v = atomic_fetch_add(&acked, 1) + 1;
    if (v == atomic_load(&ack_goal)) futex_wake(&acked);
}

static void wait_acks(uint32_t goal) {
    atomic_store(&ack_goal, goal);
    wait_at_least(&acked, goal);
}

static void publish_sync(jsCtx *js, char *payload, long i) {
    char id[ID_LEN];
    msg_id(id, i);
    jsPubOptions po;
    jsPubOptions_Init(&po);
    po.MsgId = id;
    natsMsg *m = make_msg(payload, i);
    jsPubAck *pa = NULL;
    jsErrCode code = 0;
    natsStatus s = js_PublishMsg(&pa, js, m, &po, &code);
    if (s != NATS_OK) nats_die("js_PublishMsg", s, code);
    jsPubAck_Destroy(pa);
    natsMsg_Destroy(m);
}

static void publish_async(jsCtx *js, char *payload, long i, int chained, uint32_t *sent) {
    char id[ID_LEN], last[ID_LEN];
    msg_id(id, i);
    jsPubOptions po;
    jsPubOptions_Init(&po);
    po.MsgId = id;
    if (chained) {
        msg_id(last, i - 1);
        po.ExpectLastMsgId = last;
    }
    natsMsg *m = make_msg(payload, i);
    natsStatus s = js_PublishMsgAsync(js, &m, &po);
    if (s != NATS_OK) nats_die("js_PublishMsgAsync", s, 0);
    natsMsg_Destroy(m); /* NULL once nats.c owns it */
    ++*sent;
}

/* After every answer is in: the first refused message (the stream stored
 * everything before it), or -1. A refusal sleeps first, as a writer waits
 * for room: 100 µs after a batch that stored something (from = where it
 * began), doubling up to 16 ms while nothing gets in. */
static long take_refusal(long from, int *backoff_us) {
    long fr = atomic_exchange(&first_refused, LONG_MAX);
    if (fr == LONG_MAX) return -1;
    if (fr > from) *backoff_us = 100;
    usleep((useconds_t)*backoff_us);
    if (*backoff_us < 16000) *backoff_us *= 2;
    return fr;
}

static void stream_batches(jsCtx *js, char *payload) {
    uint32_t sent = atomic_load(&acked);
    int backoff = 100;
    for (long i = WARMUP; i < WARMUP + count;) {
        long n = WARMUP + count - i < batch ? WARMUP + count - i : batch;
        for (long j = 0; j < n; j++) publish_async(js, payload, i + j, j > 0, &sent);
        wait_acks(sent);
        long fr = take_refusal(i, &backoff);
        i = fr >= 0 ? fr : i + n;
    }
}

static void stream_window(jsCtx *js, char *payload) {
    uint32_t sent = atomic_load(&acked);
    int backoff = 100;
    long i = WARMUP, from = WARMUP;
    for (;;) {
        while (i < WARMUP + count && atomic_load(&first_refused) == LONG_MAX) {
            publish_async(js, payload, i, i > WARMUP, &sent);
            i++;
        }
        wait_acks(sent);
        long fr = take_refusal(from, &backoff);
        if (fr < 0 && i == WARMUP + count) return;
        if (fr >= 0) i = from = fr;
    }
}

static void *reader_main(void *arg) {
    struct reader *rd = arg;
    long i = 0, fetches = 0;
    int timed = 0;
    uint64_t last_seq = 0;
    int more = 0; /* the last message fetched said more were pending */
    pthread_barrier_wait(&start_line);
    while (i < WARMUP + count) {
        /* warm-up is paced, so no fetch returns warm-up and timed messages together */
        if (i == WARMUP && !timed) {
            pthread_barrier_wait(&timed_line);
            timed = 1;
        }
        natsMsgList list;
        natsStatus s = natsSubscription_Fetch(&list, rd->sub, more || fixed_fetch ? (int)fetch_batch : 1, FETCH_WAIT_MS, NULL);
        uint64_t t1 = now_ns();
        if (s == NATS_TIMEOUT) continue;
        if (s != NATS_OK) nats_die("fetch", s, 0);
        if (i >= WARMUP) fetches++;
        for (int j = 0; j < list.Count; j++) {
            natsMsg *m = list.Msgs[j];
            if ((size_t)natsMsg_GetDataLength(m) != msg_size)
                fail("message of %ld bytes, expected %ld", (long)natsMsg_GetDataLength(m), (long)msg_size);
            uint64_t seq, t;
            memcpy(&seq, natsMsg_GetData(m), 8);
            memcpy(&t, natsMsg_GetData(m) + 8, 8);
            if (seq != (uint64_t)i) fail("message %ld where %ld was next", (long)seq, i);
            jsMsgMetaData *md;
            if ((s = natsMsg_GetMetaData(&md, m)) != NATS_OK) nats_die("natsMsg_GetMetaData", s, 0);
            if (last_seq && md->Sequence.Stream != last_seq + 1)
                fail("stream sequence %ld after %ld", (long)md->Sequence.Stream, (long)last_seq);
            last_seq = md->Sequence.Stream;
            more = md->NumPending > 0;
            jsMsgMetaData_Destroy(md);
            if ((s = natsMsg_Ack(m, NULL)) != NATS_OK) nats_die("natsMsg_Ack", s, 0);
            if (i >= WARMUP && t <= t1) lat[rd->k][i - WARMUP] = t1 - t;
            if (i < WARMUP || mode == PACED) {
                uint32_t v = atomic_fetch_add(&received, 1) + 1;
                if (v == (uint32_t)nreaders * (uint32_t)(i + 1)) futex_wake(&received);
            }
            i++;
        }
        natsMsgList_Destroy(&list);
    }
    atomic_fetch_add(&fetches_timed, fetches);
    return NULL;
}

static void make_stream(jsCtx *js, struct reader *readers) {
    const char *subjects[1] = {subject};
    jsStreamConfig sc;
    group_stream_config(&sc, stream_name, subjects, backlog);
    jsStreamInfo *si = NULL;
    jsErrCode code = 0;
    natsStatus s = js_AddStream(&si, js, &sc, NULL, &code);
    if (s != NATS_OK) nats_die("js_AddStream", s, code);
    uint64_t start = si->State.LastSeq + 1;
    jsStreamInfo_Destroy(si);
    for (int k = 0; k < nreaders; k++) {
        struct reader *rd = &readers[k];
        snprintf(rd->consumer, sizeof rd->consumer, "n%d_%s_1", k + 1, boot);
        jsConsumerConfig cc;
        node_consumer_config(&cc, rd->consumer, start, max_ack_pending);
        jsConsumerInfo *ci = NULL;
        if ((s = js_AddConsumer(&ci, js, stream_name, &cc, NULL, &code)) != NATS_OK) nats_die("js_AddConsumer", s, code);
        jsConsumerInfo_Destroy(ci);
    }
}

static void open_reader(struct reader *rd) {
    char name[32];
    snprintf(name, sizeof name, "natsbare-n%d", rd->k + 1);
    rd->nc = connect_to(name);
    natsStatus s = natsConnection_JetStream(&rd->js, rd->nc, NULL);
    if (s != NATS_OK) nats_die("natsConnection_JetStream", s, 0);
    jsSubOptions so;
    jsSubOptions_Init(&so);
    so.Stream = stream_name;
    so.Consumer = rd->consumer;
    jsErrCode code = 0;
    if ((s = js_PullSubscribe(&rd->sub, rd->js, subject, NULL, NULL, &so, &code)) != NATS_OK)
        nats_die("js_PullSubscribe", s, code);
}

static void usage(void) {
    fprintf(stderr, "usage: natsbare stream|paced URL SIZE COUNT N [-b BATCH] [-w WINDOW] [-k BACKLOG] [-B] [-F] [-s GAP_US]\n");
    exit(2);
}

int main(int argc, char **argv) {
    if (argc < 6) usage();
    if (strcmp(argv[1], "stream") == 0) mode = STREAM;
    else if (strcmp(argv[1], "paced") == 0) mode = PACED;
    else usage();
    url = argv[2];
    msg_size = strtoul(argv[3], NULL, 10);
    count = strtol(argv[4], NULL, 10);
    nreaders = atoi(argv[5]);
    for (int a = 6; a < argc; a++) {
        if (strcmp(argv[a], "-B") == 0) send_asap = 0;
        else if (strcmp(argv[a], "-F") == 0) fixed_fetch = 1;
        else if (a + 1 < argc && strcmp(argv[a], "-s") == 0) gap_us = atoi(argv[++a]);
        else if (a + 1 >= argc) usage();
        else if (strcmp(argv[a], "-b") == 0) batch = atoi(argv[++a]);
        else if (strcmp(argv[a], "-w") == 0) window = atoi(argv[++a]);
        else if (strcmp(argv[a], "-k") == 0) backlog = strtoll(argv[++a], NULL, 10);
        else usage();
    }
    if (msg_size < 16 || msg_size > 1 << 20 || count < 1 || nreaders < 1 || nreaders > MAX_READERS || batch < 1 ||
        window < 0 || backlog < 1) {
        fprintf(stderr, "natsbare: SIZE 16..1048576, COUNT >= 1, N 1..64, BATCH >= 1, BACKLOG >= 1\n");
        return 2;
    }
    max_ack_pending = backlog < MAX_ACK_PENDING ? backlog : MAX_ACK_PENDING;
    fetch_batch = max_ack_pending < FETCH_BATCH ? max_ack_pending : FETCH_BATCH;
    snprintf(boot, sizeof boot, "%08x", (unsigned)getpid() ^ (unsigned)now_ns());
    snprintf(stream_name, sizeof stream_name, "natsbare_G%s", boot);
    snprintf(subject, sizeof subject, "natsbare.g.%s", boot);
    snprintf(mcastfs_header, sizeof mcastfs_header, "1 n0 %d %u %u 0 -", (int)getpid(), (unsigned)getuid(),
             (unsigned)getgid());

    /* the writer's node: its connection, JetStream context and the stream */
    natsConnection *nc = connect_to("natsbare-n0");
    jsOptions jo;
    jsOptions_Init(&jo);
    jo.PublishAsync.MaxPending = window > 0 ? window : batch;
    jo.PublishAsync.AckHandler = on_puback;
    jo.PublishAsync.StallWait = 10000;
    jsCtx *js;
    natsStatus s = natsConnection_JetStream(&js, nc, &jo);
    if (s != NATS_OK) nats_die("natsConnection_JetStream", s, 0);
    static struct reader readers[MAX_READERS];
    make_stream(js, readers);
    for (int k = 0; k < nreaders; k++) {
        readers[k].k = k;
        open_reader(&readers[k]);
        if (!(lat[k] = calloc((size_t)count, sizeof(uint64_t)))) die("calloc");
    }
    char *payload = calloc(1, msg_size);
    if (!payload) die("calloc");

    pthread_t th[MAX_READERS];
    pthread_barrier_init(&start_line, NULL, (unsigned)nreaders + 1);
    pthread_barrier_init(&timed_line, NULL, (unsigned)nreaders + 1);
    for (int k = 0; k < nreaders; k++)
        if (pthread_create(&th[k], NULL, reader_main, &readers[k]) != 0) die("pthread_create");
    pthread_barrier_wait(&start_line);
    for (long i = 0; i < WARMUP; i++) {
        publish_sync(js, payload, i);
        wait_at_least(&received, (uint32_t)nreaders * (uint32_t)(i + 1));
    }
    pthread_barrier_wait(&timed_line);
    struct rusage usage_start, usage_end;
    uint64_t t_start = now_ns();
    getrusage(RUSAGE_SELF, &usage_start);
    if (mode == PACED) {
        for (long i = WARMUP; i < WARMUP + count; i++) {
            publish_sync(js, payload, i);
            wait_at_least(&received, (uint32_t)nreaders * (uint32_t)(i + 1));
            if (gap_us > 0) usleep((useconds_t)gap_us);
        }
    } else if (window > 0) {
        stream_window(js, payload);
    } else {
        stream_batches(js, payload);
    }
    for (int k = 0; k < nreaders; k++) pthread_join(th[k], NULL);
    uint64_t t_end = now_ns();
    getrusage(RUSAGE_SELF, &usage_end);

    struct latencies l = collect_latencies(lat, nreaders, count);
    double secs = (double)(t_end - t_start) / 1e9;
    long fetches = atomic_load(&fetches_timed);
    printf("mode=%s system=natsbare size=%zu n=%d count=%ld elapsed_s=%.3f msgs_per_s=%.0f deliveries_per_s=%.0f "
           "p50_us=%.1f p99_us=%.1f max_us=%.1f timed=%ld last_p50_us=%.1f last_p99_us=%.1f "
           "client_cpu_us_per_msg=%.2f warmup=%d batch=%d window=%d refused_full=%ld refused_chain=%ld fetches=%ld "
           "msgs_per_fetch=%.1f fetch_batch=%ld send_asap=%d\n",
           mode == STREAM ? "stream" : "paced", msg_size, nreaders, count, secs, (double)count / secs,
           (double)count * nreaders / secs, pct_us(l.all, l.nall, 0.50), pct_us(l.all, l.nall, 0.99),
           l.nall ? (double)l.all[l.nall - 1] / 1000.0 : 0.0, l.nall, pct_us(l.last, l.nlast, 0.50),
           pct_us(l.last, l.nlast, 0.99), cpu_us(&usage_start, &usage_end) / (double)count, WARMUP,
           mode == PACED ? 1 : window > 0 ? 0 : batch, window, atomic_load(&refused_full),
           atomic_load(&refused_chain), fetches, fetches ? (double)count * nreaders / (double)fetches : 0.0,
           (long)fetch_batch, send_asap);
    fflush(stdout);

    for (int k = 0; k < nreaders; k++) {
        natsSubscription_Destroy(readers[k].sub);
        jsCtx_Destroy(readers[k].js);
        natsConnection_Destroy(readers[k].nc);
    }
    jsErrCode code = 0;
    if ((s = js_DeleteStream(js, stream_name, NULL, &code)) != NATS_OK) nats_die("js_DeleteStream", s, code);
    jsCtx_Destroy(js);
    natsConnection_Destroy(nc);
    nats_Close();
    return 0;
}
