import Glibc

/// Going to the background before anything starts a thread, for a daemon
/// that joins a cluster.
///
/// libfuse's `fuse_daemonize` forks after the mount, and a fork keeps only
/// the calling thread: libnats's threads (reconnects, timers, message
/// delivery) would be gone in the daemon that serves. So a clustered mount
/// forks first: the parent waits, the child connects, claims its node name,
/// mounts, and then tells the parent it is live. A child that fails prints
/// its one line on the stderr it shares with the parent and exits 1; the
/// parent exits with its status. Either way the command returns only once
/// the mount is live or has failed, as without a cluster.
struct Background {
    /// The pipe's write end, in the child; the parent never returns.
    private let ready: Int32

    static func fork() -> Background {
        var fds: [Int32] = [0, 0]
        guard pipe(&fds) == 0 else { fail("cannot go to the background: pipe: \(String(cString: strerror(errno)))") }
        let child = Glibc.fork()
        if child < 0 { fail("cannot go to the background: fork: \(String(cString: strerror(errno)))") }
        if child > 0 {
            close(fds[1])
            var byte: UInt8 = 0
            var got: Int
            repeat { got = read(fds[0], &byte, 1) } while got < 0 && errno == EINTR
            if got == 1 { exit(0) }
            // The child ended before it was live: its status is ours.
            var status: Int32 = 0
            while waitpid(child, &status, 0) < 0 && errno == EINTR {}
            exit(status & 0x7f == 0 ? (status >> 8) & 0xff : 1)
        }
        close(fds[0])
        return Background(ready: fds[1])
    }

    /// The mount is live: the parent exits 0, and this process leaves the
    /// terminal as `fuse_daemonize` would (new session, stdio on /dev/null).
    func detach() {
        var byte: UInt8 = 1
        _ = write(ready, &byte, 1)
        close(ready)
        _ = setsid()
        let null = open("/dev/null", O_RDWR)
        if null >= 0 {
            for fd in [STDIN_FILENO, STDOUT_FILENO, STDERR_FILENO] { dup2(null, fd) }
            if null > STDERR_FILENO { close(null) }
        }
    }
}
