/// Who may send to a group.
public enum SendPolicy: String, Sendable, CaseIterable {
    /// Anyone: members through their own membership, and anonymous senders.
    case anyone
    /// Members only: anonymous sends are refused.
    case members
}

/// Where a front end that receives a stream of bytes (a file's writes) cuts
/// it into messages. The core stores it with the group's settings; the front
/// end does the cutting.
public enum MessageBoundary: String, Sendable, CaseIterable {
    /// Each write is one message.
    case write
    /// Each line, up to and including its newline, is one message.
    case line
}

/// The bounds every setting must stay within.
public enum Limits {
    public static let capacity: ClosedRange<Int> = 1...1_000_000
    public static let queueBytes: ClosedRange<Int> = 1...(1 << 30)
    /// 1 MiB less 4 KiB: the largest write(2) that always reaches a FUSE daemon
    /// as a single request, whatever the alignment of the writer's buffer.
    public static let maxMessage: ClosedRange<Int> = 1...1_044_480
}

/// A group's settings. `capacity` and `queueBytes` are the defaults given to
/// members when they join.
public struct GroupSettings: Sendable, Equatable {
    public var capacity: Int
    public var queueBytes: Int
    public var maxMessage: Int
    public var sendPolicy: SendPolicy
    public var messageBoundary: MessageBoundary
    /// The `sendToPeer` of members that join later.
    public var sendToPeer: Bool

    public init(
        capacity: Int = 256,
        queueBytes: Int = 4 << 20,
        maxMessage: Int = Limits.maxMessage.upperBound,
        sendPolicy: SendPolicy = .anyone,
        messageBoundary: MessageBoundary = .write,
        sendToPeer: Bool = false
    ) {
        self.capacity = capacity
        self.queueBytes = queueBytes
        self.maxMessage = maxMessage
        self.sendPolicy = sendPolicy
        self.messageBoundary = messageBoundary
        self.sendToPeer = sendToPeer
    }

    /// Throws `.invalidSetting` naming the first value out of bounds.
    public func validate() throws(DeliveryError) {
        try check("capacity", capacity, Limits.capacity)
        try check("queue_bytes", queueBytes, Limits.queueBytes)
        try check("max_message", maxMessage, Limits.maxMessage)
    }
}

/// One member's settings.
public struct MemberSettings: Sendable, Equatable {
    public var capacity: Int
    public var queueBytes: Int
    /// Receive the messages this member sends itself.
    public var loopback: Bool
    /// When the queue is full, skip this member (and count a drop) instead of
    /// holding every sender back.
    public var dropWhenFull: Bool
    /// The topics this member receives (TopicFilter.swift); empty, the
    /// default, receives every message.
    public var subscribe: Subscription
    /// Every message this member sends also goes to its peer queue (the
    /// seed's UNIX_MREQ_SEND_TO_PEER), as one more recipient.
    public var sendToPeer: Bool

    public init(
        capacity: Int = 256, queueBytes: Int = 4 << 20, loopback: Bool = false, dropWhenFull: Bool = false,
        subscribe: Subscription = Subscription(), sendToPeer: Bool = false
    ) {
        self.capacity = capacity
        self.queueBytes = queueBytes
        self.loopback = loopback
        self.dropWhenFull = dropWhenFull
        self.subscribe = subscribe
        self.sendToPeer = sendToPeer
    }

    public func validate() throws(DeliveryError) {
        try check("capacity", capacity, Limits.capacity)
        try check("queue_bytes", queueBytes, Limits.queueBytes)
    }
}

private func check(_ key: String, _ value: Int, _ range: ClosedRange<Int>) throws(DeliveryError) {
    guard range.contains(value) else {
        throw .invalidSetting(key: key, value: value, allowed: range)
    }
}
