import Dispatch
import SystemPackage
import FUSETesting
import Locking
import Synchronization
import Testing

@testable import FUSELowLevel

/// Interrupt-armed replies through the real glue (armInterrupt, onInterrupt,
/// the claim table) and libfuse's real interrupt path: the fake kernel sends
/// FUSE_INTERRUPT, libfuse's do_interrupt finds the request and calls our
/// interrupt function — or, when the interrupt came first, marks the request
/// and fuse_req_interrupt_func calls it from inside the registration.
@Suite struct ReplyInterruptTests {
    /// A pending-work table as a filesystem would keep one: cancel succeeds
    /// only if the work is still queued.
    final class Waiters: Sendable {
        private let ids = AdaptiveMutex<Set<Int>>([])
        func add(_ id: Int) { ids.withLock { _ = $0.insert(id) } }
        func take(_ id: Int) -> Bool { ids.withLock { $0.remove(id) != nil } }
    }

    @Test func armOnAlreadyInterruptedRequestAnswersEINTR() throws {
        let kernel = try Bench()
        let reply = kernel.make(ReplyData.self, interrupted: true)
        #expect(reply.armInterrupt() == false)
        #expect(kernel.answer(of: reply) == .error(.interrupted))
        #expect(reply.isAnswered)
        #expect(kernel.pendingInterruptibleCount == 0)
        // The caller drops it; a stray late answer is harmless.
        #expect(reply.data([1]) == .alreadyAnswered)
        #expect(kernel.answers == [.error(.interrupted)])
    }

    @Test func interruptBeforeOnInterruptRunsCancelNow() throws {
        let kernel = try Bench()
        let waiters = Waiters()
        let reply = kernel.make(ReplyData.self)
        #expect(reply.armInterrupt())
        waiters.add(1)
        kernel.interrupt(reply)  // arrives before the cancel is known
        #expect(kernel.answer(of: reply) == nil)
        let ran = Atomic<Int>(0)
        reply.onInterrupt {
            ran.add(1, ordering: .relaxed)
            return waiters.take(1)
        }
        #expect(ran.load(ordering: .relaxed) == 1)
        #expect(kernel.answer(of: reply) == .error(.interrupted))
        #expect(kernel.pendingInterruptibleCount == 0)
    }

    @Test func interruptBeforeOnInterruptWhenWorkAlreadyDone() throws {
        let kernel = try Bench()
        let reply = kernel.make(ReplyData.self)
        #expect(reply.armInterrupt())
        kernel.interrupt(reply)
        // The work completed (answered) before the owner registered a cancel.
        #expect(reply.data([7]) == .sent)
        let ran = Atomic<Int>(0)
        reply.onInterrupt {
            ran.add(1, ordering: .relaxed)
            return true
        }
        #expect(ran.load(ordering: .relaxed) == 0)
        #expect(kernel.answers == [.data([7])])
    }

    @Test func interruptAfterOnInterruptCancelTrue() throws {
        let kernel = try Bench()
        let waiters = Waiters()
        let reply = kernel.make(ReplyData.self)
        #expect(reply.armInterrupt())
        waiters.add(1)
        reply.onInterrupt { waiters.take(1) }
        #expect(kernel.answer(of: reply) == nil)
        kernel.interrupt(reply)
        #expect(kernel.answer(of: reply) == .error(.interrupted))
        // The producer finds no waiter and does not answer; had it raced, it
        // would see .alreadyAnswered and keep its message.
        #expect(reply.data([1]) == .alreadyAnswered)
    }

    @Test func interruptAfterOnInterruptCancelFalseWorkAnswers() throws {
        let kernel = try Bench()
        let reply = kernel.make(ReplyData.self)
        #expect(reply.armInterrupt())
        reply.onInterrupt { false }  // "the work has answered or will answer"
        kernel.interrupt(reply)
        #expect(kernel.answer(of: reply) == nil)
        #expect(reply.data([9]) == .sent)
        #expect(kernel.answers == [.data([9])])
    }

    @Test func cancelMayAnswerItselfAndDecline() throws {
        let kernel = try Bench()
        let reply = kernel.make(ReplyData.self)
        #expect(reply.armInterrupt())
        reply.onInterrupt { [reply] in
            reply.data([]) // e.g. deliver what it has
            return false
        }
        kernel.interrupt(reply)
        #expect(kernel.answers == [.data([])])
    }

    @Test func interruptAfterAnswerDoesNotRunCancel() throws {
        let kernel = try Bench()
        let reply = kernel.make(ReplyData.self)
        #expect(reply.armInterrupt())
        let ran = Atomic<Int>(0)
        reply.onInterrupt {
            ran.add(1, ordering: .relaxed)
            return true
        }
        #expect(reply.data([1, 2]) == .sent)
        kernel.interrupt(reply)
        // Also the libfuse race: the interrupt function still called for an
        // id that was answered (find_interrupted read func before the reply).
        let id = reply.interruptID.load(ordering: .relaxed)
        kernel.core.deliverInterrupt(id: id, thread: 999)
        #expect(ran.load(ordering: .relaxed) == 0)
        #expect(kernel.answers == [.data([1, 2])])
    }

    @Test func doubleInterruptRunsCancelOnce() throws {
        let kernel = try Bench()
        let reply = kernel.make(ReplyData.self)
        #expect(reply.armInterrupt())
        let ran = Atomic<Int>(0)
        reply.onInterrupt {
            ran.add(1, ordering: .relaxed)
            return false
        }
        kernel.interrupt(reply)
        kernel.interrupt(reply)
        let id = reply.interruptID.load(ordering: .relaxed)
        kernel.core.deliverInterrupt(id: id, thread: 999)
        #expect(ran.load(ordering: .relaxed) == 1)
        #expect(kernel.answer(of: reply) == nil)
        reply.error(.wouldBlock)
        #expect(kernel.answers == [.error(.wouldBlock)])
    }

    /// The usual shape: the filesystem's waiter list holds the only strong
    /// reference, and the cancel removes it. The requester must get EINTR,
    /// not the EIO of a reply dropped unanswered.
    @Test func cancelDroppingTheLastReferenceStillAnswersEINTR() throws {
        final class Parked: Sendable {
            let replies = AdaptiveMutex<[Int: ReplyData]>([:])
        }
        let kernel = try Bench()
        let parked = Parked()
        weak var weakReply: ReplyData?
        do {
            let reply = kernel.make(ReplyData.self)
            weakReply = reply
            #expect(reply.armInterrupt())
            parked.replies.withLock { $0[1] = reply }
            reply.onInterrupt { parked.replies.withLock { $0.removeValue(forKey: 1) } != nil }
        }
        guard let reply = weakReply else {
            Issue.record("the waiter list should keep the reply alive")
            return
        }
        kernel.interrupt(reply)
        #expect(kernel.answers == [.error(.interrupted)])
    }

    @Test func interruptOnWriteReplyToo() throws {
        let kernel = try Bench()
        let reply = kernel.make(ReplyWrite.self)
        #expect(reply.armInterrupt())
        reply.onInterrupt { true }
        kernel.interrupt(reply)
        #expect(kernel.answer(of: reply) == .error(.interrupted))
    }

    @Test func failPendingAnswersOnlyArmedOnes() throws {
        let kernel = try Bench()
        let armed1 = kernel.make(ReplyData.self)
        let armed2 = kernel.make(ReplyWrite.self)
        let plain = kernel.make(ReplyData.self)
        #expect(armed1.armInterrupt())
        #expect(armed2.armInterrupt())
        armed1.onInterrupt { true }
        #expect(kernel.pendingInterruptibleCount == 2)
        kernel.failPending(with: .ioError)
        #expect(kernel.answer(of: armed1) == .error(.ioError))
        #expect(kernel.answer(of: armed2) == .error(.ioError))
        #expect(kernel.answer(of: plain) == nil)
        #expect(kernel.pendingInterruptibleCount == 0)
        // The filesystem's late answer loses quietly.
        #expect(armed1.data([1]) == .alreadyAnswered)
        plain.data([3])
    }

    @Test func droppedArmedReplyAnswersEIOAndLeavesTheTable() throws {
        let kernel = try Bench()
        do {
            let reply = kernel.make(ReplyData.self)
            #expect(reply.armInterrupt())
        }
        #expect(kernel.answers == [.error(.ioError)])
        #expect(kernel.pendingInterruptibleCount == 0)
    }

    @Test func abandonedRequestReportsRequestGone() throws {
        let kernel = try Bench()
        let reply = kernel.make(ReplyData.self)
        kernel.abandon(reply)
        let result = reply.data([1])
        #expect(result == .requestGone)
        #expect(!result.delivered)
    }

    /// Every race between a producer answering and an interrupt cancelling,
    /// on real threads: each request is answered exactly once (a double
    /// answer would trap in this debug build), and EINTR only when the
    /// cancel took the waiter.
    @Test func racingAnswerAndInterrupt() throws {
        let kernel = try Bench()
        let waiters = Waiters()
        let rounds = 2_000
        let replies = (0..<rounds).map { _ in kernel.make(ReplyData.self) }
        let cancelled = AdaptiveMutex<Set<Int>>([])
        let delivered = AdaptiveMutex<Set<Int>>([])
        for (i, reply) in replies.enumerated() {
            #expect(reply.armInterrupt())
            waiters.add(i)
            // Half register their cancel after the race starts.
            if i % 2 == 0 {
                reply.onInterrupt {
                    let took = waiters.take(i)
                    if took { cancelled.withLock { _ = $0.insert(i) } }
                    return took
                }
            }
        }
        DispatchQueue.concurrentPerform(iterations: 3) { lane in
            for (i, reply) in replies.enumerated() {
                switch lane {
                case 0:
                    if waiters.take(i) {
                        if reply.data([UInt8(truncatingIfNeeded: i)]) == .sent {
                            delivered.withLock { _ = $0.insert(i) }
                        }
                    }
                case 1:
                    kernel.interrupt(reply)
                default:
                    if i % 2 == 1 {
                        reply.onInterrupt {
                            let took = waiters.take(i)
                            if took { cancelled.withLock { _ = $0.insert(i) } }
                            return took
                        }
                    }
                }
            }
        }
        let cancelledSet = cancelled.withLock { $0 }
        let deliveredSet = delivered.withLock { $0 }
        for (i, reply) in replies.enumerated() {
            let answer = kernel.answer(of: reply)
            if cancelledSet.contains(i) {
                #expect(answer == .error(.interrupted))
            } else {
                #expect(deliveredSet.contains(i))
                #expect(answer == .data([UInt8(truncatingIfNeeded: i)]))
            }
        }
        #expect(kernel.answers.count == rounds)
        #expect(kernel.pendingInterruptibleCount == 0)
    }
}

/// The fake kernel serving a `Holding` filesystem, with the request behind
/// each held reply remembered, so that tests speak of replies.
private final class Bench: Sendable {
    let fs = Holding()
    let kernel: FakeKernel
    private let uniques = AdaptiveMutex<[ObjectIdentifier: UInt64]>([:])

    init() throws { kernel = try FakeKernel(serving: fs) }

    /// A read (or write) request's reply, held. `interrupted`: the
    /// FUSE_INTERRUPT reached libfuse before the request did.
    func make<R: Reply>(_ type: R.Type, interrupted: Bool = false) -> R {
        let request: Request = R.self == ReplyWrite.self
            ? .write(ino: 2, fh: 1, data: [1]) : .read(ino: 2, fh: 1, size: 4096)
        let unique = interrupted ? kernel.sendInterrupted(request) : kernel.send(request)
        let reply = fs.take(type)
        uniques.withLock { $0[ObjectIdentifier(reply)] = unique }
        return reply
    }

    private func unique(of reply: Reply) -> UInt64 {
        uniques.withLock { $0[ObjectIdentifier(reply)]! }
    }

    /// The kernel sends FUSE_INTERRUPT for `reply`'s request.
    func interrupt(_ reply: Reply) { kernel.send(.interrupt(unique: unique(of: reply))) }

    func abandon(_ reply: Reply) { kernel.abandon(unique(of: reply)) }

    func answer(of reply: Reply) -> WireReply? { kernel.reply(to: unique(of: reply)) }

    /// The replies to this bench's requests, in order (not INIT's, nor the
    /// EAGAIN libfuse gives an interrupt whose request it no longer knows).
    var answers: [WireReply] {
        let mine = Set(uniques.withLock { $0.values })
        return kernel.replies.filter { mine.contains($0.unique) }.map(\.reply)
    }

    var core: SessionCore { kernel.session.core }
    var pendingInterruptibleCount: Int { kernel.session.pendingInterruptibleCount }
    func failPending(with errno: Errno) { kernel.session.failPending(with: errno) }
}
