public import FileSystemTypes
public import SystemPackage

/// A filesystem, one method per FUSE operation — the Swift face of
/// `struct fuse_lowlevel_ops`.
///
/// Every method has a default: requests answer ENOSYS, `initialize`,
/// `destroy` and `forget` do nothing. Implement what you serve; the kernel
/// remembers some ENOSYS answers and stops asking (access: allowed; flush,
/// getxattr/listxattr: EOPNOTSUPP; poll: "always ready"; lseek: generic).
///
/// Threads: request methods run on libfuse's loop threads (one of up to
/// `maxThreads` workers, or the single loop thread), concurrently with each
/// other. A method may answer its `reply` before returning, or keep it and
/// answer later from any thread — returning frees the worker, so a blocked
/// read costs no thread. Names, buffers and flags are copied for you; only
/// `write`'s `data` (and `setxattr`'s `value`) must be copied if kept.
///
/// Inode 1 is the root (FUSE_ROOT_ID). Names arrive as UTF-8; a name that is
/// not valid UTF-8 is refused by this layer before any method runs: ENOENT
/// for lookup (no such name can exist); for the rest ENAMETOOLONG if it is
/// also longer than NAME_MAX (255 bytes), as Linux checks the length first,
/// else EINVAL. A valid UTF-8 name of any length reaches the method.
public protocol FilesystemOperations: AnyObject, Sendable {
    /// FUSE_INIT, once, on a loop thread, before any other request. Adjust
    /// the connection (wanted capabilities, max_write, ...).
    func initialize(_ connection: inout ConnectionSettings)
    /// The session is being destroyed (from `FUSESession.destroy`, on its
    /// caller's thread), after the last request. Runs only if INIT was seen.
    func destroy()

    func lookup(_ context: RequestContext, parent: UInt64, name: String, reply: ReplyEntry)
    /// The kernel drops `lookups` references to `ino`. No reply. Also called
    /// once per entry of a batch forget.
    func forget(ino: UInt64, lookups: UInt64)
    func getattr(_ context: RequestContext, ino: UInt64, reply: ReplyAttributes)
    /// `fh` is set when the change comes through an open file (ftruncate).
    func setattr(_ context: RequestContext, ino: UInt64, changes: AttributeChanges, fh: UInt64?, reply: ReplyAttributes)
    func readlink(_ context: RequestContext, ino: UInt64, reply: ReplyReadlink)
    func mknod(_ context: RequestContext, parent: UInt64, name: String, mode: FileMode, device: UInt64, reply: ReplyEntry)
    func mkdir(_ context: RequestContext, parent: UInt64, name: String, mode: FileMode, reply: ReplyEntry)
    func unlink(_ context: RequestContext, parent: UInt64, name: String, reply: ReplyEmpty)
    func rmdir(_ context: RequestContext, parent: UInt64, name: String, reply: ReplyEmpty)
    func symlink(_ context: RequestContext, target: String, parent: UInt64, name: String, reply: ReplyEntry)
    /// `flags`: RENAME_NOREPLACE / RENAME_EXCHANGE from renameat2(2).
    func rename(_ context: RequestContext, parent: UInt64, name: String, newParent: UInt64, newName: String, flags: UInt32, reply: ReplyEmpty)
    func link(_ context: RequestContext, ino: UInt64, newParent: UInt64, newName: String, reply: ReplyEntry)
    /// `flags`: open(2)'s flags (O_CREAT, O_EXCL and O_NOCTTY already handled
    /// by the kernel).
    func open(_ context: RequestContext, ino: UInt64, flags: OpenFlags, reply: ReplyOpen)
    func create(_ context: RequestContext, parent: UInt64, name: String, mode: FileMode, flags: OpenFlags, reply: ReplyCreate)
    /// `flags` are the open file's flags at the time of this request (an
    /// O_NONBLOCK set later by fcntl(2) shows here). With FOPEN_STREAM every
    /// read(2) starts at offset 0; offset > 0 continues one read(2) the
    /// kernel split into several requests.
    func read(_ context: RequestContext, ino: UInt64, fh: UInt64, size: Int, offset: Int64, flags: OpenFlags, reply: ReplyData)
    /// `data` is valid only during this call: copy what you keep.
    func write(_ context: RequestContext, ino: UInt64, fh: UInt64, data: UnsafeRawBufferPointer, offset: Int64, flags: OpenFlags, reply: ReplyWrite)
    /// close(2) of one descriptor of the open file (may come several times).
    func flush(_ context: RequestContext, ino: UInt64, fh: UInt64, reply: ReplyEmpty)
    /// The last descriptor of the open file is gone. The kernel does not
    /// wait for this answer's content.
    func release(_ context: RequestContext, ino: UInt64, fh: UInt64, flags: OpenFlags, reply: ReplyEmpty)
    func fsync(_ context: RequestContext, ino: UInt64, fh: UInt64, dataOnly: Bool, reply: ReplyEmpty)
    func opendir(_ context: RequestContext, ino: UInt64, flags: OpenFlags, reply: ReplyOpen)
    func readdir(_ context: RequestContext, ino: UInt64, fh: UInt64, size: Int, offset: Int64, reply: ReplyDirectory)
    func releasedir(_ context: RequestContext, ino: UInt64, fh: UInt64, flags: OpenFlags, reply: ReplyEmpty)
    func fsyncdir(_ context: RequestContext, ino: UInt64, fh: UInt64, dataOnly: Bool, reply: ReplyEmpty)
    func statfs(_ context: RequestContext, ino: UInt64, reply: ReplyStatfs)
    /// `value` is valid only during this call.
    func setxattr(_ context: RequestContext, ino: UInt64, name: String, value: UnsafeRawBufferPointer, flags: Int32, reply: ReplyEmpty)
    /// `size` 0 asks for the size needed (`reply.size`).
    func getxattr(_ context: RequestContext, ino: UInt64, name: String, size: Int, reply: ReplyXattr)
    /// `size` 0 asks for the size needed; the data is NUL-terminated names.
    func listxattr(_ context: RequestContext, ino: UInt64, size: Int, reply: ReplyXattr)
    func removexattr(_ context: RequestContext, ino: UInt64, name: String, reply: ReplyEmpty)
    /// access(2) with `mask` (R_OK, W_OK, X_OK, F_OK). Not sent with
    /// `-o default_permissions`.
    func access(_ context: RequestContext, ino: UInt64, mask: Int32, reply: ReplyEmpty)
    func fallocate(_ context: RequestContext, ino: UInt64, fh: UInt64, mode: Int32, offset: Int64, length: Int64, reply: ReplyEmpty)
    func lseek(_ context: RequestContext, ino: UInt64, fh: UInt64, offset: Int64, whence: Int32, reply: ReplyLseek)
    /// Answer at once with the events ready now. `handle` is set when the
    /// kernel wants a notification on change: keep the newest per open file
    /// and `notify()` it then.
    func poll(_ context: RequestContext, ino: UInt64, fh: UInt64, handle: PollHandle?, reply: ReplyPoll)
}

extension FilesystemOperations {
    public func initialize(_ connection: inout ConnectionSettings) {}
    public func destroy() {}
    public func lookup(_ context: RequestContext, parent: UInt64, name: String, reply: ReplyEntry) {
        reply.error(.noFunction)
    }
    public func forget(ino: UInt64, lookups: UInt64) {}
    public func getattr(_ context: RequestContext, ino: UInt64, reply: ReplyAttributes) {
        reply.error(.noFunction)
    }
    public func setattr(_ context: RequestContext, ino: UInt64, changes: AttributeChanges, fh: UInt64?, reply: ReplyAttributes) {
        reply.error(.noFunction)
    }
    public func readlink(_ context: RequestContext, ino: UInt64, reply: ReplyReadlink) {
        reply.error(.noFunction)
    }
    public func mknod(_ context: RequestContext, parent: UInt64, name: String, mode: FileMode, device: UInt64, reply: ReplyEntry) {
        reply.error(.noFunction)
    }
    public func mkdir(_ context: RequestContext, parent: UInt64, name: String, mode: FileMode, reply: ReplyEntry) {
        reply.error(.noFunction)
    }
    public func unlink(_ context: RequestContext, parent: UInt64, name: String, reply: ReplyEmpty) {
        reply.error(.noFunction)
    }
    public func rmdir(_ context: RequestContext, parent: UInt64, name: String, reply: ReplyEmpty) {
        reply.error(.noFunction)
    }
    public func symlink(_ context: RequestContext, target: String, parent: UInt64, name: String, reply: ReplyEntry) {
        reply.error(.noFunction)
    }
    public func rename(_ context: RequestContext, parent: UInt64, name: String, newParent: UInt64, newName: String, flags: UInt32, reply: ReplyEmpty) {
        reply.error(.noFunction)
    }
    public func link(_ context: RequestContext, ino: UInt64, newParent: UInt64, newName: String, reply: ReplyEntry) {
        reply.error(.noFunction)
    }
    public func open(_ context: RequestContext, ino: UInt64, flags: OpenFlags, reply: ReplyOpen) {
        reply.error(.noFunction)
    }
    public func create(_ context: RequestContext, parent: UInt64, name: String, mode: FileMode, flags: OpenFlags, reply: ReplyCreate) {
        reply.error(.noFunction)
    }
    public func read(_ context: RequestContext, ino: UInt64, fh: UInt64, size: Int, offset: Int64, flags: OpenFlags, reply: ReplyData) {
        reply.error(.noFunction)
    }
    public func write(_ context: RequestContext, ino: UInt64, fh: UInt64, data: UnsafeRawBufferPointer, offset: Int64, flags: OpenFlags, reply: ReplyWrite) {
        reply.error(.noFunction)
    }
    public func flush(_ context: RequestContext, ino: UInt64, fh: UInt64, reply: ReplyEmpty) {
        reply.error(.noFunction)
    }
    public func release(_ context: RequestContext, ino: UInt64, fh: UInt64, flags: OpenFlags, reply: ReplyEmpty) {
        reply.error(.noFunction)
    }
    public func fsync(_ context: RequestContext, ino: UInt64, fh: UInt64, dataOnly: Bool, reply: ReplyEmpty) {
        reply.error(.noFunction)
    }
    public func opendir(_ context: RequestContext, ino: UInt64, flags: OpenFlags, reply: ReplyOpen) {
        reply.error(.noFunction)
    }
    public func readdir(_ context: RequestContext, ino: UInt64, fh: UInt64, size: Int, offset: Int64, reply: ReplyDirectory) {
        reply.error(.noFunction)
    }
    public func releasedir(_ context: RequestContext, ino: UInt64, fh: UInt64, flags: OpenFlags, reply: ReplyEmpty) {
        reply.error(.noFunction)
    }
    public func fsyncdir(_ context: RequestContext, ino: UInt64, fh: UInt64, dataOnly: Bool, reply: ReplyEmpty) {
        reply.error(.noFunction)
    }
    public func statfs(_ context: RequestContext, ino: UInt64, reply: ReplyStatfs) {
        reply.error(.noFunction)
    }
    public func setxattr(_ context: RequestContext, ino: UInt64, name: String, value: UnsafeRawBufferPointer, flags: Int32, reply: ReplyEmpty) {
        reply.error(.noFunction)
    }
    public func getxattr(_ context: RequestContext, ino: UInt64, name: String, size: Int, reply: ReplyXattr) {
        reply.error(.noFunction)
    }
    public func listxattr(_ context: RequestContext, ino: UInt64, size: Int, reply: ReplyXattr) {
        reply.error(.noFunction)
    }
    public func removexattr(_ context: RequestContext, ino: UInt64, name: String, reply: ReplyEmpty) {
        reply.error(.noFunction)
    }
    public func access(_ context: RequestContext, ino: UInt64, mask: Int32, reply: ReplyEmpty) {
        reply.error(.noFunction)
    }
    public func fallocate(_ context: RequestContext, ino: UInt64, fh: UInt64, mode: Int32, offset: Int64, length: Int64, reply: ReplyEmpty) {
        reply.error(.noFunction)
    }
    public func lseek(_ context: RequestContext, ino: UInt64, fh: UInt64, offset: Int64, whence: Int32, reply: ReplyLseek) {
        reply.error(.noFunction)
    }
    public func poll(_ context: RequestContext, ino: UInt64, fh: UInt64, handle: PollHandle?, reply: ReplyPoll) {
        reply.error(.noFunction)
    }
}
