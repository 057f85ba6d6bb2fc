import FoundationEssentials

// The values of the three buckets (docs/cluster.md, "Buckets"), as JSON with
// a version field "v" (1), so that a later daemon can tell an older value.

/// A group's entry in `<S>_groups`, key E(name).
public struct GroupRecord: Codable, Sendable, Equatable {
    public struct Settings: Codable, Sendable, Equatable {
        public var capacity: Int
        public var queueBytes: Int
        public var maxMessage: Int
        /// "all" or "members".
        public var send: String
        /// "write" or "line".
        public var message: String
        public var sendToPeer: Bool
        /// The stream's max_msgs: messages some node has not yet taken, at most.
        public var clusterBacklog: Int
        /// The stream's replicas: 1, or 3 on a three-server cluster.
        public var replicas: Int

        public init(capacity: Int = 256, queueBytes: Int = 4 << 20, maxMessage: Int = 65_536, send: String = "all",
                    message: String = "write", sendToPeer: Bool = false, clusterBacklog: Int = 65_536, replicas: Int = 1) {
            self.capacity = capacity
            self.queueBytes = queueBytes
            self.maxMessage = maxMessage
            self.send = send
            self.message = message
            self.sendToPeer = sendToPeer
            self.clusterBacklog = clusterBacklog
            self.replicas = replicas
        }

        enum CodingKeys: String, CodingKey {
            case capacity, queueBytes = "queue_bytes", maxMessage = "max_message", send, message
            case sendToPeer = "send_to_peer", clusterBacklog = "cluster_backlog", replicas
        }

        func validate() throws(ClusterError) {
            if !["all", "members"].contains(send) { throw .invalid("send must be all or members") }
            if !["write", "line"].contains(message) { throw .invalid("message must be write or line") }
            if clusterBacklog < 1 { throw .invalid("cluster_backlog must be at least 1") }
            if !(1...5).contains(replicas) { throw .invalid("replicas must be 1 to 5") }
            if capacity < 1 || queueBytes < 1 || maxMessage < 1 { throw .invalid("capacity, queue_bytes and max_message must be positive") }
        }
    }

    public enum State: String, Codable, Sendable {
        case live
        /// An rmdir is checking for members; joins fail meanwhile.
        case removing
    }

    public var name: String
    /// 16 hex digits, chosen by `makeGroup` when empty: names the stream.
    public var id: String
    public var uid: UInt32
    public var gid: UInt32
    /// Permission bits of the group directory.
    public var mode: UInt32
    public var settings: Settings
    public var state: State

    public init(name: String, id: String = "", uid: UInt32, gid: UInt32, mode: UInt32, settings: Settings = Settings(), state: State = .live) {
        self.name = name
        self.id = id
        self.uid = uid
        self.gid = gid
        self.mode = mode
        self.settings = settings
        self.state = state
    }
}

/// A member's entry in `<S>_members`, key `<id>.E(name)`.
public struct MemberRecord: Codable, Sendable, Equatable {
    public struct Settings: Codable, Sendable, Equatable {
        public var capacity: Int
        public var queueBytes: Int
        public var loopback: Bool
        public var dropWhenFull: Bool
        /// The subscription's pattern text; "" receives everything.
        public var subscribe: String
        public var sendToPeer: Bool

        public init(capacity: Int = 256, queueBytes: Int = 4 << 20, loopback: Bool = false, dropWhenFull: Bool = false,
                    subscribe: String = "", sendToPeer: Bool = false) {
            self.capacity = capacity
            self.queueBytes = queueBytes
            self.loopback = loopback
            self.dropWhenFull = dropWhenFull
            self.subscribe = subscribe
            self.sendToPeer = sendToPeer
        }

        enum CodingKeys: String, CodingKey {
            case capacity, queueBytes = "queue_bytes", loopback, dropWhenFull = "drop_when_full", subscribe
            case sendToPeer = "send_to_peer"
        }
    }

    public var name: String
    /// The node whose memory holds the member's queue.
    public var node: String
    public var uid: UInt32
    public var gid: UInt32
    public var mode: UInt32
    public var settings: Settings
    /// S_join: the member receives the messages with a sequence above this.
    /// Set by `join`.
    public var from: UInt64

    public init(name: String, node: String = "", uid: UInt32, gid: UInt32, mode: UInt32, settings: Settings = Settings(), from: UInt64 = 0) {
        self.name = name
        self.node = node
        self.uid = uid
        self.gid = gid
        self.mode = mode
        self.settings = settings
        self.from = from
    }
}

/// A node's entry in `<S>_nodes`, key E(node): its claim on the name and
/// its heartbeat.
struct NodeRecord: Codable, Sendable, Equatable {
    var node: String
    /// 8 hex digits, new at every daemon start.
    var boot: String
    var host: String
    var pid: Int32
    var timeoutMs: Int
    var beat: UInt64
    /// Group id → the node's consumer of that group's stream: what another
    /// node deletes when it takes this one for dead.
    var consumers: [String: String]
    /// Group id → the node's members' counters at this beat: what other
    /// nodes show of them in `status`. A list, not a map by name: names are
    /// bytes, and two names equal as Swift strings (NFC, NFD) are two
    /// members. Absent while the node has no member, and in the records of
    /// daemons older than it (0 there).
    var counters: [String: [MemberCounters]]?

    enum CodingKeys: String, CodingKey { case node, boot, host, pid, timeoutMs = "timeout_ms", beat, consumers, counters }

    init(node: String, boot: String, host: String, pid: Int32, timeoutMs: Int, beat: UInt64, consumers: [String: String],
         counters: [String: [MemberCounters]]? = nil) {
        self.node = node
        self.boot = boot
        self.host = host
        self.pid = pid
        self.timeoutMs = timeoutMs
        self.beat = beat
        self.consumers = consumers
        self.counters = counters
    }
}

/// A member's counters as its node reports them in its heartbeats (the
/// keys of `status`).
public struct MemberCounters: Codable, Sendable, Equatable {
    public var member: String
    public var queued: Int
    public var queuedBytes: Int
    public var full: Bool
    public var delivered: UInt64
    public var dropped: UInt64

    enum CodingKeys: String, CodingKey { case member, queued, queuedBytes = "queued_bytes", full, delivered, dropped }

    public init(member: String, queued: Int, queuedBytes: Int, full: Bool, delivered: UInt64, dropped: UInt64) {
        self.member = member
        self.queued = queued
        self.queuedBytes = queuedBytes
        self.full = full
        self.delivered = delivered
        self.dropped = dropped
    }
}

/// A record and the version field "v" side by side in one JSON object: the
/// records' own Codable stays synthesized, and the version is written and
/// checked in one place.
private struct Envelope<Record: Codable>: Codable {
    static var version: Int { 1 }
    var record: Record

    init(_ record: Record) { self.record = record }

    private enum CodingKeys: String, CodingKey { case v }

    init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        let v = try c.decode(Int.self, forKey: .v)
        if v != Self.version {
            throw DecodingError.dataCorrupted(DecodingError.Context(codingPath: c.codingPath, debugDescription: "record version \(v), this daemon knows \(Self.version)"))
        }
        record = try Record(from: decoder)
    }

    func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(Self.version, forKey: .v)
        try record.encode(to: encoder)
    }
}

/// JSON of a record, keys sorted (stable bytes for a stable value).
func encodeRecord<T: Codable>(_ value: T) -> [UInt8] {
    let encoder = JSONEncoder()
    encoder.outputFormatting = [.sortedKeys]
    // Every field is a string, number, bool or map of those: cannot fail.
    return Array(try! encoder.encode(Envelope(value)))
}

/// nil for a value this daemon cannot read (another version, or garbage):
/// such an entry is left alone, not taken for an error.
func decodeRecord<T: Codable>(_ type: T.Type, _ bytes: [UInt8]) -> T? {
    try? JSONDecoder().decode(Envelope<T>.self, from: Data(bytes)).record
}
