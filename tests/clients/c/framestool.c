/*
 * framestool: drives clients/c/mcastfs.h for tests/clients/test_c_header.py.
 *
 *   framestool parse              frames of stdin, one line each, then
 *                                 "end" or "error truncated|corrupt offset=N"
 *   framestool build CAP HEX...   the batch of the messages (hex) built in a
 *                                 CAP-byte buffer, written to stdout with
 *                                 mcastfs_send_batch; a refused message
 *                                 prints "add I ERRNO" on stderr, exit 2;
 *                                 "@N" is a message of N bytes of 'x'
 *   framestool send SCRIPT HEX... mcastfs_send_batch of those messages into
 *                                 a scripted write: stdout gets the bytes it
 *                                 accepted, stderr "result=R errno=E
 *                                 sent_bytes=B sent_messages=M writes=W"
 *
 * SCRIPT is comma-separated answers for the successive writes: rN accepts
 * the first N records offered (or all, if fewer), bN returns N bytes as if
 * delivered, EAGAIN / EINTR / EMSGSIZE fail, 0 returns 0, "all" accepts
 * everything; once the script is used up every write accepts everything.
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static ssize_t scripted_write(int fd, const void *buf, size_t len);
#define MCASTFS_WRITE(fd, buf, len) scripted_write((fd), (buf), (len))
#include "mcastfs.h"

#define BUFFER_SIZE (4u << 20)

static unsigned char in[BUFFER_SIZE];
static unsigned char batch[BUFFER_SIZE];
static unsigned char accepted[BUFFER_SIZE];
static size_t accepted_len;
static int real_write = 1;
static char *script;
static unsigned writes;

static void put_hex(const char *label, const unsigned char *p, size_t n)
{
    size_t i;
    printf(" %s=", label);
    if (p == NULL) {
        printf("none");
        return;
    }
    for (i = 0; i < n; i++)
        printf("%02x", p[i]);
}

static void accept_bytes(const void *buf, size_t n)
{
    memcpy(accepted + accepted_len, buf, n);
    accepted_len += n;
}

/* The next comma-separated step of the script, or NULL. */
static char *next_step(void)
{
    char *step = script, *comma;
    if (step == NULL)
        return NULL;
    comma = strchr(step, ',');
    if (comma != NULL) {
        *comma = '\0';
        script = comma + 1;
    } else {
        script = NULL;
    }
    return step;
}

static ssize_t scripted_write(int fd, const void *buf, size_t len)
{
    char *step;
    const unsigned char *p = (const unsigned char *)buf;

    if (real_write)
        return write(fd, buf, len);
    writes++;
    step = next_step();
    if (step == NULL || strcmp(step, "all") == 0) {
        accept_bytes(buf, len);
        return (ssize_t)len;
    }
    if (step[0] == 'r') {
        long records = strtol(step + 1, NULL, 10);
        size_t n = 0;
        while (records-- > 0 && n < len)
            n += 4 + mcastfs_get_le32(p + n);
        accept_bytes(buf, n);
        return (ssize_t)n;
    }
    if (step[0] == 'b') {
        size_t n = (size_t)strtoul(step + 1, NULL, 10);
        accept_bytes(buf, n);
        return (ssize_t)n;
    }
    if (strcmp(step, "0") == 0)
        return 0;
    errno = strcmp(step, "EAGAIN") == 0 ? EAGAIN : strcmp(step, "EINTR") == 0 ? EINTR : EMSGSIZE;
    return -1;
}

static const char *errno_name(int e)
{
    switch (e) {
    case 0: return "0";
    case EAGAIN: return "EAGAIN";
    case EINTR: return "EINTR";
    case EIO: return "EIO";
    case EINVAL: return "EINVAL";
    case EMSGSIZE: return "EMSGSIZE";
    case ENOBUFS: return "ENOBUFS";
    default: return "other";
    }
}

/* A message from its hex, or "@N": N bytes of 'x' (too long for argv in hex). */
static size_t from_hex(const char *hex, unsigned char *out)
{
    size_t n = strlen(hex) / 2, i;
    if (hex[0] == '@') {
        n = (size_t)strtoul(hex + 1, NULL, 10);
        memset(out, 'x', n);
        return n;
    }
    for (i = 0; i < n; i++) {
        unsigned v;
        sscanf(hex + 2 * i, "%2x", &v);
        out[i] = (unsigned char)v;
    }
    return n;
}

static int parse(void)
{
    size_t len = fread(in, 1, sizeof in, stdin);
    struct mcastfs_frames it;
    struct mcastfs_frame f;
    int r;

    mcastfs_frames_init(&it, in, len);
    while ((r = mcastfs_frame_next(&it, &f)) == MCASTFS_FRAME_OK) {
        printf("frame size=%u header_size=%u name_size=%u flags=%u sequence=%llu time=%llu"
               " pid=%u uid=%u gid=%u dropped=%u",
               (unsigned)f.size, (unsigned)f.header_size, (unsigned)f.name_size, (unsigned)f.flags,
               (unsigned long long)f.sequence, (unsigned long long)f.time_ns, (unsigned)f.pid,
               (unsigned)f.uid, (unsigned)f.gid, (unsigned)f.dropped);
        put_hex("name", f.name, f.name_size);
        put_hex("payload", f.payload, f.size);
        printf(" payload_offset=%zu\n", (size_t)(f.payload - in));
    }
    if (r == MCASTFS_FRAME_END)
        printf("end\n");
    else
        printf("error %s offset=%zu\n", r == MCASTFS_FRAME_TRUNCATED ? "truncated" : "corrupt", it.offset);
    /* A failed iterator stays where it failed. */
    if (r < 0 && mcastfs_frame_next(&it, &f) != r)
        return 3;
    return 0;
}

static int build(int argc, char **argv)
{
    size_t cap = (size_t)strtoul(argv[0], NULL, 10);
    struct mcastfs_batch b;
    static unsigned char message[BUFFER_SIZE / 2];
    int i;

    if (cap > sizeof batch)
        return 4;
    mcastfs_batch_init(&b, batch, cap);
    for (i = 1; i < argc; i++) {
        size_t before = b.len;
        int e = mcastfs_batch_add(&b, message, from_hex(argv[i], message));
        if (e != 0) {
            fprintf(stderr, "add %d %s\n", i - 1, errno_name(e));
            return b.len == before && b.count == (size_t)(i - 1) ? 2 : 5;
        }
    }
    if (b.count != (size_t)(argc - 1))
        return 6;
    return mcastfs_send_batch(1, b.data, b.len, NULL, NULL) == 0 ? 0 : 7;
}

static int send_command(int argc, char **argv)
{
    struct mcastfs_batch b;
    static unsigned char message[BUFFER_SIZE / 2];
    size_t sent_bytes = 99, sent_messages = 99;
    int i, r, e;

    script = argv[0];
    mcastfs_batch_init(&b, batch, sizeof batch);
    if (argc == 2 && strcmp(argv[1], "-") == 0) {
        /* "-" as the only message: a record that runs past the batch. */
        mcastfs_put_le32(batch, 9);
        b.len = 5;
    } else {
        for (i = 1; i < argc; i++)
            if (mcastfs_batch_add(&b, message, from_hex(argv[i], message)) != 0)
                return 2;
    }
    real_write = 0;
    errno = 0;
    r = mcastfs_send_batch(1, b.data, b.len, &sent_bytes, &sent_messages);
    e = r < 0 ? errno : 0;
    real_write = 1;
    fprintf(stderr, "result=%d errno=%s sent_bytes=%zu sent_messages=%zu writes=%u\n", r, errno_name(e),
            sent_bytes, sent_messages, writes);
    /* Not mcastfs_send_batch: after a broken count this is not a batch. */
    return fwrite(accepted, 1, accepted_len, stdout) == accepted_len ? 0 : 7;
}

int main(int argc, char **argv)
{
    if (argc >= 2 && strcmp(argv[1], "parse") == 0)
        return parse();
    if (argc >= 3 && strcmp(argv[1], "build") == 0)
        return build(argc - 2, argv + 2);
    if (argc >= 3 && strcmp(argv[1], "send") == 0)
        return send_command(argc - 2, argv + 2);
    fprintf(stderr, "usage: framestool parse | build CAP HEX... | send SCRIPT HEX...\n");
    return 64;
}
