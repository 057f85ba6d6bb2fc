public import FileSystemTypes
public import SystemPackage

public typealias InodeNumber = UInt64

/// What an entry is.
public enum EntryKind: Sendable, Equatable {
    case root, group, send, control, status, member, frames
    /// `ROOT/.metrics`.
    case metrics
    /// `G/peers/` and a member's peer file in it.
    case peers, peer

    public var isDirectory: Bool { self == .root || self == .group || self == .frames || self == .peers }

    /// As `stat` and readdir show it.
    public var fileType: FileType { isDirectory ? .directory : .regular }
}

/// What lookup, mkdir, create and mknod give the kernel.
public struct Entry: Sendable, Equatable {
    /// The kernel's handle for the entry (the FUSE node id). For `send` and
    /// members it is new on every lookup: see `Namespace.reference`.
    public var nodeID: InodeNumber
    /// Every entry is size 0: members and `send` are streams, and `status`
    /// is made at open.
    public var attributes: FileAttributes
    /// False when the kernel must not cache the name (a new node id each time).
    public var cacheable: Bool
}
