public import DeliveryCore
public import FileSystemTypes
public import SystemPackage

/// The groups and members this mount shares with other mounts: a cluster
/// (docs/cluster.md). The filesystem asks it before it makes or removes a
/// group or a member, so that every name is claimed once across all mounts,
/// and each shared group's sends go to the `Sequencer` it hands out. The
/// filesystem does not know how or where: the ClusterFS module implements it
/// on NATS JetStream. Without one (one machine) nothing is asked.
///
/// Calls come from FUSE worker threads, never under the namespace lock or a
/// group's lock, and may take a network round trip. Errors are the errno the
/// caller answers (EEXIST, ENOTEMPTY, EIO when the cluster is out of reach).
public protocol SharedCatalog: Sendable {
    /// This mount's name among the others (`node=` in `status`).
    var node: String { get }

    /// mkdir: claims `name` on every mount, with its owner, mode and
    /// settings; returns where the new group's sends go.
    func makeGroup(_ name: String, owner: Caller, permissions: FilePermissions,
                   settings: GroupSettings) throws(Errno) -> any Sequencer

    /// rmdir: ENOTEMPTY while the group has members on any mount.
    func removeGroup(_ name: String) throws(Errno)

    /// The keys of a `ctl set` command, validated and applied here already:
    /// applied to the shared settings as they are then (as for a member's,
    /// below), and every other mount applies the result.
    func configure(_ group: String, applying keys: [ControlCommand.GroupKey]) throws(Errno)

    /// chmod or chown of a group directory, done here already: every other
    /// mount shows the same. Only what the call changed is given (nil: as
    /// it is), so that a chown here does not undo a chmod made elsewhere
    /// that this mount has not heard of yet.
    func changeOwnership(of group: String, permissions: FilePermissions?, uid: UserID?, gid: GroupID?) throws(Errno)

    /// A member that just joined `local` here claims its name in the group
    /// on every mount (EEXIST: taken elsewhere; the caller then makes it
    /// leave). From here on `local` receives the group's stored messages.
    func join(_ member: Member, of local: Group, owner: Caller, permissions: FilePermissions) throws(Errno)

    /// A member of this mount left (`rm`): its claim goes.
    func leave(_ member: String, of group: String)

    /// The keys of a `ctl member` command: for a member of this mount
    /// (applied here already) or of another (its mount applies them when it
    /// hears). They are applied to the shared settings as they are then,
    /// not sent as whole settings read back here, which an older change
    /// heard late may have reverted meanwhile: changes made one right after
    /// another, or at once on several mounts, are all kept.
    func configure(_ member: String, of group: String, applying keys: [ControlCommand.MemberKey]) throws(Errno)

    /// The members of `group` on other mounts, as last heard from them.
    func remoteMembers(of group: String) -> [RemoteMember]
}

/// A member that lives on another mount: what `status` shows of it.
public struct RemoteMember: Sendable, Equatable {
    public let name: String
    public let node: String
    public let settings: MemberSettings
    /// Its counters as its node last reported them.
    public let queued: Int
    public let queuedBytes: Int
    public let full: Bool
    public let delivered: UInt64
    public let dropped: UInt64

    public init(name: String, node: String, settings: MemberSettings, queued: Int = 0, queuedBytes: Int = 0, full: Bool = false,
                delivered: UInt64 = 0, dropped: UInt64 = 0) {
        self.name = name
        self.node = node
        self.settings = settings
        self.queued = queued
        self.queuedBytes = queuedBytes
        self.full = full
        self.delivered = delivered
        self.dropped = dropped
    }
}
