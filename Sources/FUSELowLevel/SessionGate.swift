import Glibc
import Synchronization

/// Keeps libfuse calls that touch the session (replies, poll notifications,
/// interrupt registration) from running once the session is being unmounted
/// or destroyed: `fuse_session_unmount` closes the device fd (a reply written
/// after that could reach an unrelated file that reused the number) and
/// `fuse_session_destroy` frees what requests and poll handles point to.
///
/// A shared/exclusive gate without blocking on the shared side: a caller
/// enters (unless closed), calls libfuse, leaves. `close` shuts the gate and
/// waits until the callers inside have left — a lock that notify and reply
/// take, but one where replies never wait on each other.
final class SessionGate: Sendable {
    private static let closedBit = 1 << 62
    private let word = Atomic<Int>(0)

    init() {}

    /// Runs `body` if the gate is open; returns nil if it is closed.
    func ifOpen<R>(_ body: () throws -> R) rethrows -> R? {
        guard enter() else { return nil }
        defer { leave() }
        return try body()
    }

    var isOpen: Bool { word.load(ordering: .acquiring) & Self.closedBit == 0 }

    /// Closes the gate and waits for callers inside to leave. Idempotent.
    /// Must not be called from inside `ifOpen` (it would wait for itself).
    func close() {
        word.bitwiseOr(Self.closedBit, ordering: .acquiringAndReleasing)
        while word.load(ordering: .acquiring) & ~Self.closedBit != 0 {
            sched_yield()
        }
    }

    private func enter() -> Bool {
        var current = word.load(ordering: .relaxed)
        while current & Self.closedBit == 0 {
            let (exchanged, original) = word.compareExchange(
                expected: current, desired: current + 1, ordering: .acquiring)
            if exchanged { return true }
            current = original
        }
        return false
    }

    private func leave() {
        word.wrappingSubtract(1, ordering: .releasing)
    }
}
