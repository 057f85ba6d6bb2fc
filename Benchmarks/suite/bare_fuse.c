/*
 * bare_fuse: the bare libfuse anchor of the benchmark suite
 * (Benchmarks/README.md).
 *
 * A filesystem on libfuse's low-level API that answers every request at once
 * and does no work: a root directory holding the file `f` and, for the
 * fan-out scenarios, the files `r0` .. `r63`. All of them share one buffer.
 * Opens are direct I/O and nonseekable (the flags mcastfs gives its member
 * files), so every write(2) and read(2) is exactly one FUSE request.
 * (mcastfs also sets FOPEN_STREAM; libfuse 3.14 has no fuse_file_info bit for
 * it, and the clients use one descriptor for each direction, so it makes no
 * difference here.)
 *
 *   write  (any file) keeps a copy of the data (at most 1 MiB) and answers
 *          the full size
 *   read   (any file) answers min(requested, length of the last write) bytes
 *          of that copy (64 zero bytes before the first write)
 *
 * (readdir lists only `f`; the others are found by lookup.)
 *
 * So a writer on `f` and 16 readers each on its own `rK` cost the daemon one
 * write request and 16 read requests per message, on 17 distinct inodes: the
 * request pattern of mcastfs's `G/send` and 16 members.
 *
 * Keeping the data costs one memcpy of the message; it lets the client's
 * timestamp travel through the anchor as it does through mcastfs.
 *
 * Usage: bare_fuse MOUNTPOINT [MAX_THREADS]   (always foreground;
 *                                     SIGTERM/SIGINT unmount and exit 0)
 *
 * Served as mcastfs serves: fuse_session_loop_mt with every idle worker kept
 * and max_threads = MAX_THREADS, by default the number of online CPUs, at
 * least 2 and at most 10 (mcastfs's default; see docs/fuse-notes.md).
 */
#define FUSE_USE_VERSION 314

#include <fuse_lowlevel.h>

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define ROOT_INO 1
#define FILE_INO 2          /* `f` */
#define READERS 64          /* `r0` .. `r63`: inodes 3 .. 66 */
#define LAST_INO (FILE_INO + READERS)
#define FILE_NAME "f"
#define MAX_DATA (1u << 20)

static pthread_mutex_t data_lock = PTHREAD_MUTEX_INITIALIZER;
static char data[MAX_DATA];
static size_t data_len = 64;

static __thread char *reply_buf; /* per worker thread, MAX_DATA bytes */

static void fill_stat(fuse_ino_t ino, struct stat *st) {
    memset(st, 0, sizeof *st);
    st->st_ino = ino;
    st->st_uid = getuid();
    st->st_gid = getgid();
    if (ino == ROOT_INO) {
        st->st_mode = S_IFDIR | 0755;
        st->st_nlink = 2;
    } else {
        st->st_mode = S_IFREG | 0666;
        st->st_nlink = 1;
        st->st_size = 0;
    }
}

/* `f` -> FILE_INO, `r0`..`r63` -> FILE_INO + 1 + K; 0 if none. */
static fuse_ino_t ino_of(const char *name) {
    if (strcmp(name, FILE_NAME) == 0) return FILE_INO;
    if (name[0] != 'r' || name[1] < '0' || name[1] > '9') return 0;
    char *end;
    long k = strtol(name + 1, &end, 10);
    if (*end != '\0' || k < 0 || k >= READERS || (name[1] == '0' && name[2] != '\0')) return 0;
    return FILE_INO + 1 + (fuse_ino_t)k;
}

static int is_file(fuse_ino_t ino) { return ino >= FILE_INO && ino <= LAST_INO; }

static void op_lookup(fuse_req_t req, fuse_ino_t parent, const char *name) {
    fuse_ino_t ino = parent == ROOT_INO ? ino_of(name) : 0;
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
    if (ino != ROOT_INO && !is_file(ino)) {
        fuse_reply_err(req, ENOENT);
        return;
    }
    struct stat st;
    fill_stat(ino, &st);
    fuse_reply_attr(req, &st, 1.0);
}

static void op_setattr(fuse_req_t req, fuse_ino_t ino, struct stat *attr, int to_set,
                       struct fuse_file_info *fi) {
    /* Accept and ignore (so O_TRUNC / `: > f` work), like mcastfs. */
    (void)attr; (void)to_set;
    op_getattr(req, ino, fi);
}

static void op_open(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi) {
    if (!is_file(ino)) {
        fuse_reply_err(req, ino == ROOT_INO ? EISDIR : ENOENT);
        return;
    }
    fi->direct_io = 1;
    fi->nonseekable = 1;
    fi->keep_cache = 0;
    fuse_reply_open(req, fi);
}

static void op_read(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
                    struct fuse_file_info *fi) {
    (void)ino; (void)off; (void)fi;
    if (reply_buf == NULL && (reply_buf = malloc(MAX_DATA)) == NULL) {
        fuse_reply_err(req, ENOMEM);
        return;
    }
    pthread_mutex_lock(&data_lock);
    size_t n = data_len < size ? data_len : size;
    memcpy(reply_buf, data, n);
    pthread_mutex_unlock(&data_lock);
    fuse_reply_buf(req, reply_buf, n);
}

static void op_write(fuse_req_t req, fuse_ino_t ino, const char *buf, size_t size, off_t off,
                     struct fuse_file_info *fi) {
    (void)ino; (void)off; (void)fi;
    size_t n = size < MAX_DATA ? size : MAX_DATA;
    pthread_mutex_lock(&data_lock);
    memcpy(data, buf, n);
    data_len = n;
    pthread_mutex_unlock(&data_lock);
    fuse_reply_write(req, size);
}

static void op_release(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi) {
    (void)ino; (void)fi;
    fuse_reply_err(req, 0);
}

static void op_opendir(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi) {
    if (ino != ROOT_INO) {
        fuse_reply_err(req, ENOTDIR);
        return;
    }
    fuse_reply_open(req, fi);
}

static void op_readdir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
                       struct fuse_file_info *fi) {
    (void)fi;
    static const struct { const char *name; fuse_ino_t ino; } entries[] = {
        {".", ROOT_INO}, {"..", ROOT_INO}, {FILE_NAME, FILE_INO},
    };
    char buf[512];
    size_t used = 0;
    if (size > sizeof buf) size = sizeof buf;
    for (off_t i = off; i < (off_t)(sizeof entries / sizeof entries[0]); i++) {
        struct stat st;
        fill_stat(entries[i].ino, &st);
        size_t want = fuse_add_direntry(req, buf + used, size - used, entries[i].name, &st, i + 1);
        if (want > size - used) break;
        used += want;
    }
    (void)ino;
    fuse_reply_buf(req, buf, used);
}

static void op_releasedir(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi) {
    (void)ino; (void)fi;
    fuse_reply_err(req, 0);
}

static const struct fuse_lowlevel_ops ops = {
    .lookup = op_lookup,
    .getattr = op_getattr,
    .setattr = op_setattr,
    .open = op_open,
    .read = op_read,
    .write = op_write,
    .release = op_release,
    .opendir = op_opendir,
    .readdir = op_readdir,
    .releasedir = op_releasedir,
};

int main(int argc, char **argv) {
    long max_threads = sysconf(_SC_NPROCESSORS_ONLN);
    max_threads = max_threads < 2 ? 2 : max_threads > 10 ? 10 : max_threads;
    if (argc == 3) max_threads = strtol(argv[2], NULL, 10);
    if (argc < 2 || argc > 3 || max_threads < 1) {
        fprintf(stderr, "usage: %s MOUNTPOINT [MAX_THREADS]\n", argv[0]);
        return 2;
    }
    char *fargv[] = {argv[0], "-o", "fsname=bare_fuse,subtype=bare_fuse", NULL};
    struct fuse_args args = FUSE_ARGS_INIT(3, fargv);
    struct fuse_session *se = fuse_session_new(&args, &ops, sizeof ops, NULL);
    if (se == NULL) return 1;
    int rc = 1;
    if (fuse_set_signal_handlers(se) != 0) goto out_destroy;
    if (fuse_session_mount(se, argv[1]) != 0) goto out_signals;

    struct fuse_loop_config *cfg = fuse_loop_cfg_create();
    if (cfg == NULL) goto out_unmount;
    fuse_loop_cfg_set_max_threads(cfg, (unsigned)max_threads);
    rc = fuse_session_loop_mt(se, cfg);
    fuse_loop_cfg_destroy(cfg);
    /* The loop returns the signal number when ended by SIGTERM/SIGINT. */
    if (rc > 0) rc = 0;

out_unmount:
    fuse_session_unmount(se);
out_signals:
    fuse_remove_signal_handlers(se);
out_destroy:
    fuse_session_destroy(se);
    fuse_opt_free_args(&args);
    return rc == 0 ? 0 : 1;
}
