import CFuseKernel
public import FileSystemTypes
public import FUSELowLevel
import Glibc
public import SystemPackage

/// A reply as the kernel would read it from /dev/fuse, decoded by the
/// request's opcode with <linux/fuse.h>'s structs.
public enum WireReply: Sendable, Equatable {
    /// fuse_out_header.error, negated back to an errno.
    case error(Errno)
    /// A header and nothing else (unlink, release, flush, ...).
    case ok
    case entry(WireEntry)
    case attributes(WireAttributes, timeout: Double)
    case opened(WireOpen)
    case created(WireEntry, WireOpen)
    case data([UInt8])
    case written(UInt32)
    case directory([WireDirent])
    case statfs(FilesystemStatistics)
    case poll(PollEvents)
    /// getxattr/listxattr asked with size 0: the size needed.
    case xattrSize(UInt32)
    case offset(Int64)
    case initialized(major: UInt32, minor: UInt32, flags: UInt32, maxWrite: UInt32)
    /// A body this decoder cannot read as the opcode's reply (wrong length).
    case malformed(opcode: UInt32, body: [UInt8])
}

/// struct fuse_entry_out.
public struct WireEntry: Sendable, Equatable {
    public var nodeID: UInt64
    public var generation: UInt64
    public var entryTimeout: Double
    public var attributeTimeout: Double
    public var attributes: WireAttributes

    public init(nodeID: UInt64, generation: UInt64, entryTimeout: Double, attributeTimeout: Double, attributes: WireAttributes) {
        self.nodeID = nodeID
        self.generation = generation
        self.entryTimeout = entryTimeout
        self.attributeTimeout = attributeTimeout
        self.attributes = attributes
    }
}

/// struct fuse_attr, field by field.
public struct WireAttributes: Sendable, Equatable {
    public var attributes: FileAttributes
    /// st_blocks, in 512-byte units.
    public var blocks: UInt64

    public init(attributes: FileAttributes, blocks: UInt64) {
        self.attributes = attributes
        self.blocks = blocks
    }
}

/// struct fuse_open_out: the file handle and FOPEN_* bits.
public struct WireOpen: Sendable, Equatable {
    public var fh: UInt64
    public var flags: UInt32

    public init(fh: UInt64, flags: UInt32) {
        self.fh = fh
        self.flags = flags
    }

    public static let directIO = UInt32(FOPEN_DIRECT_IO)
    public static let keepCache = UInt32(FOPEN_KEEP_CACHE)
    public static let nonseekable = UInt32(FOPEN_NONSEEKABLE)
    public static let cacheDirectory = UInt32(FOPEN_CACHE_DIR)
    public static let stream = UInt32(FOPEN_STREAM)
    public static let noFlush = UInt32(FOPEN_NOFLUSH)
}

/// One struct fuse_dirent of a readdir reply.
public struct WireDirent: Sendable, Equatable {
    public var ino: UInt64
    /// The offset the kernel hands back to continue after this entry.
    public var nextOffset: UInt64
    /// DT_* (d_type).
    public var type: UInt32
    public var name: String

    public init(ino: UInt64, nextOffset: UInt64, type: UInt32, name: String) {
        self.ino = ino
        self.nextOffset = nextOffset
        self.type = type
        self.name = name
    }
}

/// A message with unique 0: the filesystem tells the kernel something.
public enum WireNotification: Sendable, Equatable {
    /// FUSE_NOTIFY_POLL: poll the file whose poll request carried `kh` again.
    case poll(kh: UInt64)
    case other(code: Int32, body: [UInt8])
}

extension WireReply {
    /// `body` follows the fuse_out_header; `size` is the size the request
    /// asked for, where the reply's form depends on it (xattrs).
    init(opcode: UInt32, error: Int32, body: [UInt8], size: UInt32) {
        if error != 0 {
            self = .error(Errno(rawValue: -error))
            return
        }
        let malformed = WireReply.malformed(opcode: opcode, body: body)
        switch fuse_opcode(rawValue: opcode) {
        case FUSE_LOOKUP, FUSE_MKNOD, FUSE_MKDIR, FUSE_SYMLINK, FUSE_LINK:
            guard let out = body.load(fuse_entry_out.self, exactly: true) else { self = malformed; return }
            self = .entry(WireEntry(out))
        case FUSE_GETATTR, FUSE_SETATTR:
            guard let out = body.load(fuse_attr_out.self, exactly: true) else { self = malformed; return }
            self = .attributes(WireAttributes(out.attr), timeout: seconds(out.attr_valid, out.attr_valid_nsec))
        case FUSE_OPEN, FUSE_OPENDIR:
            guard let out = body.load(fuse_open_out.self, exactly: true) else { self = malformed; return }
            self = .opened(WireOpen(fh: out.fh, flags: out.open_flags))
        case FUSE_CREATE:
            let entrySize = MemoryLayout<fuse_entry_out>.size
            guard body.count == entrySize + MemoryLayout<fuse_open_out>.size,
                  let entry = body.load(fuse_entry_out.self, exactly: false),
                  let open = Array(body[entrySize...]).load(fuse_open_out.self, exactly: true)
            else { self = malformed; return }
            self = .created(WireEntry(entry), WireOpen(fh: open.fh, flags: open.open_flags))
        case FUSE_READ, FUSE_READLINK:
            self = .data(body)
        case FUSE_WRITE:
            guard let out = body.load(fuse_write_out.self, exactly: true) else { self = malformed; return }
            self = .written(out.size)
        case FUSE_READDIR:
            guard let entries = decodeDirents(body) else { self = malformed; return }
            self = .directory(entries)
        case FUSE_STATFS:
            guard let out = body.load(fuse_statfs_out.self, exactly: true) else { self = malformed; return }
            let st = out.st
            self = .statfs(FilesystemStatistics(
                blockSize: UInt64(st.bsize), fragmentSize: UInt64(st.frsize), blocks: st.blocks,
                blocksFree: st.bfree, blocksAvailable: st.bavail, files: st.files, filesFree: st.ffree,
                nameMax: UInt64(st.namelen)))
        case FUSE_POLL:
            guard let out = body.load(fuse_poll_out.self, exactly: true) else { self = malformed; return }
            self = .poll(PollEvents(rawValue: out.revents))
        case FUSE_GETXATTR, FUSE_LISTXATTR:
            if size == 0 {
                guard let out = body.load(fuse_getxattr_out.self, exactly: true) else { self = malformed; return }
                self = .xattrSize(out.size)
            } else {
                self = .data(body)
            }
        case FUSE_LSEEK:
            guard let out = body.load(fuse_lseek_out.self, exactly: true) else { self = malformed; return }
            self = .offset(Int64(bitPattern: out.offset))
        case FUSE_INIT:
            guard let out = body.load(fuse_init_out.self, exactly: false) else { self = malformed; return }
            self = .initialized(major: out.major, minor: out.minor, flags: out.flags, maxWrite: out.max_write)
        default:
            self = body.isEmpty ? .ok : malformed
        }
    }
}

extension WireEntry {
    init(_ out: fuse_entry_out) {
        nodeID = out.nodeid
        generation = out.generation
        entryTimeout = seconds(out.entry_valid, out.entry_valid_nsec)
        attributeTimeout = seconds(out.attr_valid, out.attr_valid_nsec)
        attributes = WireAttributes(out.attr)
    }
}

extension WireAttributes {
    init(_ a: fuse_attr) {
        attributes = FileAttributes(
            ino: a.ino, mode: FileMode(rawValue: a.mode), linkCount: a.nlink, uid: UserID(rawValue: a.uid),
            gid: GroupID(rawValue: a.gid), size: a.size,
            atime: Timestamp(seconds: Int64(bitPattern: a.atime), nanoseconds: Int64(a.atimensec)),
            mtime: Timestamp(seconds: Int64(bitPattern: a.mtime), nanoseconds: Int64(a.mtimensec)),
            ctime: Timestamp(seconds: Int64(bitPattern: a.ctime), nanoseconds: Int64(a.ctimensec)),
            rdev: a.rdev, blockSize: a.blksize)
        blocks = a.blocks
    }
}

private func seconds(_ whole: UInt64, _ nanoseconds: UInt32) -> Double {
    Double(whole) + Double(nanoseconds) / 1e9
}

/// fuse_dirent records, each padded to 8 bytes (FUSE_DIRENT_ALIGN).
private func decodeDirents(_ body: [UInt8]) -> [WireDirent]? {
    let headerSize = MemoryLayout<fuse_dirent>.size
    var entries: [WireDirent] = []
    var at = 0
    while at < body.count {
        guard body.count - at >= headerSize,
              let dirent = Array(body[at..<at + headerSize]).load(fuse_dirent.self, exactly: true)
        else { return nil }
        let nameEnd = at + headerSize + Int(dirent.namelen)
        guard nameEnd <= body.count else { return nil }
        let name = String(decoding: body[(at + headerSize)..<nameEnd], as: UTF8.self)
        entries.append(WireDirent(ino: dirent.ino, nextOffset: dirent.off, type: dirent.type, name: name))
        at = (nameEnd + 7) & ~7
    }
    return entries
}

extension Array where Element == UInt8 {
    /// The bytes as a `T`; `exactly`: only if there are no more bytes than
    /// a `T` (else at least that many).
    func load<T>(_ type: T.Type, exactly: Bool) -> T? {
        let size = MemoryLayout<T>.size
        guard exactly ? count == size : count >= size else { return nil }
        return withUnsafeBytes { $0.loadUnaligned(as: T.self) }
    }
}
