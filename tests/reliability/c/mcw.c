/*
 * mcw: a writer for the reliability tests. Sends self-describing messages
 * (payload.h) with one write(2) each on PATH (G/send or a member file) and
 * logs every attempt, so a checker can tell what was accepted.
 *
 *   mcw -p PATH -i WID -l LOG [-W WSPAN] [-n COUNT] [-T MS] [-s SEED]
 *       [-m MAXMSG] [-b NB_PERCENT] [-L LARGE_PERMILLE] [-M MEDIUM_PERCENT]
 *       [-u PAUSE_US] [-x] [-B] [-A ALARM_S]
 *
 *   -n COUNT   stop after COUNT attempts (0: no limit)
 *   -T MS      stop after MS milliseconds (0: no limit)
 *   -m MAXMSG  the group's max_message: sizes go up to it
 *   -b P       P% of writes are made with O_NONBLOCK (toggled with fcntl)
 *   -L P       P per mille of the messages are large (64 KiB .. MAXMSG)
 *   -M P       P% are medium (257 B .. 64 KiB); the rest are 1 .. 256 B
 *   -u US      random pause of 0 .. US microseconds between writes
 *   -x         attempt 1 is exactly MAXMSG bytes, attempt 2 is MAXMSG + 1 (both blocking)
 *   -B         log "B counter len nonblock t0" before each write (for writers
 *              that may be killed while blocked: their last B has no R)
 *   -A S       alarm: the process ends after S seconds whatever happens
 *
 * Attempt 0 is always 1 byte long (the writer id, < 256). Every attempt gets
 * a new counter: a failed write is never retried with the same message.
 * SIGUSR1 is caught without SA_RESTART, so it interrupts a blocked write
 * (EINTR, logged). SIGINT, SIGTERM and SIGKILL keep their default actions.
 *
 * stdout: "ready" once PATH is open. LOG lines (one write(2) each):
 *   B counter len nonblock t0_ns
 *   R counter len ret errno nonblock t0_ns t1_ns
 *   END attempts=N
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

int main(int argc, char **argv)
{
    const char *path = NULL, *logpath = NULL;
    uint32_t wid = 0, wspan = 64;
    long count = 0, deadline_ms = 0, pause_us = 0, alarm_s = 600;
    uint64_t seed = 1;
    size_t maxmsg = 1044480;
    int nb_percent = 0, large_pm = 3, medium_pct = 8, edges = 0, log_begin = 0;
    int opt;
    while ((opt = getopt(argc, argv, "p:i:l:W:n:T:s:m:b:L:M:u:xBA:")) != -1) {
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
        case 'x': edges = 1; break;
        case 'B': log_begin = 1; break;
        case 'A': alarm_s = strtol(optarg, NULL, 10); break;
        default: fprintf(stderr, "mcw: bad option\n"); return 2;
        }
    }
    if (!path || !logpath || wid >= wspan || wid > 0xFFFF || maxmsg < 1) {
        fprintf(stderr, "mcw: need -p PATH -i WID (< WSPAN) -l LOG\n");
        return 2;
    }
    alarm((unsigned)alarm_s);
    rng = seed * 0x9E3779B97F4A7C15ull + wid + 1;
    crc_init();

    int fd = helper_start("mcw", logpath, &logfd, path, O_WRONLY, "ready");

    unsigned char *buf = malloc(maxmsg + 1 + HDR);
    if (!buf)
        return 2;
    long long start = now_ns();
    int nonblock = 0;
    long attempt;
    for (attempt = 0; count == 0 || attempt < count; attempt++) {
        if (deadline_ms && now_ns() - start > deadline_ms * 1000000LL)
            break;
        uint32_t c = (uint32_t)attempt;
        size_t len;
        uint64_t r = rnd() % 1000;
        if (attempt == 0)
            len = 1;
        else if (edges && attempt == 1)
            len = maxmsg;
        else if (edges && attempt == 2)
            len = maxmsg + 1;
        else if (r < (uint64_t)large_pm && maxmsg > 65536)
            len = between(65537, maxmsg);
        else if (r < (uint64_t)large_pm + 10u * (uint64_t)medium_pct)
            len = between(257, 65536);
        else
            len = between(1, 256);
        if (!(edges && attempt == 2) && len > maxmsg)
            len = maxmsg;

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
                buf[i] = i < 8 ? (unsigned char)(tiny >> (8 * i)) : 0;
        } else {
            fill_body(buf + HDR, len - HDR, wid, c);
            put32(buf, (uint32_t)len);
            buf[4] = wid & 0xFF; buf[5] = (wid >> 8) & 0xFF;
            buf[6] = MAGIC & 0xFF; buf[7] = (MAGIC >> 8) & 0xFF;
            put32(buf + 8, c);
            put32(buf + 12, crc32_buf(buf + HDR, len - HDR));
        }

        int want_nb = (int)(rnd() % 100) < nb_percent;
        if (edges && (attempt == 1 || attempt == 2))
            want_nb = 0; /* the edge sizes are judged by their result: never EAGAIN */
        if (want_nb != nonblock) {
            int fl = fcntl(fd, F_GETFL);
            fcntl(fd, F_SETFL, want_nb ? fl | O_NONBLOCK : fl & ~O_NONBLOCK);
            nonblock = want_nb;
        }
        long long t0 = now_ns();
        if (log_begin)
            logf_("B %u %zu %d %lld\n", c, len, nonblock, t0);
        ssize_t ret = write(fd, buf, len);
        int err = ret < 0 ? errno : 0;
        long long t1 = now_ns();
        logf_("R %u %zu %zd %d %d %lld %lld\n", c, len, ret, err, nonblock, t0, t1);
        if (ret < 0 && err != EAGAIN && err != EINTR && err != EMSGSIZE) {
            logf_("END attempts=%ld fatal=%d\n", attempt + 1, err);
            return 3;
        }
        if (pause_us > 0)
            usleep((useconds_t)(rnd() % (uint64_t)(pause_us + 1)));
    }
    logf_("END attempts=%ld\n", attempt);
    close(fd);
    return 0;
}
