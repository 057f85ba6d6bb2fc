internal import CNATS

public enum RetentionPolicy: Sendable, Equatable {
    /// Kept until a limit (count, bytes, age) removes the oldest.
    case limits
    /// Kept until every consumer has acked it. A message that no consumer
    /// is interested in when it arrives is not stored at all (its publish is
    /// still acked, with a sequence number).
    case interest
    /// Kept until one consumer acks it.
    case workQueue
}

public enum DiscardPolicy: Sendable, Equatable {
    /// At a limit, drop the oldest message to make room.
    case old
    /// At a limit, refuse the new message ("maximum messages exceeded").
    case new
}

public enum StorageType: Sendable, Equatable {
    case file, memory
}

/// The stream settings mcastfs uses; every other field keeps nats.c's default.
public struct StreamConfig: Sendable, Equatable {
    public var name: String
    public var subjects: [String]
    public var description: String?
    public var retention: RetentionPolicy = .limits
    public var discard: DiscardPolicy = .old
    public var storage: StorageType = .file
    /// `nil`: no limit.
    public var maxMessages: Int64?
    public var maxBytes: Int64?
    public var maxAge: Duration?
    public var maxMessageSize: Int32?
    public var maxMessagesPerSubject: Int64?
    public var maxConsumers: Int64?
    public var replicas: Int = 1
    /// How long a `Nats-Msg-Id` is remembered; `nil`: the server's default
    /// (2 minutes).
    public var duplicateWindow: Duration?

    public init(name: String, subjects: [String]) {
        self.name = name
        self.subjects = subjects
    }

    func withC<R>(_ body: (UnsafeMutablePointer<jsStreamConfig>) throws(NATSError) -> R) throws(NATSError) -> R {
        var c = jsStreamConfig()
        try check(jsStreamConfig_Init(&c))
        let strings = CStrings()
        c.Name = strings.copy(name)
        c.Description = strings.copy(description)
        c.Subjects = strings.copy(subjects)
        c.SubjectsLen = Int32(subjects.count)
        c.Retention = switch retention {
        case .limits: js_LimitsPolicy
        case .interest: js_InterestPolicy
        case .workQueue: js_WorkQueuePolicy
        }
        c.Discard = discard == .new ? js_DiscardNew : js_DiscardOld
        c.Storage = storage == .memory ? js_MemoryStorage : js_FileStorage
        if let maxMessages { c.MaxMsgs = maxMessages }
        if let maxBytes { c.MaxBytes = maxBytes }
        if let maxAge { c.MaxAge = maxAge.inNanoseconds }
        if let maxMessageSize { c.MaxMsgSize = maxMessageSize }
        if let maxMessagesPerSubject { c.MaxMsgsPerSubject = maxMessagesPerSubject }
        if let maxConsumers { c.MaxConsumers = maxConsumers }
        c.Replicas = Int64(replicas)
        if let duplicateWindow { c.Duplicates = duplicateWindow.inNanoseconds }
        return try withExtendedLifetime(strings) { () throws(NATSError) in try body(&c) }
    }

    init(_ c: jsStreamConfig) {
        name = string(c.Name) ?? ""
        subjects = (0..<Int(c.SubjectsLen)).compactMap { string(c.Subjects[$0]) }
        description = string(c.Description)
        retention = switch c.Retention {
        case js_InterestPolicy: .interest
        case js_WorkQueuePolicy: .workQueue
        default: .limits
        }
        discard = c.Discard == js_DiscardNew ? .new : .old
        storage = c.Storage == js_MemoryStorage ? .memory : .file
        maxMessages = c.MaxMsgs > 0 ? c.MaxMsgs : nil
        maxBytes = c.MaxBytes > 0 ? c.MaxBytes : nil
        maxAge = c.MaxAge > 0 ? .nanoseconds(c.MaxAge) : nil
        maxMessageSize = c.MaxMsgSize > 0 ? c.MaxMsgSize : nil
        maxMessagesPerSubject = c.MaxMsgsPerSubject > 0 ? c.MaxMsgsPerSubject : nil
        maxConsumers = c.MaxConsumers > 0 ? c.MaxConsumers : nil
        replicas = Int(c.Replicas)
        duplicateWindow = c.Duplicates > 0 ? .nanoseconds(c.Duplicates) : nil
    }
}

public struct StreamState: Sendable, Equatable {
    /// Messages stored now.
    public var messages: UInt64
    public var bytes: UInt64
    public var firstSequence: UInt64
    /// The last sequence number handed out, stored or not (an interest
    /// stream with no consumer hands out sequence numbers and stores nothing).
    public var lastSequence: UInt64
    public var consumers: Int
}

/// One server holding a replica of a stream or consumer.
public struct PeerInfo: Sendable, Equatable {
    public var name: String
    public var current: Bool
    public var offline: Bool
    public var lag: UInt64
}

public struct ClusterInfo: Sendable, Equatable {
    public var name: String?
    public var leader: String?
    /// The other replicas (the leader is not among them).
    public var replicas: [PeerInfo]

    init?(_ p: UnsafeMutablePointer<jsClusterInfo>?) {
        guard let c = p?.pointee else { return nil }
        name = string(c.Name)
        leader = string(c.Leader)
        replicas = (0..<Int(c.ReplicasLen)).compactMap { i in
            c.Replicas[i].map { r in
                PeerInfo(name: string(r.pointee.Name) ?? "", current: r.pointee.Current, offline: r.pointee.Offline, lag: r.pointee.Lag)
            }
        }
    }
}

public struct StreamInfo: Sendable, Equatable {
    public var config: StreamConfig
    public var state: StreamState
    public var cluster: ClusterInfo?

    /// Copies out and frees nats.c's.
    init(consuming si: UnsafeMutablePointer<jsStreamInfo>) {
        defer { jsStreamInfo_Destroy(si) }
        config = StreamConfig(si.pointee.Config.pointee)
        let s = si.pointee.State
        state = StreamState(messages: s.Msgs, bytes: s.Bytes, firstSequence: s.FirstSeq, lastSequence: s.LastSeq, consumers: Int(s.Consumers))
        cluster = ClusterInfo(si.pointee.Cluster)
    }
}
