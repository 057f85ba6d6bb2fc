import Locking
import Synchronization
public import SystemPackage

/// Plays the kernel's and libfuse's part for tests of code above this layer:
/// makes replies whose answers are recorded instead of sent, delivers
/// interrupts the way libfuse does, and makes poll handles that count
/// notifications. No mount, no libfuse calls.
///
///     let kernel = ReplyRecorder()
///     let reply = kernel.make(ReplyData.self)
///     filesystem.read(context, ino: 2, fh: 1, size: 4096, offset: 0, flags: 0, reply: reply)
///     kernel.interrupt(reply)              // Ctrl-C
///     #expect(kernel.answer(of: reply) == .error(.interrupted))
public final class ReplyRecorder: Sendable {
    let session: SessionCore
    private let log = AdaptiveMutex<[RecordedReply]>([])
    private let notifications = Atomic<Int>(0)

    public init() {
        session = SessionCore(operations: RecorderOperations())
    }

    /// A new request's reply. `interrupted: true` makes it a request whose
    /// interrupt arrived before the callback ran (armInterrupt then fails).
    public func make<R: Reply>(_ type: R.Type, interrupted: Bool = false) -> R {
        R(transport: .recorder(RecordedRequest(recorder: self, interrupted: interrupted)), session: session)
    }

    /// A readdir reply for a kernel buffer of `capacity` bytes.
    public func makeDirectory(capacity: Int) -> ReplyDirectory {
        ReplyDirectory(
            transport: .recorder(RecordedRequest(recorder: self, interrupted: false)),
            session: session, capacity: capacity)
    }

    /// A poll handle whose `notify()` is counted in `notificationCount`.
    public func makePollHandle() -> PollHandle {
        PollHandle(backing: .recorder({ [self] in notifications.add(1, ordering: .relaxed) }), session: session)
    }

    /// The kernel sends FUSE_INTERRUPT for `reply`'s request: as in libfuse,
    /// the request is marked interrupted and, if an interrupt function is
    /// registered, it is called on this thread.
    public func interrupt(_ reply: Reply) {
        guard case .recorder(let request) = reply.transport else { return }
        request.interrupt(session: session)
    }

    /// Later answers to `reply` report `.requestGone`, as when the kernel has
    /// given up on the request.
    public func abandon(_ reply: Reply) {
        guard case .recorder(let request) = reply.transport else { return }
        request.abandon()
    }

    /// What `reply` was answered with, if anything.
    public func answer(of reply: Reply) -> RecordedReply? {
        guard case .recorder(let request) = reply.transport else { return nil }
        return request.answer
    }

    /// Every answer so far, in order.
    public var answers: [RecordedReply] { log.withLock { $0 } }

    public var notificationCount: Int { notifications.load(ordering: .relaxed) }

    /// Interrupt-armed replies not yet answered.
    public var pendingInterruptibleCount: Int { session.interrupts.count }

    /// Answers every interrupt-armed reply still pending, like
    /// `FUSESession.failPending(with:)`.
    public func failPending(with errno: Errno) {
        for reply in session.interrupts.pendingTargets() {
            reply.answer(by: .layer, errno: errno)
        }
    }

    fileprivate func append(_ reply: RecordedReply) {
        log.withLock { $0.append(reply) }
    }
}

/// The recorder's stand-in for a `fuse_req`.
final class RecordedRequest: Sendable {
    private struct State {
        var interrupted: Bool
        var registeredID: UInt64?
        var answer: RecordedReply?
        var abandoned = false
    }

    private let recorder: ReplyRecorder
    private let state: AdaptiveMutex<State>

    init(recorder: ReplyRecorder, interrupted: Bool) {
        self.recorder = recorder
        self.state = AdaptiveMutex(State(interrupted: interrupted))
    }

    var isInterrupted: Bool { state.withLock { $0.interrupted } }
    var answer: RecordedReply? { state.withLock { $0.answer } }

    func record(_ reply: RecordedReply) -> ReplyResult {
        let abandoned = state.withLock { s -> Bool in
            s.answer = reply
            return s.abandoned
        }
        recorder.append(reply)
        return abandoned ? .requestGone : .sent
    }

    func abandon() { state.withLock { $0.abandoned = true } }

    /// As fuse_req_interrupt_func: store, then call synchronously if the
    /// request was already interrupted.
    func registerInterrupt(id: UInt64, session: SessionCore) {
        let already = state.withLock { s -> Bool in
            s.registeredID = id
            return s.interrupted
        }
        if already { session.deliverInterrupt(id: id, thread: currentThreadToken()) }
    }

    /// As find_interrupted: mark, then call the registered function if any
    /// (and if the request is still unanswered, as libfuse clears it then).
    func interrupt(session: SessionCore) {
        let id = state.withLock { s -> UInt64? in
            s.interrupted = true
            return s.answer == nil ? s.registeredID : nil
        }
        if let id { session.deliverInterrupt(id: id, thread: currentThreadToken()) }
    }
}

private final class RecorderOperations: FilesystemOperations {}
