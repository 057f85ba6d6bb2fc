/*
 * mcr: a reader for the reliability tests. Opens PATH (a member file) and
 * reads with blocking read(2) until end of file, reassembling messages read
 * in parts, checking each against its own header (payload.h), and logging one
 * line per message as soon as it is whole.
 *
 *   mcr -p PATH -l LOG [-b BUFSIZE] [-v] [-t [-P]] [-s SEED] [-d DELAY_US] [-A ALARM_S]
 *
 *   -b N   read buffer size (default 2 MiB, larger than any message)
 *   -v     variable, mostly small buffers (16 B .. 64 KiB, now and then 2 MiB),
 *          a new size for every read(2): messages arrive in parts
 *   -t     the messages are line messages (payload.h, "A line message")
 *   -P     (with -t) a message shorter than its header says may be the start of
 *          a line a killed writer left in its file, which close sent: logged
 *          as "H", for the checker to recognise, not as corrupt. Use a buffer
 *          larger than any message: only a read that does not fill its buffer
 *          tells where a message ends
 *   -d US  pause US microseconds after each message (a slow reader)
 *   -A S   alarm: the process ends after S seconds whatever happens
 *
 * SIGUSR1 is caught without SA_RESTART: a blocked read fails with EINTR and is
 * retried (an interrupted read consumed nothing, so nothing may be missing).
 *
 * stdout: "opened" once PATH is open. LOG lines:
 *   M wid counter len        a whole full message whose CRC matched
 *   T HEX                    a whole tiny message (< 16 bytes)
 *   X why len wid counter    a corrupt message (why: short, crc, magic, overrun, eof)
 *   H len crc32              (-P) a line message cut short: its length and the CRC-32 of its bytes
 *   ERR errno                read failed (not EINTR); the reader stops
 *   EOF msgs=N reads=N parts=N eintr=N
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "payload.h"

#define BIG (2u << 20)

static uint64_t rng;
static uint64_t rnd(void)
{
    rng ^= rng << 13; rng ^= rng >> 7; rng ^= rng << 17;
    return rng;
}

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

static size_t bufsize = BIG;
static int variable, text, prefixes;

static size_t next_size(void)
{
    if (!variable)
        return bufsize;
    uint64_t r = rnd() % 100;
    if (r < 30) return 16 + rnd() % 49;          /* 16 .. 64 */
    if (r < 55) return 65 + rnd() % 1000;        /* 65 .. 1064 */
    if (r < 80) return 4096 + rnd() % 3;         /* around a page */
    if (r < 97) return 65536;
    return BIG;
}

static long reads, eintrs;

/* one read(2), retried on EINTR; returns bytes, 0 at EOF, -1 on error */
static ssize_t read1(int fd, unsigned char *p, size_t n)
{
    for (;;) {
        ssize_t got = read(fd, p, n);
        reads++;
        if (got < 0 && errno == EINTR) {
            eintrs++;
            continue;
        }
        return got;
    }
}

int main(int argc, char **argv)
{
    const char *path = NULL, *logpath = NULL;
    long delay_us = 0, alarm_s = 600;
    uint64_t seed = 1;
    int opt;
    while ((opt = getopt(argc, argv, "p:l:b:vtPs:d:A:")) != -1) {
        switch (opt) {
        case 'p': path = optarg; break;
        case 'l': logpath = optarg; break;
        case 'b': bufsize = strtoul(optarg, NULL, 10); break;
        case 'v': variable = 1; break;
        case 't': text = 1; break;
        case 'P': prefixes = 1; break;
        case 's': seed = strtoull(optarg, NULL, 10); break;
        case 'd': delay_us = strtol(optarg, NULL, 10); break;
        case 'A': alarm_s = strtol(optarg, NULL, 10); break;
        default: fprintf(stderr, "mcr: bad option\n"); return 2;
        }
    }
    if (!path || !logpath || bufsize < HDR || bufsize > BIG) {
        fprintf(stderr, "mcr: need -p PATH -l LOG, 16 <= BUFSIZE <= 2 MiB\n");
        return 2;
    }
    alarm((unsigned)alarm_s);
    rng = seed * 0x9E3779B97F4A7C15ull + 7;
    crc_init();
    int fd = helper_start("mcr", logpath, &logfd, path, O_RDONLY, "opened");

    unsigned char *msg;
    if (posix_memalign((void **)&msg, 4096, BIG + 4096) != 0)
        return 2;
    long msgs = 0, parts = 0;
    for (;;) {
        size_t want = next_size();
        ssize_t n = read1(fd, msg, want);
        if (n < 0) {
            logf_("ERR %d\n", errno);
            return 1;
        }
        if (n == 0)
            break;
        msgs++;
        if (text) {
            /* a line message: its header (LHDR bytes, maybe over several
             * reads) gives its length; a read that did not fill its buffer
             * ended the message */
            size_t got = (size_t)n, need = 0, last_want = want;
            ssize_t last = n;
            uint32_t wid = 0, c = 0;
            const char *bad = NULL;
            for (;;) {
                if (got >= LHDR) {
                    check_line(msg, got, &wid, &c, &need);
                    if (need == 0) {
                        bad = "magic";
                        break;
                    }
                    if (got >= need)
                        break;
                }
                if ((size_t)last < last_want) {
                    bad = "short";
                    break;
                }
                size_t w = next_size();
                if (w > BIG - got)
                    w = BIG - got;
                ssize_t m = read1(fd, msg + got, w);
                if (m < 0) {
                    logf_("ERR %d\n", errno);
                    return 1;
                }
                if (m == 0) {
                    bad = "eof";
                    break;
                }
                parts++;
                got += (size_t)m;
                last = m;
                last_want = w;
            }
            if (!bad)
                bad = check_line(msg, got, &wid, &c, &need);
            if (bad && prefixes && strcmp(bad, "short") == 0)
                logf_("H %zu %08x\n", got, crc32_buf(msg, got));
            else if (bad)
                logf_("X %s %zu %u %u\n", bad, got, wid, c);
            else
                logf_("M %u %u %zu\n", wid, c, got);
        } else if (n < HDR) {
            char hex[2 * HDR + 1];
            for (ssize_t i = 0; i < n; i++)
                sprintf(hex + 2 * i, "%02x", msg[i]);
            logf_("T %s\n", hex);
        } else {
            uint32_t len = get32(msg);
            uint32_t wid = msg[4] | (uint32_t)msg[5] << 8;
            uint32_t magic = msg[6] | (uint32_t)msg[7] << 8;
            uint32_t c = get32(msg + 8);
            if (magic != MAGIC || len < HDR || len > BIG) {
                logf_("X magic %zd %u %u\n", n, wid, c);
                continue;
            }
            size_t got = (size_t)n;
            const char *bad = NULL;
            if (got > len)
                bad = "overrun";
            else if (got < len && got < want)
                bad = "short"; /* a read that did not fill the buffer ended the message early */
            while (!bad && got < len) {
                size_t w = next_size();
                if (w > BIG - got)
                    w = BIG - got;
                ssize_t m = read1(fd, msg + got, w);
                if (m < 0) {
                    logf_("ERR %d\n", errno);
                    return 1;
                }
                if (m == 0) {
                    bad = "eof";
                    break;
                }
                parts++;
                got += (size_t)m;
                if (got > len)
                    bad = "overrun";
                else if (got < len && (size_t)m < w)
                    bad = "short";
            }
            if (!bad && crc32_buf(msg + HDR, len - HDR) != get32(msg + 12))
                bad = "crc";
            if (bad)
                logf_("X %s %zu %u %u\n", bad, got, wid, c);
            else
                logf_("M %u %u %u\n", wid, c, len);
        }
        if (delay_us > 0)
            usleep((useconds_t)delay_us);
    }
    logf_("EOF msgs=%ld reads=%ld parts=%ld eintr=%ld\n", msgs, reads, parts, eintrs);
    close(fd);
    return 0;
}
