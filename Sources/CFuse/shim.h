/*
 * CFuse: libfuse 3.14's low-level API for Swift, plus the few helpers Swift
 * cannot express itself (macros, a hand-built open reply, signal handlers).
 *
 * Everything here is `static inline`: a system-library target has no C
 * sources of its own. Consequence: each Swift file that calls a helper gets
 * its own copy, including copies of the helpers' local `static` variables.
 * So only Signals.swift may call the cfuse_signal_* helpers, and only
 * LibfuseLog.swift the cfuse_log_* helpers (each pair shares a static).
 */
#ifndef MCASTFS_CFUSE_SHIM_H
#define MCASTFS_CFUSE_SHIM_H

/* 3*100+14. "31" would mean 3.1 and select the old fuse_session_loop_mt. */
#define FUSE_USE_VERSION 314

#include <fuse_lowlevel.h>

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

/* ------------------------------------------------------------------------
 * Kernel protocol structures for the open and create replies.
 *
 * fuse_file_info in libfuse 3.14 has no bit for FOPEN_STREAM, so
 * fuse_reply_open cannot ask for it. We build `struct fuse_open_out` (and,
 * for create, `struct fuse_entry_out` followed by it) ourselves and send the
 * bytes with fuse_reply_buf, which prepends the fuse_out_header.
 *
 * The layouts are those of <linux/fuse.h> (FUSE kernel protocol 7.9 and
 * later; unchanged through 7.45). We declare them under our own names rather
 * than include <linux/fuse.h>, because that header and libfuse's headers
 * both define FUSE_* names (e.g. FUSE_IOCTL_*). The sizes are asserted below.
 * ---------------------------------------------------------------------- */

struct cfuse_attr {          /* struct fuse_attr */
    uint64_t ino;
    uint64_t size;
    uint64_t blocks;
    uint64_t atime;
    uint64_t mtime;
    uint64_t ctime;
    uint32_t atimensec;
    uint32_t mtimensec;
    uint32_t ctimensec;
    uint32_t mode;
    uint32_t nlink;
    uint32_t uid;
    uint32_t gid;
    uint32_t rdev;
    uint32_t blksize;
    uint32_t flags;
};

struct cfuse_entry_out {     /* struct fuse_entry_out */
    uint64_t nodeid;
    uint64_t generation;
    uint64_t entry_valid;
    uint64_t attr_valid;
    uint32_t entry_valid_nsec;
    uint32_t attr_valid_nsec;
    struct cfuse_attr attr;
};

struct cfuse_open_out {      /* struct fuse_open_out */
    uint64_t fh;
    uint32_t open_flags;
    uint32_t padding;
};

struct cfuse_create_out {    /* FUSE_CREATE's reply: entry, then open */
    struct cfuse_entry_out entry;
    struct cfuse_open_out open;
};

_Static_assert(sizeof(struct cfuse_attr) == 88, "struct fuse_attr is 88 bytes");
_Static_assert(sizeof(struct cfuse_entry_out) == 128, "struct fuse_entry_out is 128 bytes");
_Static_assert(sizeof(struct cfuse_open_out) == 16, "struct fuse_open_out is 16 bytes");
_Static_assert(sizeof(struct cfuse_create_out) == 144, "create reply is entry_out + open_out");

/* FOPEN_* from <linux/fuse.h>. */
static const uint32_t CFUSE_FOPEN_DIRECT_IO   = 1u << 0;
static const uint32_t CFUSE_FOPEN_KEEP_CACHE  = 1u << 1;
static const uint32_t CFUSE_FOPEN_NONSEEKABLE = 1u << 2;
static const uint32_t CFUSE_FOPEN_CACHE_DIR   = 1u << 3;
static const uint32_t CFUSE_FOPEN_STREAM      = 1u << 4; /* protocol 7.31 */
static const uint32_t CFUSE_FOPEN_NOFLUSH     = 1u << 5;

/* FUSE_SET_ATTR_* (fuse_lowlevel.h), as constants Swift can import. */
static const int CFUSE_SET_ATTR_MODE      = FUSE_SET_ATTR_MODE;
static const int CFUSE_SET_ATTR_UID       = FUSE_SET_ATTR_UID;
static const int CFUSE_SET_ATTR_GID       = FUSE_SET_ATTR_GID;
static const int CFUSE_SET_ATTR_SIZE      = FUSE_SET_ATTR_SIZE;
static const int CFUSE_SET_ATTR_ATIME     = FUSE_SET_ATTR_ATIME;
static const int CFUSE_SET_ATTR_MTIME     = FUSE_SET_ATTR_MTIME;
static const int CFUSE_SET_ATTR_ATIME_NOW = FUSE_SET_ATTR_ATIME_NOW;
static const int CFUSE_SET_ATTR_MTIME_NOW = FUSE_SET_ATTR_MTIME_NOW;
static const int CFUSE_SET_ATTR_CTIME     = FUSE_SET_ATTR_CTIME;
static const int CFUSE_SET_ATTR_KILL_SUID = FUSE_SET_ATTR_KILL_SUID;
static const int CFUSE_SET_ATTR_KILL_SGID = FUSE_SET_ATTR_KILL_SGID;

/* A timeout in seconds, split as the kernel wants it (valid + valid_nsec). */
static inline uint64_t cfuse_timeout_seconds(double t) {
    if (!(t > 0.0)) return 0;                 /* also catches NaN */
    if (t >= 18446744073709551615.0) return UINT64_MAX;
    return (uint64_t)t;
}

static inline uint32_t cfuse_timeout_nanoseconds(double t) {
    if (!(t > 0.0) || t >= 18446744073709551615.0) return 0;
    double frac = t - (double)(uint64_t)t;
    uint32_t ns = (uint32_t)(frac * 1e9);
    return ns > 999999999u ? 999999999u : ns;
}

static inline void cfuse_fill_attr(struct cfuse_attr *out, const struct stat *st) {
    memset(out, 0, sizeof *out);
    out->ino = st->st_ino;
    out->size = (uint64_t)st->st_size;
    out->blocks = (uint64_t)st->st_blocks;
    out->atime = (uint64_t)st->st_atim.tv_sec;
    out->mtime = (uint64_t)st->st_mtim.tv_sec;
    out->ctime = (uint64_t)st->st_ctim.tv_sec;
    out->atimensec = (uint32_t)st->st_atim.tv_nsec;
    out->mtimensec = (uint32_t)st->st_mtim.tv_nsec;
    out->ctimensec = (uint32_t)st->st_ctim.tv_nsec;
    out->mode = st->st_mode;
    out->nlink = (uint32_t)st->st_nlink;
    out->uid = st->st_uid;
    out->gid = st->st_gid;
    out->rdev = (uint32_t)st->st_rdev;
    out->blksize = (uint32_t)st->st_blksize;
}

/* Reply to FUSE_OPEN / FUSE_OPENDIR with any FOPEN_* flags, STREAM included. */
static inline int cfuse_reply_open(fuse_req_t req, uint64_t fh, uint32_t open_flags) {
    struct cfuse_open_out out;
    memset(&out, 0, sizeof out);
    out.fh = fh;
    out.open_flags = open_flags;
    return fuse_reply_buf(req, (const char *)&out, sizeof out);
}

/* Reply to FUSE_CREATE: entry_out then open_out, one buffer. Assumes protocol
 * minor >= 9 (full-size entry_out): every kernel since 2.6.26. */
static inline int cfuse_reply_create(fuse_req_t req, const struct fuse_entry_param *e,
                                     uint64_t fh, uint32_t open_flags) {
    struct cfuse_create_out out;
    memset(&out, 0, sizeof out);
    out.entry.nodeid = e->ino;
    out.entry.generation = e->generation;
    out.entry.entry_valid = cfuse_timeout_seconds(e->entry_timeout);
    out.entry.entry_valid_nsec = cfuse_timeout_nanoseconds(e->entry_timeout);
    out.entry.attr_valid = cfuse_timeout_seconds(e->attr_timeout);
    out.entry.attr_valid_nsec = cfuse_timeout_nanoseconds(e->attr_timeout);
    cfuse_fill_attr(&out.entry.attr, &e->attr);
    out.open.fh = fh;
    out.open.open_flags = open_flags;
    return fuse_reply_buf(req, (const char *)&out, sizeof out);
}

/* FUSE_ARGS_INIT is a macro. argv[0] must be present (any program name). */
static inline struct fuse_args cfuse_make_args(int argc, char **argv) {
    struct fuse_args args = FUSE_ARGS_INIT(argc, argv);
    return args;
}

/* fuse_session_loop_mt is itself a macro or a versioned symbol depending on
 * how libfuse was built; this always means the 3.12+ (config) variant. */
static inline int cfuse_session_loop_mt(struct fuse_session *se,
                                        unsigned max_threads, int max_idle_threads) {
    struct fuse_loop_config *config = fuse_loop_cfg_create();
    if (config == NULL) return -ENOMEM;
    fuse_loop_cfg_set_max_threads(config, max_threads);
    /* Negative keeps libfuse's default (-1: never destroy idle threads);
       the setter takes unsigned and ignores out-of-range values. */
    if (max_idle_threads >= 0)
        fuse_loop_cfg_set_idle_threads(config, (unsigned)max_idle_threads);
    int rc = fuse_session_loop_mt(se, config);
    fuse_loop_cfg_destroy(config);
    return rc;
}

/* ------------------------------------------------------------------------
 * libfuse's log, line by line. Call only from LibfuseLog.swift (shared
 * static). A Swift function cannot take a va_list through @convention(c),
 * so the formatting happens here; the text still goes to stderr as with
 * libfuse's default logger.
 * ---------------------------------------------------------------------- */

typedef void (*cfuse_log_text_func)(int level, const char *text);

/* A function-local static: Swift's importer emits inline functions (with
 * their local statics) but not a header's file-scope static variables. */
static inline cfuse_log_text_func *cfuse_log_text_slot(void) {
    static cfuse_log_text_func target;
    return &target;
}

/* Formats one libfuse log call and hands the text to the Swift sink, which
 * records it and echoes it to stderr (LibfuseLog.swift decides when). */
static inline void cfuse_log_forward(enum fuse_log_level level, const char *fmt, va_list ap) {
    char text[1024];
    int n = vsnprintf(text, sizeof text, fmt, ap);
    if (n < 0) return;
    cfuse_log_text_func target = __atomic_load_n(cfuse_log_text_slot(), __ATOMIC_ACQUIRE);
    if (target) target((int)level, text);
}

static inline void cfuse_log_install(cfuse_log_text_func target) {
    __atomic_store_n(cfuse_log_text_slot(), target, __ATOMIC_RELEASE);
    fuse_set_log_func(cfuse_log_forward);
}

/* ------------------------------------------------------------------------
 * Signals. Call these only from Signals.swift (see the note at the top).
 *
 * The exit handler does one async-signal-safe thing: it writes the signal
 * number to a non-blocking pipe whose write end is never closed. A thread
 * reads the pipe and ends the session loop. The handler deliberately does
 * not touch the fuse_session: a session pointer read in a handler could be
 * freed by fuse_session_destroy on another thread.
 *
 * No SA_RESTART, so that a signal interrupts the loop's read(2) of
 * /dev/fuse or sem_wait(3) with EINTR and the loop re-checks its exit flag.
 * ---------------------------------------------------------------------- */

/* The pipe's write end, +1 (so that the zero-initialised static means
 * "none"). A function-local static: see cfuse_log_text_slot. */
static inline int *cfuse_signal_pipe_slot(void) {
    static int fd_plus_one;
    return &fd_plus_one;
}

static inline void cfuse_exit_signal_handler(int sig) {
    int saved = errno;
    int fd = __atomic_load_n(cfuse_signal_pipe_slot(), __ATOMIC_ACQUIRE) - 1;
    if (fd >= 0) {
        unsigned char byte = (unsigned char)sig;
        ssize_t ignored = write(fd, &byte, 1);
        (void)ignored;
    }
    errno = saved;
}

static inline int cfuse_signal_install_exit_handler(int sig, int pipe_write_fd) {
    __atomic_store_n(cfuse_signal_pipe_slot(), pipe_write_fd + 1, __ATOMIC_RELEASE);
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = cfuse_exit_signal_handler;
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = 0;
    return sigaction(sig, &sa, NULL);
}

static inline void cfuse_wake_signal_handler(int sig) { (void)sig; }

/* A handler that does nothing: its only effect is to make a blocking system
 * call in the signalled thread return EINTR. */
static inline int cfuse_signal_install_wake_handler(int sig) {
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = cfuse_wake_signal_handler;
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = 0;
    return sigaction(sig, &sa, NULL);
}

static inline int cfuse_signal_ignore(int sig) {
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = SIG_IGN;
    sigemptyset(&sa.sa_mask);
    return sigaction(sig, &sa, NULL);
}

static inline int cfuse_signal_unblock_in_this_thread(int sig) {
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, sig);
    return pthread_sigmask(SIG_UNBLOCK, &set, NULL);
}

#endif /* MCASTFS_CFUSE_SHIM_H */
