public import SystemPackage

/// A time to set in `setattr`: the current time or a given one.
public enum TimeChange: Sendable, Equatable {
    case now
    case at(Timestamp)
}

/// What a `setattr` request (chmod, chown, truncate, utimensat) asks to
/// change. A nil field is left alone.
public struct AttributeChanges: Sendable, Equatable {
    /// chmod(2): permission bits, with set-user-ID, set-group-ID and sticky.
    public var permissions: FilePermissions?
    public var uid: UserID?
    public var gid: GroupID?
    /// truncate(2)/ftruncate(2), or O_TRUNC on open.
    public var size: UInt64?
    public var atime: TimeChange?
    public var mtime: TimeChange?
    public var ctime: Timestamp?
    /// The kernel asks to clear set-user-ID (FUSE_SET_ATTR_KILL_SUID).
    public var killSetUID: Bool
    /// The kernel asks to clear set-group-ID (FUSE_SET_ATTR_KILL_SGID).
    public var killSetGID: Bool

    public init(
        permissions: FilePermissions? = nil, uid: UserID? = nil, gid: GroupID? = nil, size: UInt64? = nil,
        atime: TimeChange? = nil, mtime: TimeChange? = nil, ctime: Timestamp? = nil,
        killSetUID: Bool = false, killSetGID: Bool = false
    ) {
        self.permissions = permissions
        self.uid = uid
        self.gid = gid
        self.size = size
        self.atime = atime
        self.mtime = mtime
        self.ctime = ctime
        self.killSetUID = killSetUID
        self.killSetGID = killSetGID
    }

    public var isEmpty: Bool { self == AttributeChanges() }
}
