import CFuseKernel
public import FileSystemTypes
import Glibc
public import SystemPackage

/// A name as the kernel sends it: bytes, NUL-terminated on the wire. Any
/// bytes, so that tests can send names no String spells (invalid UTF-8,
/// longer than NAME_MAX).
public struct Name: Sendable, Equatable, ExpressibleByStringLiteral {
    public var bytes: [UInt8]

    public init(bytes: [UInt8]) { self.bytes = bytes }
    public init(_ string: String) { bytes = Array(string.utf8) }
    public init(stringLiteral value: String) { self.init(value) }
}

/// One request as the kernel would send it, before its header. Arguments
/// are laid out with <linux/fuse.h>'s own structs (protocol 7.31 sizes).
public enum Request: Sendable {
    case lookup(parent: UInt64, name: Name)
    /// No reply.
    case forget(ino: UInt64, lookups: UInt64)
    case getattr(ino: UInt64)
    case setattr(ino: UInt64, SetAttributes)
    case readlink(ino: UInt64)
    case symlink(parent: UInt64, name: Name, target: Name)
    case mknod(parent: UInt64, name: Name, mode: FileMode)
    case mkdir(parent: UInt64, name: Name, mode: FileMode)
    case unlink(parent: UInt64, name: Name)
    case rmdir(parent: UInt64, name: Name)
    case rename(parent: UInt64, name: Name, newParent: UInt64, newName: Name)
    case link(ino: UInt64, newParent: UInt64, newName: Name)
    case open(ino: UInt64, flags: Int32)
    case create(parent: UInt64, name: Name, mode: FileMode, flags: Int32)
    case read(ino: UInt64, fh: UInt64, offset: UInt64 = 0, size: UInt32, flags: Int32 = 0 /* O_RDONLY */)
    case write(ino: UInt64, fh: UInt64, offset: UInt64 = 0, data: [UInt8], flags: Int32 = 1 /* O_WRONLY */)
    case flush(ino: UInt64, fh: UInt64)
    case release(ino: UInt64, fh: UInt64, flags: Int32 = 0)
    case fsync(ino: UInt64, fh: UInt64)
    case opendir(ino: UInt64)
    case readdir(ino: UInt64, fh: UInt64, offset: UInt64 = 0, size: UInt32 = 4096)
    case releasedir(ino: UInt64, fh: UInt64)
    case statfs
    case getxattr(ino: UInt64, name: Name, size: UInt32)
    case listxattr(ino: UInt64, size: UInt32)
    case lseek(ino: UInt64, fh: UInt64, offset: Int64, whence: Int32)
    /// `scheduleNotify`: FUSE_POLL_SCHEDULE_NOTIFY, asking for a
    /// notification carrying `kh` when the file's state changes.
    case poll(ino: UInt64, fh: UInt64, kh: UInt64, scheduleNotify: Bool, events: UInt32 = 5 /* POLLIN | POLLOUT */)
    /// FUSE_INTERRUPT of the request `unique`.
    case interrupt(unique: UInt64)
    case initialize(major: UInt32, minor: UInt32, flags: UInt32)

    /// Which changes a FUSE_SETATTR carries (FATTR_* bits) and their values.
    public struct SetAttributes: Sendable {
        public var mode: FileMode?
        public var uid: UserID?
        public var gid: GroupID?
        public var size: UInt64?
        public var atime: Timestamp?
        public var mtime: Timestamp?

        public init(mode: FileMode? = nil, uid: UserID? = nil, gid: GroupID? = nil, size: UInt64? = nil,
                    atime: Timestamp? = nil, mtime: Timestamp? = nil) {
            self.mode = mode
            self.uid = uid
            self.gid = gid
            self.size = size
            self.atime = atime
            self.mtime = mtime
        }
    }

    var opcode: fuse_opcode {
        switch self {
        case .lookup: FUSE_LOOKUP
        case .forget: FUSE_FORGET
        case .getattr: FUSE_GETATTR
        case .setattr: FUSE_SETATTR
        case .readlink: FUSE_READLINK
        case .symlink: FUSE_SYMLINK
        case .mknod: FUSE_MKNOD
        case .mkdir: FUSE_MKDIR
        case .unlink: FUSE_UNLINK
        case .rmdir: FUSE_RMDIR
        case .rename: FUSE_RENAME
        case .link: FUSE_LINK
        case .open: FUSE_OPEN
        case .create: FUSE_CREATE
        case .read: FUSE_READ
        case .write: FUSE_WRITE
        case .flush: FUSE_FLUSH
        case .release: FUSE_RELEASE
        case .fsync: FUSE_FSYNC
        case .opendir: FUSE_OPENDIR
        case .readdir: FUSE_READDIR
        case .releasedir: FUSE_RELEASEDIR
        case .statfs: FUSE_STATFS
        case .getxattr: FUSE_GETXATTR
        case .listxattr: FUSE_LISTXATTR
        case .lseek: FUSE_LSEEK
        case .poll: FUSE_POLL
        case .interrupt: FUSE_INTERRUPT
        case .initialize: FUSE_INIT
        }
    }

    /// The inode the header names (`nodeid`).
    var nodeID: UInt64 {
        switch self {
        case .lookup(let parent, _), .symlink(let parent, _, _), .mknod(let parent, _, _), .mkdir(let parent, _, _),
             .unlink(let parent, _), .rmdir(let parent, _), .rename(let parent, _, _, _), .create(let parent, _, _, _):
            parent
        case .link(_, let newParent, _): newParent
        case .forget(let ino, _), .getattr(let ino), .setattr(let ino, _), .readlink(let ino), .open(let ino, _),
             .read(let ino, _, _, _, _), .write(let ino, _, _, _, _), .flush(let ino, _), .release(let ino, _, _),
             .fsync(let ino, _), .opendir(let ino), .readdir(let ino, _, _, _), .releasedir(let ino, _),
             .getxattr(let ino, _, _), .listxattr(let ino, _), .lseek(let ino, _, _, _), .poll(let ino, _, _, _, _):
            ino
        case .statfs: 1
        case .interrupt, .initialize: 0
        }
    }

    /// The bytes after the header.
    var arguments: [UInt8] {
        switch self {
        case .lookup(_, let name), .unlink(_, let name), .rmdir(_, let name):
            return name.terminated
        case .forget(_, let lookups):
            return bytes(of: fuse_forget_in(nlookup: lookups))
        case .getattr:
            return bytes(of: fuse_getattr_in())
        case .setattr(_, let change):
            var arg = fuse_setattr_in()
            if let mode = change.mode { arg.valid |= UInt32(FATTR_MODE); arg.mode = mode.rawValue }
            if let uid = change.uid { arg.valid |= UInt32(FATTR_UID); arg.uid = uid.rawValue }
            if let gid = change.gid { arg.valid |= UInt32(FATTR_GID); arg.gid = gid.rawValue }
            if let size = change.size { arg.valid |= UInt32(FATTR_SIZE); arg.size = size }
            if let t = change.atime {
                arg.valid |= UInt32(FATTR_ATIME)
                arg.atime = UInt64(bitPattern: t.seconds)
                arg.atimensec = UInt32(t.nanoseconds)
            }
            if let t = change.mtime {
                arg.valid |= UInt32(FATTR_MTIME)
                arg.mtime = UInt64(bitPattern: t.seconds)
                arg.mtimensec = UInt32(t.nanoseconds)
            }
            return bytes(of: arg)
        case .readlink, .statfs:
            return []
        case .symlink(_, let name, let target):
            // libfuse reads the new name first, then the link's target.
            return name.terminated + target.terminated
        case .mknod(_, let name, let mode):
            return bytes(of: fuse_mknod_in(mode: mode.rawValue, rdev: 0, umask: 0, padding: 0)) + name.terminated
        case .mkdir(_, let name, let mode):
            return bytes(of: fuse_mkdir_in(mode: mode.rawValue, umask: 0)) + name.terminated
        case .rename(_, let name, let newParent, let newName):
            return bytes(of: fuse_rename_in(newdir: newParent)) + name.terminated + newName.terminated
        case .link(let ino, _, let newName):
            return bytes(of: fuse_link_in(oldnodeid: ino)) + newName.terminated
        case .open(_, let flags):
            return bytes(of: fuse_open_in(flags: UInt32(bitPattern: flags), open_flags: 0))
        case .opendir:
            return bytes(of: fuse_open_in(flags: UInt32(O_RDONLY | O_DIRECTORY), open_flags: 0))
        case .create(_, let name, let mode, let flags):
            var arg = fuse_create_in()
            arg.flags = UInt32(bitPattern: flags)
            arg.mode = mode.rawValue
            return bytes(of: arg) + name.terminated
        case .read(_, let fh, let offset, let size, let flags):
            return bytes(of: readIn(fh: fh, offset: offset, size: size, flags: flags))
        case .readdir(_, let fh, let offset, let size):
            return bytes(of: readIn(fh: fh, offset: offset, size: size, flags: O_RDONLY | O_DIRECTORY))
        case .write(_, let fh, let offset, let data, let flags):
            var arg = fuse_write_in()
            arg.fh = fh
            arg.offset = offset
            arg.size = UInt32(data.count)
            arg.flags = UInt32(bitPattern: flags)
            return bytes(of: arg) + data
        case .flush(_, let fh):
            var arg = fuse_flush_in()
            arg.fh = fh
            return bytes(of: arg)
        case .release(_, let fh, let flags):
            var arg = fuse_release_in()
            arg.fh = fh
            arg.flags = UInt32(bitPattern: flags)
            return bytes(of: arg)
        case .releasedir(_, let fh):
            var arg = fuse_release_in()
            arg.fh = fh
            return bytes(of: arg)
        case .fsync(_, let fh):
            var arg = fuse_fsync_in()
            arg.fh = fh
            return bytes(of: arg)
        case .getxattr(_, let name, let size):
            return bytes(of: fuse_getxattr_in(size: size, padding: 0)) + name.terminated
        case .listxattr(_, let size):
            return bytes(of: fuse_getxattr_in(size: size, padding: 0))
        case .lseek(_, let fh, let offset, let whence):
            return bytes(of: fuse_lseek_in(fh: fh, offset: UInt64(bitPattern: offset), whence: UInt32(bitPattern: whence), padding: 0))
        case .poll(_, let fh, let kh, let scheduleNotify, let events):
            return bytes(of: fuse_poll_in(
                fh: fh, kh: kh, flags: scheduleNotify ? UInt32(FUSE_POLL_SCHEDULE_NOTIFY) : 0, events: events))
        case .interrupt(let unique):
            return bytes(of: fuse_interrupt_in(unique: unique))
        case .initialize(let major, let minor, let flags):
            var arg = fuse_init_in()
            arg.major = major
            arg.minor = minor
            arg.max_readahead = 128 * 1024
            arg.flags = flags
            return bytes(of: arg)
        }
    }

    /// The whole request: fuse_in_header, then the arguments.
    func encoded(unique: UInt64, caller: Caller, pid: UInt32) -> [UInt8] {
        let body = arguments
        var header = fuse_in_header()
        header.len = UInt32(MemoryLayout<fuse_in_header>.size + body.count)
        header.opcode = opcode.rawValue
        header.unique = unique
        header.nodeid = nodeID
        header.uid = caller.uid.rawValue
        header.gid = caller.gid.rawValue
        header.pid = pid
        return bytes(of: header) + body
    }
}

private func readIn(fh: UInt64, offset: UInt64, size: UInt32, flags: Int32) -> fuse_read_in {
    var arg = fuse_read_in()
    arg.fh = fh
    arg.offset = offset
    arg.size = size
    arg.flags = UInt32(bitPattern: flags)
    return arg
}

extension Name {
    var terminated: [UInt8] { bytes + [0] }
}

func bytes<T>(of value: T) -> [UInt8] {
    withUnsafeBytes(of: value) { Array($0) }
}
