/*
 * epollet: edge-triggered epoll (EPOLLET) on mcastfs files, several rounds,
 * as event loops use it (contract: "Poll, edge-triggered"). An edge-triggered
 * poller learns of a change only from a new event, so each missed wake-up is
 * a hang in a real program; here it is a bounded wait that reports a MISS.
 *
 *   epollet [-t MS] [-r ROUNDS] read  GROUPDIR
 *   epollet [-t MS] [-r ROUNDS] write GROUPDIR
 *
 *   -t MS      how long to wait for each event (default 1000)
 *   -r ROUNDS  rounds per phase (default 5)
 *
 * read: joins member "et-reader", opens it O_NONBLOCK, EPOLLIN|EPOLLET.
 *   drained rounds: send 1 (odd rounds) or 3 (even rounds) messages through
 *     GROUPDIR/send; EPOLLIN must come; read until EAGAIN gets them all.
 *   undrained rounds: send 1, EPOLLIN must come; leave it queued, send
 *     another: a new EPOLLIN must come (a pipe gives one per write); drain.
 * write: joins member "et-full" with capacity=1, opens GROUPDIR/send
 *   O_NONBLOCK, EPOLLOUT|EPOLLET; a forked process drains the member on
 *   request, from its own file.
 *   full rounds: write until EAGAIN (one message fills it); the other
 *     process drains; EPOLLOUT must come.
 *   parked rounds: with the member full, another process blocks in write(2)
 *     on send (status shows blocked_writers=1); one drain completes that
 *     write, which fills the member again; the next drain must give EPOLLOUT.
 *
 * Output, one line per event or round, flushed at once:
 *   ok read drained 2: sent 3, EPOLLIN after 0.4 ms, read 3
 *   MISS read drained 2: no EPOLLIN within 1000 ms, 3 message(s) were waiting
 *   summary read: 10 waits, 0 missed
 * Exit status: 0 when nothing was missed, 1 on a miss or a wrong count,
 * 2 on a usage or setup error.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static int wait_ms = 1000;
static int rounds = 5;
static int waits, missed, wrong;
static char buf[1 << 20]; /* more than the largest message (1,044,480 bytes) */

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

static void die(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    printf("error: ");
    vprintf(fmt, ap);
    printf(" (%s)\n", strerror(errno));
    va_end(ap);
    exit(2);
}

static void path_of(char *out, size_t size, const char *dir, const char *name)
{
    if ((size_t)snprintf(out, size, "%s/%s", dir, name) >= size) {
        errno = ENAMETOOLONG;
        die("path %s/%s", dir, name);
    }
}

static void join(const char *dir, const char *member)
{
    char path[4096];
    path_of(path, sizeof path, dir, member);
    int fd = open(path, O_CREAT | O_EXCL | O_RDONLY, 0644);
    if (fd < 0)
        die("join %s", path);
    close(fd);
}

static void ctl(const char *dir, const char *command)
{
    char path[4096];
    path_of(path, sizeof path, dir, "ctl");
    int fd = open(path, O_WRONLY);
    if (fd < 0 || write(fd, command, strlen(command)) != (ssize_t)strlen(command))
        die("ctl %s: %s", path, command);
    close(fd);
}

static void send_message(int fd, const char *text)
{
    if (write(fd, text, strlen(text)) != (ssize_t)strlen(text))
        die("send %s", text);
}

/* Waits up to wait_ms for one event on the only file in `ep`; its events, or
 * 0 on a timeout. `*took` is the wait in milliseconds. */
static unsigned wait_event(int ep, double *took)
{
    struct epoll_event ev;
    double t0 = now_ms();
    int n;
    do
        n = epoll_wait(ep, &ev, 1, wait_ms);
    while (n < 0 && errno == EINTR);
    if (n < 0)
        die("epoll_wait");
    *took = now_ms() - t0;
    waits++;
    return n ? ev.events : 0;
}

/* Reads a non-blocking file until EAGAIN; the number of messages. */
static int drain(int fd)
{
    int count = 0;
    for (;;) {
        ssize_t n = read(fd, buf, sizeof buf);
        if (n > 0) {
            count++;
            continue;
        }
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && errno != EAGAIN)
            die("read");
        return count;
    }
}

/* One expected event: prints ok or MISS. True when it came. `state` says
 * what should have made the event come. */
static int expect(int ep, unsigned want, const char *side, const char *round, const char *state)
{
    double took;
    unsigned got = wait_event(ep, &took);
    const char *name = want == EPOLLIN ? "EPOLLIN" : "EPOLLOUT";
    if (got & want) {
        printf("ok %s %s: %s after %.1f ms\n", side, round, name, took);
        fflush(stdout);
        return 1;
    }
    missed++;
    if (got)
        printf("MISS %s %s: events=0x%x without %s after %.1f ms, though %s\n", side, round, got, name, took, state);
    else
        printf("MISS %s %s: no %s within %d ms, though %s\n", side, round, name, wait_ms, state);
    fflush(stdout);
    return 0;
}

static void check_count(const char *side, const char *round, const char *what, int got, int want)
{
    if (got == want)
        return;
    wrong++;
    printf("WRONG %s %s: %s %d, expected %d\n", side, round, what, got, want);
    fflush(stdout);
}

static int read_side(const char *dir)
{
    char path[4096], round[64], text[64];
    join(dir, "et-reader");
    path_of(path, sizeof path, dir, "et-reader");
    int rd = open(path, O_RDONLY | O_NONBLOCK);
    if (rd < 0)
        die("open %s", path);
    path_of(path, sizeof path, dir, "send");
    int wr = open(path, O_WRONLY | O_NONBLOCK);
    if (wr < 0)
        die("open %s", path);
    int ep = epoll_create1(EPOLL_CLOEXEC);
    struct epoll_event ev = {.events = EPOLLIN | EPOLLET};
    if (ep < 0 || epoll_ctl(ep, EPOLL_CTL_ADD, rd, &ev) < 0)
        die("epoll EPOLLIN|EPOLLET");

    for (int r = 1; r <= rounds; r++) {
        int k = r % 2 ? 1 : 3;
        for (int j = 0; j < k; j++) {
            snprintf(text, sizeof text, "drained-%d-%d", r, j);
            send_message(wr, text);
        }
        snprintf(round, sizeof round, "drained %d (sent %d)", r, k);
        expect(ep, EPOLLIN, "read", round, k == 1 ? "1 message is queued" : "3 messages are queued");
        check_count("read", round, "read until EAGAIN got", drain(rd), k);
    }
    for (int r = 1; r <= rounds; r++) {
        snprintf(round, sizeof round, "undrained %d, first", r);
        send_message(wr, "first");
        expect(ep, EPOLLIN, "read", round, "1 message is queued");
        snprintf(round, sizeof round, "undrained %d, second", r);
        send_message(wr, "second");
        expect(ep, EPOLLIN, "read", round, "a second message arrived (the first is still queued)");
        snprintf(round, sizeof round, "undrained %d", r);
        check_count("read", round, "read until EAGAIN got", drain(rd), 2);
    }
    printf("summary read: %d waits, %d missed, %d wrong counts\n", waits, missed, wrong);
    return missed || wrong;
}

/* The other process: on request 'd' drains its own file of the member, on
 * '1' reads one message; it answers with the count. */
struct drainer {
    pid_t pid;
    int request, answer;
};

static struct drainer start_drainer(const char *member_path)
{
    int to_child[2], to_parent[2];
    if (pipe(to_child) < 0 || pipe(to_parent) < 0)
        die("pipe");
    pid_t pid = fork();
    if (pid < 0)
        die("fork");
    if (pid == 0) {
        close(to_child[1]);
        close(to_parent[0]);
        int fd = open(member_path, O_RDONLY | O_NONBLOCK);
        if (fd < 0)
            die("drainer: open %s", member_path);
        char c;
        while (read(to_child[0], &c, 1) == 1) {
            int count = c == '1' ? read(fd, buf, sizeof buf) > 0 : drain(fd);
            if (write(to_parent[1], &count, sizeof count) != sizeof count)
                _exit(2);
        }
        _exit(0);
    }
    close(to_child[0]);
    close(to_parent[1]);
    return (struct drainer){.pid = pid, .request = to_child[1], .answer = to_parent[0]};
}

static int drain_there(struct drainer *d, const char *request)
{
    int count;
    if (write(d->request, request, 1) != 1 || read(d->answer, &count, sizeof count) != sizeof count)
        die("drainer");
    return count;
}

/* Fills the member from `wr` until EAGAIN; the number of messages written. */
static int fill(int wr, int round)
{
    char text[64];
    for (int written = 0;; written++) {
        snprintf(text, sizeof text, "full-%d-%d", round, written);
        ssize_t n = write(wr, text, strlen(text));
        if (n < 0 && errno == EAGAIN)
            return written;
        if (n != (ssize_t)strlen(text))
            die("write send");
        if (written > 10) {
            errno = 0;
            die("send never said EAGAIN: is et-full's capacity 1?");
        }
    }
}

static int status_shows(const char *dir, const char *needle)
{
    char path[4096];
    path_of(path, sizeof path, dir, "status");
    int fd = open(path, O_RDONLY);
    if (fd < 0)
        die("open %s", path);
    ssize_t total = 0, n;
    while ((n = read(fd, buf + total, sizeof buf - 1 - total)) > 0)
        total += n;
    close(fd);
    buf[total < 0 ? 0 : total] = 0;
    return strstr(buf, needle) != NULL;
}

static int write_side(const char *dir)
{
    char member[4096], path[4096], round[64];
    join(dir, "et-full");
    ctl(dir, "member et-full capacity=1\n");
    path_of(member, sizeof member, dir, "et-full");
    path_of(path, sizeof path, dir, "send");
    struct drainer drainer = start_drainer(member);
    int wr = open(path, O_WRONLY | O_NONBLOCK);
    if (wr < 0)
        die("open %s", path);
    int ep = epoll_create1(EPOLL_CLOEXEC);
    struct epoll_event ev = {.events = EPOLLOUT | EPOLLET};
    if (ep < 0 || epoll_ctl(ep, EPOLL_CTL_ADD, wr, &ev) < 0)
        die("epoll EPOLLOUT|EPOLLET");
    /* Adding a ready file reports it once, as for any file. */
    expect(ep, EPOLLOUT, "write", "initial", "send has room");

    for (int r = 1; r <= rounds; r++) {
        snprintf(round, sizeof round, "full %d", r);
        check_count("write", round, "messages written before EAGAIN", fill(wr, r), 1);
        int drained = drain_there(&drainer, "d");
        check_count("write", round, "the other process drained", drained, 1);
        expect(ep, EPOLLOUT, "write", round, "the other process drained the member: send has room");
    }
    for (int r = 1; r <= rounds; r++) {
        snprintf(round, sizeof round, "parked %d", r);
        check_count("write", round, "messages written before EAGAIN", fill(wr, 100 + r), 1);
        pid_t blocker = fork();
        if (blocker < 0)
            die("fork");
        if (blocker == 0) {
            int fd = open(path, O_WRONLY);
            _exit(fd >= 0 && write(fd, "parked", 6) == 6 ? 0 : 3);
        }
        double deadline = now_ms() + 5000;
        while (!status_shows(dir, "blocked_writers=1")) {
            if (now_ms() > deadline) {
                errno = 0;
                die("the blocking writer did not park within 5 s");
            }
            usleep(2000);
        }
        /* Taking one message completes the parked write, which fills the
         * member again (a drain until EAGAIN would take that one as well). */
        check_count("write", round, "the first read got", drain_there(&drainer, "1"), 1);
        int status;
        if (waitpid(blocker, &status, 0) != blocker || !WIFEXITED(status) || WEXITSTATUS(status) != 0) {
            errno = 0;
            die("the blocking writer failed (status 0x%x)", status);
        }
        check_count("write", round, "the drain after it got", drain_there(&drainer, "d"), 1);
        expect(ep, EPOLLOUT, "write", round, "the parked write completed and the member was drained: send has room");
    }
    close(drainer.request);
    waitpid(drainer.pid, NULL, 0);
    printf("summary write: %d waits, %d missed, %d wrong counts\n", waits, missed, wrong);
    return missed || wrong;
}

static void usage(void)
{
    fprintf(stderr, "usage: epollet [-t MS] [-r ROUNDS] read|write GROUPDIR\n");
    exit(2);
}

int main(int argc, char **argv)
{
    int opt;
    while ((opt = getopt(argc, argv, "t:r:")) != -1) {
        switch (opt) {
        case 't': wait_ms = atoi(optarg); break;
        case 'r': rounds = atoi(optarg); break;
        default: usage();
        }
    }
    if (argc - optind != 2 || wait_ms <= 0 || rounds <= 0)
        usage();
    signal(SIGPIPE, SIG_IGN);
    if (strcmp(argv[optind], "read") == 0)
        return read_side(argv[optind + 1]);
    if (strcmp(argv[optind], "write") == 0)
        return write_side(argv[optind + 1]);
    usage();
}
