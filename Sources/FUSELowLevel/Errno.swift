import Glibc

/// A POSIX error number, as a FUSE reply carries it (positive; libfuse
/// negates it on the wire).
public struct Errno: RawRepresentable, Hashable, Sendable, CustomStringConvertible {
    public var rawValue: Int32

    public init(rawValue: Int32) { self.rawValue = rawValue }
    public init(_ rawValue: Int32) { self.rawValue = rawValue }

    public static let permission = Errno(EPERM)
    public static let noEntry = Errno(ENOENT)
    public static let interrupted = Errno(EINTR)
    public static let io = Errno(EIO)
    public static let noDevice = Errno(ENXIO)
    public static let tooBig = Errno(E2BIG)
    public static let badFileDescriptor = Errno(EBADF)
    public static let wouldBlock = Errno(EAGAIN)
    public static let noMemory = Errno(ENOMEM)
    public static let access = Errno(EACCES)
    public static let fault = Errno(EFAULT)
    public static let busy = Errno(EBUSY)
    public static let exists = Errno(EEXIST)
    public static let crossDevice = Errno(EXDEV)
    public static let notDirectory = Errno(ENOTDIR)
    public static let isDirectory = Errno(EISDIR)
    public static let invalid = Errno(EINVAL)
    public static let tooManyOpenFiles = Errno(EMFILE)
    public static let fileTooLarge = Errno(EFBIG)
    public static let noSpace = Errno(ENOSPC)
    public static let illegalSeek = Errno(ESPIPE)
    public static let readOnlyFilesystem = Errno(EROFS)
    public static let tooManyLinks = Errno(EMLINK)
    public static let brokenPipe = Errno(EPIPE)
    public static let range = Errno(ERANGE)
    public static let nameTooLong = Errno(ENAMETOOLONG)
    public static let notImplemented = Errno(ENOSYS)
    public static let notEmpty = Errno(ENOTEMPTY)
    public static let noData = Errno(ENODATA)
    public static let messageTooLong = Errno(EMSGSIZE)
    public static let notSupported = Errno(EOPNOTSUPP)
    public static let notConnected = Errno(ENOTCONN)
    public static let timedOut = Errno(ETIMEDOUT)
    public static let canceled = Errno(ECANCELED)
    public static let protocolError = Errno(EPROTO)
    public static let overflow = Errno(EOVERFLOW)
    public static let noBufferSpace = Errno(ENOBUFS)

    public var description: String {
        guard let text = strerror(rawValue) else { return "errno \(rawValue)" }
        return String(cString: text)
    }
}
