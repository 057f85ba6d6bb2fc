/*
 * framed_publisher.c - publish many messages per write(2) through G/frames/send.
 *
 * What it shows: a write on the framed view carries a batch of messages (each
 * a little-endian u32 length, then its bytes), built here with
 * clients/c/mcastfs.h. The group delivers the longest prefix of the batch
 * that every member can take now, at least one message, and write(2) returns
 * the bytes of the messages it delivered: when a member's queue is full the
 * write is short. mcastfs_send_batch writes the rest again until all is
 * delivered, so no message is lost or sent twice; the publisher counts its
 * writes to show how many were short.
 *
 *   cc -O2 -Wall -I ../clients/c -o framed_publisher framed_publisher.c
 *   ./framed_publisher [-n COUNT] [-b BATCH] [-a MEMBER] GROUP [TEXT]
 *
 * Without -n, every line of standard input is one message (its newline left
 * out; empty lines are skipped: there are no empty messages, and lines
 * longer than 64 KiB are cut), and what one read of standard input returned
 * is sent before the next read: typed lines go out at once. With -n COUNT
 * it sends "TEXT 0" .. "TEXT COUNT-1" (TEXT defaults to "message"). Up to
 * BATCH messages (default 64; 0: as many as fit in 1,044,480 bytes) go into
 * one write. GROUP is taken under $MCASTFS (default /mnt/mcastfs), or used as
 * it is when absolute. -a MEMBER writes on G/frames/MEMBER instead, so the
 * messages come from that member.
 *
 *   $ seq 3 | ./framed_publisher chat
 *   sent 3 messages to chat/frames/send in 1 batch, 1 write (0 short) in 0.00 s
 *
 *   $ echo "member slow capacity=10" > /mnt/mcastfs/chat/ctl   # and a slow reader
 *   $ ./framed_publisher -n 1000 -b 100 chat tick
 *   sent 1000 messages to chat/frames/send in 10 batches, 991 writes (981 short) in 1.27 s
 *
 * (The slow reader takes one message at a time, and each time the waiting
 * write delivers the one that now fits and returns short.)
 *
 * On standard output it prints that one line; errors go to standard error
 * with exit status 1.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* Every write mcastfs_send_batch makes goes through here, to be counted:
 * the helper needs no such hook; this example uses it to show short writes. */
static long writes, short_writes;
static ssize_t counted_write(int fd, const void *buf, size_t len)
{
    ssize_t n = write(fd, buf, len);
    writes++;
    if (n >= 0 && (size_t)n < len)
        short_writes++;
    return n;
}
#define MCASTFS_WRITE(fd, buf, len) counted_write((fd), (buf), (len))
#include "mcastfs.h"

static unsigned char out[MCASTFS_MAX_BATCH];

static void usage(const char *argv0)
{
    fprintf(stderr, "usage: %s [-n COUNT] [-b BATCH] [-a MEMBER] GROUP [TEXT]\n", argv0);
    exit(2);
}

/* Sends the batch built so far, all of it, and empties it. */
static void flush_batch(int fd, struct mcastfs_batch *b, const char *path, long *batches)
{
    size_t sent = 0;
    if (b->count == 0)
        return;
    if (mcastfs_send_batch(fd, b->data, b->len, &sent, NULL) < 0) {
        fprintf(stderr, "%s: %s (after %zu of %zu bytes of this batch)\n", path, strerror(errno), sent, b->len);
        exit(1);
    }
    (*batches)++;
    mcastfs_batch_clear(b);
}

/* Adds one message, sending the batch first when it is full. */
static void add(int fd, struct mcastfs_batch *b, size_t per_batch, const char *msg, size_t len, const char *path,
                long *batches)
{
    int r;
    if (per_batch && b->count == per_batch)
        flush_batch(fd, b, path, batches);
    r = mcastfs_batch_add(b, msg, len);
    if (r == ENOBUFS) { /* no room left in one write: send, then start again */
        flush_batch(fd, b, path, batches);
        r = mcastfs_batch_add(b, msg, len);
    }
    if (r != 0) {
        fprintf(stderr, "%s: a message of %zu bytes: %s\n", path, len, strerror(r));
        exit(1);
    }
}

int main(int argc, char **argv)
{
    long count = -1, batches = 0, messages = 0;
    size_t per_batch = 64;
    const char *member = NULL;
    int opt;
    while ((opt = getopt(argc, argv, "n:b:a:")) != -1) {
        if (opt == 'n')
            count = strtol(optarg, NULL, 10);
        else if (opt == 'b')
            per_batch = (size_t)strtoul(optarg, NULL, 10);
        else if (opt == 'a')
            member = optarg;
        else
            usage(argv[0]);
    }
    if (optind >= argc || argc - optind > 2)
        usage(argv[0]);
    const char *group = argv[optind];
    const char *text = optind + 1 < argc ? argv[optind + 1] : "message";
    const char *root = getenv("MCASTFS") ? getenv("MCASTFS") : "/mnt/mcastfs";

    char path[4096];
    if (group[0] == '/')
        snprintf(path, sizeof path, "%s/frames/%s", group, member ? member : "send");
    else
        snprintf(path, sizeof path, "%s/%s/frames/%s", root, group, member ? member : "send");
    /* Blocking: a write waits until its first message fits, then delivers
     * what fits and returns short; mcastfs_send_batch writes the rest. */
    int fd = open(path, O_WRONLY | O_CLOEXEC);
    if (fd < 0) {
        fprintf(stderr, "%s: %s\n", path, strerror(errno));
        return 1;
    }

    struct mcastfs_batch b;
    mcastfs_batch_init(&b, out, sizeof out);
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    if (count >= 0) {
        for (long i = 0; i < count; i++) {
            char msg[4200];
            int len = snprintf(msg, sizeof msg, "%s %ld", text, i);
            if (len < 0 || (size_t)len >= sizeof msg) {
                fprintf(stderr, "TEXT is too long for this example\n");
                return 1;
            }
            add(fd, &b, per_batch, msg, (size_t)len, path, &batches);
            messages++;
        }
    } else {
        /* Whatever one read(2) returned is sent before reading again, so
         * lines typed at a terminal or coming slowly down a pipe (tail -F)
         * go out at once, and a fast pipe fills whole batches. */
        static char in[1 << 16];
        size_t have = 0;
        for (;;) {
            ssize_t n = read(0, in + have, sizeof in - have);
            if (n < 0 && errno == EINTR)
                continue;
            if (n < 0) {
                perror("standard input");
                return 1;
            }
            if (n == 0) {
                if (have > 0) { /* a last line without its newline */
                    add(fd, &b, per_batch, in, have, path, &batches);
                    messages++;
                }
                break;
            }
            have += (size_t)n;
            size_t start = 0;
            for (size_t i = 0; i < have; i++) {
                if (in[i] != '\n')
                    continue;
                if (i > start) {
                    add(fd, &b, per_batch, in + start, i - start, path, &batches);
                    messages++;
                }
                start = i + 1;
            }
            if (start == 0 && have == sizeof in) { /* a line longer than the buffer: cut it */
                add(fd, &b, per_batch, in, have, path, &batches);
                messages++;
                start = have;
            }
            memmove(in, in + start, have - start);
            have -= start;
            flush_batch(fd, &b, path, &batches);
        }
    }
    flush_batch(fd, &b, path, &batches);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    close(fd);

    double seconds = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
    const char *shown = path + (group[0] == '/' ? 0 : strlen(root) + 1);
    printf("sent %ld message%s to %s in %ld batch%s, %ld write%s (%ld short) in %.2f s\n", messages,
           messages == 1 ? "" : "s", shown, batches, batches == 1 ? "" : "es", writes, writes == 1 ? "" : "s",
           short_writes, seconds);
    return 0;
}
