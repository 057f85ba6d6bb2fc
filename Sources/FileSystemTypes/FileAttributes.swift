public import SystemPackage

/// What `stat(2)` shows for one inode: the one Swift shape of attributes,
/// from the filesystem that makes them to the FUSE layer that turns them into
/// `struct stat`.
public struct FileAttributes: Sendable, Equatable {
    public var ino: UInt64
    /// File type and permission bits.
    public var mode: FileMode
    public var linkCount: UInt32
    public var uid: UserID
    public var gid: GroupID
    public var size: UInt64
    public var atime: Timestamp
    public var mtime: Timestamp
    public var ctime: Timestamp
    /// Device number, for device nodes only.
    public var rdev: UInt32
    /// Preferred I/O size that `stat(2)` reports.
    public var blockSize: UInt32

    public init(
        ino: UInt64, mode: FileMode, linkCount: UInt32, uid: UserID, gid: GroupID, size: UInt64 = 0,
        atime: Timestamp, mtime: Timestamp, ctime: Timestamp,
        rdev: UInt32 = 0, blockSize: UInt32 = 4096
    ) {
        self.ino = ino
        self.mode = mode
        self.linkCount = linkCount
        self.uid = uid
        self.gid = gid
        self.size = size
        self.atime = atime
        self.mtime = mtime
        self.ctime = ctime
        self.rdev = rdev
        self.blockSize = blockSize
    }
}
