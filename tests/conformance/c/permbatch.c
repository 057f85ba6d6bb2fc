/*
 * permbatch: several filesystem operations in one process, one result line
 * each, so that the permission matrix runs one `setpriv` per scenario rather
 * than one per cell. Runs with umask 0 so that the modes given are the modes
 * made.
 *
 *   permbatch OP PATH [ARGS] , OP PATH [ARGS] , ...
 *
 *   mkdir  PATH MODE        (octal)
 *   rmdir  PATH
 *   create PATH MODE        open(O_CREAT|O_EXCL|O_WRONLY|O_NONBLOCK)
 *   unlink PATH
 *   chmod  PATH MODE
 *   chown  PATH UID GID     (-1 leaves one unchanged)
 *   open   PATH r|w         open(O_RDONLY or O_WRONLY, | O_NONBLOCK), close
 *   ls     PATH             opendir + readdir to the end
 *
 * Each operation prints "ok" or "err ERRNO" on a line of its own; exit 0
 * unless the arguments are wrong (exit 2).
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

static mode_t octal(const char *s) { return (mode_t)strtoul(s, NULL, 8); }

static int one(int argc, char **argv)
{
    if (argc < 2)
        return -2;
    const char *op = argv[0], *path = argv[1];
    int n = argc - 2;
    char **a = argv + 2;
    if (strcmp(op, "mkdir") == 0 && n == 1)
        return mkdir(path, octal(a[0]));
    if (strcmp(op, "rmdir") == 0 && n == 0)
        return rmdir(path);
    if (strcmp(op, "create") == 0 && n == 1) {
        int fd = open(path, O_CREAT | O_EXCL | O_WRONLY | O_NONBLOCK, octal(a[0]));
        if (fd < 0)
            return -1;
        close(fd);
        return 0;
    }
    if (strcmp(op, "unlink") == 0 && n == 0)
        return unlink(path);
    if (strcmp(op, "chmod") == 0 && n == 1)
        return chmod(path, octal(a[0]));
    if (strcmp(op, "chown") == 0 && n == 2)
        return chown(path, (uid_t)atol(a[0]), (gid_t)atol(a[1]));
    if (strcmp(op, "open") == 0 && n == 1) {
        int fd = open(path, (strcmp(a[0], "w") == 0 ? O_WRONLY : O_RDONLY) | O_NONBLOCK);
        if (fd < 0)
            return -1;
        close(fd);
        return 0;
    }
    if (strcmp(op, "ls") == 0 && n == 0) {
        DIR *d = opendir(path);
        if (!d)
            return -1;
        errno = 0;
        while (readdir(d) != NULL)
            ;
        int e = errno;
        closedir(d);
        errno = e;
        return e ? -1 : 0;
    }
    return -2;
}

int main(int argc, char **argv)
{
    umask(0);
    int start = 1;
    for (int i = 1; i <= argc; i++) {
        if (i == argc || strcmp(argv[i], ",") == 0) {
            errno = 0;
            int r = one(i - start, argv + start);
            if (r == -2) {
                fprintf(stderr, "permbatch: bad operation at argument %d (%s)\n", start, start < argc ? argv[start] : "");
                return 2;
            }
            if (r < 0)
                printf("err %d\n", errno);
            else
                printf("ok\n");
            fflush(stdout);
            start = i + 1;
        }
    }
    return 0;
}
