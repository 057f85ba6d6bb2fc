import CFuse
import Glibc
import Logging
import Synchronization
import SystemPackage

/// The kernel's request to be told when a file's poll state changes
/// (`struct fuse_pollhandle`). libfuse makes one only when the kernel asks
/// (FUSE_POLL_SCHEDULE_NOTIFY); keep the newest per open file and `notify()`
/// it when the file becomes ready. The kernel then polls again.
///
/// `notify()` works at most once, then frees the handle; a handle dropped
/// unnotified is freed by deinit. Once the session is unmounting or
/// destroyed, notify sends nothing (libfuse's handle points into the
/// session, which `fuse_session_destroy` frees): the session's gate is the
/// lock that both notify and shutdown take.
public final class PollHandle: Sendable {
    private let handle: PollHandlePointer
    private let session: SessionCore
    private let used = Atomic<Bool>(false)

    init(handle: PollHandlePointer, session: SessionCore) {
        self.handle = handle
        self.session = session
    }

    deinit {
        if !used.load(ordering: .acquiring) {
            // fuse_pollhandle_destroy is free(3) in 3.14: safe at any time.
            fuse_pollhandle_destroy(handle.raw)
        }
    }

    /// Tells the kernel to poll again. Returns true if the notification was
    /// sent; false if already notified, or the session is closing, or the
    /// kernel refused it.
    @discardableResult
    public func notify() -> Bool {
        guard !used.exchange(true, ordering: .acquiringAndReleasing) else { return false }
        let rc = session.gate.ifOpen { fuse_lowlevel_notify_poll(handle.raw) }
        fuse_pollhandle_destroy(handle.raw)
        // -ENOENT: the kernel no longer waits on this handle (the poller
        // went away), which is no failure.
        if let rc, rc != 0, rc != -ENOENT {
            session.logger.error("the kernel refused a poll notification", metadata: ["errno": "\(Errno(rawValue: -rc))"])
        }
        return rc == 0
    }

    /// Whether `notify()` was called.
    public var isNotified: Bool { used.load(ordering: .acquiring) }
}

/// A `struct fuse_pollhandle *` that may cross threads: libfuse's
/// notification is a self-contained write to the device; `PollHandle`'s flag
/// makes sure it is used (notified, then freed) exactly once.
struct PollHandlePointer: @unchecked Sendable {
    let raw: OpaquePointer
}
