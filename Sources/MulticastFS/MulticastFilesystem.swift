public import DeliveryCore
public import FileSystemTypes
import Locking
import Synchronization
public import SystemPackage

/// The contract (docs/contract.md) mapped onto the delivery core: the
/// namespace (root, group directories, `send`, `ctl`, `status`, members,
/// `frames/` and `peers/`),
/// owners and modes, and opening files. Reads, writes and poll on open files
/// are in FileIO.swift.
///
/// No FUSE here: a front end (the FUSE bridge, or a test playing the kernel)
/// calls these methods, from any thread. The namespace (Namespace.swift) has
/// one lock; reads and writes on open files do not take it.
public final class MulticastFilesystem: Sendable {
    public static let rootInode: InodeNumber = 1
    /// The metrics file in the root: a name no group can take, as group
    /// names cannot begin with `.`.
    public static let metricsName = ".metrics"
    private static let writeBits: FilePermissions = [.ownerWrite, .groupWrite, .otherWrite]
    private static let readBits: FilePermissions = [.ownerRead, .groupRead, .otherRead]

    private let namespace: AdaptiveMutex<Namespace>
    private let defaults: GroupSettings
    private let nextWatchID = Atomic<UInt64>(1)
    private let openFiles = OpenFileTable()
    /// The groups and members shared with other mounts; nil on one machine.
    let catalog: (any SharedCatalog)?
    /// What each user owns, against the limits per user (UserLimits.swift).
    let users: UserTable

    /// - Parameters:
    ///   - owner: owns the root directory (the user who mounted).
    ///   - defaults: settings of new groups.
    ///   - catalog: the cluster this mount shares its groups with
    ///     (SharedCatalog.swift); it tells the filesystem of groups made,
    ///     changed and removed elsewhere through `adoptGroup` and friends.
    ///   - limits: what each user may own (groups, members, queued bytes).
    public init(owner: Caller, defaults: GroupSettings = GroupSettings(), catalog: (any SharedCatalog)? = nil,
                limits: UserLimits = UserLimits()) throws(Errno) {
        do throws(DeliveryError) { try defaults.validate() } catch { throw .invalidArgument }
        guard limits.groups > 0, limits.members > 0, limits.bytes > 0 else { throw .invalidArgument }
        self.defaults = defaults
        self.catalog = catalog
        self.users = UserTable(limits: limits)
        let root = Node(ino: Self.rootInode, kind: .root, permissions: [.ownerReadWriteExecute, .groupReadExecute, .otherReadExecute],
                        owner: owner, content: .root)
        root.lookups = 1  // the kernel holds the root for the whole mount
        namespace = AdaptiveMutex(Namespace(root: root))
    }

    // MARK: - Names

    /// Finds `name` in directory `parent`, counting one more kernel reference.
    public func lookup(parent: InodeNumber, name: String) throws(Errno) -> Entry {
        try withNamespace { (namespace) throws(Errno) in
            let (node, view) = try namespace.child(of: try namespace.node(parent), named: name)
            return namespace.reference(node, in: view)
        }
    }

    /// The kernel dropped `count` references to `ino`.
    public func forget(_ ino: InodeNumber, count: UInt64) {
        namespace.withLock { $0.forget(ino, count: count) }
    }

    // MARK: - Attributes

    public func attributes(of ino: InodeNumber) throws(Errno) -> FileAttributes {
        try withNamespace { (namespace) throws(Errno) in namespace.attributes(of: try namespace.node(ino)) }
    }

    /// chmod, chown, utimens and truncate. The kernel has checked that the
    /// caller may (`default_permissions`). Truncating to 0 is accepted and
    /// ignored, so `echo hi > G/NAME` works; to any other size it is EINVAL.
    public func setAttributes(of ino: InodeNumber, _ changes: AttributeChanges) throws(Errno) -> FileAttributes {
        let (attributes, shared) = try withNamespace { (namespace) throws(Errno) -> (FileAttributes, String?) in
            let node = try namespace.node(ino)
            if case .metrics = node.content { try Self.refuseChanges(changes) }
            if let size = changes.size {
                if node.kind.isDirectory { throw .isDirectory }
                if size != 0 { throw .invalidArgument }
            }
            let now = Timestamp.now()
            if let permissions = changes.permissions { node.attributes.mode = FileMode(type: node.kind.fileType, permissions: permissions) }
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
            // A clustered group's owner and mode are every node's.
            let changesOwnership = changes.permissions != nil || changes.uid != nil || changes.gid != nil
            let shared: String? = if case .group(let directory) = node.content, changesOwnership { directory.group.name } else { nil }
            return (namespace.attributes(of: node), shared)
        }
        if let catalog, let shared {
            try catalog.changeOwnership(of: shared, permissions: changes.permissions, uid: changes.uid, gid: changes.gid)
        }
        return attributes
    }

    /// `.metrics` is read-only whatever the caller's privileges: a
    /// truncate fails as its mode says (EACCES, for root too, whom the
    /// kernel lets through), and its mode, owner and times are fixed (EPERM,
    /// for its owner and root; the kernel refuses anyone else by itself).
    private static func refuseChanges(_ changes: AttributeChanges) throws(Errno) {
        if changes.size != nil { throw .permissionDenied }
        throw .notPermitted
    }

    // MARK: - Groups

    /// `mkdir ROOT/G`: a new group, owned by the caller, with the mode given
    /// (the kernel has applied the umask). `send`, `ctl` and `status` take
    /// their modes from it: send = mode & 0222, status = mode & 0444, ctl =
    /// mode & 0200; `frames/` has it, `peers/` has mode & 0700.
    public func makeGroup(parent: InodeNumber, name: String, permissions: FilePermissions, caller: Caller) throws(Errno) -> Entry {
        let check = { (namespace: inout Namespace) throws(Errno) in
            let parentNode = try namespace.node(parent)
            guard case .root = parentNode.content else {
                throw parentNode.kind.isDirectory ? .notPermitted : .notDirectory
            }
            // The kernel finds .metrics first and says EEXIST itself; say
            // the same to any front end that did not look.
            if name == Self.metricsName { throw .fileExists }
            try Names.validate(name)
            guard namespace.groups[ExactName(name)] == nil else { throw .fileExists }
        }
        // The caller's count of groups is taken first (EDQUOT), and given
        // back if no group is made.
        let users = users
        let charge = { (node: Node) in if case .group(let directory) = node.content { users.charged(directory.group, .group, to: caller.uid) } }
        guard let catalog else {
            return try withNamespace { (namespace) throws(Errno) in
                try check(&namespace)
                _ = try users.take(.group, for: caller.uid)
                do throws(Errno) {
                    let node = try Self.insertGroup(name, settings: defaults, sequencer: nil, permissions: permissions,
                                                    owner: caller, in: &namespace)
                    charge(node)
                    return namespace.reference(node)
                } catch {
                    users.untake(.group, for: caller.uid)
                    throw error
                }
            }
        }
        // Claimed everywhere first, outside the namespace lock (a round
        // trip); the claim's own news may come back and insert it before us.
        try withNamespace { (namespace) throws(Errno) in try check(&namespace) }
        _ = try users.take(.group, for: caller.uid)
        do throws(Errno) {
            let sequencer = try catalog.makeGroup(name, owner: caller, permissions: permissions, settings: defaults)
            return try withNamespace { (namespace) throws(Errno) in
                let node = if let node = namespace.groups[ExactName(name)] { node } else {
                    try Self.insertGroup(name, settings: defaults, sequencer: sequencer, permissions: permissions, owner: caller, in: &namespace)
                }
                charge(node)
                return namespace.reference(node)
            }
        } catch {
            users.untake(.group, for: caller.uid)
            throw error
        }
    }

    /// A group made elsewhere in the cluster (or here, heard back): its
    /// directory, unless it is here already.
    public func adoptGroup(_ name: String, settings: GroupSettings, sequencer: any Sequencer, permissions: FilePermissions,
                           owner: Caller) throws(Errno) {
        try withNamespace { (namespace) throws(Errno) in
            if let node = namespace.groups[ExactName(name)] {
                // Here already: its owner and mode may have changed elsewhere.
                let attributes = node.attributes
                if attributes.mode.permissions != permissions || attributes.uid != owner.uid || attributes.gid != owner.gid {
                    node.attributes.mode = FileMode(type: node.kind.fileType, permissions: permissions)
                    node.attributes.uid = owner.uid
                    node.attributes.gid = owner.gid
                    node.attributes.ctime = Timestamp.now()
                }
                return
            }
            _ = try Self.insertGroup(name, settings: settings, sequencer: sequencer, permissions: permissions, owner: owner,
                                     in: &namespace)
        }
    }

    /// A group's directory, `send`, `ctl`, `status`, `frames/` and `peers/`.
    private static func insertGroup(_ name: String, settings: GroupSettings, sequencer: (any Sequencer)?,
                                    permissions: FilePermissions, owner caller: Caller, in namespace: inout Namespace) throws(Errno) -> Node {
        let group: Group
        do throws(DeliveryError) { group = try Group(name: name, settings: settings, sequencer: sequencer) } catch { throw Errno(error) }
        let directory = GroupDirectory(group: group)
        let mode = permissions
        let node = namespace.makeNode(.group, permissions: mode, owner: caller, content: .group(directory))
        directory.directory = node.ino
        directory.send = namespace.makeNode(.send, permissions: mode.intersection(Self.writeBits), owner: caller, content: .send(directory)).ino
        directory.control = namespace.makeNode(.control, permissions: mode.intersection(.ownerWrite), owner: caller, content: .control(directory)).ino
        directory.status = namespace.makeNode(.status, permissions: mode.intersection(Self.readBits), owner: caller, content: .status(directory)).ino
        directory.frames = namespace.makeNode(.frames, permissions: mode, owner: caller, content: .frames(directory)).ino
        directory.peers = namespace.makeNode(.peers, permissions: mode.intersection(.ownerReadWriteExecute), owner: caller,
                                             content: .peers(directory)).ino
        node.attributes.linkCount = 4  // ".", its name in the root, frames/.. and peers/..
        namespace.groups[ExactName(name)] = node
        namespace.groupOrder.append(ExactName(name))
        namespace.touch(namespace.root)
        return node
    }

    /// `rmdir ROOT/G`: only when G has no members (ENOTEMPTY otherwise).
    public func removeGroup(parent: InodeNumber, name: String) throws(Errno) {
        try withNamespace { (namespace) throws(Errno) in
            let parentNode = try namespace.node(parent)
            switch parentNode.content {
            case .root where name == Self.metricsName: throw .notDirectory
            case .root: break
            // frames/ and peers/ go with their group, never alone.
            case .group where name == "frames" || name == "peers": throw .notPermitted
            // Nothing else inside a group is a directory.
            default: throw .notDirectory
            }
            guard let node = namespace.groups[ExactName(name)], case .group(let directory) = node.content else { throw .noSuchFileOrDirectory }
            // Members here: not even asking the cluster.
            if catalog != nil && !directory.members.isEmpty { throw .directoryNotEmpty }
        }
        guard let catalog else { return try unlinkGroup(name) }
        try catalog.removeGroup(name)
        // The removal's own news may have unlinked it here already.
        do throws(Errno) { try unlinkGroup(name) } catch .noSuchFileOrDirectory {}
    }

    /// A group's settings changed elsewhere in the cluster (or here, heard
    /// back): the same here.
    public func adoptSettings(_ settings: GroupSettings, of group: String) {
        let found = namespace.withLock { namespace -> Group? in
            guard case .group(let directory)? = namespace.groups[ExactName(group)]?.content else { return nil }
            return directory.group
        }
        try? found?.configure { $0 = settings }
    }

    /// New settings of a member of this mount, set on another node of the
    /// cluster (or here, heard back).
    public func adoptSettings(_ settings: MemberSettings, ofMember name: String, in group: String) {
        let found = namespace.withLock { namespace -> Group? in
            guard case .group(let directory)? = namespace.groups[ExactName(group)]?.content else { return nil }
            return directory.group
        }
        try? found?.configureMember(named: name) { $0 = settings }
    }

    /// A group removed elsewhere in the cluster: gone here too.
    public func dropGroup(_ name: String) {
        try? unlinkGroup(name)
    }

    private func unlinkGroup(_ name: String) throws(Errno) {
        try withNamespace { (namespace) throws(Errno) in
            guard let node = namespace.groups[ExactName(name)], case .group(let directory) = node.content else { throw .noSuchFileOrDirectory }
            do throws(DeliveryError) { try directory.group.close() } catch { throw Errno(error) }
            users.release(directory.group)
            namespace.groups[ExactName(name)] = nil
            namespace.groupOrder.removeAll { $0 == ExactName(name) }
            for ino in [directory.send, directory.control, directory.status, directory.frames, directory.peers] {
                namespace.unlink(namespace.entry(ino))
            }
            namespace.unlink(node)
            namespace.touch(namespace.root)
        }
    }

    // MARK: - Members

    /// `touch G/NAME`, `open(O_CREAT)`: NAME joins G with the group's default
    /// settings, owned by the caller with the mode given. An existing member is
    /// opened, unless O_EXCL (EEXIST).
    public func createMember(parent: InodeNumber, name: String, permissions: FilePermissions, flags: OpenFlags, caller: Caller) throws(Errno) -> (Entry, OpenedFile) {
        let (node, entry, joined) = try withNamespace { (namespace) throws(Errno) -> (Node, Entry, Bool) in
            let parentNode = try namespace.node(parent)
            if case .root = parentNode.content { throw .notPermitted }
            let directory = try namespace.groupDirectory(parent)
            if let existing = namespace.entry(named: name, in: directory) {
                if flags.options.contains(.exclusiveCreate) { throw .fileExists }
                return (existing, namespace.reference(existing), false)
            }
            let node = try Self.join(directory, name: name, permissions: permissions, caller: caller, users: users, in: &namespace)
            return (node, namespace.reference(node), true)
        }
        do throws(Errno) {
            if joined { try claim(node, permissions: permissions, caller: caller) }
            return (entry, try open(node, flags: flags))
        } catch {
            forget(entry.nodeID, count: 1)
            throw error
        }
    }

    /// mknod: a regular file in a group joins like create; FIFOs, devices and
    /// sockets are refused (EPERM), as is anything in the root.
    public func makeNode(parent: InodeNumber, name: String, mode: FileMode, caller: Caller) throws(Errno) -> Entry {
        guard mode.type == .regular else { throw .notPermitted }
        let (node, entry) = try withNamespace { (namespace) throws(Errno) -> (Node, Entry) in
            if case .root = try namespace.node(parent).content { throw .notPermitted }
            let directory = try namespace.groupDirectory(parent)
            if Names.reserved.contains(name) || directory.members[ExactName(name)] != nil { throw .fileExists }
            let node = try Self.join(directory, name: name, permissions: mode.permissions, caller: caller, users: users, in: &namespace)
            return (node, namespace.reference(node))
        }
        do throws(Errno) {
            try claim(node, permissions: mode.permissions, caller: caller)
        } catch {
            forget(entry.nodeID, count: 1)
            throw error
        }
        return entry
    }

    /// A member that just joined here claims its name in the cluster; if
    /// another mount has it (EEXIST) or the cluster is out of reach, it
    /// leaves again, as if it had never joined.
    private func claim(_ node: Node, permissions: FilePermissions, caller: Caller) throws(Errno) {
        guard let catalog, case .member(let directory, let member) = node.content else { return }
        do throws(Errno) {
            try catalog.join(member, of: directory.group, owner: caller, permissions: permissions)
        } catch {
            _ = namespace.withLock { namespace in Self.unlinkMember(member.name, of: directory, users: users, in: &namespace) }
            throw error
        }
    }

    private static func join(_ directory: GroupDirectory, name: String, permissions: FilePermissions, caller: Caller,
                             users: UserTable, in namespace: inout Namespace) throws(Errno) -> Node {
        try Names.validate(name)
        if Names.reserved.contains(name) { throw .fileExists }
        // The caller's count of members first (EDQUOT); its account is what
        // the member's queue charges.
        let account = try users.take(.member, for: caller.uid)
        let member: Member
        do throws(DeliveryError) {
            // In a cluster's group its place in the shared order comes with
            // its claim (`claim`); it receives nothing before.
            member = try directory.group.join(name, account: account, awaitingItsSequence: directory.group.isRelayed)
        } catch {
            users.untake(.member, for: caller.uid)
            throw Errno(error)
        }
        users.charged(member, .member, to: caller.uid)
        let node = namespace.makeNode(.member, permissions: permissions, owner: caller, content: .member(directory, member))
        directory.members[ExactName(name)] = node.ino
        directory.memberOrder.append(ExactName(name))
        directory.peerFiles[ExactName(name)] = makePeerFile(for: member, in: directory, namespace: &namespace).ino
        namespace.touch(namespace.entry(directory.directory))
        return node
    }

    /// The listener's end of a member that joins: `G/peers/NAME`, owned by
    /// the group's owner, mode = the mode of `peers/` now & 0600.
    private static func makePeerFile(for member: Member, in directory: GroupDirectory, namespace: inout Namespace) -> Node {
        let group = namespace.entry(directory.directory).attributes, peers = namespace.entry(directory.peers).attributes
        return namespace.makeNode(.peer, permissions: peers.mode.permissions.intersection([.ownerRead, .ownerWrite]),
                                  owner: Caller(uid: group.uid, gid: group.gid), content: .peer(directory, member))
    }

    /// `rm G/NAME`: NAME leaves, and `G/peers/NAME` goes with it. Open
    /// handles still read what was queued, then end of file; new opens get
    /// ENOENT. `send`, `ctl`, `status`, `frames` and `peers`, and anything
    /// in `frames/` or `peers/`, cannot be removed (EPERM).
    public func removeMember(parent: InodeNumber, name: String) throws(Errno) {
        let group = try withNamespace { (namespace) throws(Errno) -> String in
            if case .root = try namespace.node(parent).content {
                throw name == Self.metricsName ? .notPermitted : .isDirectory
            }
            let directory = try namespace.groupDirectory(parent)
            if Names.reserved.contains(name) { throw .notPermitted }
            guard Self.unlinkMember(name, of: directory, users: users, in: &namespace) else { throw .noSuchFileOrDirectory }
            return directory.group.name
        }
        catalog?.leave(name, of: group)
    }

    /// A member of this mount removed elsewhere in the cluster (its claim
    /// went: its node was taken for dead while cut off): it leaves, as `rm`.
    public func evictMember(_ name: String, of group: String) {
        namespace.withLock { namespace in
            guard case .group(let directory)? = namespace.groups[ExactName(group)]?.content else { return }
            _ = Self.unlinkMember(name, of: directory, users: users, in: &namespace)
        }
    }

    /// NAME leaves, and its entry and peer file are unlinked. False: no such member.
    private static func unlinkMember(_ name: String, of directory: GroupDirectory, users: UserTable, in namespace: inout Namespace) -> Bool {
        guard let ino = directory.members.removeValue(forKey: ExactName(name)),
              let node = namespace.nodes[ino], case .member(_, let member) = node.content else {
            return false
        }
        directory.memberOrder.removeAll { $0 == ExactName(name) }
        member.leave()
        users.release(member)
        namespace.unlink(node)
        if let peer = directory.peerFiles.removeValue(forKey: ExactName(name)) { namespace.unlink(namespace.entry(peer)) }
        namespace.touch(namespace.entry(directory.directory))
        return true
    }

    // MARK: - Open files

    /// Opens a file. `send` and `ctl` are write-only and `status` read-only,
    /// whatever the caller's privileges (EACCES otherwise). `opener`: who
    /// opens, which decides what a `status` or `.metrics` snapshot shows and
    /// whose user_bytes it is charged to while open (docs/contract.md,
    /// "Metrics"); nil for the filesystem's own callers, who see everything
    /// and are charged nothing.
    public func open(_ ino: InodeNumber, flags: OpenFlags, opener: Opener? = nil) throws(Errno) -> OpenedFile {
        let (node, view) = try withNamespace { (namespace) throws(Errno) in
            let target = try namespace.target(ino)
            guard target.node.linked else { throw .noSuchFileOrDirectory }
            return target
        }
        return try open(node, in: view, flags: flags, opener: opener)
    }

    private func open(_ node: Node, in view: View = .record, flags: OpenFlags, opener: Opener? = nil) throws(Errno) -> OpenedFile {
        let access = flags
        let content: OpenFile.Content
        // Only for a snapshot: a stream's open reads no /proc and takes no lock.
        let visibility = { (groups: Bool) in opener.map { Visibility($0, mountedBy: self.mounter, groups: groups) } }
        let usage = { (visibility: Visibility?) in visibility?.users(self.users.usage) ?? self.users.usage }
        switch node.content {
        case .root, .group, .frames, .peers:
            throw .isDirectory
        case .metrics:
            guard !access.writes else { throw .permissionDenied }
            let visible = visibility(true)
            content = .status(Array(MetricsFormat.render(groupSnapshots(visibleTo: visible), users: usage(visible)).utf8))
        case .send(let directory):
            guard !access.reads else { throw .permissionDenied }
            content = .send(directory.group)
        case .control(let directory):
            guard !access.reads else { throw .permissionDenied }
            content = .control(directory.group)
        case .status(let directory):
            guard !access.writes else { throw .permissionDenied }
            let snapshot = directory.group.snapshot()
            let visible = visibility(false)
            let text = if let catalog {
                StatusFormat.render(snapshot, node: catalog.node, remote: catalog.remoteMembers(of: snapshot.name), users: usage(visible))
            } else {
                StatusFormat.render(snapshot, users: usage(visible))
            }
            content = .status(Array(text.utf8))
        case .member(_, let member):
            guard member.isPresent else { throw .noSuchFileOrDirectory }
            content = .member(member, reader: access.reads ? member.makeReader() : nil, writable: access.writes)
        case .peer(_, let member):
            guard member.isPresent else { throw .noSuchFileOrDirectory }
            content = .peer(member, reader: access.reads ? member.makePeerReader() : nil, writable: access.writes)
        }
        // A snapshot is held for as long as the file is open: the opener's
        // to pay for, like a blocked write (docs/contract.md, "Limits per
        // user"). Refused once what is held for the opener outside its
        // queues reaches user_bytes; queued bytes do not refuse it, so that
        // a user whose members are full can still read why.
        var held: HeldBytes? = nil
        if case .status(let bytes) = content, let opener {
            let account = users.account(for: opener.uid)
            guard account.heldBytes < account.limit else { throw .diskQuotaExceeded }
            account.hold(bytes.count)
            held = HeldBytes(account, bytes.count)
        }
        let file = OpenFile(content: content, view: view, watchID: nextWatchID.add(1, ordering: .relaxed).newValue, held: held)
        let isStream = if case .status = content { false } else { true }
        return OpenedFile(handle: keep(file), isStream: isStream)
    }

    /// opendir: lists the entries now, so that readdir offsets stay stable.
    public func openDirectory(_ ino: InodeNumber) throws(Errno) -> OpenedFile {
        let entries = try withNamespace { (namespace) throws(Errno) -> [DirectoryEntry] in
            let node = try namespace.node(ino)
            guard node.linked else { throw .noSuchFileOrDirectory }
            var entries = [DirectoryEntry(name: ".", ino: node.ino, type: .directory)]
            switch node.content {
            case .root:
                entries.append(DirectoryEntry(name: "..", ino: node.ino, type: .directory))
                entries.append(DirectoryEntry(name: Self.metricsName, ino: namespace.metrics.ino, type: .regular))
                for name in namespace.groupOrder {
                    entries.append(DirectoryEntry(name: name.string, ino: namespace.groups[name]!.ino, type: .directory))
                }
            case .group(let directory):
                entries.append(DirectoryEntry(name: "..", ino: Self.rootInode, type: .directory))
                for (name, ino) in directory.entries {
                    entries.append(DirectoryEntry(name: name, ino: ino, type: namespace.entry(ino).kind.fileType))
                }
            case .frames(let directory):
                entries.append(DirectoryEntry(name: "..", ino: directory.directory, type: .directory))
                for (name, ino) in directory.framedEntries {
                    entries.append(DirectoryEntry(name: name, ino: ino, type: .regular))
                }
            case .peers(let directory):
                entries.append(DirectoryEntry(name: "..", ino: directory.directory, type: .directory))
                for (name, ino) in directory.peerEntries {
                    entries.append(DirectoryEntry(name: name, ino: ino, type: .regular))
                }
            case .send, .control, .status, .member, .peer, .metrics:
                throw .notDirectory
            }
            return entries
        }
        return OpenedFile(handle: keep(OpenFile(content: .directory(entries), view: .record, watchID: 0)), isStream: false)
    }

    private func keep(_ file: OpenFile) -> UInt64 { openFiles.keep(file) }

    /// A snapshot of every group, in the order they were made. Each is
    /// consistent in itself, as its `status`; they are taken one after
    /// another, outside the namespace lock, so that no group's lock is ever
    /// taken under it.
    /// With `visibility`, only the groups whose directory the opener may
    /// search, as the kernel would let it reach their `status`.
    private func groupSnapshots(visibleTo visibility: Visibility? = nil) -> [GroupSnapshot] {
        let groups = namespace.withLock { namespace in
            namespace.groupOrder.compactMap { name -> Group? in
                guard let node = namespace.groups[name], case .group(let directory) = node.content else { return nil }
                if let visibility, !visibility.maySearch(node.attributes) { return nil }
                return directory.group
            }
        }
        return groups.map { $0.snapshot() }
    }

    /// The entries of an open directory from `offset` on; entry i has offset
    /// i + 1, which readdir hands back to resume after it.
    public func readDirectory(handle: UInt64, from offset: Int) -> ArraySlice<DirectoryEntry> {
        guard case .directory(let entries) = OpenFile.of(handle).content else { return [] }
        return entries.dropFirst(max(0, offset))
    }

    /// fsync(2): a line that waits for its newline is sent as a message of
    /// its own, and `reply` answers once it is in (LineIO.swift, syncLine).
    public func sync(handle: UInt64, reply: some SyncReply) {
        let file = OpenFile.of(handle)
        guard let pending = file.pendingLine, let destination = file.lineDestination else { return reply.synced() }
        syncLine(pending, to: destination, reply: reply)
    }

    /// The last close of an open file (or directory). A line that waits for
    /// its newline is sent as a message of its own, holding nobody.
    public func release(handle: UInt64) {
        let file = OpenFile.of(handle)
        if let pending = file.pendingLine, let destination = file.lineDestination { flushLine(pending, to: destination) }
        switch file.content {
        case .member(let member, let reader, _), .peer(let member, let reader, _):
            member.group.cancelWatch(id: file.watchID, reader: reader)
        case .send(let group): group.cancelWatch(id: file.watchID, reader: nil)
        case .control, .status, .directory: break
        }
        file.held?.release()
        openFiles.remove(file)
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

    /// The mounting user, who owns `.metrics` (its owner never changes).
    private var mounter: UInt32 { namespace.withLock { $0.metrics.attributes.uid.rawValue } }

    /// Files open now (opened and not yet released).
    public var openFileCount: Int { openFiles.count }

    private func withNamespace<R>(_ body: (inout Namespace) throws(Errno) -> R) throws(Errno) -> R {
        try namespace.withLock { (namespace) throws(Errno) -> R in try body(&namespace) }
    }
}
