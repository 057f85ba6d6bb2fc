public import Cluster
public import DeliveryCore
public import FileSystemTypes
public import MulticastFS
import Synchronization
public import SystemPackage

/// A clustered mount's `SharedCatalog`: the filesystem's groups and members,
/// claimed and shared through a `ClusterNode` (docs/cluster.md). It is the
/// glue between two modules that know nothing of each other: MulticastFS
/// asks it before it makes or removes names and hands each shared group the
/// sequencer made here; the cluster's news (groups made, changed or removed
/// on other nodes, members evicted) comes back through `attach`.
public final class ClusterCatalog: SharedCatalog {
    let cluster: ClusterNode
    public let node: String
    /// Set once by `attach`; news before it is read from the node's view then.
    private let filesystem = Mutex<MulticastFilesystem?>(nil)
    /// New groups' stream bounds (`-o cluster_backlog=`, `-o replicas=`).
    private let backlog: Int
    private let replicas: Int

    /// Connects, claims the node name, and loads the cluster's groups;
    /// throws the cluster's one-line reason (unreachable, name in use, a
    /// bad option).
    public init(_ configuration: ClusterConfiguration, backlog: Int = 65_536, replicas: Int = 1) throws(ClusterError) {
        node = configuration.node
        self.backlog = backlog
        self.replicas = replicas
        let events = EventRelay()
        cluster = try ClusterNode(configuration) { event in events.handle(event) }
        events.catalog.withLock { $0 = self }
    }

    /// From now on the filesystem follows the cluster: every group already
    /// known is adopted now, later ones as their news arrives.
    public func attach(_ fs: MulticastFilesystem) {
        filesystem.withLock { $0 = fs }
        for record in cluster.groups() where record.state == .live { adopt(record, into: fs) }
    }

    /// Unmount: this node's members, consumers and claim go; false when,
    /// disconnected, they were left for the other nodes to remove after
    /// `cluster_timeout` (or the next daemon of this name).
    @discardableResult
    public func shutDown() -> Bool { cluster.shutDown() }

    // MARK: SharedCatalog

    public func makeGroup(_ name: String, owner: Caller, permissions: FilePermissions,
                          settings: GroupSettings) throws(Errno) -> any Sequencer {
        var shared = GroupRecord.Settings(settings)
        shared.clusterBacklog = backlog
        shared.replicas = replicas
        let record = GroupRecord(name: name, uid: owner.uid.rawValue, gid: owner.gid.rawValue,
                                 mode: UInt32(permissions.rawValue), settings: shared)
        try mapped { () throws(ClusterError) in _ = try cluster.makeGroup(record) }
        return GroupSequencer(cluster: cluster, group: name)
    }

    public func removeGroup(_ name: String) throws(Errno) {
        try mapped { () throws(ClusterError) in try cluster.removeGroup(name) }
    }

    public func configure(_ group: String, applying keys: [ControlCommand.GroupKey]) throws(Errno) {
        try mapped { () throws(ClusterError) in
            try cluster.updateGroup(group) { record in
                var settings = GroupSettings(record.settings)
                ControlCommand.apply(keys, to: &settings)
                // Keys the filesystem does not know stay as they are.
                let backlog = record.settings.clusterBacklog, replicas = record.settings.replicas
                record.settings = GroupRecord.Settings(settings)
                record.settings.clusterBacklog = backlog
                record.settings.replicas = replicas
            }
        }
    }

    public func changeOwnership(of group: String, permissions: FilePermissions?, uid: UserID?, gid: GroupID?) throws(Errno) {
        try mapped { () throws(ClusterError) in
            try cluster.updateGroup(group) { record in
                if let permissions { record.mode = UInt32(permissions.rawValue) }
                if let uid { record.uid = uid.rawValue }
                if let gid { record.gid = gid.rawValue }
            }
        }
    }

    public func join(_ member: Member, of local: Group, owner: Caller, permissions: FilePermissions) throws(Errno) {
        let record = MemberRecord(name: member.name, node: node, uid: owner.uid.rawValue, gid: owner.gid.rawValue,
                                  mode: UInt32(permissions.rawValue), settings: MemberRecord.Settings(member.settings))
        let from = try mapped { () throws(ClusterError) in
            try cluster.join(local.name, record, sink: GroupSink(group: local, node: node))
        }
        member.receiveOnly(after: from)
    }

    public func leave(_ member: String, of group: String) {
        // A leave that cannot reach the cluster now is done by the others
        // when this node is taken for dead, or at its next start.
        try? cluster.leave(group, member)
    }

    public func configure(_ member: String, of group: String, applying keys: [ControlCommand.MemberKey]) throws(Errno) {
        try mapped { () throws(ClusterError) in
            try cluster.updateMember(group, member) { record in
                var settings = MemberSettings(record.settings)
                ControlCommand.apply(keys, to: &settings)
                record.settings = MemberRecord.Settings(settings)
            }
        }
    }

    public func remoteMembers(of group: String) -> [RemoteMember] {
        var reported: [ExactName: [ExactName: MemberCounters]] = [:]
        return cluster.members(of: group).filter { ExactName($0.node) != ExactName(node) }.map { record in
            let node = ExactName(record.node)
            if reported[node] == nil {
                let list = cluster.reportedCounters(of: group, on: record.node)
                reported[node] = Dictionary(list.map { (ExactName($0.member), $0) }, uniquingKeysWith: { first, _ in first })
            }
            let counters = reported[node]?[ExactName(record.name)]
            return RemoteMember(name: record.name, node: record.node, settings: MemberSettings(record.settings),
                                queued: counters?.queued ?? 0, queuedBytes: counters?.queuedBytes ?? 0, full: counters?.full ?? false,
                                delivered: counters?.delivered ?? 0, dropped: counters?.dropped ?? 0)
        }
    }

    // MARK: News

    fileprivate func handle(_ event: ClusterEvent) {
        guard let fs = filesystem.withLock({ $0 }) else { return }
        switch event {
        case .groupChanged(let record):
            // A record older than the one the node knows (a change made here
            // since, whose own record follows) would undo that change.
            guard cluster.group(record.name) == record else { return }
            if record.state == .live { adopt(record, into: fs) }
        case .groupRemoved(let name):
            fs.dropGroup(name)
        case .memberRemoved(let group, let member):
            // Ours, removed by another node (it took us for dead), and not
            // made again since: it leaves here too.
            let stillClaimed = cluster.members(of: group).contains { ExactName($0.name) == ExactName(member) && ExactName($0.node) == ExactName(node) }
            if !stillClaimed { fs.evictMember(member, of: group) }
        case .memberChanged(let group, let record) where ExactName(record.node) == ExactName(node):
            // Set on another node, or here and heard back (the same again).
            // A record the node already knows a newer one of (a change made
            // here since, whose own echo follows) would undo that change.
            let latest = cluster.members(of: group).first { ExactName($0.name) == ExactName(record.name) }
            guard latest == record else { return }
            fs.adoptSettings(MemberSettings(record.settings), ofMember: record.name, in: group)
        case .memberChanged, .disconnected, .reconnected:
            break
        }
    }

    private func adopt(_ record: GroupRecord, into fs: MulticastFilesystem) {
        let settings = GroupSettings(record.settings)
        do throws(Errno) {
            try fs.adoptGroup(record.name, settings: settings, sequencer: GroupSequencer(cluster: cluster, group: record.name),
                              permissions: FilePermissions(rawValue: record.mode & 0o7777),
                              owner: Caller(uid: UserID(rawValue: record.uid), gid: GroupID(rawValue: record.gid)))
        } catch {
            return
        }
        fs.adoptSettings(settings, of: record.name)
    }

    private func mapped<R>(_ body: () throws(ClusterError) -> R) throws(Errno) -> R {
        do throws(ClusterError) { return try body() } catch { throw Errno(error) }
    }
}

/// Forwards the node's events to its catalog, which exists only once the
/// node does.
private final class EventRelay: Sendable {
    let catalog = Mutex<ClusterCatalog?>(nil)
    func handle(_ event: ClusterEvent) { catalog.withLock { $0 }?.handle(event) }
}

/// A shared group's sends: published into its stream.
final class GroupSequencer: Sequencer {
    let cluster: ClusterNode
    let group: String

    init(cluster: ClusterNode, group: String) {
        self.cluster = cluster
        self.group = group
    }

    func submit(_ submission: Submission, _ blocking: Blocking,
                completion: @escaping @Sendable (Result<Sequenced, DeliveryError>) -> Void) -> Waiting? {
        let messages = submission.messages.map {
            OutgoingMessage(payload: $0, sender: submission.sender, privateTo: submission.privateTo)
        }
        let waiting = cluster.publish(group, messages, blocking: blocking == .blocking) { result in
            completion(result.map { Sequenced(stored: $0, firstSequence: 0) }.mapError(DeliveryError.init))
        }
        return waiting.map { waiting in Waiting { waiting.cancel() } }
    }

    /// The stream's room is known only by trying: a write is always worth
    /// trying, and a full stream makes it wait (or EAGAIN).
    var acceptsNow: Bool { true }

    var waitingSends: Int { cluster.waitingWrites(group) }
}

/// Where a node's consumer of a group hands its messages: the local group.
final class GroupSink: DeliverySink {
    let group: Group
    let node: String

    init(group: Group, node: String) {
        self.group = group
        self.node = node
    }

    func deliver(_ message: IncomingMessage, done: @escaping @Sendable () -> Void) {
        group.deliver(message.payload, stamp: stamp(of: message), completion: done)
    }

    func deliverNow(_ run: [IncomingMessage]) -> Int {
        group.deliverNow(run.map { ($0.payload, stamp(of: $0)) })
    }

    private func stamp(of message: IncomingMessage) -> Stamp {
        Stamp(sequence: message.sequence, time: message.time, senderName: message.senderMember,
              sentHere: ExactName(message.senderNode) == ExactName(node), privateTo: message.privateTo)
    }

    func counters() -> [MemberCounters] {
        group.snapshot().members.map { member in
            MemberCounters(member: member.name, queued: member.queued, queuedBytes: member.queuedBytes, full: member.full,
                           delivered: member.delivered, dropped: member.dropped)
        }
    }
}
