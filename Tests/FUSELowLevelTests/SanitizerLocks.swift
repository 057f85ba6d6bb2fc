#if MCASTFS_TSAN
import SanitizerLocks

/// Under the thread sanitizer, Mutex is a pthread mutex TSan can see
/// (Sources/SanitizerLocks). Everywhere else it is Synchronization.Mutex.
typealias Mutex<Value: ~Copyable> = SanitizerMutex<Value>
#endif
