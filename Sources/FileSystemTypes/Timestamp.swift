import Glibc

/// A point in time as the kernel keeps it: seconds and nanoseconds since the
/// Unix epoch.
public struct Timestamp: Sendable, Hashable {
    public var seconds: Int64
    public var nanoseconds: Int64

    public init(seconds: Int64, nanoseconds: Int64 = 0) {
        self.seconds = seconds
        self.nanoseconds = nanoseconds
    }

    public static let epoch = Timestamp(seconds: 0)

    /// The wall clock (CLOCK_REALTIME), as file times are.
    public static func now() -> Timestamp {
        var time = timespec()
        clock_gettime(CLOCK_REALTIME, &time)
        return Timestamp(seconds: Int64(time.tv_sec), nanoseconds: Int64(time.tv_nsec))
    }
}
