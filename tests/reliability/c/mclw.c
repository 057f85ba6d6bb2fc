/*
 * mclw: a line writer for the reliability tests, on PATH (G/send or a member
 * file of a group with message=line). It writes a stream of line messages
 * (payload.h, "A line message") cut into write(2)s at random places: most
 * writes split a line or hold several, as buffered runtimes, tee and socat
 * do. Some messages have no '\n' and are flushed by fsync(2) right after
 * their last byte; with -E the last one has none and is flushed by close(2).
 *
 *   mclw -p PATH -i WID -l LOG [-n COUNT] [-T MS] [-s SEED] [-b NB_PERCENT]
 *        [-u PAUSE_US] [-f FSYNC_PERCENT] [-E] [-B] [-C MAX_CHUNK] [-A ALARM_S]
 *
 *   -C N  no write larger than N bytes (default 262,144)
 *
 *   -B   before each write(2), log what the open file holds and what it
 *        carries (for a writer that may be killed in it): a "Q" line, then a
 *        "B" line for every line message the write completes
 *
 * A write that returns a short count delivered the lines it counts, so the
 * count must end just after a '\n' (anything else is fatal, "BAD"), and the
 * rest is written again. A write that fails with EINTR or EAGAIN delivered
 * nothing and left the waiting tail as it was: it is written again as it
 * was. Every message is therefore delivered exactly once, and logged in mcw's
 * format when the call that delivered it returned (t0 .. t1: that call).
 *
 * The bytes of a line not yet ended wait in the open file (the "tail"): a
 * write that delivered everything leaves the tail its chunk ends with, a short
 * count leaves none, a failed write what waited before it, fsync none.
 *
 * stdout: "ready" once PATH is open. LOG lines:
 *   Q c0 k0 n0 c1 k1 n1 t0_ns                    (-B) before a write: the tail waiting
 *                                                (k0 bytes of message c0, n0 bytes long;
 *                                                k0 = 0: none), and the tail if the
 *                                                write delivers all it carries
 *   B counter len nonblock t0_ns                 (-B) a line message that write completes
 *   R counter len len 0 nonblock t0_ns t1_ns     a message delivered
 *   Z counter fsync|close                        ... that one was flushed by fsync or close
 *   BAD ret offset chunk                         a count that does not end a line
 *   END attempts=N writes=N shorts=N eintr=N eagain=N fsyncs=N closeflush=N
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "payload.h"

#define MAXLINE 65536
#define MAXCHUNK (4 * MAXLINE)
#define MAXENDS 4096

static uint64_t rng;
static uint64_t rnd(void)
{
    rng ^= rng << 13; rng ^= rng >> 7; rng ^= rng << 17;
    return rng;
}
static uint64_t between(uint64_t lo, uint64_t hi) { return lo + rnd() % (hi - lo + 1); }

static int logfd = -1;
static void logf_(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void logf_(const char *fmt, ...)
{
    char line[256];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    if (write(logfd, line, (size_t)n) != n)
        _exit(4);
}

struct end {
    uint32_t counter;
    size_t len, at; /* the message's last byte is chunk[at - 1] */
    int terminated;
};

static long writes, shorts, eintrs, eagains, fsyncs, closeflush;

/* waits a little before a retry after EAGAIN: poll for POLLOUT, bounded */
static void wait_writable(int fd)
{
    struct pollfd p = {.fd = fd, .events = POLLOUT};
    poll(&p, 1, 5);
}

int main(int argc, char **argv)
{
    const char *path = NULL, *logpath = NULL;
    uint32_t wid = 0;
    long count = 0, deadline_ms = 0, pause_us = 0, alarm_s = 600;
    uint64_t seed = 1;
    int nb_percent = 0, fsync_pct = 0, close_flush = 0, log_begin = 0, opt;
    size_t max_chunk = MAXCHUNK;
    while ((opt = getopt(argc, argv, "p:i:l:n:T:s:b:u:f:EBC:A:")) != -1) {
        switch (opt) {
        case 'p': path = optarg; break;
        case 'i': wid = (uint32_t)strtoul(optarg, NULL, 10); break;
        case 'l': logpath = optarg; break;
        case 'n': count = strtol(optarg, NULL, 10); break;
        case 'T': deadline_ms = strtol(optarg, NULL, 10); break;
        case 's': seed = strtoull(optarg, NULL, 10); break;
        case 'b': nb_percent = atoi(optarg); break;
        case 'u': pause_us = strtol(optarg, NULL, 10); break;
        case 'f': fsync_pct = atoi(optarg); break;
        case 'E': close_flush = 1; break;
        case 'B': log_begin = 1; break;
        case 'C': max_chunk = strtoul(optarg, NULL, 10); break;
        case 'A': alarm_s = strtol(optarg, NULL, 10); break;
        default: fprintf(stderr, "mclw: bad option\n"); return 2;
        }
    }
    if (!path || !logpath || wid > 0xFFFF || count < 0 || max_chunk < 1 || max_chunk > MAXCHUNK) {
        fprintf(stderr, "mclw: need -p PATH -i WID -l LOG\n");
        return 2;
    }
    alarm((unsigned)alarm_s);
    rng = seed * 0x9E3779B97F4A7C15ull + wid + 5;
    int fd = helper_start("mclw", logpath, &logfd, path, O_WRONLY, "ready");

    static unsigned char msg[MAXLINE], chunk[MAXCHUNK];
    static struct end ends[MAXENDS];
    size_t mlen = 0, mpos = 0;
    int mterm = 1, have = 0, done = 0, nonblock = 0;
    uint32_t counter = 0;
    struct tail { uint32_t c; size_t k, n; } waiting = {0, 0, 0}, after;
    long long start = now_ns();
    while (!done || have) {
        /* the next chunk: bytes of the stream up to a random size, stopping
         * after a message without '\n' (its fsync follows) */
        size_t target;
        uint64_t r = rnd() % 100;
        if (r < 45) target = between(1, 40);
        else if (r < 85) target = between(41, 700);
        else target = between(701, MAXCHUNK);
        if (target > max_chunk)
            target = max_chunk;
        size_t clen = 0;
        int nends = 0, flush = 0;
        while (clen < target && nends < MAXENDS) {
            if (!have) {
                if (done || (count && (long)counter >= count) ||
                    (deadline_ms && now_ns() - start > deadline_ms * 1000000LL)) {
                    done = 1;
                    break;
                }
                uint64_t s = rnd() % 1000;
                mlen = s < 3 ? between(8193, MAXLINE) : s < 60 ? between(201, 8192) : between(LHDR + 1, 200);
                mterm = (int)(rnd() % 100) >= fsync_pct;
                if (close_flush && count && (long)counter == count - 1)
                    mterm = 0; /* the last one: flushed by close */
                fill_line(msg, mlen, wid, counter, mterm);
                mpos = 0;
                have = 1;
            }
            size_t take = mlen - mpos;
            if (take > target - clen)
                take = target - clen;
            memcpy(chunk + clen, msg + mpos, take);
            clen += take;
            mpos += take;
            if (mpos == mlen) {
                ends[nends++] = (struct end){counter, mlen, clen, mterm};
                counter++;
                have = 0;
                if (!mterm) {
                    flush = 1;
                    break;
                }
            }
        }
        if (have)
            after = (struct tail){counter, mpos, mlen};
        else if (flush)
            after = (struct tail){ends[nends - 1].counter, ends[nends - 1].len, ends[nends - 1].len};
        else
            after = (struct tail){0, 0, 0};
        int want_nb = (int)(rnd() % 100) < nb_percent;
        if (want_nb != nonblock) {
            int fl = fcntl(fd, F_GETFL);
            fcntl(fd, F_SETFL, want_nb ? fl | O_NONBLOCK : fl & ~O_NONBLOCK);
            nonblock = want_nb;
        }
        size_t off = 0;
        int e = 0;
        while (off < clen) {
            long long t0 = now_ns();
            if (log_begin) {
                logf_("Q %u %zu %zu %u %zu %zu %lld\n", waiting.c, waiting.k, waiting.n, after.c, after.k, after.n, t0);
                for (int i = e; i < nends; i++)
                    if (ends[i].terminated)
                        logf_("B %u %zu %d %lld\n", ends[i].counter, ends[i].len, nonblock, t0);
            }
            ssize_t ret = write(fd, chunk + off, clen - off);
            int err = ret < 0 ? errno : 0;
            long long t1 = now_ns();
            writes++;
            if (ret < 0) {
                if (err == EINTR) { eintrs++; continue; }
                if (err == EAGAIN) { eagains++; wait_writable(fd); continue; }
                logf_("END attempts=%u fatal=%d\n", counter, err);
                return 3;
            }
            size_t upto = off + (size_t)ret;
            if (ret == 0 || (upto < clen && chunk[upto - 1] != '\n')) {
                logf_("BAD %zd %zu %zu\n", ret, off, clen);
                logf_("END attempts=%u fatal=-1\n", counter);
                return 3;
            }
            if (upto < clen)
                shorts++;
            waiting = upto < clen ? (struct tail){0, 0, 0} : after;
            /* a message without '\n' ends its chunk: fsync or close sends it */
            for (; e < nends && ends[e].at <= upto; e++)
                if (ends[e].terminated)
                    logf_("R %u %zu %zu 0 %d %lld %lld\n", ends[e].counter, ends[e].len, ends[e].len, nonblock, t0, t1);
            off = upto;
        }
        int by_close = flush && close_flush && count && ends[nends - 1].counter == (uint32_t)(count - 1);
        if (flush && !by_close) {
            for (;;) {
                long long t0 = now_ns();
                int ret = fsync(fd);
                int err = ret < 0 ? errno : 0;
                long long t1 = now_ns();
                fsyncs++;
                if (ret == 0) {
                    waiting = (struct tail){0, 0, 0};
                    logf_("R %u %zu %zu 0 %d %lld %lld\n", ends[nends - 1].counter, ends[nends - 1].len,
                          ends[nends - 1].len, nonblock, t0, t1);
                    logf_("Z %u fsync\n", ends[nends - 1].counter);
                    break;
                }
                if (err == EINTR) { eintrs++; continue; }
                if (err == EAGAIN) { eagains++; wait_writable(fd); continue; }
                logf_("END attempts=%u fatal=%d fsync\n", counter, err);
                return 3;
            }
        } else if (flush) {
            /* the last message waits in the open file: close sends it */
            int fl = fcntl(fd, F_GETFL);
            fcntl(fd, F_SETFL, fl & ~O_NONBLOCK);
            long long t0 = now_ns();
            int ret = close(fd);
            long long t1 = now_ns();
            if (ret != 0) {
                logf_("END attempts=%u fatal=%d close\n", counter, errno);
                return 3;
            }
            closeflush++;
            logf_("R %u %zu %zu 0 0 %lld %lld\n", ends[nends - 1].counter, ends[nends - 1].len, ends[nends - 1].len,
                  t0, t1);
            logf_("Z %u close\n", ends[nends - 1].counter);
            fd = -1;
            done = 1;
        }
        if (pause_us > 0)
            usleep((useconds_t)(rnd() % (uint64_t)(pause_us + 1)));
    }
    logf_("END attempts=%u writes=%ld shorts=%ld eintr=%ld eagain=%ld fsyncs=%ld closeflush=%ld\n", counter, writes,
          shorts, eintrs, eagains, fsyncs, closeflush);
    if (fd >= 0)
        close(fd);
    return 0;
}
