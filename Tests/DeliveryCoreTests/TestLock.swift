import Foundation

/// A value behind a lock, for test bookkeeping. An NSLock (a pthread mutex)
/// rather than Synchronization.Mutex, so that the thread sanitizer, which
/// cannot see Mutex's futex, checks these tests too.
final class TestLock<Value>: @unchecked Sendable {
    private var value: Value
    private let lock = NSLock()

    init(_ value: Value) { self.value = value }

    func withLock<R>(_ body: (inout Value) throws -> R) rethrows -> R {
        lock.lock()
        defer { lock.unlock() }
        return try body(&value)
    }
}
