/*
 * blockop: one blocking read(2) or write(2) on a file, optionally interrupted
 * by a caught signal, reporting what the call returned and how long after the
 * signal it returned. The mounted tests use it where a blocked call must be
 * observed from outside (signals, SIGTERM to the daemon, killed writers),
 * because Python retries reads and writes after EINTR (PEP 475).
 *
 *   blockop [-t MS] [-r] [-n] [-R] [-b BUFSIZE] read  PATH
 *   blockop [-t MS] [-r] [-n] [-R]              write PATH DATA
 *
 *   -t MS      arm a one-shot timer: SIGALRM (caught) after MS milliseconds
 *   -r         install the handlers with SA_RESTART (FUSE must still give EINTR)
 *   -n         open with O_NONBLOCK
 *   -R         open O_RDWR instead of O_RDONLY / O_WRONLY
 *   -b BUFSIZE read buffer size (default 2 MiB)
 *
 * SIGUSR1 is always caught as well, so `kill -USR1 PID` interrupts the call
 * instead of ending the process.
 *
 * Output on stdout, one line each, flushed at once:
 *   opened                                  the file is open, the call follows
 *   ret=N errno=E late_ms=F data=HEX         the call's result; late_ms is the
 *                                           time from the timer's expiry to the
 *                                           call's return (-1 without -t)
 * or "open errno=E" (exit 1) when the file cannot be opened.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

static volatile sig_atomic_t caught;

static void on_signal(int sig) { caught = sig; }

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

static void usage(void)
{
    fprintf(stderr, "usage: blockop [-t MS] [-r] [-n] [-R] [-b BUFSIZE] read PATH\n"
                    "       blockop [-t MS] [-r] [-n] [-R] write PATH DATA\n");
    exit(2);
}

int main(int argc, char **argv)
{
    long timer_ms = -1;
    int restart = 0, nonblock = 0, rdwr = 0;
    size_t bufsize = 2u << 20;
    int opt;
    while ((opt = getopt(argc, argv, "t:rnRb:")) != -1) {
        switch (opt) {
        case 't': timer_ms = strtol(optarg, NULL, 10); break;
        case 'r': restart = 1; break;
        case 'n': nonblock = 1; break;
        case 'R': rdwr = 1; break;
        case 'b': bufsize = strtoul(optarg, NULL, 10); break;
        default: usage();
        }
    }
    if (argc - optind < 2)
        usage();
    const char *op = argv[optind], *path = argv[optind + 1];
    int writing = strcmp(op, "write") == 0;
    if (!writing && strcmp(op, "read") != 0)
        usage();
    if (writing && argc - optind < 3)
        usage();

    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sa.sa_flags = restart ? SA_RESTART : 0;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGALRM, &sa, NULL);
    sigaction(SIGUSR1, &sa, NULL);

    int flags = rdwr ? O_RDWR : (writing ? O_WRONLY : O_RDONLY);
    if (nonblock)
        flags |= O_NONBLOCK;
    int fd = open(path, flags);
    if (fd < 0) {
        printf("open errno=%d\n", errno);
        return 1;
    }
    printf("opened\n");
    fflush(stdout);

    char *buf = NULL;
    size_t len;
    if (writing) {
        buf = argv[optind + 2];
        len = strlen(buf);
    } else {
        buf = malloc(bufsize ? bufsize : 1);
        len = bufsize;
    }

    double armed = 0;
    if (timer_ms >= 0) {
        struct itimerval it;
        memset(&it, 0, sizeof it);
        it.it_value.tv_sec = timer_ms / 1000;
        it.it_value.tv_usec = (timer_ms % 1000) * 1000;
        if (it.it_value.tv_sec == 0 && it.it_value.tv_usec == 0)
            it.it_value.tv_usec = 1;
        armed = now_ms();
        setitimer(ITIMER_REAL, &it, NULL);
    }
    ssize_t ret = writing ? write(fd, buf, len) : read(fd, buf, len);
    int err = ret < 0 ? errno : 0;
    double returned = now_ms();
    double late = timer_ms >= 0 ? returned - armed - (double)timer_ms : -1.0;

    printf("ret=%zd errno=%d late_ms=%.3f data=", ret, err, late);
    if (!writing && ret > 0)
        for (ssize_t i = 0; i < ret; i++)
            printf("%02x", (unsigned char)buf[i]);
    printf("\n");
    fflush(stdout);
    close(fd);
    return 0;
}
