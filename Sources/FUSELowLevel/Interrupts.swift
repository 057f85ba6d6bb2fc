import CFuse
import Glibc

// Interrupts: Ctrl-C on a process blocked in a read of ours.
//
// The kernel (fs/fuse/dev.c, request_wait_answer) sends FUSE_INTERRUPT for a
// request we hold when its caller gets a signal, then waits for our answer —
// even SIGKILL cannot end that process until we answer. So pending work must
// be cancellable.
//
// What libfuse 3.14 does (lib/fuse_lowlevel.c, confirmed in the source):
// - fuse_session_process_buf_int puts every request on se->list under
//   se->lock before calling our callback; an interrupt that came first marks
//   it `interrupted` there (check_interrupt).
// - fuse_req_interrupt_func(req, func, data): lock req->lock; lock se->lock;
//   store func/data; unlock se->lock; if req->interrupted, call func(req,
//   data) *still holding req->lock*; unlock req->lock. If func answers the
//   request there, fuse_free_req drops the last reference and frees req
//   (pthread_mutex_destroy + free), and the final unlock touches freed
//   memory. So we never answer inside that synchronous call.
// - do_interrupt → find_interrupted (on the thread that read the
//   FUSE_INTERRUPT): with se->lock held finds the request, bumps req->ctr,
//   drops se->lock, takes req->lock then se->lock, sets interrupted, reads
//   func/data, drops se->lock, calls func(req, data) holding only req->lock,
//   then drops its reference. Answering inside *this* call is safe (the
//   extra reference keeps req alive; fuse_free_req takes only se->lock).
//   Because func/data are read before the call, func may run after the
//   request was answered elsewhere: hence an id, not a pointer, as data.
// - The two calls of func are serialised by req->lock, so a call on the
//   registering thread while it is inside fuse_req_interrupt_func can only
//   be the synchronous one.
// - fuse_free_req (every reply) clears func/data under se->lock.

extension Reply {
    /// Call in the callback, before the request is visible to any other
    /// thread. Returns false if the request was already interrupted: then the
    /// layer has answered EINTR and the caller must drop it.
    public func armInterrupt() -> Bool {
        guard !isAnswered else {
            assertionFailure("FUSELowLevel: armInterrupt on an answered request")
            return false
        }
        guard interruptID.load(ordering: .acquiring) == 0 else {
            assertionFailure("FUSELowLevel: armInterrupt called twice")
            return true
        }
        let thread = currentThreadToken()
        let id = session.interrupts.arm(self, registrant: thread)
        interruptID.store(id, ordering: .releasing)
        // No lock of ours is held here: libfuse may call back into
        // deliverInterrupt, which takes the claim table's lock.
        _ = session.gate.ifOpen {
            fuse_req_interrupt_func(request.raw, interruptTrampoline, UnsafeMutableRawPointer(bitPattern: UInt(id)))
        }
        session.interrupts.registrationFinished(id)
        if session.gate.ifOpen({ fuse_req_interrupted(request.raw) != 0 }) ?? false {
            answer(by: .layer, errno: .interrupted)
            return false
        }
        return true
    }

    /// Tell the layer how to cancel the pending work. If an interrupt already
    /// arrived, `cancel` runs now, on this thread (so do not hold a lock that
    /// `cancel` takes). When an interrupt arrives, `cancel` runs at most
    /// once; if it returns true, the work will never answer, so the layer
    /// answers EINTR; if false, the work has answered or will answer.
    ///
    /// `cancel` may run on a libfuse thread, inside libfuse's interrupt
    /// function. It should capture what identifies the work (an id), not this
    /// reply: a reply captured by its own cancel stays alive until answered.
    /// Calling again before an interrupt replaces the earlier cancel.
    public func onInterrupt(_ cancel: @escaping @Sendable () -> Bool) {
        let id = interruptID.load(ordering: .acquiring)
        guard id != 0 else {
            assertionFailure("FUSELowLevel: onInterrupt without armInterrupt")
            return
        }
        switch session.interrupts.provideCancel(id, cancel) {
        case .stored, .discarded:
            return
        case .runCancel(let run):
            // `self` is alive for the whole call.
            session.runCancel(id: id, run)
        }
    }
}

extension SessionCore {
    /// libfuse reports an interrupt for request `id`.
    func deliverInterrupt(id: UInt64, thread: UInt) {
        switch interrupts.interrupt(id, on: thread) {
        case .ignored, .reentrant:
            return
        case .runCancel(let cancel, let reply):
            withExtendedLifetime(reply) { runCancel(id: id, cancel) }
        }
    }

    func runCancel(id: UInt64, _ cancel: @Sendable () -> Bool) {
        let cancelled = cancel()
        if let reply = interrupts.cancelFinished(id, cancelled: cancelled) {
            reply.answer(by: .layer, errno: .interrupted)
        }
    }
}

/// libfuse's interrupt function. `data` is the request's id in the claim
/// table (never 0), not a pointer.
private let interruptTrampoline: @convention(c) (fuse_req_t?, UnsafeMutableRawPointer?) -> Void = { req, data in
    guard let req else { return }
    SessionCore.of(req).deliverInterrupt(id: UInt64(UInt(bitPattern: data)), thread: currentThreadToken())
}

/// Identifies the calling thread (for the claim table's re-entrancy check).
func currentThreadToken() -> UInt {
    UInt(pthread_self())
}
