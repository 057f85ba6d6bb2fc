public import Glibc

/// A value guarded by a glibc adaptive mutex: the lock every mcastfs module
/// uses, with `Synchronization.Mutex`'s `withLock` interface.
///
/// Why not `Synchronization.Mutex`: on Linux it is a priority-inheritance
/// futex (FUTEX_LOCK_PI). A contended unlock hands the lock to the waiter the
/// kernel picked, and no thread can take it until that waiter is scheduled.
/// With more runnable threads than CPUs — a write waking 16 readers whose next
/// reads arrive while it delivers, on 2 cores — the lock then sits owned by a
/// thread that is not running, everyone queues behind it, and a fan-out's p99
/// nearly doubles (docs/locking.md has the figures). An adaptive mutex spins a
/// little, then sleeps on a plain futex, and a running thread may take the
/// lock as soon as it is free.
///
/// Also visible to the thread sanitizer, which intercepts pthread mutexes but
/// not Mutex's futex.
public final class AdaptiveMutex<Value: ~Copyable>: @unchecked Sendable {
    @usableFromInline let mutex: UnsafeMutablePointer<pthread_mutex_t>
    /// Only touched with `mutex` held, so the dynamic exclusivity check a
    /// class property would pay on every access buys nothing.
    @usableFromInline @exclusivity(unchecked) var value: Value

    public init(_ value: consuming sending Value) {
        self.value = value
        mutex = .allocate(capacity: 1)
        var attributes = pthread_mutexattr_t()
        pthread_mutexattr_init(&attributes)
        pthread_mutexattr_settype(&attributes, Int32(PTHREAD_MUTEX_ADAPTIVE_NP))
        pthread_mutex_init(mutex, &attributes)
        pthread_mutexattr_destroy(&attributes)
    }

    deinit {
        pthread_mutex_destroy(mutex)
        mutex.deallocate()
    }

    /// Runs `body` with the lock held. Not reentrant.
    @inlinable
    public func withLock<Result: ~Copyable, E: Error>(
        _ body: (inout sending Value) throws(E) -> sending Result
    ) throws(E) -> sending Result {
        pthread_mutex_lock(mutex)
        defer { pthread_mutex_unlock(mutex) }
        return try body(&value)
    }
}
