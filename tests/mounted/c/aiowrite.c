/*
 * aiowrite: asynchronous direct-I/O writes (Linux aio, io_submit(2)) of one
 * message each, as a client with few threads and many writes in flight
 * would make them. The security tests use it to hold writes on a full
 * member and see what else on the mount still gets through.
 *
 *   aiowrite PATH N SIZE
 *
 * N threads; each opens PATH O_WRONLY|O_DIRECT on its own, submits one
 * IOCB_CMD_PWRITE of SIZE bytes (at most 1 MiB) and waits for it. Prints
 * "started N" once every thread is made, then "done RES" per completed
 * write (RES: bytes written, or -errno); exits 0. A failed open, io_setup
 * or io_submit prints "err CALL ERRNO" for that thread.
 *
 * No libaio: the raw system calls, so that the helper builds with only cc.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/aio_abi.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

static const char *path;
static size_t size;
static char buffer[1 << 20] __attribute__((aligned(4096)));
static pthread_mutex_t out = PTHREAD_MUTEX_INITIALIZER;

static void say(const char *what, long long value)
{
    pthread_mutex_lock(&out);
    printf("%s %lld\n", what, value);
    fflush(stdout);
    pthread_mutex_unlock(&out);
}

static void *one(void *arg)
{
    (void)arg;
    aio_context_t ctx = 0;
    if (syscall(SYS_io_setup, 1, &ctx) < 0) {
        say("err io_setup", errno);
        return NULL;
    }
    int fd = open(path, O_WRONLY | O_DIRECT);
    if (fd < 0) {
        say("err open", errno);
        return NULL;
    }
    struct iocb cb;
    memset(&cb, 0, sizeof cb);
    cb.aio_fildes = (unsigned)fd;
    cb.aio_lio_opcode = IOCB_CMD_PWRITE;
    cb.aio_buf = (unsigned long)buffer;
    cb.aio_nbytes = size;
    struct iocb *cbs[1] = {&cb};
    if (syscall(SYS_io_submit, ctx, 1, cbs) != 1) {
        say("err io_submit", errno);
        close(fd);
        return NULL;
    }
    struct io_event event;
    while (syscall(SYS_io_getevents, ctx, 1, 1, &event, NULL) != 1 && errno == EINTR)
        ;
    say("done", (long long)event.res);
    close(fd);
    syscall(SYS_io_destroy, ctx);
    return NULL;
}

int main(int argc, char **argv)
{
    if (argc != 4) {
        fprintf(stderr, "usage: aiowrite PATH N SIZE\n");
        return 2;
    }
    path = argv[1];
    int n = atoi(argv[2]);
    size = (size_t)atol(argv[3]);
    if (n < 1 || n > 4096 || size < 1 || size > sizeof buffer) {
        fprintf(stderr, "aiowrite: N is 1 to 4096, SIZE 1 to %zu\n", sizeof buffer);
        return 2;
    }
    memset(buffer, 'a', size);
    pthread_t *threads = calloc((size_t)n, sizeof *threads);
    for (int i = 0; i < n; i++)
        pthread_create(&threads[i], NULL, one, NULL);
    say("started", n);
    for (int i = 0; i < n; i++)
        pthread_join(threads[i], NULL);
    return 0;
}
