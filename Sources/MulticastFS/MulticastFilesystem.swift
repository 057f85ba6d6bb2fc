public import DeliveryCore
import Glibc
import Locking
import Synchronization

/// The contract (docs/contract.md) mapped onto the delivery core: the
/// namespace (root, group directories, `send`, `ctl`, `status`, members),
/// owners and modes, open files, and reads and writes that may wait.
///
/// No FUSE here: a front end (the FUSE bridge, or a test playing the kernel)
/// calls these methods, from any thread. The namespace has one lock; reads
/// and writes on open files do not take it.
public final class MulticastFilesystem: Sendable {
    public static let rootInode: InodeNumber = 1

    private let namespace: AdaptiveMutex<Namespace>
    private let defaults: GroupSettings
    private let nextWatchID = Atomic<UInt64>(1)
    /// Every open file, from open to release: they are owned here (handles
    /// are unretained pointers to them), so a file the kernel never released,
    /// because it went away, is still freed with the filesystem.
    private let openFiles = AdaptiveMutex<[UInt64: OpenFile]>([:])

    struct Namespace: ~Copyable {
        var nodes: [InodeNumber: Node] = [:]
        /// Kernel node ids of `send` and member entries, each for one lookup.
        var aliases: [InodeNumber: Alias] = [:]
        /// Group directories by name, and the order they were made.
        var groups: [ExactName: Node] = [:]
        var groupOrder: [ExactName] = []
        var nextInode: InodeNumber = MulticastFilesystem.rootInode + 1
        let root: Node

        init(root: Node) {
            self.root = root
            nodes[root.ino] = root
        }

        mutating func makeNode(_ kind: EntryKind, permissions: UInt32, owner: Caller, content: Node.Content) -> Node {
            let now = Timestamp.now()
            let attributes = Attributes(
                ino: nextInode, kind: kind, permissions: permissions & 0o7777, uid: owner.uid, gid: owner.gid,
                links: kind.isDirectory ? 2 : 1, atime: now, mtime: now, ctime: now)
            let node = Node(ino: nextInode, attributes: attributes, content: content)
            nodes[node.ino] = node
            nextInode += 1
            return node
        }

        /// The node behind a kernel node id (an entry's own, or an alias).
        func node(_ ino: InodeNumber) throws(FileSystemError) -> Node {
            if let node = nodes[ino] ?? aliases[ino]?.node { return node }
            throw .noEntry
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
        mutating func reference(_ node: Node) -> Entry {
            let attributes = attributes(of: node)
            switch node.content {
            case .send, .member:
                let alias = nextInode
                nextInode += 1
                aliases[alias] = Alias(node: node)
                return Entry(nodeID: alias, attributes: attributes, cacheable: false)
            case .root, .group, .control, .status:
                node.lookups += 1
                return Entry(nodeID: node.ino, attributes: attributes, cacheable: true)
            }
        }

        func groupDirectory(_ ino: InodeNumber) throws(FileSystemError) -> GroupDirectory {
            let node = try node(ino)
            switch node.content {
            case .group(let directory) where node.linked: return directory
            case .group: throw .noEntry
            case .root: throw .notPermitted
            case .send, .control, .status, .member: throw .notDirectory
            }
        }

        mutating func unlink(_ node: Node) {
            node.linked = false
            if node.lookups == 0 { nodes[node.ino] = nil }
        }

        /// The attributes as `stat` shows them now.
        func attributes(of node: Node) -> Attributes {
            var attributes = node.attributes
            if case .root = node.content { attributes.links = 2 + UInt32(groups.count) }
            return attributes
        }

        mutating func touch(_ node: Node) {
            let now = Timestamp.now()
            node.attributes.mtime = now
            node.attributes.ctime = now
        }
    }

    /// - Parameters:
    ///   - owner: owns the root directory (the user who mounted).
    ///   - defaults: settings of new groups.
    public init(owner: Caller, defaults: GroupSettings = GroupSettings()) throws(FileSystemError) {
        do throws(DeliveryError) { try defaults.validate() } catch { throw .invalid }
        self.defaults = defaults
        let now = Timestamp.now()
        let root = Node(
            ino: Self.rootInode,
            attributes: Attributes(ino: Self.rootInode, kind: .root, permissions: 0o755, uid: owner.uid, gid: owner.gid,
                                   links: 2, atime: now, mtime: now, ctime: now),
            content: .root)
        root.lookups = 1  // the kernel holds the root for the whole mount
        namespace = AdaptiveMutex(Namespace(root: root))
    }

    // MARK: - Names

    /// Finds `name` in directory `parent`, counting one more kernel reference.
    public func lookup(parent: InodeNumber, name: String) throws(FileSystemError) -> Entry {
        try withNamespace { (namespace) throws(FileSystemError) in
            namespace.reference(try Self.child(of: try namespace.node(parent), named: name, in: namespace))
        }
    }

    /// The kernel dropped `count` references to `ino`.
    public func forget(_ ino: InodeNumber, count: UInt64) {
        namespace.withLock { namespace in
            if let alias = namespace.aliases[ino] {
                alias.lookups -= min(count, alias.lookups)
                if alias.lookups == 0 { namespace.aliases[ino] = nil }
                return
            }
            guard let node = namespace.nodes[ino], ino != Self.rootInode else { return }
            node.lookups -= min(count, node.lookups)
            if node.lookups == 0 && !node.linked { namespace.nodes[ino] = nil }
        }
    }

    private static func child(of parent: Node, named name: String, in namespace: borrowing Namespace) throws(FileSystemError) -> Node {
        switch parent.content {
        case .root:
            guard let node = namespace.groups[ExactName(name)] else { throw .noEntry }
            return node
        case .group(let directory):
            guard parent.linked else { throw .noEntry }
            switch name {
            case "send": return namespace.entry(directory.send)
            case "ctl": return namespace.entry(directory.control)
            case "status": return namespace.entry(directory.status)
            default:
                guard let ino = directory.members[ExactName(name)] else { throw .noEntry }
                return namespace.entry(ino)
            }
        case .send, .control, .status, .member:
            throw .notDirectory
        }
    }

    // MARK: - Attributes

    public func attributes(of ino: InodeNumber) throws(FileSystemError) -> Attributes {
        try withNamespace { (namespace) throws(FileSystemError) in namespace.attributes(of: try namespace.node(ino)) }
    }

    /// chmod, chown, utimens and truncate. The kernel has checked that the
    /// caller may (`default_permissions`). Truncating to 0 is accepted and
    /// ignored, so `echo hi > G/NAME` works; to any other size it is EINVAL.
    public func setAttributes(of ino: InodeNumber, _ changes: AttributeChanges) throws(FileSystemError) -> Attributes {
        try withNamespace { (namespace) throws(FileSystemError) in
            let node = try namespace.node(ino)
            if let size = changes.size {
                if node.attributes.kind.isDirectory { throw .isDirectory }
                if size != 0 { throw .invalid }
            }
            let now = Timestamp.now()
            if let permissions = changes.permissions { node.attributes.permissions = permissions & 0o7777 }
            if let uid = changes.uid { node.attributes.uid = uid }
            if let gid = changes.gid { node.attributes.gid = gid }
            switch changes.atime {
            case .now: node.attributes.atime = now
            case .at(let time): node.attributes.atime = time
            case nil: break
            }
            switch changes.mtime {
            case .now: node.attributes.mtime = now
            case .at(let time): node.attributes.mtime = time
            case nil: break
            }
            node.attributes.ctime = now
            return namespace.attributes(of: node)
        }
    }

    // MARK: - Groups

    /// `mkdir ROOT/G`: a new group, owned by the caller, with the mode given
    /// (the kernel has applied the umask). `send`, `ctl` and `status` take
    /// their modes from it: send = mode & 0222, status = mode & 0444, ctl =
    /// mode & 0200.
    public func makeGroup(parent: InodeNumber, name: String, permissions: UInt32, caller: Caller) throws(FileSystemError) -> Entry {
        try withNamespace { (namespace) throws(FileSystemError) in
            let parentNode = try namespace.node(parent)
            guard case .root = parentNode.content else {
                throw parentNode.attributes.kind.isDirectory ? .notPermitted : .notDirectory
            }
            try Names.validate(name)
            guard namespace.groups[ExactName(name)] == nil else { throw .exists }
            let group: Group
            do throws(DeliveryError) { group = try Group(name: name, settings: defaults) } catch { throw FileSystemError(error) }
            let directory = GroupDirectory(group: group)
            let mode = permissions & 0o7777
            let node = namespace.makeNode(.group, permissions: mode, owner: caller, content: .group(directory))
            directory.directory = node.ino
            directory.send = namespace.makeNode(.send, permissions: mode & 0o222, owner: caller, content: .send(directory)).ino
            directory.control = namespace.makeNode(.control, permissions: mode & 0o200, owner: caller, content: .control(directory)).ino
            directory.status = namespace.makeNode(.status, permissions: mode & 0o444, owner: caller, content: .status(directory)).ino
            namespace.groups[ExactName(name)] = node
            namespace.groupOrder.append(ExactName(name))
            namespace.touch(namespace.root)
            return namespace.reference(node)
        }
    }

    /// `rmdir ROOT/G`: only when G has no members (ENOTEMPTY otherwise).
    public func removeGroup(parent: InodeNumber, name: String) throws(FileSystemError) {
        try withNamespace { (namespace) throws(FileSystemError) in
            let parentNode = try namespace.node(parent)
            guard case .root = parentNode.content else {
                // Nothing inside a group is a directory.
                throw parentNode.attributes.kind.isDirectory ? .notDirectory : .notDirectory
            }
            guard let node = namespace.groups[ExactName(name)], case .group(let directory) = node.content else { throw .noEntry }
            do throws(DeliveryError) { try directory.group.close() } catch { throw FileSystemError(error) }
            namespace.groups[ExactName(name)] = nil
            namespace.groupOrder.removeAll { $0 == ExactName(name) }
            for ino in [directory.send, directory.control, directory.status] { namespace.unlink(namespace.entry(ino)) }
            namespace.unlink(node)
            namespace.touch(namespace.root)
        }
    }

    // MARK: - Members

    /// `touch G/NAME`, `open(O_CREAT)`: NAME joins G with the group's default
    /// settings, owned by the caller with the mode given. An existing member is
    /// opened, unless O_EXCL (EEXIST).
    public func createMember(parent: InodeNumber, name: String, permissions: UInt32, flags: Int32, caller: Caller) throws(FileSystemError) -> (Entry, OpenedFile) {
        let (node, entry) = try withNamespace { (namespace) throws(FileSystemError) -> (Node, Entry) in
            let parentNode = try namespace.node(parent)
            if case .root = parentNode.content { throw .notPermitted }
            let directory = try namespace.groupDirectory(parent)
            if let existing = try? Self.child(of: parentNode, named: name, in: namespace) {
                if flags & O_EXCL != 0 { throw .exists }
                return (existing, namespace.reference(existing))
            }
            let node = try Self.join(directory, name: name, permissions: permissions, caller: caller, in: &namespace)
            return (node, namespace.reference(node))
        }
        do throws(FileSystemError) {
            return (entry, try open(node, flags: flags))
        } catch {
            forget(entry.nodeID, count: 1)
            throw error
        }
    }

    /// mknod: a regular file in a group joins like create; FIFOs, devices and
    /// sockets are refused (EPERM), as is anything in the root.
    public func makeNode(parent: InodeNumber, name: String, mode: UInt32, caller: Caller) throws(FileSystemError) -> Entry {
        guard mode & UInt32(S_IFMT) == UInt32(S_IFREG) else { throw .notPermitted }
        return try withNamespace { (namespace) throws(FileSystemError) in
            if case .root = try namespace.node(parent).content { throw .notPermitted }
            let directory = try namespace.groupDirectory(parent)
            if Names.reserved.contains(name) || directory.members[ExactName(name)] != nil { throw .exists }
            let node = try Self.join(directory, name: name, permissions: mode, caller: caller, in: &namespace)
            return namespace.reference(node)
        }
    }

    private static func join(_ directory: GroupDirectory, name: String, permissions: UInt32, caller: Caller, in namespace: inout Namespace) throws(FileSystemError) -> Node {
        try Names.validate(name)
        if Names.reserved.contains(name) { throw .exists }
        let member: Member
        do throws(DeliveryError) { member = try directory.group.join(name) } catch { throw FileSystemError(error) }
        let node = namespace.makeNode(.member, permissions: permissions, owner: caller, content: .member(directory, member))
        directory.members[ExactName(name)] = node.ino
        directory.memberOrder.append(ExactName(name))
        namespace.touch(namespace.entry(directory.directory))
        return node
    }

    /// `rm G/NAME`: NAME leaves. Open handles still read what was queued, then
    /// end of file; new opens get ENOENT. `send`, `ctl` and `status` cannot be
    /// removed (EPERM).
    public func removeMember(parent: InodeNumber, name: String) throws(FileSystemError) {
        try withNamespace { (namespace) throws(FileSystemError) in
            if case .root = try namespace.node(parent).content { throw .isDirectory }
            let directory = try namespace.groupDirectory(parent)
            if Names.reserved.contains(name) { throw .notPermitted }
            guard let ino = directory.members.removeValue(forKey: ExactName(name)),
                  let node = namespace.nodes[ino], case .member(_, let member) = node.content else {
                throw .noEntry
            }
            directory.memberOrder.removeAll { $0 == ExactName(name) }
            member.leave()
            namespace.unlink(node)
            namespace.touch(namespace.entry(directory.directory))
        }
    }

    /// Links, symlinks and renames are not part of the contract: EPERM, and
    /// nothing changes.
    public func refuseLinkOrRename() -> FileSystemError { .notPermitted }

    // MARK: - Open files

    /// Opens a file. `send` and `ctl` are write-only and `status` read-only,
    /// whatever the caller's privileges (EACCES otherwise).
    public func open(_ ino: InodeNumber, flags: Int32) throws(FileSystemError) -> OpenedFile {
        let node = try withNamespace { (namespace) throws(FileSystemError) in
            let node = try namespace.node(ino)
            guard node.linked else { throw .noEntry }
            return node
        }
        return try open(node, flags: flags)
    }

    private func open(_ node: Node, flags: Int32) throws(FileSystemError) -> OpenedFile {
        let access = AccessMode(flags: flags)
        let content: OpenFile.Content
        switch node.content {
        case .root, .group:
            throw .isDirectory
        case .send(let directory):
            guard !access.reads else { throw .accessDenied }
            content = .send(directory.group)
        case .control(let directory):
            guard !access.reads else { throw .accessDenied }
            content = .control(directory.group)
        case .status(let directory):
            guard !access.writes else { throw .accessDenied }
            content = .status(Array(StatusFormat.render(directory.group.snapshot()).utf8))
        case .member(_, let member):
            guard member.isPresent else { throw .noEntry }
            content = .member(member, reader: access.reads ? member.makeReader() : nil, writable: access.writes)
        }
        let file = OpenFile(content: content, watchID: nextWatchID.add(1, ordering: .relaxed).newValue)
        let isStream = if case .status = content { false } else { true }
        return OpenedFile(handle: keep(file), isStream: isStream)
    }

    /// opendir: lists the entries now, so that readdir offsets stay stable.
    public func openDirectory(_ ino: InodeNumber) throws(FileSystemError) -> OpenedFile {
        let entries = try withNamespace { (namespace) throws(FileSystemError) -> [DirectoryEntry] in
            let node = try namespace.node(ino)
            guard node.linked else { throw .noEntry }
            var entries = [DirectoryEntry(name: ".", ino: node.ino, kind: node.attributes.kind)]
            switch node.content {
            case .root:
                entries.append(DirectoryEntry(name: "..", ino: node.ino, kind: .root))
                for name in namespace.groupOrder {
                    entries.append(DirectoryEntry(name: name.string, ino: namespace.groups[name]!.ino, kind: .group))
                }
            case .group(let directory):
                entries.append(DirectoryEntry(name: "..", ino: Self.rootInode, kind: .root))
                for (name, ino) in directory.entries {
                    entries.append(DirectoryEntry(name: name, ino: ino, kind: namespace.entry(ino).attributes.kind))
                }
            case .send, .control, .status, .member:
                throw .notDirectory
            }
            return entries
        }
        return OpenedFile(handle: keep(OpenFile(content: .directory(entries), watchID: 0)), isStream: false)
    }

    private func keep(_ file: OpenFile) -> UInt64 {
        let handle = file.handle
        openFiles.withLock { $0[handle] = file }
        return handle
    }

    /// The entries of an open directory from `offset` on; entry i has offset
    /// i + 1, which readdir hands back to resume after it.
    public func readDirectory(handle: UInt64, from offset: Int) -> ArraySlice<DirectoryEntry> {
        guard case .directory(let entries) = OpenFile.of(handle).content else { return [] }
        return entries.dropFirst(max(0, offset))
    }

    /// The last close of an open file (or directory).
    public func release(handle: UInt64) {
        let file = OpenFile.of(handle)
        switch file.content {
        case .member(let member, let reader, _): member.group.cancelWatch(id: file.watchID, reader: reader)
        case .send(let group): group.cancelWatch(id: file.watchID, reader: nil)
        case .control, .status, .directory: break
        }
        _ = openFiles.withLock { $0.removeValue(forKey: handle) }
    }

    // MARK: - Reading and writing

    /// read(2). A member file receives the oldest message, or the rest of the
    /// one this file began; an empty queue waits (or EAGAIN when
    /// `nonBlocking`); after the member left and its queue drained, end of file.
    /// `reply` may be answered now, or later from the thread that sends.
    public func read(handle: UInt64, size: Int, offset: Int64, nonBlocking: Bool, reply: some ReadReply) {
        let file = OpenFile.of(handle)
        switch file.content {
        case .member(_, let reader?, _):
            // A stream's read(2) starts at offset 0; a later offset is the
            // kernel asking for more within the same read(2), after a reply
            // that filled its buffer exactly. End that read at the message.
            guard offset == 0 else { _ = reply.reply(UnsafeRawBufferPointer(start: nil, count: 0)); return }
            do throws(DeliveryError) {
                hand(try reader.tryReceive(maxBytes: size), of: reader, to: reply)
            } catch .wouldBlock where !nonBlocking {
                guard reply.willWait() else { return }
                let waiting = reader.receive(maxBytes: size, .blocking) { result in
                    switch result {
                    case .success(let chunk): Self.hand(chunk, of: reader, to: reply)
                    case .failure(let error): reply.fail(FileSystemError(error))
                    }
                }
                if let waiting { reply.cancelOnInterrupt { waiting.cancel() } }
            } catch {
                reply.fail(FileSystemError(error))
            }
        case .status(let bytes):
            let start = min(Int(clamping: offset), bytes.count), end = min(start + size, bytes.count)
            _ = bytes[start..<end].withUnsafeBytes { reply.reply($0) }
        case .member(_, nil, _), .send, .control:
            reply.fail(.badFile)
        case .directory:
            reply.fail(.isDirectory)
        }
    }

    private static func hand(_ chunk: MessageChunk?, of reader: Reader, to reply: some ReadReply) {
        guard let chunk else {
            _ = reply.reply(UnsafeRawBufferPointer(start: nil, count: 0))  // end of file
            return
        }
        // The requester died before the hand-over: the message is not lost.
        if !chunk.withUnsafeBytes({ reply.reply($0) }) { reader.putBack(chunk) }
    }

    private func hand(_ chunk: MessageChunk?, of reader: Reader, to reply: some ReadReply) {
        Self.hand(chunk, of: reader, to: reply)
    }

    /// write(2). On `send` or a member file: one message to every recipient,
    /// or to none; a full recipient makes it wait (EAGAIN when `nonBlocking`).
    /// On `ctl`: one command. `reply` may be answered now or later.
    /// `flags` are the request's open flags (O_NONBLOCK, O_APPEND).
    public func write(handle: UInt64, bytes: UnsafeRawBufferPointer, offset: Int64, flags: Int32, reply: some WriteReply) {
        let file = OpenFile.of(handle)
        let nonBlocking = flags & O_NONBLOCK != 0
        // A stream's write(2) starts at offset 0, so a later offset is the
        // rest of one write(2) that the kernel split (a writev of more than
        // 256 segments): its first part went out as a message already, and
        // this part cannot join it. O_APPEND writes are the exception: the
        // kernel gives them its cached file size as the offset.
        let continuation = offset != 0 && flags & O_APPEND == 0
        switch file.content {
        case .send(let group):
            send(bytes, continuation: continuation, to: group, as: nil, nonBlocking: nonBlocking, reply: reply)
        case .member(let member, _, true):
            send(bytes, continuation: continuation, to: member.group, as: member, nonBlocking: nonBlocking, reply: reply)
        case .control(let group):
            do throws(FileSystemError) {
                // A longer write reaches us in parts, each of which would be
                // parsed alone: refusing the first part ends the write(2).
                guard !continuation, bytes.count <= ControlCommand.maxLength else { throw .invalid }
                try ControlCommand(parsing: bytes).apply(to: group)
                reply.reply(written: bytes.count)
            } catch {
                reply.fail(error)
            }
        case .member(_, _, false), .status:
            reply.fail(.badFile)
        case .directory:
            reply.fail(.isDirectory)
        }
    }

    private func send(_ bytes: UnsafeRawBufferPointer, continuation: Bool, to group: Group, as sender: Member?,
                      nonBlocking: Bool, reply: some WriteReply) {
        guard !continuation else { return reply.fail(.messageTooLong) }
        let message = Message(copying: bytes)
        do throws(DeliveryError) {
            try group.trySend(message, as: sender)
            reply.reply(written: bytes.count)
        } catch .wouldBlock where !nonBlocking {
            guard reply.willWait() else { return }
            let count = bytes.count
            let waiting = group.send(message, as: sender, .blocking) { result in
                switch result {
                case .success: reply.reply(written: count)
                case .failure(let error): reply.fail(FileSystemError(error))
                }
            }
            if let waiting { reply.cancelOnInterrupt { waiting.cancel() } }
        } catch {
            reply.fail(FileSystemError(error))
        }
    }

    // MARK: - Poll

    /// Readiness of an open file. A member file is readable when a message
    /// is queued or the member left; member files and `send` are writable when
    /// a write would not wait. `notify`, if given, runs once when that may
    /// have changed. Other files are always ready, as regular files are.
    public func poll(handle: UInt64, notify: (@Sendable () -> Void)?) -> Readiness {
        let file = OpenFile.of(handle)
        let watch = notify.map { Watch(id: file.watchID, notify: $0) }
        switch file.content {
        case .member(let member, let reader, let writable):
            return member.group.poll(reader: reader, writer: writable ? .member(member) : nil, watch: watch)
        case .send(let group):
            return group.poll(reader: nil, writer: .anonymous, watch: watch)
        case .control, .status, .directory:
            return Readiness(readable: true, writable: true)
        }
    }

    // MARK: - Lifetime

    /// Releases every blocked reader and writer (ENOTCONN) and refuses new
    /// waits: the daemon is going away.
    public func shutDown() {
        let groups = namespace.withLock { namespace in
            namespace.groups.values.compactMap { node -> Group? in
                if case .group(let directory) = node.content { return directory.group }
                return nil
            }
        }
        for group in groups { group.shutDown() }
    }

    /// Counts for statfs.
    public var counts: (groups: Int, inodes: Int) {
        namespace.withLock { ($0.groups.count, $0.nodes.count) }
    }

    /// Files open now (opened and not yet released).
    public var openFileCount: Int { openFiles.withLock { $0.count } }

    private func withNamespace<R>(_ body: (inout Namespace) throws(FileSystemError) -> R) throws(FileSystemError) -> R {
        try namespace.withLock { (namespace) throws(FileSystemError) -> R in try body(&namespace) }
    }
}
