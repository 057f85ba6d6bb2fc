public import SystemPackage
// How the filesystem answers a read or write that may finish later, on
// another thread. The FUSE bridge implements these over libfuse replies (with
// interrupts); tests implement them with recorders that play the kernel.

/// A reply that may wait.
public protocol WaitingReply: Sendable {
    func fail(_ error: Errno)
    /// Called once, before the request waits and becomes visible to other
    /// threads. False: the requester was already interrupted, and has been
    /// answered; the request must be dropped.
    func willWait() -> Bool
    /// How to cancel the wait if the requester is interrupted. `cancel`
    /// returns true if it removed the waiter (which then never answers), so
    /// the reply must answer EINTR; false if the waiter is answering anyway.
    func cancelOnInterrupt(_ cancel: @escaping @Sendable () -> Bool)
}

public protocol ReadReply: WaitingReply {
    /// Hands `bytes` to the reader. False: the requester went away, and the
    /// filesystem puts the bytes back.
    func reply(_ bytes: UnsafeRawBufferPointer) -> Bool
}

public protocol WriteReply: WaitingReply {
    func reply(written: Int)
}

/// fsync(2)'s reply, which waits while a line tail it sends does.
public protocol SyncReply: WaitingReply {
    /// Everything written is out.
    func synced()
}
