import Glibc

/// `Synchronization.Mutex`'s interface on a pthread mutex, for builds under
/// the thread sanitizer only (MCASTFS_TSAN=1; see Package.swift).
///
/// TSan cannot see the futex inside Mutex on Linux, and reports races between
/// threads that both hold it (a 10-line counter whose total is exact shows
/// it). It intercepts pthread mutexes, so with this in Mutex's place it checks
/// everything the locks guard. Modules alias `Mutex` to it under the flag.
public final class SanitizerMutex<Value: ~Copyable>: @unchecked Sendable {
    private var value: Value
    private let mutex = UnsafeMutablePointer<pthread_mutex_t>.allocate(capacity: 1)

    public init(_ value: consuming sending Value) {
        self.value = value
        pthread_mutex_init(mutex, nil)
    }

    deinit {
        pthread_mutex_destroy(mutex)
        mutex.deallocate()
    }

    public func withLock<R: ~Copyable, E: Error>(_ body: (inout sending Value) throws(E) -> sending R) throws(E) -> sending R {
        pthread_mutex_lock(mutex)
        defer { pthread_mutex_unlock(mutex) }
        return try body(&value)
    }

    public func withLockIfAvailable<R: ~Copyable, E: Error>(_ body: (inout sending Value) throws(E) -> sending R) throws(E) -> sending R? {
        guard pthread_mutex_trylock(mutex) == 0 else { return nil }
        defer { pthread_mutex_unlock(mutex) }
        return try body(&value)
    }
}
