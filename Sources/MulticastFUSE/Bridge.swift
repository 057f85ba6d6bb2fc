import DeliveryCore
public import FUSELowLevel
public import FileSystemTypes
public import MulticastFS
public import SystemPackage

/// Routes each FUSE request to MulticastFilesystem: the whole FUSE side of
/// mcastfs. Every method runs on a libfuse worker thread; all answer at once
/// except read and write, whose replies may be stored and answered later by
/// the thread that makes them possible (a sender, a reader).
public final class Bridge: FilesystemOperations {
    public let fs: MulticastFilesystem
    /// How long the kernel may cache names and attributes. Every change goes
    /// through this kernel, which updates its caches itself.
    public let cacheTimeout = 1.0

    public init(fs: MulticastFilesystem) { self.fs = fs }

    /// FUSE_INIT, on a loop thread. Asynchronous direct I/O is turned off,
    /// so that every write is an ordinary request. With it (libfuse's
    /// default, FUSE_CAP_ASYNC_DIO) the kernel sends a write made with
    /// io_submit on an O_DIRECT open as a background request, and one held
    /// back by a full member keeps one of the connection's max_background
    /// slots (12) for as long as it waits: twelve of them, from any user,
    /// and every release on the mount, a background request too, queues
    /// behind them, so that no close reaches mcastfs (no line tail is sent,
    /// no open file freed) until they end. Without it those writes wait as
    /// write(2) does, interruptibly. docs/security.md has the measurement.
    public func initialize(_ connection: inout ConnectionSettings) {
        connection.want.remove(.asyncDirectIO)
    }

    // MARK: Names and attributes

    public func lookup(_ context: RequestContext, parent: UInt64, name: String, reply: ReplyEntry) {
        answer(reply) { () throws(Errno) in reply.entry(entry(try fs.lookup(parent: parent, name: name))) }
    }

    public func forget(ino: UInt64, lookups: UInt64) {
        fs.forget(ino, count: lookups)
    }

    public func getattr(_ context: RequestContext, ino: UInt64, reply: ReplyAttributes) {
        answer(reply) { () throws(Errno) in
            reply.attributes(try fs.attributes(of: ino), timeout: cacheTimeout)
        }
    }

    public func setattr(_ context: RequestContext, ino: UInt64, changes: AttributeChanges, fh: UInt64?, reply: ReplyAttributes) {
        answer(reply) { () throws(Errno) in
            reply.attributes(try fs.setAttributes(of: ino, changes), timeout: cacheTimeout)
        }
    }

    public func mknod(_ context: RequestContext, parent: UInt64, name: String, mode: FileMode, device: UInt64, reply: ReplyEntry) {
        answer(reply) { () throws(Errno) in
            reply.entry(entry(try fs.makeNode(parent: parent, name: name, mode: mode, caller: caller(context))))
        }
    }

    public func mkdir(_ context: RequestContext, parent: UInt64, name: String, mode: FileMode, reply: ReplyEntry) {
        answer(reply) { () throws(Errno) in
            reply.entry(entry(try fs.makeGroup(parent: parent, name: name, permissions: mode.permissions, caller: caller(context))))
        }
    }

    public func unlink(_ context: RequestContext, parent: UInt64, name: String, reply: ReplyEmpty) {
        answer(reply) { () throws(Errno) in
            try fs.removeMember(parent: parent, name: name)
            reply.ok()
        }
    }

    public func rmdir(_ context: RequestContext, parent: UInt64, name: String, reply: ReplyEmpty) {
        answer(reply) { () throws(Errno) in
            try fs.removeGroup(parent: parent, name: name)
            reply.ok()
        }
    }

    // Links, symlinks and renames are not part of the contract: EPERM, and
    // nothing changes.

    public func symlink(_ context: RequestContext, target: String, parent: UInt64, name: String, reply: ReplyEntry) {
        reply.error(.notPermitted)
    }

    public func rename(_ context: RequestContext, parent: UInt64, name: String, newParent: UInt64, newName: String, flags: UInt32, reply: ReplyEmpty) {
        reply.error(.notPermitted)
    }

    public func link(_ context: RequestContext, ino: UInt64, newParent: UInt64, newName: String, reply: ReplyEntry) {
        reply.error(.notPermitted)
    }

    public func statfs(_ context: RequestContext, ino: UInt64, reply: ReplyStatfs) {
        let counts = fs.counts
        reply.statfs(FilesystemStatistics(
            blockSize: 4096, fragmentSize: 4096, blocks: 0, blocksFree: 0, blocksAvailable: 0,
            files: UInt64(counts.inodes), filesFree: UInt64(Int32.max) - UInt64(counts.inodes), nameMax: 255))
    }

    // MARK: Open files

    public func open(_ context: RequestContext, ino: UInt64, flags: OpenFlags, reply: ReplyOpen) {
        let opener = Opener(uid: context.uid, gid: context.gid, pid: UInt32(bitPattern: context.pid))
        answer(reply) { () throws(Errno) in reply.opened(openParameters(try fs.open(ino, flags: flags, opener: opener))) }
    }

    public func create(_ context: RequestContext, parent: UInt64, name: String, mode: FileMode, flags: OpenFlags, reply: ReplyCreate) {
        answer(reply) { () throws(Errno) in
            let (created, opened) = try fs.createMember(
                parent: parent, name: name, permissions: mode.permissions, flags: flags, caller: caller(context))
            if !reply.created(entry: entry(created), open: openParameters(opened)).delivered {
                // The creator is gone: close what the kernel will never release.
                fs.release(handle: opened.handle)
                fs.forget(created.nodeID, count: 1)
            }
        }
    }

    public func read(_ context: RequestContext, ino: UInt64, fh: UInt64, size: Int, offset: Int64, flags: OpenFlags, reply: ReplyData) {
        fs.read(handle: fh, size: size, offset: offset, flags: flags, reply: KernelRead(reply: reply))
    }

    public func write(_ context: RequestContext, ino: UInt64, fh: UInt64, data: UnsafeRawBufferPointer, offset: Int64, flags: OpenFlags, reply: ReplyWrite) {
        // The kernel's pid is the writing thread's id in the daemon's pid
        // namespace, 0 when the writer is outside it.
        let writer = Credentials(pid: UInt32(bitPattern: context.pid), uid: context.uid, gid: context.gid)
        fs.write(handle: fh, bytes: data, offset: offset, flags: flags, writer: writer, reply: KernelWrite(reply: reply))
    }

    /// close(2) of one descriptor. A waiting partial line is not sent here
    /// but at release: a shell's subshell that inherited the descriptor and
    /// exits closes it too, in the middle of its parent's line.
    public func flush(_ context: RequestContext, ino: UInt64, fh: UInt64, reply: ReplyEmpty) {
        reply.ok()
    }

    public func fsync(_ context: RequestContext, ino: UInt64, fh: UInt64, dataOnly: Bool, reply: ReplyEmpty) {
        fs.sync(handle: fh, reply: KernelSync(reply: reply))
    }

    public func release(_ context: RequestContext, ino: UInt64, fh: UInt64, flags: OpenFlags, reply: ReplyEmpty) {
        fs.release(handle: fh)
        reply.ok()
    }

    public func poll(_ context: RequestContext, ino: UInt64, fh: UInt64, handle: PollHandle?, reply: ReplyPoll) {
        var notify: (@Sendable () -> Void)?
        if let handle { notify = { _ = handle.notify() } }
        let readiness = fs.poll(handle: fh, notify: notify)
        var events: PollEvents = []
        if readiness.readable { events.insert(.readable) }
        if readiness.writable { events.insert(.writable) }
        reply.events(events)
    }

    // MARK: Directories

    public func opendir(_ context: RequestContext, ino: UInt64, flags: OpenFlags, reply: ReplyOpen) {
        answer(reply) { () throws(Errno) in
            let opened = try fs.openDirectory(ino)
            reply.opened(OpenParameters(fh: opened.handle, directIO: false, nonseekable: false, stream: false, keepCache: false))
        }
    }

    public func readdir(_ context: RequestContext, ino: UInt64, fh: UInt64, size: Int, offset: Int64, reply: ReplyDirectory) {
        var next = offset
        for item in fs.readDirectory(handle: fh, from: Int(offset)) {
            next += 1
            guard reply.add(item, nextOffset: next) else { break }
        }
        reply.send()
    }

    public func releasedir(_ context: RequestContext, ino: UInt64, fh: UInt64, flags: OpenFlags, reply: ReplyEmpty) {
        fs.release(handle: fh)
        reply.ok()
    }

    // MARK: Conversions

    private func answer(_ reply: Reply, _ body: () throws(Errno) -> Void) {
        do throws(Errno) { try body() } catch { reply.error(error) }
    }

    private func caller(_ context: RequestContext) -> Caller { Caller(uid: UserID(rawValue: context.uid), gid: GroupID(rawValue: context.gid)) }

    private func entry(_ entry: Entry) -> EntryParameters {
        // An uncacheable name gets a new node id on every lookup; the kernel
        // must ask again each time (timeout 0 means "always revalidate").
        EntryParameters(ino: entry.nodeID, generation: 0, attributes: entry.attributes,
                        attributeTimeout: cacheTimeout, entryTimeout: entry.cacheable ? cacheTimeout : 0)
    }

    private func openParameters(_ opened: OpenedFile) -> OpenParameters {
        // Direct I/O always: a message is not a page of a file, and `status`
        // is made at open. Streams have no position (FOPEN_STREAM), so reads
        // and writes on one open file do not wait for each other.
        OpenParameters(fh: opened.handle, directIO: true, nonseekable: opened.isStream, stream: opened.isStream, keepCache: false)
    }
}
