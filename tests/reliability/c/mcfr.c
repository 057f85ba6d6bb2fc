/*
 * mcfr: a framed reader for the reliability tests. Opens PATH (G/frames/NAME)
 * and reads with blocking read(2) until end of file, checking every frame
 * against the contract's layout ("Reading frames": 8-byte aligned,
 * header_size = 40 + name_size, zero padding, flags 0 or 1: bit 0 marks a
 * private message, which has name_size 0) and every payload
 * against its own header (payload.h), and logs one line per frame with its
 * metadata for the checker.
 *
 *   mcfr -p PATH -l LOG [-v] [-t [-P]] [-s SEED] [-d DELAY_US] [-A ALARM_S]
 *
 *   -v     a new buffer size for every read: mostly 1 MiB, often 40 B .. 4 KiB
 *          (a first frame that does not fit fails with EMSGSIZE: logged, and
 *          read again with 1 MiB)
 *   -t     the payloads are line messages (payload.h, "A line message")
 *   -P     (with -t) a payload shorter than its header says may be the start of
 *          a line a killed writer left in its file, which close sent: logged
 *          as "H", for the checker to recognise, not as corrupt
 *   -d US  pause US microseconds after each read (a slow reader)
 *
 * SIGUSR1 is caught without SA_RESTART: a blocked read fails with EINTR and is
 * retried.
 *
 * stdout: "opened" once PATH is open. LOG lines:
 *   F wid counter len seq pid uid gid dropped name [P]    a frame whose payload is intact
 *   G HEX seq pid uid gid dropped name [P]                a frame of a tiny message
 *   H len crc32 seq pid uid gid dropped name [P]          (-P) a line cut short: its length
 *                                                         and the CRC-32 of its bytes
 *   (P: flags bit 0, a private message sent through G/peers/NAME)
 *   E bufsize first_frame_size                        EMSGSIZE with bufsize; the next
 *                                                     read's first frame has first_frame_size
 *   X why ...                                         a corrupt frame or payload
 *   ERR errno                                         read failed; the reader stops
 *   EOF msgs=N reads=N maxframes=N emsgsize=N eintr=N
 * (name is "-" for a message written on send)
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

#define BIG (1u << 20)

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
    char line[512];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    if (n < 0 || (size_t)n >= sizeof line || write(logfd, line, (size_t)n) != n)
        _exit(4);
}

static uint64_t get64(const unsigned char *p) { return (uint64_t)get32(p) | (uint64_t)get32(p + 4) << 32; }

int main(int argc, char **argv)
{
    const char *path = NULL, *logpath = NULL;
    long delay_us = 0, alarm_s = 600;
    uint64_t seed = 1;
    int variable = 0, text = 0, prefixes = 0, opt;
    while ((opt = getopt(argc, argv, "p:l:vtPs:d:A:")) != -1) {
        switch (opt) {
        case 'p': path = optarg; break;
        case 'l': logpath = optarg; break;
        case 'v': variable = 1; break;
        case 't': text = 1; break;
        case 'P': prefixes = 1; break;
        case 's': seed = strtoull(optarg, NULL, 10); break;
        case 'd': delay_us = strtol(optarg, NULL, 10); break;
        case 'A': alarm_s = strtol(optarg, NULL, 10); break;
        default: fprintf(stderr, "mcfr: bad option\n"); return 2;
        }
    }
    if (!path || !logpath) {
        fprintf(stderr, "mcfr: need -p PATH -l LOG\n");
        return 2;
    }
    alarm((unsigned)alarm_s);
    rng = seed * 0x9E3779B97F4A7C15ull + 11;
    crc_init();
    int fd = helper_start("mcfr", logpath, &logfd, path, O_RDONLY, "opened");

    unsigned char *buf;
    if (posix_memalign((void **)&buf, 4096, BIG) != 0)
        return 2;
    long msgs = 0, reads = 0, emsgsize = 0, eintrs = 0, maxframes = 0;
    size_t failed_size = 0; /* the buffer of the last EMSGSIZE, judged by the next read */
    for (;;) {
        size_t want = BIG;
        if (variable && !failed_size && rnd() % 100 < 30)
            want = 40 + rnd() % 4057;
        ssize_t n = read(fd, buf, want);
        reads++;
        if (n < 0 && errno == EINTR) {
            eintrs++;
            continue;
        }
        if (n < 0 && errno == EMSGSIZE && want < BIG) {
            emsgsize++;
            failed_size = want;
            continue;
        }
        if (n < 0) {
            logf_("ERR %d\n", errno);
            return 1;
        }
        if (n == 0)
            break;
        size_t off = 0, end = (size_t)n;
        long frames = 0;
        while (off < end) {
            if (end - off < 40) {
                logf_("X truncated-header %zu %zu\n", off, end);
                break;
            }
            const unsigned char *f = buf + off;
            uint32_t size = get32(f);
            unsigned header = f[4] | (unsigned)f[5] << 8, name_size = f[6], flags = f[7];
            uint64_t seq = get64(f + 8);
            uint32_t pid = get32(f + 24), uid = get32(f + 28), gid = get32(f + 32), dropped = get32(f + 36);
            if (header != 40 + name_size || (flags & ~1u) != 0 || ((flags & 1u) && name_size != 0)) {
                logf_("X header %zu header_size=%u name_size=%u flags=%u\n", off, header, name_size, flags);
                break;
            }
            size_t pend = off + header + size, next = (pend + 7) & ~(size_t)7;
            if (pend > end || (next > end && pend != end)) {
                logf_("X truncated %zu size=%u end=%zu\n", off, size, end);
                break;
            }
            if (next > end)
                next = end;
            int pad_ok = 1;
            for (size_t i = pend; i < next; i++)
                pad_ok &= buf[i] == 0;
            if (!pad_ok) {
                logf_("X padding %zu\n", off);
                break;
            }
            if (frames == 0 && failed_size) {
                logf_("E %zu %zu\n", failed_size, (size_t)(header + size));
                failed_size = 0;
            }
            char name[256] = "-";
            if (name_size) {
                memcpy(name, f + 40, name_size);
                name[name_size] = 0;
            }
            const unsigned char *p = f + header;
            const char *private_ = flags & 1u ? " P" : "";
            if (text) {
                uint32_t wid = 0, c = 0;
                size_t need;
                const char *bad = check_line(p, size, &wid, &c, &need);
                if (bad && prefixes && strcmp(bad, "short") == 0)
                    logf_("H %u %08x %llu %u %u %u %u %s%s\n", size, crc32_buf(p, size), (unsigned long long)seq, pid,
                          uid, gid, dropped, name, private_);
                else if (bad)
                    logf_("X %s %u %u %u\n", bad, size, wid, c);
                else
                    logf_("F %u %u %u %llu %u %u %u %u %s%s\n", wid, c, size, (unsigned long long)seq, pid, uid, gid,
                          dropped, name, private_);
            } else if (size < HDR) {
                char hex[2 * HDR + 1];
                for (uint32_t i = 0; i < size; i++)
                    sprintf(hex + 2 * i, "%02x", p[i]);
                logf_("G %s %llu %u %u %u %u %s%s\n", hex, (unsigned long long)seq, pid, uid, gid, dropped, name,
                      private_);
            } else {
                uint32_t len = get32(p), wid = p[4] | (uint32_t)p[5] << 8, magic = p[6] | (uint32_t)p[7] << 8;
                uint32_t c = get32(p + 8);
                if (magic != MAGIC || len != size || crc32_buf(p + HDR, len - HDR) != get32(p + 12))
                    logf_("X payload %u %u %u\n", size, wid, c);
                else
                    logf_("F %u %u %u %llu %u %u %u %u %s%s\n", wid, c, size, (unsigned long long)seq, pid, uid, gid,
                          dropped, name, private_);
            }
            msgs++;
            frames++;
            off = next;
        }
        if (frames > maxframes)
            maxframes = frames;
        if (delay_us > 0)
            usleep((useconds_t)delay_us);
    }
    logf_("EOF msgs=%ld reads=%ld maxframes=%ld emsgsize=%ld eintr=%ld\n", msgs, reads, maxframes, emsgsize, eintrs);
    close(fd);
    return 0;
}
