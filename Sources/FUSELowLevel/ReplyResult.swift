import Glibc
public import SystemPackage

/// What became of an answer. Anything but `.sent` means the caller's data did
/// not reach the requester: undo whatever the answer consumed (for example,
/// put a message back).
public enum ReplyResult: Sendable, Equatable {
    /// The kernel accepted the reply.
    case sent
    /// The kernel no longer knows the request (`fuse_reply_*` returned
    /// -ENOENT): it was interrupted and abandoned, or its caller died.
    case requestGone
    /// The request had already been answered — usually by this layer (EINTR
    /// after an interrupt, or `FUSESession.failPending`).
    case alreadyAnswered
    /// The session is unmounting or destroyed; nothing was sent.
    case sessionClosed
    /// The kernel refused the reply for another reason (e.g. EINVAL: a read
    /// reply longer than asked).
    case failed(Errno)

    public var delivered: Bool { self == .sent }

    init(returnCode rc: Int32) {
        switch rc {
        case 0: self = .sent
        case -ENOENT: self = .requestGone
        default: self = .failed(Errno(rawValue: rc < 0 ? -rc : rc))
        }
    }
}
