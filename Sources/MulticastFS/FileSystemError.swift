public import DeliveryCore
import Glibc

/// An errno, as the filesystem answers it.
public struct FileSystemError: Error, Hashable, Sendable, CustomStringConvertible {
    public let errno: Int32

    public init(errno: Int32) { self.errno = errno }

    public static let noEntry = FileSystemError(errno: ENOENT)
    public static let exists = FileSystemError(errno: EEXIST)
    public static let notEmpty = FileSystemError(errno: ENOTEMPTY)
    public static let invalid = FileSystemError(errno: EINVAL)
    public static let notPermitted = FileSystemError(errno: EPERM)
    public static let accessDenied = FileSystemError(errno: EACCES)
    public static let nameTooLong = FileSystemError(errno: ENAMETOOLONG)
    public static let wouldBlock = FileSystemError(errno: EAGAIN)
    public static let interrupted = FileSystemError(errno: EINTR)
    public static let messageTooLong = FileSystemError(errno: EMSGSIZE)
    public static let brokenPipe = FileSystemError(errno: EPIPE)
    public static let notConnected = FileSystemError(errno: ENOTCONN)
    public static let notDirectory = FileSystemError(errno: ENOTDIR)
    public static let isDirectory = FileSystemError(errno: EISDIR)
    public static let badFile = FileSystemError(errno: EBADF)

    public var description: String { String(cString: strerror(errno)) }

    /// Every error of the delivery core, as an errno. No `default`: a new
    /// core error must be given its errno here.
    public init(_ error: DeliveryError) {
        switch error {
        case .wouldBlock: self = .wouldBlock
        case .messageTooLarge: self = .messageTooLong
        case .sendNotPermitted: self = .notPermitted
        // The other end is gone: the member left, or its group was removed.
        case .senderLeft, .groupClosed: self = .brokenPipe
        case .cancelled: self = .interrupted
        case .groupHasMembers: self = .notEmpty
        case .memberExists: self = .exists
        // The contract: a ctl command naming a missing member, or a bad value.
        case .noSuchMember, .invalidSetting: self = .invalid
        // The daemon is going away; after unmount, clients see ENOTCONN too.
        case .shutDown: self = .notConnected
        }
    }
}
