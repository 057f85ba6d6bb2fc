import CFuse

/// FUSE capability bits (FUSE_CAP_* in libfuse's fuse_common.h).
public struct FUSECapabilities: OptionSet, Sendable, Hashable {
    public var rawValue: UInt32
    public init(rawValue: UInt32) { self.rawValue = rawValue }

    public static let asyncRead = FUSECapabilities(rawValue: 1 << 0)
    public static let posixLocks = FUSECapabilities(rawValue: 1 << 1)
    public static let atomicOTrunc = FUSECapabilities(rawValue: 1 << 3)
    public static let exportSupport = FUSECapabilities(rawValue: 1 << 4)
    public static let dontMask = FUSECapabilities(rawValue: 1 << 6)
    public static let spliceWrite = FUSECapabilities(rawValue: 1 << 7)
    public static let spliceMove = FUSECapabilities(rawValue: 1 << 8)
    public static let spliceRead = FUSECapabilities(rawValue: 1 << 9)
    public static let flockLocks = FUSECapabilities(rawValue: 1 << 10)
    public static let ioctlDirectory = FUSECapabilities(rawValue: 1 << 11)
    public static let autoInvalidateData = FUSECapabilities(rawValue: 1 << 12)
    public static let readdirPlus = FUSECapabilities(rawValue: 1 << 13)
    public static let readdirPlusAuto = FUSECapabilities(rawValue: 1 << 14)
    public static let asyncDirectIO = FUSECapabilities(rawValue: 1 << 15)
    public static let writebackCache = FUSECapabilities(rawValue: 1 << 16)
    public static let noOpenSupport = FUSECapabilities(rawValue: 1 << 17)
    public static let parallelDirectoryOperations = FUSECapabilities(rawValue: 1 << 18)
    public static let posixACL = FUSECapabilities(rawValue: 1 << 19)
    public static let handleKillPriv = FUSECapabilities(rawValue: 1 << 20)
    public static let cacheSymlinks = FUSECapabilities(rawValue: 1 << 23)
    public static let noOpendirSupport = FUSECapabilities(rawValue: 1 << 24)
    public static let explicitInvalidateData = FUSECapabilities(rawValue: 1 << 25)
    public static let expireOnly = FUSECapabilities(rawValue: 1 << 26)
}

/// The connection as negotiated at FUSE_INIT; `initialize` may change the
/// `var` fields. libfuse refuses the session (EPROTO) if `want` has a bit
/// that `capable` lacks.
public struct ConnectionSettings: Sendable, Equatable {
    public let protocolMajor: UInt32
    public let protocolMinor: UInt32
    /// What the kernel (and libfuse) support.
    public let capable: FUSECapabilities
    /// What this filesystem turns on; libfuse fills in defaults first.
    public var want: FUSECapabilities
    /// Largest write request, in bytes (libfuse caps it at its buffer: 1 MiB).
    public var maxWrite: UInt32
    /// Largest read request; 0 means no limit of ours. Must also be passed as
    /// `-o max_read=N` to take effect.
    public var maxRead: UInt32
    public var maxReadahead: UInt32
    public var maxBackground: UInt32
    public var congestionThreshold: UInt32
    /// Timestamp granularity in nanoseconds (a power of 10; 1 = full).
    public var timeGranularity: UInt32

    public init(
        protocolMajor: UInt32, protocolMinor: UInt32, capable: FUSECapabilities,
        want: FUSECapabilities, maxWrite: UInt32, maxRead: UInt32, maxReadahead: UInt32,
        maxBackground: UInt32, congestionThreshold: UInt32, timeGranularity: UInt32
    ) {
        self.protocolMajor = protocolMajor
        self.protocolMinor = protocolMinor
        self.capable = capable
        self.want = want
        self.maxWrite = maxWrite
        self.maxRead = maxRead
        self.maxReadahead = maxReadahead
        self.maxBackground = maxBackground
        self.congestionThreshold = congestionThreshold
        self.timeGranularity = timeGranularity
    }

    init(_ conn: fuse_conn_info) {
        self.init(
            protocolMajor: conn.proto_major, protocolMinor: conn.proto_minor,
            capable: FUSECapabilities(rawValue: conn.capable),
            want: FUSECapabilities(rawValue: conn.want),
            maxWrite: conn.max_write, maxRead: conn.max_read, maxReadahead: conn.max_readahead,
            maxBackground: conn.max_background, congestionThreshold: conn.congestion_threshold,
            timeGranularity: conn.time_gran)
    }

    func apply(to conn: inout fuse_conn_info) {
        conn.want = want.rawValue
        conn.max_write = maxWrite
        conn.max_read = maxRead
        conn.max_readahead = maxReadahead
        conn.max_background = maxBackground
        conn.congestion_threshold = congestionThreshold
        conn.time_gran = timeGranularity
    }
}
