import CFuseKernel
public import FileSystemTypes
public import FUSELowLevel
import Glibc
import Locking
public import Logging
public import SystemPackage

/// Plays the Linux kernel's side of /dev/fuse for tests, in the manner of
/// swift-nio's EmbeddedChannel and fuser's test reply sender: a real libfuse
/// session with this package's real operation table serves `operations`;
/// requests go in as the raw bytes the kernel would write (fuse_in_header,
/// then <linux/fuse.h>'s argument structs), through
/// `fuse_session_process_buf`; and every message libfuse's real reply
/// functions send comes back through libfuse's custom I/O (`writev`) and is
/// decoded here. Replies answered later, on any thread, arrive the same way;
/// FUSE_INTERRUPT goes through libfuse's own interrupt path; poll
/// notifications arrive as unique-0 messages.
///
///     let kernel = try FakeKernel(serving: fs)          // FUSE_INIT done
///     let read = kernel.send(.read(ino: 2, fh: fh, size: 4096))
///     #expect(kernel.reply(to: read) == nil)            // the reader waits
///     kernel.send(.interrupt(unique: read))             // Ctrl-C
///     #expect(kernel.reply(to: read) == .error(.interrupted))
///
/// `send` runs the request on the calling thread, so a reply answered inside
/// the callback is there when `send` returns.
public final class FakeKernel: Sendable {
    /// The protocol minor this kernel speaks (7.31: FOPEN_STREAM exists).
    public static let protocolMinor: UInt32 = 31

    public let session: FUSESession
    private let wire: Wire

    /// Starts a session serving `operations` and completes FUSE_INIT.
    public init(serving operations: any FilesystemOperations, initFlags: UInt32 = FakeKernel.defaultInitFlags,
                logger: Logger = Logger(label: "mcastfs")) throws {
        wire = Wire()
        session = try FUSESession(operations: operations, channel: wire, logger: logger)
        let unique = send(.initialize(major: UInt32(FUSE_KERNEL_VERSION), minor: Self.protocolMinor, flags: initFlags))
        guard case .initialized? = reply(to: unique) else {
            throw FakeKernelError(message: "FUSE_INIT was answered \(String(describing: reply(to: unique)))")
        }
    }

    /// What Linux offers a FUSE daemon at INIT, roughly: asynchronous reads,
    /// big writes, atomic O_TRUNC, parallel directory operations.
    public static let defaultInitFlags = UInt32(FUSE_ASYNC_READ | FUSE_BIG_WRITES | FUSE_ATOMIC_O_TRUNC | FUSE_PARALLEL_DIROPS)

    deinit {
        session.destroy()
    }

    /// Sends one request as `caller`, and returns its unique id.
    @discardableResult
    public func send(_ request: Request, as caller: Caller = .root, pid: UInt32 = 4242) -> UInt64 {
        let unique = wire.register(request)
        session.process(request.encoded(unique: unique, caller: caller, pid: pid))
        return unique
    }

    /// Sends FUSE_INTERRUPT for `request`, then `request`: the order in
    /// which libfuse may see them when a signal lands while the request
    /// still waits for a worker. libfuse keeps the early interrupt and marks
    /// the request interrupted when it arrives.
    @discardableResult
    public func sendInterrupted(_ request: Request, as caller: Caller = .root, pid: UInt32 = 4242) -> UInt64 {
        let unique = wire.register(request)
        send(.interrupt(unique: unique), as: caller, pid: pid)
        session.process(request.encoded(unique: unique, caller: caller, pid: pid))
        return unique
    }

    /// Sends a request and returns its reply, which must come before `send`
    /// returns (nil if none did).
    public func call(_ request: Request, as caller: Caller = .root) -> WireReply? {
        reply(to: send(request, as: caller))
    }

    /// The reply to `unique`, if one arrived.
    public func reply(to unique: UInt64) -> WireReply? {
        wire.reply(to: unique)
    }

    /// Waits up to `timeout` seconds for the reply to `unique`.
    public func waitForReply(to unique: UInt64, timeout: Double = 5) -> WireReply? {
        let deadline = monotonicSeconds() + timeout
        while true {
            if let reply = wire.reply(to: unique) { return reply }
            if monotonicSeconds() > deadline { return nil }
            usleep(1_000)
        }
    }

    /// Every reply so far, in the order they arrived.
    public var replies: [(unique: UInt64, reply: WireReply)] { wire.log }

    /// Every notification (unique 0) so far, in order.
    public var notifications: [WireNotification] { wire.notifications }

    /// Protocol violations seen: a second reply to one request, or a reply
    /// to a request the kernel never sent or had abandoned. The kernel
    /// refuses those with ENOENT, and so does this one.
    public var violations: [String] { wire.violations }

    /// From now on this kernel no longer knows `unique` (as when the caller
    /// died): a reply to it is refused with ENOENT, and not recorded.
    public func abandon(_ unique: UInt64) {
        wire.abandon(unique)
    }

    /// Refuses the reply to `unique`, when it comes, with `errno`, as
    /// Linux refuses a malformed one (EINVAL); nothing is recorded.
    public func refuseReply(to unique: UInt64, with errno: Errno) {
        wire.refuse(unique, with: errno)
    }

    /// Refuses every notification (unique 0) from now on with `errno`.
    public func refuseNotifications(with errno: Errno) {
        wire.refuseNotifications(with: errno)
    }

    /// Ends the session: the filesystem's `destroy()` runs on this thread.
    public func close() {
        session.destroy()
    }
}

public struct FakeKernelError: Error, CustomStringConvertible {
    public let message: String
    public var description: String { message }
}

extension Caller {
    public static let root = Caller(uid: UserID(rawValue: 0), gid: GroupID(rawValue: 0))
}

/// The kernel's end of the channel: numbers requests, remembers what each
/// asked for (to decode its reply), and records what libfuse writes.
private final class Wire: FUSEChannel {
    private struct Pending {
        var opcode: UInt32
        var size: UInt32
        var answered = false
        var abandoned = false
        var refusal: Errno?
    }

    private struct State {
        var nextUnique: UInt64 = 1
        var pending: [UInt64: Pending] = [:]
        var replies: [UInt64: WireReply] = [:]
        var log: [(unique: UInt64, reply: WireReply)] = []
        var notifications: [WireNotification] = []
        var notificationRefusal: Errno?
        var violations: [String] = []
    }

    private let state = AdaptiveMutex(State())

    func register(_ request: Request) -> UInt64 {
        let size: UInt32
        switch request {
        case .getxattr(_, _, let s), .listxattr(_, let s): size = s
        default: size = 0
        }
        return state.withLock { s in
            // Even numbers, as Linux's fuse_get_unique hands out (its
            // FUSE_INTERRUPT requests set the low bit); never 0, the unique
            // of notifications.
            s.nextUnique += 1
            let unique = s.nextUnique * 2
            s.pending[unique] = Pending(opcode: request.opcode.rawValue, size: size)
            return unique
        }
    }

    func receive(_ message: [UInt8]) -> Errno? {
        guard let header = message.load(fuse_out_header.self, exactly: false),
              Int(header.len) == message.count
        else {
            state.withLock { $0.violations.append("a message whose header does not give its length: \(message)") }
            return .invalidArgument
        }
        let body = Array(message.dropFirst(MemoryLayout<fuse_out_header>.size))
        return state.withLock { s -> Errno? in
            if header.unique == 0 {
                if let refusal = s.notificationRefusal { return refusal }
                if header.error == Int32(FUSE_NOTIFY_POLL.rawValue),
                   let out = body.load(fuse_notify_poll_wakeup_out.self, exactly: true) {
                    s.notifications.append(.poll(kh: out.kh))
                } else {
                    s.notifications.append(.other(code: header.error, body: body))
                }
                return nil
            }
            guard var pending = s.pending[header.unique] else {
                s.violations.append("a reply to \(header.unique), which was never sent")
                return .noSuchFileOrDirectory
            }
            if pending.abandoned { return .noSuchFileOrDirectory }
            if let refusal = pending.refusal { return refusal }
            guard !pending.answered else {
                s.violations.append("a second reply to \(header.unique)")
                return .noSuchFileOrDirectory
            }
            pending.answered = true
            s.pending[header.unique] = pending
            let reply = WireReply(opcode: pending.opcode, error: header.error, body: body, size: pending.size)
            s.replies[header.unique] = reply
            s.log.append((header.unique, reply))
            return nil
        }
    }

    func reply(to unique: UInt64) -> WireReply? { state.withLock { $0.replies[unique] } }
    var log: [(unique: UInt64, reply: WireReply)] { state.withLock { $0.log } }
    var notifications: [WireNotification] { state.withLock { $0.notifications } }
    var violations: [String] { state.withLock { $0.violations } }

    func abandon(_ unique: UInt64) {
        state.withLock { $0.pending[unique]?.abandoned = true }
    }

    func refuse(_ unique: UInt64, with errno: Errno) {
        state.withLock { $0.pending[unique]?.refusal = errno }
    }

    func refuseNotifications(with errno: Errno) {
        state.withLock { $0.notificationRefusal = errno }
    }
}

private func monotonicSeconds() -> Double {
    var ts = timespec()
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return Double(ts.tv_sec) + Double(ts.tv_nsec) / 1e9
}
