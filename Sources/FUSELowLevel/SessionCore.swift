import CFuse
import Logging

/// What every callback, reply and poll handle of one session shares. It is
/// the `userdata` libfuse hands back (`fuse_req_userdata`), retained by the
/// session until after `fuse_session_destroy`, and kept alive beyond that by
/// any reply or poll handle still around.
final class SessionCore: Sendable {
    let operations: any FilesystemOperations
    let gate = SessionGate()
    let interrupts = InterruptRegistry<Reply>()
    /// Where libfuse's messages go when the session has no mount.
    let channel: (any FUSEChannel)?
    /// Where this layer says what failed: a reply or notification the
    /// kernel refused, a thread that could not start, a signal received.
    let logger: Logger

    init(operations: any FilesystemOperations, channel: (any FUSEChannel)? = nil, logger: Logger) {
        self.operations = operations
        self.channel = channel
        self.logger = logger
    }

    /// The core of the session `req` belongs to. Valid in callbacks and in
    /// libfuse's interrupt function (the request is alive there).
    static func of(_ req: fuse_req_t) -> SessionCore {
        Unmanaged<SessionCore>.fromOpaque(fuse_req_userdata(req)!).takeUnretainedValue()
    }
}

/// A `fuse_req_t` that may cross threads.
///
/// Safe because libfuse allows a request to be answered from any thread, and
/// our `Reply` guarantees the handle is used for exactly one reply function
/// (the claim in `Reply.answer`), after which it is never touched again.
/// Reading `fuse_req_interrupted` and registering the interrupt function
/// happen before the claim, under libfuse's own locks.
struct RequestHandle: @unchecked Sendable {
    let raw: fuse_req_t
}
