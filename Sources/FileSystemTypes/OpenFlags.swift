import Glibc
public import SystemPackage

/// open(2)'s flags as a request carries them: at open, and again on every
/// read and write, where they show the open file's flags at that moment (an
/// O_NONBLOCK set later by fcntl(2) is seen).
public struct OpenFlags: RawRepresentable, Sendable, Hashable {
    public var rawValue: Int32

    public init(rawValue: Int32) { self.rawValue = rawValue }

    public init(_ accessMode: FileDescriptor.AccessMode, _ options: FileDescriptor.OpenOptions = []) {
        rawValue = accessMode.rawValue | options.rawValue
    }

    public var accessMode: FileDescriptor.AccessMode { FileDescriptor.AccessMode(rawValue: rawValue & O_ACCMODE) }
    public var options: FileDescriptor.OpenOptions { FileDescriptor.OpenOptions(rawValue: rawValue & ~O_ACCMODE) }

    /// Opened for reading (O_RDONLY or O_RDWR).
    public var reads: Bool { accessMode != .writeOnly }
    /// Opened for writing (O_WRONLY or O_RDWR).
    public var writes: Bool { accessMode != .readOnly }
    public var isNonBlocking: Bool { options.contains(.nonBlocking) }
}
