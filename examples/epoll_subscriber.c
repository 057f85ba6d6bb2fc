/*
 * epoll_subscriber.c - subscribe to one or more member files with epoll(7).
 *
 * What it shows: member files opened O_NONBLOCK work with level-triggered
 * epoll. EPOLLIN means a message is queued (or the member has left); each
 * read(2) with a buffer of at least max_message bytes returns exactly one
 * whole message; EAGAIN means the queue is empty again; 0 (end of file) means
 * the member was removed with `rm`, and the file is dropped from the set. The
 * program ends when no member is left (or after -n COUNT messages).
 *
 *   cc -O2 -Wall -o epoll_subscriber epoll_subscriber.c
 *   ./epoll_subscriber [-n COUNT] GROUP/MEMBER...
 *
 * A relative GROUP/MEMBER is taken under $MCASTFS (default /mnt/mcastfs); an
 * absolute path is used as it is. The members must exist (touch them first).
 *
 *   $ touch /mnt/mcastfs/chat/carol /mnt/mcastfs/logs/all
 *   $ ./epoll_subscriber chat/carol logs/all
 *   chat/carol: alice: hi everyone
 *   logs/all: ERROR disk full
 *   logs/all: (left)                  <- after `rm /mnt/mcastfs/logs/all`
 *   chat/carol: (left)
 *   $
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <unistd.h>

/* More than the largest message mcastfs accepts (1,044,480 bytes). */
static char buf[1 << 20];

int main(int argc, char **argv)
{
    long count = 0;
    int opt;
    while ((opt = getopt(argc, argv, "n:")) != -1) {
        if (opt == 'n')
            count = strtol(optarg, NULL, 10);
        else {
            fprintf(stderr, "usage: %s [-n COUNT] GROUP/MEMBER...\n", argv[0]);
            return 2;
        }
    }
    if (optind >= argc) {
        fprintf(stderr, "usage: %s [-n COUNT] GROUP/MEMBER...\n", argv[0]);
        return 2;
    }
    const char *root = getenv("MCASTFS") ? getenv("MCASTFS") : "/mnt/mcastfs";

    int ep = epoll_create1(EPOLL_CLOEXEC);
    if (ep < 0) {
        perror("epoll_create1");
        return 1;
    }
    int open_files = 0;
    for (int i = optind; i < argc; i++) {
        char path[4096];
        if (argv[i][0] == '/')
            snprintf(path, sizeof path, "%s", argv[i]);
        else
            snprintf(path, sizeof path, "%s/%s", root, argv[i]);
        int fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
        if (fd < 0) {
            fprintf(stderr, "%s: %s\n", path, strerror(errno));
            return 1;
        }
        /* The event carries the index of the name to print. */
        struct epoll_event ev = {.events = EPOLLIN, .data.u64 = ((uint64_t)i << 32) | (uint32_t)fd};
        if (epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev) < 0) {
            perror("epoll_ctl");
            return 1;
        }
        open_files++;
    }
    fprintf(stderr, "[subscribed to %d member%s]\n", open_files, open_files == 1 ? "" : "s");

    long received = 0;
    while (open_files > 0) {
        struct epoll_event events[16];
        int n = epoll_wait(ep, events, 16, -1);
        if (n < 0) {
            if (errno == EINTR)
                continue; /* a signal: just wait again */
            perror("epoll_wait");
            return 1;
        }
        for (int k = 0; k < n; k++) {
            int fd = (int)(uint32_t)events[k].data.u64;
            const char *name = argv[events[k].data.u64 >> 32];
            for (;;) { /* everything queued now */
                ssize_t len = read(fd, buf, sizeof buf);
                if (len < 0 && errno == EINTR)
                    continue;
                if (len < 0 && errno == EAGAIN)
                    break; /* empty: back to epoll_wait */
                if (len < 0) {
                    fprintf(stderr, "%s: %s\n", name, strerror(errno));
                    return 1;
                }
                if (len == 0) { /* the member left: drop it */
                    printf("%s: (left)\n", name);
                    fflush(stdout);
                    epoll_ctl(ep, EPOLL_CTL_DEL, fd, NULL);
                    close(fd);
                    open_files--;
                    break;
                }
                if (buf[len - 1] == '\n')
                    len--;
                printf("%s: %.*s\n", name, (int)len, buf);
                fflush(stdout);
                if (count && ++received >= count)
                    return 0;
            }
        }
    }
    return 0;
}
