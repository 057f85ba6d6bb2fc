import Glibc

/// poll(2) event bits, as a poll reply and a poll request carry them.
public struct PollEvents: OptionSet, Sendable, Hashable {
    public var rawValue: UInt32
    public init(rawValue: UInt32) { self.rawValue = rawValue }

    public static let readable = PollEvents(rawValue: UInt32(POLLIN))
    public static let priority = PollEvents(rawValue: UInt32(POLLPRI))
    public static let writable = PollEvents(rawValue: UInt32(POLLOUT))
    public static let error = PollEvents(rawValue: UInt32(POLLERR))
    public static let hangUp = PollEvents(rawValue: UInt32(POLLHUP))
    public static let invalid = PollEvents(rawValue: UInt32(POLLNVAL))
    public static let readNormal = PollEvents(rawValue: UInt32(POLLRDNORM))
    public static let writeNormal = PollEvents(rawValue: UInt32(POLLWRNORM))
}
