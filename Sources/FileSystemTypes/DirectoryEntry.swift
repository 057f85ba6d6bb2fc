public import SystemPackage

/// One entry of a directory listing.
public struct DirectoryEntry: Sendable, Equatable {
    public var name: String
    public var ino: UInt64
    /// Gives readdir's d_type.
    public var type: FileType

    public init(name: String, ino: UInt64, type: FileType) {
        self.name = name
        self.ino = ino
        self.type = type
    }
}
