import CFuse
import Glibc
import Locking
import Logging
import Synchronization
import SystemPackage

// Signals that end the session, and the signal that wakes its loop.
//
// libfuse's own fuse_set_signal_handlers replaces only SIG_DFL handlers, so a
// daemon started with `&` from a non-interactive shell (SIGINT inherited as
// SIG_IGN) would ignore Ctrl-C-style SIGINT. We install ours regardless.
//
// Our handler writes the signal number to a pipe (async-signal-safe); the
// relay thread below reads it and calls FUSESession.requestExit. The handler
// does not call fuse_session_exit itself: that is only a flag store in 3.14
// (`se->exited = 1`) and would be safe in a handler, but it does not wake the
// loop, and a session pointer read in a handler could race
// fuse_session_destroy. The pipe and the relay thread live as long as the
// process; the pipe is never closed, so the handler can never write to a
// reused descriptor.
//
// Only this file may call the cfuse_signal_* helpers (shim.h: they share a
// static variable, and each Swift file gets its own copy of it).

/// "SIGTERM", for the log.
public func signalName(_ signal: Int32) -> String {
    switch signal {
    case SIGINT: "SIGINT"
    case SIGTERM: "SIGTERM"
    case SIGHUP: "SIGHUP"
    case SIGPIPE: "SIGPIPE"
    case SIGUSR2: "SIGUSR2"
    default: "signal \(signal)"
    }
}

/// Sent with pthread_kill to the thread in `FUSESession.run` to make its
/// blocking read(2)/sem_wait(3) return EINTR, so the loop sees the exit flag.
let wakeSignal: Int32 = SIGUSR2

enum WakeSignal {
    /// Installs the no-op handler (once per process) and unblocks the wake
    /// signal in the calling thread.
    static func prepareCurrentThread() {
        _ = installed
        _ = cfuse_signal_unblock_in_this_thread(wakeSignal)
    }

    private static let installed: Bool = cfuse_signal_install_wake_handler(wakeSignal) == 0
}

/// Relays SIGINT, SIGTERM and SIGHUP to the session that installed handlers.
final class SignalRelay: Sendable {
    private struct Target {
        weak var session: FUSESession?
    }

    /// Created on first use; nil if no pipe or thread could be made.
    static let shared: SignalRelay? = SignalRelay()

    /// Whether `shared` was ever created (it starts a thread: fork after it,
    /// as `fuse_daemonize` does, would leave the child without it).
    static var started: Bool { startedFlag.load(ordering: .acquiring) }
    private static let startedFlag = Atomic<Bool>(false)

    private let target = AdaptiveMutex(Target())
    private let writeFD: Int32

    private init?() {
        var fds: [Int32] = [-1, -1]
        guard pipe(&fds) == 0 else { return nil }
        _ = fcntl(fds[0], F_SETFD, FD_CLOEXEC)
        _ = fcntl(fds[1], F_SETFD, FD_CLOEXEC)
        _ = fcntl(fds[1], F_SETFL, O_NONBLOCK)  // a full pipe must not block the handler
        let readFD = fds[0]
        writeFD = fds[1]
        SignalRelay.startedFlag.store(true, ordering: .releasing)
        let started = spawnDetachedThread { [self] in
            self.relay(from: readFD)
        }
        guard started else {
            close(fds[0])
            close(fds[1])
            return nil
        }
    }

    private func relay(from readFD: Int32) {
        var byte: UInt8 = 0
        while true {
            let n = read(readFD, &byte, 1)
            if n == 1 {
                let session = target.withLock { $0.session }
                session?.signalReceived(Int32(byte))
            } else if n < 0 && errno == EINTR {
                continue
            } else {
                // The write end is never closed, so this is a failed read.
                let failure = n < 0 ? "\(Errno(rawValue: errno))" : "end of file"
                target.withLock { $0.session }?.core.logger.critical(
                    "cannot read the signal pipe: SIGINT, SIGTERM and SIGHUP no longer unmount", metadata: ["errno": "\(failure)"])
                return
            }
        }
    }

    func attach(_ session: FUSESession) {
        target.withLock { $0.session = session }
    }

    func detach(_ session: FUSESession) {
        target.withLock { t in
            if t.session === session { t.session = nil }
        }
    }

    /// Installs the exit handlers and ignores SIGPIPE. Returns the failing
    /// signal and errno, or nil.
    func installHandlers() -> (signal: Int32, errno: Int32)? {
        for sig in [SIGINT, SIGTERM, SIGHUP] where cfuse_signal_install_exit_handler(sig, writeFD) != 0 {
            return (sig, errno)
        }
        if cfuse_signal_ignore(SIGPIPE) != 0 { return (SIGPIPE, errno) }
        return nil
    }
}
