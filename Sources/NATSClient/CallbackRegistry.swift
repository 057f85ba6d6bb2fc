import Locking

/// Where nats.c's callbacks find their Swift targets.
///
/// nats.c calls back on its own threads (the connection's async-callback
/// thread, a subscription's delivery thread) with a `void *closure` that we
/// chose, and it can still be inside a callback after the call that
/// unregisters it has returned (a subscription's delivery thread finishes the
/// callback it is running). A pointer to a Swift object would then dangle. So
/// the closure is a number, not a pointer: callbacks look the number up here,
/// under the lock, and a late callback finds nothing and does nothing.
final class CallbackRegistry<Target: Sendable>: Sendable {
    private struct State {
        var next: UInt = 1
        var targets: [UInt: Target] = [:]
    }
    private let state = AdaptiveMutex(State())

    /// The closure value to hand to nats.c for `target`.
    func register(_ target: Target) -> UnsafeMutableRawPointer {
        let id = state.withLock { s -> UInt in
            let id = s.next
            s.next += 1
            s.targets[id] = target
            return id
        }
        // A non-zero integer in a pointer's clothes; never dereferenced.
        return UnsafeMutableRawPointer(bitPattern: id)!
    }

    func target(_ closure: UnsafeMutableRawPointer?) -> Target? {
        guard let closure else { return nil }
        let id = UInt(bitPattern: closure)
        return state.withLock { $0.targets[id] }
    }

    @discardableResult
    func unregister(_ closure: UnsafeMutableRawPointer?) -> Target? {
        guard let closure else { return nil }
        let id = UInt(bitPattern: closure)
        return state.withLock { $0.targets.removeValue(forKey: id) }
    }
}
