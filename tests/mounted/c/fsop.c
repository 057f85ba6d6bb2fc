/*
 * fsop: one filesystem operation, reported as one line. The permission tests
 * run it as another user (setpriv --reuid=65534 ...), where the test's own
 * Python interpreter may not be reachable.
 *
 *   fsop [-u UMASK] OP ARGS...
 *
 *   stat   PATH             ok mode=OCTAL uid=N gid=N type=dir|reg|other
 *   ls     PATH             ok NAME/NAME/...
 *   mkdir  PATH MODE        (MODE in octal)
 *   rmdir  PATH
 *   create PATH MODE        open(O_CREAT|O_EXCL|O_WRONLY)
 *   unlink PATH
 *   chmod  PATH MODE
 *   chown  PATH UID GID
 *   open   PATH r|w|rw      open and close
 *   read   PATH             open O_RDONLY|O_NONBLOCK, one read  -> ok HEX
 *   write  PATH DATA        open O_WRONLY|O_NONBLOCK, one write -> ok N
 *
 * Success prints "ok ..." and exits 0; failure prints "err SYSCALL ERRNO" and
 * exits 1; a usage error exits 2.
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static int fail(const char *call)
{
    printf("err %s %d\n", call, errno);
    return 1;
}

static mode_t octal(const char *s) { return (mode_t)strtoul(s, NULL, 8); }

int main(int argc, char **argv)
{
    int i = 1;
    if (argc > 2 && strcmp(argv[1], "-u") == 0) {
        umask(octal(argv[2]));
        i = 3;
    }
    if (argc - i < 2) {
        fprintf(stderr, "usage: fsop [-u UMASK] OP PATH [ARGS]\n");
        return 2;
    }
    const char *op = argv[i], *path = argv[i + 1];
    int nargs = argc - i - 2;
    char **args = argv + i + 2;

    if (strcmp(op, "stat") == 0) {
        struct stat st;
        if (stat(path, &st) < 0)
            return fail("stat");
        printf("ok mode=%o uid=%u gid=%u type=%s\n", (unsigned)(st.st_mode & 07777), (unsigned)st.st_uid,
               (unsigned)st.st_gid, S_ISDIR(st.st_mode) ? "dir" : S_ISREG(st.st_mode) ? "reg" : "other");
    } else if (strcmp(op, "ls") == 0) {
        DIR *d = opendir(path);
        if (!d)
            return fail("opendir");
        printf("ok ");
        struct dirent *e;
        int first = 1;
        errno = 0;
        while ((e = readdir(d)) != NULL) {
            if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
                continue;
            printf("%s%s", first ? "" : "/", e->d_name);
            first = 0;
        }
        printf("\n");
        closedir(d);
    } else if (strcmp(op, "mkdir") == 0 && nargs == 1) {
        if (mkdir(path, octal(args[0])) < 0)
            return fail("mkdir");
        printf("ok\n");
    } else if (strcmp(op, "rmdir") == 0) {
        if (rmdir(path) < 0)
            return fail("rmdir");
        printf("ok\n");
    } else if (strcmp(op, "create") == 0 && nargs == 1) {
        int fd = open(path, O_CREAT | O_EXCL | O_WRONLY, octal(args[0]));
        if (fd < 0)
            return fail("open");
        close(fd);
        printf("ok\n");
    } else if (strcmp(op, "unlink") == 0) {
        if (unlink(path) < 0)
            return fail("unlink");
        printf("ok\n");
    } else if (strcmp(op, "chmod") == 0 && nargs == 1) {
        if (chmod(path, octal(args[0])) < 0)
            return fail("chmod");
        printf("ok\n");
    } else if (strcmp(op, "chown") == 0 && nargs == 2) {
        if (chown(path, (uid_t)atol(args[0]), (gid_t)atol(args[1])) < 0)
            return fail("chown");
        printf("ok\n");
    } else if (strcmp(op, "open") == 0 && nargs == 1) {
        int flags = strcmp(args[0], "rw") == 0 ? O_RDWR : strcmp(args[0], "w") == 0 ? O_WRONLY : O_RDONLY;
        int fd = open(path, flags | O_NONBLOCK);
        if (fd < 0)
            return fail("open");
        close(fd);
        printf("ok\n");
    } else if (strcmp(op, "read") == 0) {
        static char buf[1 << 20];
        int fd = open(path, O_RDONLY | O_NONBLOCK);
        if (fd < 0)
            return fail("open");
        ssize_t n = read(fd, buf, sizeof buf);
        if (n < 0)
            return fail("read");
        printf("ok ");
        for (ssize_t k = 0; k < n; k++)
            printf("%02x", (unsigned char)buf[k]);
        printf("\n");
        close(fd);
    } else if (strcmp(op, "write") == 0 && nargs == 1) {
        int fd = open(path, O_WRONLY | O_NONBLOCK);
        if (fd < 0)
            return fail("open");
        ssize_t n = write(fd, args[0], strlen(args[0]));
        if (n < 0)
            return fail("write");
        printf("ok %zd\n", n);
        close(fd);
    } else {
        fprintf(stderr, "fsop: unknown operation or wrong arguments: %s\n", op);
        return 2;
    }
    return 0;
}
