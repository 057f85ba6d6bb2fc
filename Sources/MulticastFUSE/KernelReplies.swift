import FUSELowLevel
import MulticastFS
import SystemPackage

// The filesystem's waiting replies (MulticastFS/Replies.swift) over libfuse's:
// a stored read or write is armed for interrupts before it waits.

/// A read reply: stored while the reader waits, interruptible by a signal.
struct KernelRead: ReadReply {
    let reply: ReplyData
    func reply(_ bytes: UnsafeRawBufferPointer) -> Bool { reply.data(bytes).delivered }
    func fail(_ error: Errno) { reply.error(error) }
    func willWait() -> Bool { reply.armInterrupt() }
    func cancelOnInterrupt(_ cancel: @escaping @Sendable () -> Bool) { reply.onInterrupt(cancel) }
}

/// A write reply: stored while the writer waits, interruptible by a signal.
struct KernelWrite: WriteReply {
    let reply: ReplyWrite
    func reply(written: Int) { reply.written(written) }
    func fail(_ error: Errno) { reply.error(error) }
    func willWait() -> Bool { reply.armInterrupt() }
    func cancelOnInterrupt(_ cancel: @escaping @Sendable () -> Bool) { reply.onInterrupt(cancel) }
}

/// An fsync reply: stored while its line tail waits, interruptible by a signal.
struct KernelSync: SyncReply {
    let reply: ReplyEmpty
    func synced() { reply.ok() }
    func fail(_ error: Errno) { reply.error(error) }
    func willWait() -> Bool { reply.armInterrupt() }
    func cancelOnInterrupt(_ cancel: @escaping @Sendable () -> Bool) { reply.onInterrupt(cancel) }
}
