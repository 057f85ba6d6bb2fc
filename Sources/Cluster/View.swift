public import DeliveryCore

/// What the watchers tell, in the order they see it, on the node's event
/// thread. The initial load (the state when the node started) is not
/// reported: `groups()` and `members(of:)` have it when `init` returns.
/// Every later change is, whichever node made it, this one included.
public enum ClusterEvent: Sendable, Equatable {
    case groupChanged(GroupRecord)
    case groupRemoved(String)
    /// A group's `memberChanged` events come after its `groupChanged`.
    case memberChanged(group: String, MemberRecord)
    case memberRemoved(group: String, member: String)
    /// The connection to NATS is lost (calls that need it fail with
    /// `.unreachable` until `.reconnected`).
    case disconnected
    case reconnected
}

/// A value seen in a bucket at a revision; nil: deleted (at that revision,
/// or, when `local`, after it).
struct Versioned<T: Sendable & Equatable>: Sendable {
    var revision: UInt64
    var value: T?
    /// Applied by a call of this node before its watcher saw it: the
    /// watcher's update of it is still reported.
    var local = false

    /// Whether a watcher's update at `revision` is news to `known`.
    static func isNews(_ known: Versioned?, _ revision: UInt64) -> Bool {
        guard let known else { return true }
        if revision < known.revision { return false }
        if revision == known.revision {
            // Ours at this revision, not yet reported; or (for a local delete,
            // whose own revision is unknown) the put before it.
            return known.local && known.value != nil
        }
        return true
    }
}

/// The cluster as this node knows it from its watchers and its own calls.
/// Keeps deleted keys' revisions, so that a late watcher update older than
/// what a call of this node already applied does not undo it.
struct View: Sendable {
    var groups: [String: Versioned<GroupRecord>] = [:]
    /// Group id → name, for the members' keys (which carry the id).
    var names: [String: String] = [:]
    /// Group id → member name → record.
    var members: [String: [String: Versioned<MemberRecord>]] = [:]
    /// Member changes that arrived before their group did (the buckets'
    /// watchers are separate threads): reported right after the group.
    var early: [String: [(member: String, record: MemberRecord?)]] = [:]
    var nodes: [String: NodeSeen] = [:]
    /// True while this node does not hear its own heartbeats back through
    /// its watcher: it then hears nobody, and judges nobody (checkLiveness).
    var deaf = false

    struct NodeSeen: Sendable {
        var revision: UInt64
        var record: NodeRecord?
        /// This node's monotonic clock when the record last changed.
        var seen: Duration
    }

    /// A watcher's groups-bucket update; the events it makes.
    mutating func applyGroup(name: String, revision: UInt64, _ record: GroupRecord?) -> [ClusterEvent] {
        let known = groups[name]
        guard Versioned.isNews(known, revision) else { return [] }
        let previous = known?.value
        groups[name] = Versioned(revision: revision, value: record)
        if let previous, previous.id != record?.id { names[previous.id] = nil }
        guard let record else {
            if previous != nil || known?.local == true {
                if let id = previous?.id { early[id] = nil }
                return [.groupRemoved(name)]
            }
            return []
        }
        names[record.id] = name
        let early = self.early.removeValue(forKey: record.id) ?? []
        return [.groupChanged(record)] + early.map { e in
            e.record.map { .memberChanged(group: name, $0) } ?? .memberRemoved(group: name, member: e.member)
        }
    }

    /// This node's own change, at once (its watcher reports it later).
    mutating func applyLocalGroup(name: String, revision: UInt64, _ record: GroupRecord?) {
        if let known = groups[name], known.revision > revision { return }
        if let previous = groups[name]?.value, previous.id != record?.id { names[previous.id] = nil }
        groups[name] = Versioned(revision: revision, value: record, local: true)
        if let record { names[record.id] = name }
    }

    mutating func applyMember(group id: String, member: String, revision: UInt64, _ record: MemberRecord?) -> [ClusterEvent] {
        let known = members[id]?[member]
        guard Versioned.isNews(known, revision) else { return [] }
        members[id, default: [:]][member] = Versioned(revision: revision, value: record)
        if record == nil && known?.value == nil && known?.local != true { return [] }
        guard let name = names[id] else {
            early[id, default: []].append((member, record))
            return []
        }
        return [record.map { .memberChanged(group: name, $0) } ?? .memberRemoved(group: name, member: member)]
    }

    mutating func applyLocalMember(group id: String, member: String, revision: UInt64, _ record: MemberRecord?) {
        if let known = members[id]?[member], known.revision > revision { return }
        members[id, default: [:]][member] = Versioned(revision: revision, value: record, local: true)
    }

    func liveMembers(_ id: String) -> [MemberRecord] {
        (members[id] ?? [:]).values.compactMap(\.value).sorted { $0.name < $1.name }
    }

    func group(id: String) -> GroupRecord? {
        names[id].flatMap { groups[$0]?.value }
    }
}

/// A message to publish into a group.
public struct OutgoingMessage: Sendable {
    /// The bytes and the writer's credentials.
    public var payload: Message
    /// The sending member (on this node); nil for a write on `send`.
    public var sender: String?
    /// A private message: the one member it is for.
    public var privateTo: String?

    public init(payload: Message, sender: String? = nil, privateTo: String? = nil) {
        self.payload = payload
        self.sender = sender
        self.privateTo = privateTo
    }
}

/// A message of a group's stream, as a node's consumer received it.
public struct IncomingMessage: Sendable {
    /// The stream sequence: the group sequence, the same on every node.
    public var sequence: UInt64
    /// When the stream stored it (ns since the epoch, the server's clock).
    public var time: UInt64
    /// The bytes, with the writer's credentials from the `Mcastfs` header.
    public var payload: Message
    public var senderNode: String
    public var senderMember: String?
    public var privateTo: String?

    /// For tests of what sits behind a sink; the engine makes them from the
    /// stream's messages.
    public init(sequence: UInt64, time: UInt64, payload: Message, senderNode: String, senderMember: String? = nil, privateTo: String? = nil) {
        self.sequence = sequence
        self.time = time
        self.payload = payload
        self.senderNode = senderNode
        self.senderMember = senderMember
        self.privateTo = privateTo
    }
}

/// Where a node's consumer of a group hands the group's messages.
public protocol DeliverySink: Sendable {
    /// One message at a time, in stream order, each sequence once. `done`
    /// is called when the message has been delivered locally (maybe much
    /// later: a full member); the node acks it then, and sends in-progress
    /// acks meanwhile, and only then passes the next one.
    func deliver(_ message: IncomingMessage, done: @escaping @Sendable () -> Void)

    /// The leading messages of a run (in stream order, each sequence once,
    /// none delivered before) that can be delivered at once, all together:
    /// how many were, from the start. The node passes the rest to
    /// `deliver(_:done:)`. A sink that cannot do better returns 0.
    func deliverNow(_ run: [IncomingMessage]) -> Int

    /// The counters of this node's members of the group: read at every
    /// heartbeat, for the other nodes' `status`.
    func counters() -> [MemberCounters]
}

extension DeliverySink {
    public func counters() -> [MemberCounters] { [] }
    public func deliverNow(_ run: [IncomingMessage]) -> Int { 0 }
}
