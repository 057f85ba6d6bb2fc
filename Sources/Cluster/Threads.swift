import Glibc
import Locking

// The module's own threads. nats.c's calls that wait (a fetch, a watcher's
// next) block the calling thread, and nats.c 3.4 has no asynchronous form of
// them, so each such loop gets a plain thread of its own, mostly asleep in
// nats.c. Everything else is event-driven (nats.c's callback threads).

/// Starts a detached thread running `body`.
func startThread(_ name: String, _ body: @escaping @Sendable () -> Void) {
    final class Box: @unchecked Sendable {
        let body: @Sendable () -> Void
        let name: String
        init(_ name: String, _ body: @escaping @Sendable () -> Void) { self.name = name; self.body = body }
    }
    var attributes = pthread_attr_t()
    pthread_attr_init(&attributes)
    pthread_attr_setdetachstate(&attributes, Int32(PTHREAD_CREATE_DETACHED))
    defer { pthread_attr_destroy(&attributes) }
    var thread = pthread_t()
    let box = Unmanaged.passRetained(Box(name, body)).toOpaque()
    let rc = pthread_create(&thread, &attributes, { arg in
        let box = Unmanaged<Box>.fromOpaque(arg!).takeRetainedValue()
        box.body()
        return nil
    }, box)
    precondition(rc == 0, "pthread_create: \(rc)")
}

/// A value guarded by a mutex with a condition variable: a thread can wait
/// (with a deadline) for another to change it.
final class Monitor<Value>: @unchecked Sendable {
    private let mutex = UnsafeMutablePointer<pthread_mutex_t>.allocate(capacity: 1)
    private let condition = UnsafeMutablePointer<pthread_cond_t>.allocate(capacity: 1)
    private var value: Value

    init(_ value: Value) {
        self.value = value
        pthread_mutex_init(mutex, nil)
        var attributes = pthread_condattr_t()
        pthread_condattr_init(&attributes)
        // Deadlines on the monotonic clock: a wall-clock step must not
        // stretch or cut a heartbeat or a wait for room.
        pthread_condattr_setclock(&attributes, CLOCK_MONOTONIC)
        pthread_cond_init(condition, &attributes)
        pthread_condattr_destroy(&attributes)
    }

    deinit {
        pthread_cond_destroy(condition)
        pthread_mutex_destroy(mutex)
        condition.deallocate()
        mutex.deallocate()
    }

    /// Runs `body` with the lock held and wakes every waiter.
    func change<R>(_ body: (inout Value) throws -> R) rethrows -> R {
        pthread_mutex_lock(mutex)
        defer {
            pthread_cond_broadcast(condition)
            pthread_mutex_unlock(mutex)
        }
        return try body(&value)
    }

    /// Runs `body` with the lock held and wakes nobody: for parts of the
    /// value no waiter waits on (a broadcast with a waiter is a futex call
    /// and, on a busy machine, a thread switch).
    func update<R>(_ body: (inout Value) -> R) -> R {
        change(waking: { s in (body(&s), false) })
    }

    /// Runs `body` with the lock held, and wakes the waiters only if it
    /// says they have something to see: a wake-up is a thread switch.
    func change<R>(waking body: (inout Value) -> (R, wake: Bool)) -> R {
        pthread_mutex_lock(mutex)
        let (result, wake) = body(&value)
        if wake { pthread_cond_broadcast(condition) }
        pthread_mutex_unlock(mutex)
        return result
    }

    func read<R>(_ body: (Value) throws -> R) rethrows -> R {
        pthread_mutex_lock(mutex)
        defer { pthread_mutex_unlock(mutex) }
        return try body(value)
    }

    /// Waits until `ready` returns a result, sleeping between its tries for
    /// what `sleeping` says (read with the lock held, after `ready`).
    func wait<R>(until ready: (inout Value) -> R?, sleeping: (Value) -> Duration) -> R {
        pthread_mutex_lock(mutex)
        defer { pthread_mutex_unlock(mutex) }
        while true {
            if let result = ready(&value) { return result }
            var ts = timespec(monotonicNow() + max(sleeping(value), .zero))
            pthread_cond_timedwait(condition, mutex, &ts)
        }
    }

    /// Waits until `ready` returns a result or `timeout` passes (nil: for
    /// ever); `ready` runs with the lock held and may change the value.
    func wait<R>(timeout: Duration? = nil, until ready: (inout Value) -> R?) -> R? {
        pthread_mutex_lock(mutex)
        defer { pthread_mutex_unlock(mutex) }
        let deadline = timeout.map { monotonicNow() + $0 }
        while true {
            if let result = ready(&value) { return result }
            if let deadline {
                let now = monotonicNow()
                if now >= deadline { return nil }
                var ts = timespec(deadline)
                pthread_cond_timedwait(condition, mutex, &ts)
            } else {
                pthread_cond_wait(condition, mutex)
            }
        }
    }
}

/// CLOCK_MONOTONIC as a duration since an arbitrary start; never compared
/// across machines.
func monotonicNow() -> Duration {
    var ts = timespec()
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return .seconds(ts.tv_sec) + .nanoseconds(ts.tv_nsec)
}

/// CLOCK_REALTIME in nanoseconds.
func wallClockNanoseconds() -> UInt64 {
    var ts = timespec()
    clock_gettime(CLOCK_REALTIME, &ts)
    return UInt64(ts.tv_sec) * 1_000_000_000 + UInt64(ts.tv_nsec)
}

extension timespec {
    init(_ d: Duration) {
        let (s, atto) = d.components
        self.init(tv_sec: Int(s), tv_nsec: Int(atto / 1_000_000_000))
    }
}

/// Runs actions after a delay, on one thread of its own: the retries of
/// writes (20 ms after "no responders", 1 to 64 ms after a refused retry,
/// the backstop every cluster_timeout) without a thread per waiting write.
final class Timers: Sendable {
    private struct Entry {
        let id: UInt64
        let deadline: Duration
        /// The deadline plus the entry's slack: it may run as late as this,
        /// with others due by then, so that many entries cost few wake-ups.
        let latest: Duration
        let action: @Sendable () -> Void
    }
    private struct State {
        var entries: [Entry] = []
        var next: UInt64 = 1
        var stopped = false
        /// The deadline the thread sleeps until: an entry due later needs
        /// no wake-up (the writes' PubAck timeouts, one per write).
        var sleepingUntil: Duration?
    }
    private let state = Monitor(State())

    init() {
        startThread("cluster-timers") { [state] in
            while true {
                let due: [Entry] = state.wait { s -> [Entry]? in
                    if s.stopped { return [] }
                    let now = monotonicNow()
                    let due = s.entries.filter { $0.deadline <= now }
                    if !due.isEmpty {
                        s.entries.removeAll { $0.deadline <= now }
                        s.sleepingUntil = nil
                        return due
                    }
                    s.sleepingUntil = s.entries.map(\.latest).min() ?? (now + .seconds(1))
                    return nil
                } sleeping: { s in s.sleepingUntil.map { $0 - monotonicNow() } ?? .zero }
                if state.read({ $0.stopped }) { return }
                for entry in due.sorted(by: { $0.deadline < $1.deadline }) { entry.action() }
            }
        }
    }

    /// Runs `action` once `delay` has passed, and at most `slack` later.
    /// The id to `cancel` it with.
    @discardableResult
    func after(_ delay: Duration, slack: Duration = .zero, _ action: @escaping @Sendable () -> Void) -> UInt64 {
        let deadline = monotonicNow() + delay
        return state.change(waking: { s -> (UInt64, wake: Bool) in
            let id = s.next
            s.next += 1
            s.entries.append(Entry(id: id, deadline: deadline, latest: deadline + slack, action: action))
            // Asleep until later (or running: then it looks again anyway).
            return (id, s.sleepingUntil.map { deadline + slack < $0 } ?? false)
        })
    }

    /// Without waking the thread: if it wakes for nothing, it sleeps again.
    func cancel(_ id: UInt64) {
        state.change(waking: { s -> ((), wake: Bool) in
            s.entries.removeAll { $0.id == id }
            return ((), false)
        })
    }

    func stop() {
        state.change { $0.stopped = true; $0.entries.removeAll() }
    }
}
