import DeliveryCore
import FileSystemTypes
import SystemPackage

/// The filesystem's inode table: every entry by node id, the aliases that
/// `send` and members get on each lookup, the kernel's lookup counts, and
/// the groups by name. Guarded by the filesystem's namespace lock; open files
/// never need it.
struct Namespace: ~Copyable {
    var nodes: [InodeNumber: Node] = [:]
    /// Kernel node ids of `send` and member entries, each for one lookup.
    var aliases: [InodeNumber: Alias] = [:]
    /// Group directories by name, and the order they were made.
    var groups: [ExactName: Node] = [:]
    var groupOrder: [ExactName] = []
    var nextInode: InodeNumber = MulticastFilesystem.rootInode + 1
    let root: Node
    /// `ROOT/.metrics`, owned by the root's owner, read-only for everyone.
    let metrics: Node

    init(root: Node) {
        self.root = root
        nodes[root.ino] = root
        metrics = Node(ino: nextInode, kind: .metrics, permissions: [.ownerRead, .groupRead, .otherRead],
                       owner: Caller(uid: root.attributes.uid, gid: root.attributes.gid), content: .metrics)
        nodes[metrics.ino] = metrics
        nextInode += 1
    }

    mutating func makeNode(_ kind: EntryKind, permissions: FilePermissions, owner: Caller, content: Node.Content) -> Node {
        let node = Node(ino: nextInode, kind: kind, permissions: permissions, owner: owner, content: content)
        nodes[node.ino] = node
        nextInode += 1
        return node
    }

    /// The node behind a kernel node id (an entry's own, or an alias).
    func node(_ ino: InodeNumber) throws(Errno) -> Node {
        try target(ino).node
    }

    /// The node behind a kernel node id, and the view it is seen in.
    func target(_ ino: InodeNumber) throws(Errno) -> (node: Node, view: View) {
        if let node = nodes[ino] { return (node, .record) }
        if let alias = aliases[ino] { return (alias.node, alias.view) }
        throw .noSuchFileOrDirectory
    }

    /// An entry of a linked group directory (always in `nodes`).
    func entry(_ ino: InodeNumber) -> Node { nodes[ino]! }

    /// Counts one more kernel reference to `node`, and says how the kernel
    /// may name it.
    ///
    /// `send` and members get a new node id on every lookup, and the kernel
    /// is told not to cache the name, so that every open has an inode of its
    /// own. The kernel serializes direct-I/O writes on one inode with an
    /// exclusive, uninterruptible inode lock (fuse_dio_lock in fs/fuse/file.c;
    /// it is shared only for writes below i_size, and these files are size
    /// 0). With one inode per entry, a second writer on `send` would wait in
    /// that lock, unkillable, for as long as the first writer is blocked on
    /// a full queue. `st_ino` stays the entry's own. See docs/fuse-notes.md.
    ///
    /// A twin in `G/frames/` is one more alias of the same entry, seen in the
    /// framed view.
    mutating func reference(_ node: Node, in view: View = .record) -> Entry {
        let attributes = attributes(of: node)
        switch node.content {
        // A peer file is written like a member (a private send may wait), so
        // it gets a node id per lookup for the same reason.
        case .send, .member, .peer:
            let alias = nextInode
            nextInode += 1
            aliases[alias] = Alias(node: node, view: view)
            return Entry(nodeID: alias, attributes: attributes, cacheable: false)
        case .root, .group, .control, .status, .frames, .peers, .metrics:
            node.lookups += 1
            return Entry(nodeID: node.ino, attributes: attributes, cacheable: true)
        }
    }

    func groupDirectory(_ ino: InodeNumber) throws(Errno) -> GroupDirectory {
        let node = try node(ino)
        switch node.content {
        case .group(let directory) where node.linked: return directory
        case .group: throw .noSuchFileOrDirectory
        // Members join in `G/`, never in `G/frames/` or `G/peers/`.
        case .root, .frames, .peers: throw .notPermitted
        case .send, .control, .status, .member, .peer, .metrics: throw .notDirectory
        }
    }

    mutating func unlink(_ node: Node) {
        node.linked = false
        if node.lookups == 0 { nodes[node.ino] = nil }
    }

    /// The attributes as `stat` shows them now.
    func attributes(of node: Node) -> FileAttributes {
        var attributes = node.attributes
        switch node.content {
        case .root: attributes.linkCount = 2 + UInt32(groups.count)
        // Made anew at every open: its data is always as of now.
        case .metrics: attributes.mtime = Timestamp.now()
        default: break
        }
        return attributes
    }

    mutating func touch(_ node: Node) {
        let now = Timestamp.now()
        node.attributes.mtime = now
        node.attributes.ctime = now
    }

    /// The entry `name` in directory `parent`, and the view it is seen in.
    func child(of parent: Node, named name: String) throws(Errno) -> (node: Node, view: View) {
        switch parent.content {
        case .root:
            if name == MulticastFilesystem.metricsName { return (metrics, .record) }
            guard let node = groups[ExactName(name)] else { throw .noSuchFileOrDirectory }
            return (node, .record)
        case .group(let directory):
            guard parent.linked, let node = entry(named: name, in: directory) else { throw .noSuchFileOrDirectory }
            return (node, .record)
        case .frames(let directory):
            guard parent.linked, name != "ctl", name != "status", name != "frames", name != "peers",
                  let node = entry(named: name, in: directory) else { throw .noSuchFileOrDirectory }
            return (node, .framed)
        case .peers(let directory):
            guard parent.linked, let ino = directory.peerFiles[ExactName(name)] else { throw .noSuchFileOrDirectory }
            return (entry(ino), .record)
        case .send, .control, .status, .member, .peer, .metrics:
            throw .notDirectory
        }
    }

    /// A fixed file or a member of `directory`, if `name` is one.
    func entry(named name: String, in directory: GroupDirectory) -> Node? {
        switch name {
        case "send": entry(directory.send)
        case "ctl": entry(directory.control)
        case "status": entry(directory.status)
        case "frames": entry(directory.frames)
        case "peers": entry(directory.peers)
        default:
            if let ino = directory.members[ExactName(name)] { entry(ino) } else { nil }
        }
    }

    /// The kernel dropped `count` references to the entry or alias `ino`:
    /// each is forgotten when its count reaches 0 (a node only once unlinked
    /// as well). The root is never forgotten.
    ///
    /// A count below 0 would mean this table and the kernel disagree about
    /// what the kernel holds: a bug here, never the kernel's. It stops the
    /// daemon, as go-fuse panics, rather than freeing a node the kernel may
    /// still name.
    mutating func forget(_ ino: InodeNumber, count: UInt64) {
        if let alias = aliases[ino] {
            alias.lookups = Self.decrement(alias.lookups, by: count, ino: ino)
            if alias.lookups == 0 { aliases[ino] = nil }
            return
        }
        guard let node = nodes[ino], ino != MulticastFilesystem.rootInode else { return }
        node.lookups = Self.decrement(node.lookups, by: count, ino: ino)
        if node.lookups == 0 && !node.linked { nodes[ino] = nil }
    }

    private static func decrement(_ lookups: UInt64, by count: UInt64, ino: InodeNumber) -> UInt64 {
        precondition(count <= lookups, "mcastfs: the kernel forgot inode \(ino) \(count) times, but it was looked up \(lookups) times")
        return lookups - count
    }
}
