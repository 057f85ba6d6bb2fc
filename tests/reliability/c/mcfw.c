/*
 * mcfw: a framed batch writer for the reliability tests. Sends batches of
 * self-describing messages (payload.h; sizes as mcw's) on PATH, G/frames/send
 * or G/frames/NAME, one write(2) per batch of 1 .. K records, and logs every
 * record as an attempt in mcw's format, so that the same checker judges it.
 *
 *   mcfw -p PATH -i WID -l LOG [-W WSPAN] [-n COUNT] [-T MS] [-s SEED]
 *        [-m MAXMSG] [-b NB_PERCENT] [-L LARGE_PERMILLE] [-M MEDIUM_PERCENT]
 *        [-u PAUSE_US] [-k K] [-B] [-A ALARM_S]
 *
 *   -n COUNT   stop after COUNT records (0: no limit); the other options are mcw's
 *   -k K       batches of 1 .. K records (at most 1,044,480 bytes)
 *   -B         before each write(2), log "B counter len nonblock t0" for every
 *              record it carries (for a writer that may be killed in it: its
 *              last B lines without R are the records in flight)
 *
 * A write that returns a short count delivered the records it counts (the
 * count must end on a record boundary: anything else is fatal, logged as
 * "BAD"); the rest of the batch is written again, the same records. A write
 * that fails (EAGAIN, EINTR) delivered nothing: its records are logged as
 * failed and never sent again. Each delivered record's t0 .. t1 is the write
 * that delivered it.
 *
 * stdout: "ready" once PATH is open. LOG lines:
 *   B counter len nonblock t0_ns                      (-B) a record the next write carries
 *   R counter len ret errno nonblock t0_ns t1_ns      one per record
 *   BAD ret batch_bytes                               a count inside a record
 *   END attempts=N batches=N writes=N shorts=N
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "payload.h"

#define MAX_BATCH 1044480u
#define MAX_K 256

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

/* one message of len bytes into p (the length may grow for a tiny one) */
static size_t make_message(unsigned char *p, size_t len, uint32_t wid, uint32_t c, uint32_t wspan)
{
    uint64_t tiny = (uint64_t)c * wspan + wid;
    if (len < HDR) {
        size_t need = 1;
        while (need < 8 && (tiny >> (8 * need)) != 0)
            need++;
        if (need > len)
            len = need;
    }
    if (len < HDR) {
        for (size_t i = 0; i < len; i++)
            p[i] = i < 8 ? (unsigned char)(tiny >> (8 * i)) : 0;
    } else {
        fill_body(p + HDR, len - HDR, wid, c);
        put32(p, (uint32_t)len);
        p[4] = wid & 0xFF; p[5] = (wid >> 8) & 0xFF;
        p[6] = MAGIC & 0xFF; p[7] = (MAGIC >> 8) & 0xFF;
        put32(p + 8, c);
        put32(p + 12, crc32_buf(p + HDR, len - HDR));
    }
    return len;
}

int main(int argc, char **argv)
{
    const char *path = NULL, *logpath = NULL;
    uint32_t wid = 0, wspan = 64;
    long count = 0, deadline_ms = 0, pause_us = 0, alarm_s = 600;
    uint64_t seed = 1;
    size_t maxmsg = 1044480;
    int nb_percent = 0, large_pm = 3, medium_pct = 8, maxk = 16, log_begin = 0, opt;
    while ((opt = getopt(argc, argv, "p:i:l:W:n:T:s:m:b:L:M:u:k:BA:")) != -1) {
        switch (opt) {
        case 'p': path = optarg; break;
        case 'i': wid = (uint32_t)strtoul(optarg, NULL, 10); break;
        case 'l': logpath = optarg; break;
        case 'W': wspan = (uint32_t)strtoul(optarg, NULL, 10); break;
        case 'n': count = strtol(optarg, NULL, 10); break;
        case 'T': deadline_ms = strtol(optarg, NULL, 10); break;
        case 's': seed = strtoull(optarg, NULL, 10); break;
        case 'm': maxmsg = strtoul(optarg, NULL, 10); break;
        case 'b': nb_percent = atoi(optarg); break;
        case 'L': large_pm = atoi(optarg); break;
        case 'M': medium_pct = atoi(optarg); break;
        case 'u': pause_us = strtol(optarg, NULL, 10); break;
        case 'k': maxk = atoi(optarg); break;
        case 'B': log_begin = 1; break;
        case 'A': alarm_s = strtol(optarg, NULL, 10); break;
        default: fprintf(stderr, "mcfw: bad option\n"); return 2;
        }
    }
    if (!path || !logpath || wid >= wspan || wid > 0xFFFF || maxk < 1 || maxk > MAX_K) {
        fprintf(stderr, "mcfw: need -p PATH -i WID (< WSPAN) -l LOG, 1 <= K <= %d\n", MAX_K);
        return 2;
    }
    if (maxmsg > MAX_BATCH - 12)
        maxmsg = MAX_BATCH - 12; /* one record and its length fit a batch */
    alarm((unsigned)alarm_s);
    rng = seed * 0x9E3779B97F4A7C15ull + wid + 3;
    crc_init();
    int fd = helper_start("mcfw", logpath, &logfd, path, O_WRONLY, "ready");

    unsigned char *batch = malloc(MAX_BATCH);
    if (!batch)
        return 2;
    uint32_t counters[MAX_K];
    size_t lens[MAX_K], offs[MAX_K + 1];
    long long start = now_ns();
    int nonblock = 0;
    long attempt = 0, batches = 0, writes = 0, shorts = 0;
    while (count == 0 || attempt < count) {
        if (deadline_ms && now_ns() - start > deadline_ms * 1000000LL)
            break;
        int k = (int)between(1, (uint64_t)maxk);
        if (count && k > count - attempt)
            k = (int)(count - attempt);
        size_t used = 0;
        int n = 0;
        for (; n < k; n++) {
            size_t len;
            uint64_t r = rnd() % 1000;
            if (attempt == 0)
                len = 1;
            else if (r < (uint64_t)large_pm && maxmsg > 65536)
                len = between(65537, maxmsg);
            else if (r < (uint64_t)large_pm + 10u * (uint64_t)medium_pct)
                len = between(257, 65536);
            else
                len = between(1, 256);
            if (len > maxmsg)
                len = maxmsg;
            if (used + 4 + len + 8 > MAX_BATCH)
                break; /* the batch is full: this record goes in the next one */
            uint32_t c = (uint32_t)attempt++;
            len = make_message(batch + used + 4, len, wid, c, wspan);
            put32(batch + used, (uint32_t)len);
            counters[n] = c;
            lens[n] = len;
            offs[n] = used;
            used += 4 + len;
        }
        if (n == 0)
            continue;
        offs[n] = used;
        batches++;
        int want_nb = (int)(rnd() % 100) < nb_percent;
        if (want_nb != nonblock) {
            int fl = fcntl(fd, F_GETFL);
            fcntl(fd, F_SETFL, want_nb ? fl | O_NONBLOCK : fl & ~O_NONBLOCK);
            nonblock = want_nb;
        }
        int first = 0; /* the first record not yet delivered */
        while (first < n) {
            long long t0 = now_ns();
            if (log_begin)
                for (int i = first; i < n; i++)
                    logf_("B %u %zu %d %lld\n", counters[i], lens[i], nonblock, t0);
            ssize_t ret = write(fd, batch + offs[first], used - offs[first]);
            int err = ret < 0 ? errno : 0;
            long long t1 = now_ns();
            writes++;
            if (ret < 0) {
                for (int i = first; i < n; i++)
                    logf_("R %u %zu -1 %d %d %lld %lld\n", counters[i], lens[i], err, nonblock, t0, t1);
                if (err != EAGAIN && err != EINTR) {
                    logf_("END attempts=%ld fatal=%d\n", attempt, err);
                    return 3;
                }
                break;
            }
            int last = first;
            while (last < n && offs[last + 1] - offs[first] <= (size_t)ret)
                last++;
            if (last == first || offs[last] - offs[first] != (size_t)ret) {
                logf_("BAD %zd %zu\n", ret, used - offs[first]);
                logf_("END attempts=%ld fatal=-1\n", attempt);
                return 3;
            }
            for (int i = first; i < last; i++)
                logf_("R %u %zu %zu 0 %d %lld %lld\n", counters[i], lens[i], lens[i], nonblock, t0, t1);
            if (last < n)
                shorts++;
            first = last;
        }
        if (pause_us > 0)
            usleep((useconds_t)(rnd() % (uint64_t)(pause_us + 1)));
    }
    logf_("END attempts=%ld batches=%ld writes=%ld shorts=%ld\n", attempt, batches, writes, shorts);
    close(fd);
    return 0;
}
