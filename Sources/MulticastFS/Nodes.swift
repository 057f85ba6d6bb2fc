import DeliveryCore
import FileSystemTypes
import SystemPackage

/// An entry of the filesystem. Its attributes and links are guarded by the
/// filesystem's namespace lock; open files hold what they need directly
/// (group, member, reader), so reads and writes never take that lock.
final class Node: @unchecked Sendable {
    let ino: InodeNumber
    let kind: EntryKind
    var attributes: FileAttributes
    /// The kernel's references (lookup count): the node stays in the inode
    /// table until they are forgotten, even after it is unlinked.
    var lookups: UInt64 = 0
    /// Still reachable by name.
    var linked = true
    let content: Content

    enum Content {
        case root
        case group(GroupDirectory)
        case send(GroupDirectory)
        case control(GroupDirectory)
        case status(GroupDirectory)
        case member(GroupDirectory, Member)
        /// `G/frames/`: the twins of `send` and of every member, in the
        /// framed view.
        case frames(GroupDirectory)
        /// `ROOT/.metrics`: every group's counters, made at open.
        case metrics
        /// `G/peers/`: one peer file per member.
        case peers(GroupDirectory)
        /// `G/peers/NAME`: member NAME's peer queue to read, and private
        /// messages to NAME to write. An entry of its own, with its own
        /// attributes (not a twin of the member).
        case peer(GroupDirectory, Member)
    }

    init(ino: InodeNumber, kind: EntryKind, attributes: FileAttributes, content: Content) {
        self.ino = ino
        self.kind = kind
        self.attributes = attributes
        self.content = content
    }

    /// A new entry, made now.
    convenience init(ino: InodeNumber, kind: EntryKind, permissions: FilePermissions, owner: Caller, content: Content) {
        let now = Timestamp.now()
        let attributes = FileAttributes(
            ino: ino, mode: FileMode(type: kind.fileType, permissions: permissions), linkCount: kind.isDirectory ? 2 : 1,
            uid: owner.uid, gid: owner.gid, atime: now, mtime: now, ctime: now)
        self.init(ino: ino, kind: kind, attributes: attributes, content: content)
    }
}

/// How a `send` or member entry is seen: through the group directory, one
/// message per read and write, or through `G/frames/`, batches of framed
/// messages. Both are the same entry: the same attributes and queue.
enum View: Sendable {
    case record
    case framed
}

/// One kernel inode for a `send` or member entry, in one view: see
/// `Namespace.reference`.
final class Alias: @unchecked Sendable {
    let node: Node
    let view: View
    var lookups: UInt64 = 1

    init(node: Node, view: View) {
        self.node = node
        self.view = view
    }
}

/// A group's directory: the core's group and the entries beneath it, by
/// inode number (looked up in the namespace). Its nodes refer to it, so it
/// must not refer to them: a cycle would keep every removed group alive.
final class GroupDirectory: @unchecked Sendable {
    let group: Group
    var directory: InodeNumber = 0
    var send: InodeNumber = 0
    var control: InodeNumber = 0
    var status: InodeNumber = 0
    var frames: InodeNumber = 0
    var peers: InodeNumber = 0
    /// Members by name, in the order they joined.
    var members: [ExactName: InodeNumber] = [:]
    var memberOrder: [ExactName] = []
    /// The members' peer files in `G/peers/`, by member name.
    var peerFiles: [ExactName: InodeNumber] = [:]

    init(group: Group) { self.group = group }

    /// The fixed entries, then the members.
    var entries: [(String, InodeNumber)] {
        [("send", send), ("ctl", control), ("status", status), ("frames", frames), ("peers", peers)] + memberEntries
    }

    /// What `G/peers/` lists: a peer file per member, in the order they joined.
    var peerEntries: [(String, InodeNumber)] {
        memberOrder.compactMap { name in peerFiles[name].map { (name.string, $0) } }
    }

    /// What `G/frames/` lists: the twins of `send` and of the members.
    var framedEntries: [(String, InodeNumber)] { [("send", send)] + memberEntries }

    private var memberEntries: [(String, InodeNumber)] {
        memberOrder.compactMap { name in members[name].map { (name.string, $0) } }
    }
}
