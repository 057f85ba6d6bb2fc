#if MCASTFS_TSAN
import Glibc
#else
import Synchronization
#endif

// The lock of a group (and of the async bridges): Synchronization.Mutex.
//
// Under the thread sanitizer (built with MCASTFS_TSAN=1 in the environment,
// see Package.swift) it is a pthread mutex instead: TSan cannot see the futex
// inside Mutex on Linux and reports races between threads that both hold it
// (reproduced with a 10-line counter whose total is exact). With a pthread
// mutex TSan checks everything the lock guards.

#if MCASTFS_TSAN
final class LockedValue<Value: ~Copyable>: @unchecked Sendable {
    private var value: Value
    private let mutex = UnsafeMutablePointer<pthread_mutex_t>.allocate(capacity: 1)

    init(_ value: consuming Value) {
        self.value = value
        pthread_mutex_init(mutex, nil)
    }

    deinit {
        pthread_mutex_destroy(mutex)
        mutex.deallocate()
    }

    func withLock<R, E: Error>(_ body: (inout sending Value) throws(E) -> sending R) throws(E) -> sending R {
        pthread_mutex_lock(mutex)
        defer { pthread_mutex_unlock(mutex) }
        return try body(&value)
    }
}
#else
struct LockedValue<Value: ~Copyable>: ~Copyable, @unchecked Sendable {
    private let mutex: Mutex<Value>

    init(_ value: consuming sending Value) { mutex = Mutex(value) }

    @inline(__always)
    borrowing func withLock<R, E: Error>(_ body: (inout sending Value) throws(E) -> sending R) throws(E) -> sending R {
        try mutex.withLock(body)
    }
}
#endif
