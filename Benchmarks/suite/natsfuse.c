/*
 * natsfuse: the thinnest FUSE front end on libnats, for the cluster
 * benchmark's record-view latency (Benchmarks/README.md, "Scenario 5": the
 * FUSE bridge rows). It measures what any filesystem that carries messages
 * through JetStream costs on this machine before it does anything else:
 * mcastfs's chain of threads, with nothing of mcastfs in it.
 *
 *   natsfuse MOUNTPOINT URL STREAM SUBJECT [-s BACKLOG] [-c CONSUMER]
 *
 * A node of one group: a libfuse low-level daemon (fuse_session_loop_mt,
 * max_threads 2 as mcastfs on 2 CPUs, every idle worker kept; direct I/O,
 * nonseekable) with two files.
 *
 *   send  a write(2) is one message: the FUSE worker publishes it to SUBJECT
 *         (js_PublishMsg, Nats-Msg-Id and an `Mcastfs` header of a node's
 *         size, as natsbare.c) and answers the write once the PubAck is in.
 *   r0    (with -c) a read(2) answers with one message: at once if one is
 *         queued, else it waits (parked) until the delivery thread has one.
 *         The delivery thread fetches from the durable pull consumer
 *         CONSUMER of STREAM, which it makes at start from the stream's next
 *         sequence, configured as natsbare.c's (explicit acks, ack wait 1 h,
 *         max_ack_pending 1024, inactive threshold 5 s), with
 *         natsSubscription_Fetch(256, 1 s) in a loop (of one message when
 *         the last one fetched said none were pending, as a node does):
 *         each message goes
 *         straight to a parked read (fuse_reply_buf from that thread) or
 *         into the queue, then is acked (+ACK, not waiting).
 *
 * -s BACKLOG: make STREAM first (natsbare.c's configuration: interest
 * retention, discard new, max_msgs BACKLOG, file storage, one replica,
 * duplicate window 2 min), and delete it at exit. Every connection sets
 * SendAsap. SIGTERM/SIGINT unmount and exit 0.
 *
 * So a message crosses what it crosses in mcastfs: the writer's write(2) to
 * a FUSE worker, which publishes; the server; the reading node's nats.c
 * read loop; its delivery thread, which replies to the waiting read(2).
 * No checks, no flow control beyond the consumer's, one reader per node,
 * no interrupts (the benchmark's clients never need them).
 */
#define FUSE_USE_VERSION 314

#include "natsbench.h"

#include <fuse_lowlevel.h>
#include <nats/nats.h>

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define ROOT_INO 1
#define SEND_INO 2
#define READ_INO 3
#define FETCH_BATCH 256
#define FETCH_WAIT_MS 1000
#define MAX_ACK_PENDING 1024
#define MAX_PARKED 16

static const char *stream_name, *subject, *consumer;
static int64_t backlog;
static natsConnection *nc;
static jsCtx *js;
static char boot[16], mcastfs_header[96];
static _Atomic long next_id;

struct queued {
    struct queued *next;
    size_t len;
    char data[];
};

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static struct queued *head, *tail;
static fuse_req_t parked[MAX_PARKED];
static int nparked;

static void nats_die(const char *what, natsStatus s, jsErrCode code) {
    const char *text = nats_GetLastError(NULL);
    fprintf(stderr, "natsfuse: %s: %s (err_code %d)%s%s\n", what, natsStatus_GetText(s), (int)code,
            text ? ": " : "", text ? text : "");
    exit(1);
}

static void fill_stat(fuse_ino_t ino, struct stat *st) {
    memset(st, 0, sizeof *st);
    st->st_ino = ino;
    st->st_uid = getuid();
    st->st_gid = getgid();
    st->st_mode = ino == ROOT_INO ? S_IFDIR | 0755 : S_IFREG | 0666;
    st->st_nlink = ino == ROOT_INO ? 2 : 1;
}

static void op_lookup(fuse_req_t req, fuse_ino_t parent, const char *name) {
    fuse_ino_t ino = 0;
    if (parent == ROOT_INO && strcmp(name, "send") == 0) ino = SEND_INO;
    if (parent == ROOT_INO && strcmp(name, "r0") == 0 && consumer != NULL) ino = READ_INO;
    if (ino == 0) {
        fuse_reply_err(req, ENOENT);
        return;
    }
    struct fuse_entry_param e;
    memset(&e, 0, sizeof e);
    e.ino = ino;
    e.attr_timeout = 1.0;
    e.entry_timeout = 1.0;
    fill_stat(ino, &e.attr);
    fuse_reply_entry(req, &e);
}

static void op_getattr(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi) {
    (void)fi;
    if (ino != ROOT_INO && ino != SEND_INO && ino != READ_INO) {
        fuse_reply_err(req, ENOENT);
        return;
    }
    struct stat st;
    fill_stat(ino, &st);
    fuse_reply_attr(req, &st, 1.0);
}

static void op_open(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi) {
    if (ino != SEND_INO && ino != READ_INO) {
        fuse_reply_err(req, ino == ROOT_INO ? EISDIR : ENOENT);
        return;
    }
    fi->direct_io = 1;
    fi->nonseekable = 1;
    fuse_reply_open(req, fi);
}

static void op_write(fuse_req_t req, fuse_ino_t ino, const char *buf, size_t size, off_t off,
                     struct fuse_file_info *fi) {
    (void)off, (void)fi;
    if (ino != SEND_INO) {
        fuse_reply_err(req, EBADF);
        return;
    }
    char id[48];
    snprintf(id, sizeof id, "natsfuse.%s.%ld", boot, atomic_fetch_add(&next_id, 1));
    natsMsg *m;
    natsStatus s = natsMsg_Create(&m, subject, NULL, buf, (int)size);
    if (s == NATS_OK) s = natsMsgHeader_Set(m, "Mcastfs", mcastfs_header);
    if (s != NATS_OK) nats_die("natsMsg_Create", s, 0);
    jsPubOptions po;
    jsPubOptions_Init(&po);
    po.MsgId = id;
    jsPubAck *pa = NULL;
    jsErrCode code = 0;
    s = js_PublishMsg(&pa, js, m, &po, &code);
    natsMsg_Destroy(m);
    jsPubAck_Destroy(pa);
    if (s != NATS_OK) {
        fprintf(stderr, "natsfuse: js_PublishMsg: %s (err_code %d)\n", natsStatus_GetText(s), (int)code);
        fuse_reply_err(req, EIO);
        return;
    }
    fuse_reply_write(req, size);
}

static void op_read(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, struct fuse_file_info *fi) {
    (void)off, (void)fi;
    if (ino != READ_INO) {
        fuse_reply_err(req, EBADF);
        return;
    }
    int waiting = 0;
    pthread_mutex_lock(&lock);
    struct queued *q = head;
    if (q != NULL) {
        head = q->next;
        if (head == NULL) tail = NULL;
    } else if (nparked < MAX_PARKED) {
        parked[nparked++] = req;
        waiting = 1;
    }
    pthread_mutex_unlock(&lock);
    if (q != NULL) {
        fuse_reply_buf(req, q->data, q->len < size ? q->len : size);
        free(q);
    } else if (!waiting) {
        fuse_reply_err(req, EAGAIN);
    }
}

/* One message from the consumer: to the first parked read, or queued. */
static void deliver(natsMsg *m) {
    size_t len = (size_t)natsMsg_GetDataLength(m);
    pthread_mutex_lock(&lock);
    fuse_req_t req = NULL;
    if (nparked > 0) {
        req = parked[0];
        memmove(parked, parked + 1, (size_t)--nparked * sizeof parked[0]);
    } else {
        struct queued *q = malloc(sizeof *q + len);
        if (q == NULL) {
            perror("natsfuse: malloc");
            exit(1);
        }
        q->next = NULL;
        q->len = len;
        memcpy(q->data, natsMsg_GetData(m), len);
        if (tail) tail->next = q;
        else head = q;
        tail = q;
    }
    pthread_mutex_unlock(&lock);
    if (req != NULL) fuse_reply_buf(req, natsMsg_GetData(m), len);
}

static void *delivery_main(void *arg) {
    natsSubscription *sub = arg;
    int more = 0; /* the last message fetched said more were pending */
    for (;;) {
        natsMsgList list;
        natsStatus s = natsSubscription_Fetch(&list, sub, more ? FETCH_BATCH : 1, FETCH_WAIT_MS, NULL);
        if (s == NATS_TIMEOUT) continue;
        if (s == NATS_CONNECTION_CLOSED || s == NATS_INVALID_SUBSCRIPTION) return NULL;
        if (s != NATS_OK) nats_die("natsSubscription_Fetch", s, 0);
        jsMsgMetaData *md = NULL;
        more = list.Count > 0 && natsMsg_GetMetaData(&md, list.Msgs[list.Count - 1]) == NATS_OK && md->NumPending > 0;
        jsMsgMetaData_Destroy(md);
        for (int j = 0; j < list.Count; j++) {
            deliver(list.Msgs[j]);
            if ((s = natsMsg_Ack(list.Msgs[j], NULL)) != NATS_OK) nats_die("natsMsg_Ack", s, 0);
        }
        natsMsgList_Destroy(&list);
    }
}

static void make_stream(void) {
    const char *subjects[1] = {subject};
    jsStreamConfig sc;
    group_stream_config(&sc, stream_name, subjects, backlog);
    jsErrCode code = 0;
    natsStatus s = js_AddStream(NULL, js, &sc, NULL, &code);
    if (s != NATS_OK) nats_die("js_AddStream", s, code);
}

static natsSubscription *make_consumer(void) {
    jsStreamInfo *si = NULL;
    jsErrCode code = 0;
    natsStatus s = js_GetStreamInfo(&si, js, stream_name, NULL, &code);
    if (s != NATS_OK) nats_die("js_GetStreamInfo", s, code);
    int64_t pending = si->Config->MaxMsgs < MAX_ACK_PENDING ? si->Config->MaxMsgs : MAX_ACK_PENDING;
    jsConsumerConfig cc;
    node_consumer_config(&cc, consumer, si->State.LastSeq + 1, pending);
    jsStreamInfo_Destroy(si);
    if ((s = js_AddConsumer(NULL, js, stream_name, &cc, NULL, &code)) != NATS_OK) nats_die("js_AddConsumer", s, code);
    jsSubOptions so;
    jsSubOptions_Init(&so);
    so.Stream = stream_name;
    so.Consumer = consumer;
    natsSubscription *sub;
    if ((s = js_PullSubscribe(&sub, js, subject, NULL, NULL, &so, &code)) != NATS_OK)
        nats_die("js_PullSubscribe", s, code);
    return sub;
}

static const struct fuse_lowlevel_ops ops = {
    .lookup = op_lookup,
    .getattr = op_getattr,
    .open = op_open,
    .read = op_read,
    .write = op_write,
};

static void usage(void) {
    fprintf(stderr, "usage: natsfuse MOUNTPOINT URL STREAM SUBJECT [-s BACKLOG] [-c CONSUMER]\n");
    exit(2);
}

int main(int argc, char **argv) {
    if (argc < 5) usage();
    const char *mountpoint = argv[1], *url = argv[2];
    stream_name = argv[3];
    subject = argv[4];
    for (int a = 5; a < argc; a++) {
        if (a + 1 >= argc) usage();
        else if (strcmp(argv[a], "-s") == 0) backlog = strtoll(argv[++a], NULL, 10);
        else if (strcmp(argv[a], "-c") == 0) consumer = argv[++a];
        else usage();
    }
    snprintf(boot, sizeof boot, "%08x", (unsigned)getpid() ^ (unsigned)time(NULL));
    snprintf(mcastfs_header, sizeof mcastfs_header, "1 n0 %d %u %u 0 -", (int)getpid(), (unsigned)getuid(),
             (unsigned)getgid());

    natsOptions *o;
    natsStatus s = natsOptions_Create(&o);
    if (s == NATS_OK) s = natsOptions_SetURL(o, url);
    if (s == NATS_OK) s = natsOptions_SetName(o, "natsfuse");
    if (s == NATS_OK) s = natsOptions_SetSendAsap(o, true);
    if (s == NATS_OK) s = natsConnection_Connect(&nc, o);
    if (s != NATS_OK) nats_die(url, s, 0);
    natsOptions_Destroy(o);
    if ((s = natsConnection_JetStream(&js, nc, NULL)) != NATS_OK) nats_die("natsConnection_JetStream", s, 0);
    if (backlog > 0) make_stream();
    natsSubscription *sub = consumer ? make_consumer() : NULL;

    char *fargv[] = {argv[0], "-o", "fsname=natsfuse,subtype=natsfuse", NULL};
    struct fuse_args args = FUSE_ARGS_INIT(3, fargv);
    struct fuse_session *se = fuse_session_new(&args, &ops, sizeof ops, NULL);
    if (se == NULL) return 1;
    int rc = 1;
    if (fuse_set_signal_handlers(se) != 0) goto out_destroy;
    if (fuse_session_mount(se, mountpoint) != 0) goto out_signals;
    pthread_t delivery;
    if (sub != NULL && pthread_create(&delivery, NULL, delivery_main, sub) != 0) goto out_unmount;

    struct fuse_loop_config *cfg = fuse_loop_cfg_create();
    if (cfg == NULL) goto out_unmount;
    fuse_loop_cfg_set_max_threads(cfg, 2);
    rc = fuse_session_loop_mt(se, cfg);
    fuse_loop_cfg_destroy(cfg);
    if (rc > 0) rc = 0;

out_unmount:
    fuse_session_unmount(se);
out_signals:
    fuse_remove_signal_handlers(se);
out_destroy:
    fuse_session_destroy(se);
    fuse_opt_free_args(&args);
    if (backlog > 0) js_DeleteStream(js, stream_name, NULL, NULL);
    /* The delivery thread may be in a fetch: the process ends without joining it. */
    _exit(rc == 0 ? 0 : 1);
}
