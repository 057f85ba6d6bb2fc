internal import CNATS

public enum DeliverPolicy: Sendable, Equatable {
    case all
    /// Only messages stored after the consumer was made.
    case new
    case last
    case startSequence(UInt64)
}

public enum AckPolicy: Sendable, Equatable {
    /// Each message is acked by itself.
    case explicit
    /// Acking a message acks every earlier one as well.
    case all
    case none
}

/// A durable pull consumer, as mcastfs makes one per node and group.
public struct ConsumerConfig: Sendable, Equatable {
    /// The durable name (no `.`, `*`, `>` or whitespace).
    public var name: String
    public var description: String?
    public var deliverPolicy: DeliverPolicy = .all
    public var ackPolicy: AckPolicy = .explicit
    /// A delivered message not acked within this is delivered again.
    public var ackWait: Duration?
    /// `nil`: no limit.
    public var maxDeliver: Int64?
    public var filterSubject: String?
    /// Delivered but unacked messages at most; the server delivers no more
    /// until some are acked: per-consumer flow control.
    public var maxAckPending: Int64?
    /// Pull requests waiting at most.
    public var maxWaiting: Int64?
    /// The server deletes the consumer after this long with no pull request
    /// and no ack from anyone (a node that went away).
    public var inactiveThreshold: Duration?
    public var replicas: Int?
    public var memoryStorage: Bool = false

    public init(name: String) { self.name = name }

    func withC<R>(_ body: (UnsafeMutablePointer<jsConsumerConfig>) throws(NATSError) -> R) throws(NATSError) -> R {
        var c = jsConsumerConfig()
        try check(jsConsumerConfig_Init(&c))
        let strings = CStrings()
        c.Durable = strings.copy(name)
        c.Description = strings.copy(description)
        switch deliverPolicy {
        case .all: c.DeliverPolicy = js_DeliverAll
        case .new: c.DeliverPolicy = js_DeliverNew
        case .last: c.DeliverPolicy = js_DeliverLast
        case .startSequence(let seq):
            c.DeliverPolicy = js_DeliverByStartSequence
            c.OptStartSeq = seq
        }
        c.AckPolicy = switch ackPolicy {
        case .explicit: js_AckExplicit
        case .all: js_AckAll
        case .none: js_AckNone
        }
        if let ackWait { c.AckWait = ackWait.inNanoseconds }
        if let maxDeliver { c.MaxDeliver = maxDeliver }
        c.FilterSubject = strings.copy(filterSubject)
        if let maxAckPending { c.MaxAckPending = maxAckPending }
        if let maxWaiting { c.MaxWaiting = maxWaiting }
        if let inactiveThreshold { c.InactiveThreshold = inactiveThreshold.inNanoseconds }
        if let replicas { c.Replicas = Int64(replicas) }
        c.MemoryStorage = memoryStorage
        return try withExtendedLifetime(strings) { () throws(NATSError) in try body(&c) }
    }
}

/// A consumer's position, as the server sees it.
public struct ConsumerInfo: Sendable, Equatable {
    public var stream: String
    public var name: String
    /// The last delivered message's consumer and stream sequence.
    public var deliveredConsumerSequence: UInt64
    public var deliveredStreamSequence: UInt64
    /// Everything up to here is acked.
    public var ackFloorStreamSequence: UInt64
    public var numAckPending: Int64
    public var numRedelivered: Int64
    public var numWaiting: Int64
    /// Messages not yet delivered.
    public var numPending: UInt64
    public var maxAckPending: Int64
    public var inactiveThreshold: Duration?
    public var cluster: ClusterInfo?

    init(consuming ci: UnsafeMutablePointer<jsConsumerInfo>) {
        defer { jsConsumerInfo_Destroy(ci) }
        let i = ci.pointee
        stream = string(i.Stream) ?? ""
        name = string(i.Name) ?? ""
        deliveredConsumerSequence = i.Delivered.Consumer
        deliveredStreamSequence = i.Delivered.Stream
        ackFloorStreamSequence = i.AckFloor.Stream
        numAckPending = i.NumAckPending
        numRedelivered = i.NumRedelivered
        numWaiting = i.NumWaiting
        numPending = i.NumPending
        maxAckPending = i.Config?.pointee.MaxAckPending ?? 0
        let threshold = i.Config?.pointee.InactiveThreshold ?? 0
        inactiveThreshold = threshold > 0 ? .nanoseconds(threshold) : nil
        cluster = ClusterInfo(i.Cluster)
    }
}
