/*
 * The self-describing payload shared by the reliability helpers (mcw writes
 * it, mcr checks it). The Python checker (tests/reliability/checker.py)
 * decodes the same format.
 *
 * A message of 16 bytes or more ("full"):
 *   [0..4)   u32 LE  total length of the message
 *   [4..6)   u16 LE  writer id
 *   [6..8)   u16 LE  MAGIC (0xC0DE)
 *   [8..12)  u32 LE  the writer's counter (one per write attempt)
 *   [12..16) u32 LE  CRC-32 (zlib's) of bytes [16..length)
 *   [16..)           pseudo-random bytes, a function of (writer, counter)
 *
 * A message shorter than 16 bytes ("tiny") is the little-endian encoding of
 * counter * WSPAN + writer in exactly its length (the writer makes a tiny
 * message only when that value fits), so tiny messages are unique too.
 */
#ifndef MCASTFS_RELIABILITY_PAYLOAD_H
#define MCASTFS_RELIABILITY_PAYLOAD_H

#include <stdint.h>
#include <stddef.h>
#include <string.h>
#include <time.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#define HDR 16
#define MAGIC 0xC0DEu

static uint32_t crc_table[256];

static inline void crc_init(void)
{
    for (uint32_t i = 0; i < 256; i++) {
        uint32_t c = i;
        for (int k = 0; k < 8; k++)
            c = (c & 1) ? 0xEDB88320u ^ (c >> 1) : c >> 1;
        crc_table[i] = c;
    }
}

static inline uint32_t crc32_buf(const unsigned char *p, size_t n)
{
    uint32_t c = 0xFFFFFFFFu;
    for (size_t i = 0; i < n; i++)
        c = crc_table[(c ^ p[i]) & 0xFF] ^ (c >> 8);
    return c ^ 0xFFFFFFFFu;
}

static inline void put32(unsigned char *p, uint32_t v)
{
    p[0] = v & 0xFF; p[1] = (v >> 8) & 0xFF; p[2] = (v >> 16) & 0xFF; p[3] = (v >> 24) & 0xFF;
}

static inline uint32_t get32(const unsigned char *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static inline void fill_body(unsigned char *p, size_t n, uint32_t wid, uint32_t counter)
{
    uint32_t x = (wid * 2654435761u) ^ (counter * 40503u) ^ 0x9E3779B9u;
    if (x == 0)
        x = 1;
    size_t i = 0;
    while (i < n) {
        x ^= x << 13; x ^= x >> 17; x ^= x << 5;
        for (int k = 0; k < 4 && i < n; k++, i++)
            p[i] = (unsigned char)(x >> (8 * k));
    }
}

static inline long long now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}


static void on_usr1(int sig) { (void)sig; }

/* The start every helper shares: SIGUSR1 interrupts a blocked call with
 * EINTR (no SA_RESTART) without ending the process; the log is opened for
 * appending (exit 2 if it cannot be); then `path` is opened with `flags`,
 * printing `open errno=N` and exiting 1 if that fails, or `ready_word`.
 * Returns the open file's descriptor; *logfd receives the log's. */
static inline int helper_start(const char *who, const char *logpath, int *logfd,
                               const char *path, int flags, const char *ready_word)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_usr1;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGUSR1, &sa, NULL);

    *logfd = open(logpath, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    if (*logfd < 0) {
        fprintf(stderr, "%s: log: %s\n", who, strerror(errno));
        exit(2);
    }
    int fd = open(path, flags | O_CLOEXEC);
    if (fd < 0) {
        printf("open errno=%d\n", errno);
        fflush(stdout);
        exit(1);
    }
    printf("%s\n", ready_word);
    fflush(stdout);
    return fd;
}

/*
 * A line message (for groups with message=line): text with no '\n' but,
 * maybe, its last byte, so that the daemon's line cutting gives it back whole:
 *   "L" 4 hex (writer id) ":" 8 hex (counter) ":" 8 hex (total length) ":"
 *   then letters a..z, a function of (writer, counter) and the position;
 *   the last byte is '\n' (a terminated line) or the letter (a message
 *   flushed by fsync or close).
 */
#define LHDR 24

static inline unsigned char line_letter(uint32_t wid, uint32_t counter, size_t i)
{
    uint32_t x = (wid * 2654435761u) ^ (counter * 40503u) ^ (uint32_t)(i * 2246822519u);
    x ^= x >> 15; x *= 0x2c1b3c6dU; x ^= x >> 12;
    return (unsigned char)('a' + x % 26);
}

static inline void fill_line(unsigned char *p, size_t len, uint32_t wid, uint32_t counter, int terminated)
{
    char head[LHDR + 1];
    snprintf(head, sizeof head, "L%04x:%08x:%08zx:", wid & 0xFFFF, counter, len);
    memcpy(p, head, LHDR);
    for (size_t i = LHDR; i < len; i++)
        p[i] = line_letter(wid, counter, i);
    if (terminated)
        p[len - 1] = '\n';
}

/* Checks a whole line message of n bytes; 0 and *wid, *counter when it is
 * intact, else a word saying what is wrong. *need gets the length its header
 * announces once LHDR bytes are there (0 before). */
static inline const char *check_line(const unsigned char *p, size_t n, uint32_t *wid, uint32_t *counter, size_t *need)
{
    *need = 0;
    if (n < LHDR)
        return "short";
    unsigned w, c;
    unsigned long len;
    char head[LHDR + 1];
    memcpy(head, p, LHDR);
    head[LHDR] = 0;
    if (sscanf(head, "L%4x:%8x:%8lx:", &w, &c, &len) != 3 || head[0] != 'L' || head[5] != ':' || head[14] != ':'
        || head[23] != ':' || len < LHDR)
        return "magic";
    *wid = w;
    *counter = c;
    *need = len;
    if (n != len)
        return n < len ? "short" : "overrun";
    for (size_t i = LHDR; i < len; i++) {
        if (p[i] == line_letter(w, c, i))
            continue;
        if (i == len - 1 && p[i] == '\n')
            continue;
        return "body";
    }
    return NULL;
}

#endif
