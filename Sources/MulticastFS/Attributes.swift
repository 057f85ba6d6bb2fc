import Glibc

public typealias InodeNumber = UInt64

/// Who makes a request.
public struct Caller: Sendable, Equatable {
    public var uid: UInt32
    public var gid: UInt32

    public init(uid: UInt32, gid: UInt32) {
        self.uid = uid
        self.gid = gid
    }
}

public struct Timestamp: Sendable, Equatable {
    public var seconds: Int64
    public var nanoseconds: Int64

    public init(seconds: Int64, nanoseconds: Int64) {
        self.seconds = seconds
        self.nanoseconds = nanoseconds
    }

    public static func now() -> Timestamp {
        var time = timespec()
        clock_gettime(CLOCK_REALTIME, &time)
        return Timestamp(seconds: Int64(time.tv_sec), nanoseconds: Int64(time.tv_nsec))
    }
}

/// What an entry is.
public enum EntryKind: Sendable, Equatable {
    case root, group, send, control, status, member

    public var isDirectory: Bool { self == .root || self == .group }
}

/// What `stat` shows of an entry.
public struct Attributes: Sendable, Equatable {
    public var ino: InodeNumber
    public var kind: EntryKind
    /// Permission bits, with setuid, setgid and sticky (07777).
    public var permissions: UInt32
    public var uid: UInt32
    public var gid: UInt32
    public var links: UInt32
    public var atime: Timestamp
    public var mtime: Timestamp
    public var ctime: Timestamp

    /// Every entry is size 0: members and `send` are streams, and `status`
    /// is made at open.
    public var size: UInt64 { 0 }

    /// `st_mode`: file type and permissions.
    public var mode: UInt32 {
        (kind.isDirectory ? UInt32(S_IFDIR) : UInt32(S_IFREG)) | permissions
    }
}

/// What lookup, mkdir, create and mknod give the kernel.
public struct Entry: Sendable, Equatable {
    /// The kernel's handle for the entry (the FUSE node id). For `send` and
    /// members it is new on every lookup: see `Namespace.reference`.
    public var nodeID: InodeNumber
    public var attributes: Attributes
    /// False when the kernel must not cache the name (a new node id each time).
    public var cacheable: Bool
}

/// What a `setattr` asks to change.
public struct AttributeChanges: Sendable, Equatable {
    public enum Time: Sendable, Equatable {
        case now
        case at(Timestamp)
    }

    public var permissions: UInt32?
    public var uid: UInt32?
    public var gid: UInt32?
    public var size: UInt64?
    public var atime: Time?
    public var mtime: Time?

    public init(permissions: UInt32? = nil, uid: UInt32? = nil, gid: UInt32? = nil,
                size: UInt64? = nil, atime: Time? = nil, mtime: Time? = nil) {
        self.permissions = permissions
        self.uid = uid
        self.gid = gid
        self.size = size
        self.atime = atime
        self.mtime = mtime
    }
}

/// One directory entry, for readdir.
public struct DirectoryEntry: Sendable, Equatable {
    public var name: String
    public var ino: InodeNumber
    public var kind: EntryKind
}
