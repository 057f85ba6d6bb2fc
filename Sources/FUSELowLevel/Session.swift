import CFuse
import Glibc
import Locking
public import Logging
public import SystemPackage

/// Why a session could not be made, mounted, daemonized or signalled. The
/// message is one line, fit for a user.
public struct FUSESessionError: Error, Sendable, CustomStringConvertible {
    public enum Kind: Sendable, Equatable {
        case options
        case mount
        case daemonize
        case signals
        case state
    }

    public let kind: Kind
    public let message: String

    public init(_ kind: Kind, _ message: String) {
        self.kind = kind
        self.message = message
    }

    public var description: String { message }
}

/// One FUSE mount: a libfuse low-level session serving a
/// `FilesystemOperations`.
///
/// Lifecycle (one thread drives it; `requestExit` from anywhere):
///
///     let session = try FUSESession(operations: fs, options: ["-o", "fsname=demo"])
///     try session.mount(at: "/mnt/demo")
///     try session.daemonize(foreground: true)   // before any thread is started
///     try session.installSignalHandlers()       // SIGINT/SIGTERM/SIGHUP → requestExit
///     let status = session.run(singleThreaded: false)   // blocks
///     // here the filesystem stops producing and answers the replies it holds
///     session.failPending(with: .interrupted)   // whatever is still armed
///     session.unmount()
///     session.destroy()
///
/// @unchecked Sendable: the libfuse session pointer and all mutable state
/// live in `state`, behind an `AdaptiveMutex`; libfuse calls that must not
/// overlap destroy happen under it or behind the core's gate.
public final class FUSESession: @unchecked Sendable {
    private struct State {
        var session: SessionPointer?
        var mountpoint: String?
        /// The thread inside fuse_session_loop(_mt), while it is.
        var loopThread: pthread_t?
        var kicking = false
        var receivedSignal: Int32?
    }

    let core: SessionCore
    /// The `userdata` libfuse hands back; released after fuse_session_destroy.
    private let userdata: Unmanaged<SessionCore>
    private let state = AdaptiveMutex(State())

    /// `options` as on a FUSE command line, without program name or
    /// mountpoint: e.g. `["-o", "allow_other,default_permissions,fsname=x"]`,
    /// plus `"-d"` for libfuse's debug log (its lines go to `logger`, at
    /// debug level, as all of libfuse's log does from here on).
    public convenience init(
        operations: any FilesystemOperations, options: [String], logger: Logger = Logger(label: "mcastfs")
    ) throws(FUSESessionError) {
        // libfuse's log is the process's: the newest mount's logger has it.
        // (Sessions without a mount, a test's fake kernel, leave it alone.)
        LibfuseLog.route(to: logger)
        try self.init(core: SessionCore(operations: operations, logger: logger), options: options)
    }

    init(core: SessionCore, options: [String]) throws(FUSESessionError) {
        self.core = core
        userdata = Unmanaged.passRetained(core)
        let marker = LibfuseLog.marker
        let program = CommandLine.arguments.first.flatMap { $0.isEmpty ? nil : $0 } ?? "fuse"
        let strings = ([program] + options).map { strdup($0) }
        defer { strings.forEach { free($0) } }
        var ops = makeOperationTable()
        var argv = strings
        let created = argv.withUnsafeMutableBufferPointer { buffer -> OpaquePointer? in
            var args = cfuse_make_args(Int32(buffer.count), buffer.baseAddress)
            // fuse_session_new replaces `args` with a copy it allocates
            // (fuse_opt_parse) and never frees our strings.
            defer { fuse_opt_free_args(&args) }
            return LibfuseLog.holdingBack({
                fuse_session_new(&args, &ops, MemoryLayout<fuse_lowlevel_ops>.size, userdata.toOpaque())
            }, succeeded: { $0 != nil })
        }
        guard let created else {
            userdata.release()
            let detail = LibfuseLog.lastLine(since: marker) ?? "libfuse refused them"
            throw FUSESessionError(.options, "invalid FUSE options \(options.joined(separator: " ")): \(detail)")
        }
        state.withLock { $0.session = SessionPointer(raw: created) }
    }

    deinit {
        destroy()
    }

    /// Mounts on `path` (an existing directory).
    public func mount(at path: String) throws(FUSESessionError) {
        var st = Glibc.stat()
        if stat(path, &st) != 0 {
            throw FUSESessionError(.mount, "cannot mount at \(path): \(Errno(rawValue: errno))")
        }
        if st.st_mode & S_IFMT != S_IFDIR {
            throw FUSESessionError(.mount, "cannot mount at \(path): not a directory")
        }
        let marker = LibfuseLog.marker
        let result = state.withLock { s -> Result<Void, FUSESessionError> in
            guard let session = s.session else {
                return .failure(FUSESessionError(.state, "cannot mount at \(path): session destroyed"))
            }
            guard s.mountpoint == nil else {
                return .failure(FUSESessionError(.state, "cannot mount at \(path): already mounted at \(s.mountpoint!)"))
            }
            errno = 0
            guard LibfuseLog.holdingBack({ fuse_session_mount(session.raw, path) }, succeeded: { $0 == 0 }) == 0 else {
                let reason = LibfuseLog.lastLine(since: marker)
                    ?? (errno != 0 ? Errno(rawValue: errno).description : "fuse_session_mount failed")
                return .failure(FUSESessionError(.mount, "cannot mount at \(path): \(reason)"))
            }
            s.mountpoint = path
            return .success(())
        }
        try result.get()
    }

    /// `fuse_daemonize`: unless `foreground`, forks into the background,
    /// detaches from the terminal and sends stdio to /dev/null; in both cases
    /// changes directory to /. Call before anything starts a thread (only the
    /// calling thread survives a fork), so before `installSignalHandlers`.
    public func daemonize(foreground: Bool) throws(FUSESessionError) {
        if !foreground && SignalRelay.started {
            throw FUSESessionError(.state, "cannot daemonize: call daemonize before installSignalHandlers")
        }
        if fuse_daemonize(foreground ? 1 : 0) != 0 {
            throw FUSESessionError(.daemonize, "cannot daemonize: \(Errno(rawValue: errno))")
        }
    }

    /// SIGINT, SIGTERM and SIGHUP end `run` (even if SIGINT was inherited
    /// ignored); SIGPIPE is ignored. The last session to call this in a
    /// process gets the signals.
    public func installSignalHandlers() throws(FUSESessionError) {
        guard let relay = SignalRelay.shared else {
            throw FUSESessionError(.signals, "cannot install signal handlers: cannot start the relay thread")
        }
        relay.attach(self)
        if let failure = relay.installHandlers() {
            throw FUSESessionError(
                .signals, "cannot install a handler for signal \(failure.signal): \(Errno(rawValue: failure.errno))")
        }
    }

    /// The signal that ended the loop, if one did.
    public var receivedSignal: Int32? { state.withLock { $0.receivedSignal } }

    /// Serves requests until `requestExit` (or a handled signal, or the
    /// filesystem is unmounted from outside). Blocks the calling thread.
    ///
    /// Multi-threaded: `fuse_session_loop_mt` (libfuse ≥ 3.12 config); a
    /// worker counts as busy only while inside a callback, so stored replies
    /// cost no thread. `maxIdleThreads` < 0 keeps libfuse's default (never
    /// destroy idle workers). Returns 0, a negative errno, or a signal
    /// number, as libfuse's loops do; -EINVAL if not mounted or already
    /// running.
    public func run(singleThreaded: Bool, maxIdleThreads: Int = 4, maxThreads: Int = 10) -> Int32 {
        let session = state.withLock { s -> SessionPointer? in
            guard let session = s.session, s.mountpoint != nil, s.loopThread == nil else { return nil }
            s.loopThread = pthread_self()
            return session
        }
        guard let session else { return -EINVAL }
        WakeSignal.prepareCurrentThread()
        let rc: Int32
        if singleThreaded {
            rc = fuse_session_loop(session.raw)
        } else {
            rc = cfuse_session_loop_mt(
                session.raw, UInt32(clamping: max(1, maxThreads)), Int32(clamping: maxIdleThreads))
        }
        state.withLock { $0.loopThread = nil }
        return rc
    }

    /// Ends `run` soon; callable from any thread, any number of times.
    ///
    /// fuse_session_exit only sets a flag (3.14: `se->exited = 1`): the loop
    /// thread sleeps in read(2) of /dev/fuse (single-threaded) or sem_wait(3)
    /// (multi-threaded) until the next request. So we also send the wake
    /// signal to the loop thread — repeatedly, every 5 ms, until `run`
    /// returns, because a signal that lands just before the thread blocks
    /// (after it checked the flag) is lost. Worker threads are then
    /// cancelled by libfuse in their read(2) and joined.
    public func requestExit() {
        let startKicker = state.withLock { s -> Bool in
            guard let session = s.session else { return false }
            fuse_session_exit(session.raw)
            guard !s.kicking else { return false }
            s.kicking = true
            return true
        }
        guard startKicker else { return }
        // The kicker holds the state, not the session: it notices the loop's
        // end up to 5 ms late, and the last release of a session (and of the
        // filesystem behind it) must stay with the thread that destroys it,
        // not race the process's exit from a thread nobody waits for.
        let state = self.state, logger = core.logger
        let started = spawnDetachedThread {
            while Self.kickLoopThread(state, logger) { usleep(5_000) }
        }
        if !started {
            state.withLock { $0.kicking = false }
            core.logger.error("cannot start the thread that wakes the FUSE loop: it ends at the next request",
                              metadata: ["errno": "\(Errno(rawValue: errno))"])
        }
    }

    /// Sends the wake signal to the loop thread if it is in the loop.
    private static func kickLoopThread(_ state: AdaptiveMutex<State>, _ logger: Logger) -> Bool {
        state.withLock { s -> Bool in
            // Under the lock: `run` clears loopThread under it after the loop
            // returns, so the thread still exists when we signal it.
            guard let thread = s.loopThread else {
                s.kicking = false
                return false
            }
            let rc = pthread_kill(thread, wakeSignal)
            if rc != 0 {
                logger.error("cannot signal the FUSE loop's thread", metadata: ["errno": "\(Errno(rawValue: rc))"])
                s.kicking = false
                return false
            }
            return true
        }
    }

    func signalReceived(_ signal: Int32) {
        core.logger.notice("received \(signalName(signal)): unmounting")
        state.withLock { $0.receivedSignal = signal }
        requestExit()
    }

    /// Answers every interrupt-armed reply still pending with `errno`. Use
    /// at shutdown, after the filesystem has failed its own waiters.
    public func failPending(with errno: Errno) {
        for reply in core.interrupts.pendingTargets() {
            reply.answer(by: .layer, errno: errno)
        }
    }

    /// Interrupt-armed replies not yet answered.
    public var pendingInterruptibleCount: Int { core.interrupts.count }

    /// Unmounts. From here on replies and poll notifications send nothing
    /// (the device fd is closed); the kernel fails requests still pending
    /// with ENOTCONN. If `run` is still going on another thread it is ended
    /// first. Do not call from a filesystem callback.
    public func unmount() {
        stopLoopAndWait()
        let session = state.withLock { s -> SessionPointer? in
            guard let session = s.session, s.mountpoint != nil else { return nil }
            s.mountpoint = nil
            return session
        }
        guard let session else { return }
        core.gate.close()
        fuse_session_unmount(session.raw)
    }

    /// Destroys the session (unmounting first if needed); idempotent. Poll
    /// handles and replies are marked dead before anything is freed; the
    /// filesystem's `destroy()` runs here, on this thread. Do not call from
    /// a filesystem callback.
    public func destroy() {
        stopLoopAndWait()
        let taken = state.withLock { s -> (SessionPointer, Bool)? in
            guard let session = s.session else { return nil }
            s.session = nil
            defer { s.mountpoint = nil }
            return (session, s.mountpoint != nil)
        }
        guard let (session, mounted) = taken else { return }
        core.gate.close()
        if mounted { fuse_session_unmount(session.raw) }
        fuse_session_destroy(session.raw)
        SignalRelay.shared?.detach(self)
        userdata.release()
    }

    /// Runs `body` with libfuse's session unless destroyed. The pointer
    /// outlives `body` only inside `core.gate`, which `destroy` closes before
    /// freeing it.
    func withSessionPointer<R>(_ body: (OpaquePointer) -> R) -> R? {
        guard let session = state.withLock({ $0.session }) else { return nil }
        return body(session.raw)
    }

    private func stopLoopAndWait() {
        let running = state.withLock { s -> Bool in
            guard let thread = s.loopThread else { return false }
            precondition(pthread_equal(thread, pthread_self()) == 0,
                         "FUSESession: unmount/destroy called from inside run()")
            return true
        }
        guard running else { return }
        requestExit()
        while state.withLock({ $0.loopThread != nil }) { usleep(1_000) }
    }
}

/// A `struct fuse_session *` kept under `FUSESession.state`'s lock.
struct SessionPointer: @unchecked Sendable {
    let raw: OpaquePointer
}
