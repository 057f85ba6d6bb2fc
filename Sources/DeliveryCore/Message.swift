/// One message: a header and its payload in a single allocation.
///
/// A message is stored once, however many queues it enters: every queue holds
/// this 8-byte reference, so a message queued for 64 members costs its payload
/// once plus 64 pointers. Its metadata (sequence, time, the writer's
/// credentials, the sending member's name) lives in the same allocation.
///
/// A message is meant to be sent once: the group stamps its metadata when it
/// accepts it, so sending the same message again restamps it.
public struct Message: @unchecked Sendable {
    // @unchecked Sendable: the payload and credentials are written once, before
    // the message is published; the acceptance stamp (sequence, time, sender
    // name) is written under the group's lock before any other thread can
    // reach the message, and read after taking that lock, or after being
    // handed the message by a completion that ran after that lock.
    let storage: MessageStorage

    /// Copies `bytes` into a new message written by `credentials` (the
    /// writer's, as the kernel gave them to the front end; zero for
    /// in-process senders).
    public init(copying bytes: UnsafeRawBufferPointer, credentials: Credentials = Credentials()) {
        let buffer = MessageStorage.create(minimumCapacity: bytes.count) { _ in
            MessageHeader(count: bytes.count, credentials: credentials)
        }
        storage = unsafeDowncast(buffer, to: MessageStorage.self)
        if let base = bytes.baseAddress, bytes.count > 0 {
            storage.withUnsafeMutablePointerToElements { elements in
                elements.initialize(from: base.assumingMemoryBound(to: UInt8.self), count: bytes.count)
            }
        }
    }

    public init(_ bytes: some Collection<UInt8>, credentials: Credentials = Credentials()) {
        self = Array(bytes).withUnsafeBytes { Message(copying: $0, credentials: credentials) }
    }

    // The header is reached through its pointer: `ManagedBuffer.header` is a
    // class property, and its dynamic exclusivity checks cost more than a
    // whole delivery. The rules in the type's comment make these accesses safe.

    /// Payload length in bytes.
    public var count: Int { storage.withUnsafeMutablePointerToHeader { $0.pointee.count } }

    /// The group sequence number, given when the group accepted the message
    /// (0 before that). Increases by one per accepted message of a group.
    public var sequence: UInt64 { storage.withUnsafeMutablePointerToHeader { $0.pointee.sequence } }

    /// CLOCK_REALTIME in nanoseconds when the group accepted the message (0
    /// before that). Never decreases from one sequence number to the next.
    public var time: UInt64 { storage.withUnsafeMutablePointerToHeader { $0.pointee.time } }

    /// Who wrote the message, as given when it was made.
    public var credentials: Credentials { storage.withUnsafeMutablePointerToHeader { $0.pointee.credentials } }

    /// The name of the member that sent it; nil for an anonymous send (and
    /// before the group accepted it).
    public var senderName: String? { storage.withUnsafeMutablePointerToHeader { $0.pointee.senderName } }

    /// True for a message sent to one member alone (a private message, sent
    /// with `Group.sendPrivate`; set when the group accepts it).
    public var isPrivate: Bool { storage.withUnsafeMutablePointerToHeader { $0.pointee.isPrivate } }

    /// Under the group lock, before the message is published. `senderName` is
    /// the member's own String: a reference (or, for short names, inline
    /// bytes), never a copy of the characters.
    @inline(__always)
    package func stamp(sequence: UInt64, time: UInt64, senderName: String?, isPrivate: Bool = false) {
        storage.withUnsafeMutablePointerToHeader { header in
            header.pointee.sequence = sequence
            header.pointee.time = time
            header.pointee.senderName = senderName
            header.pointee.isPrivate = isPrivate
        }
    }

    /// True when both are the same stored message.
    public func isSame(as other: Message) -> Bool { storage === other.storage }

    public func withUnsafeBytes<R, E: Error>(
        _ body: (UnsafeRawBufferPointer) throws(E) -> R
    ) throws(E) -> R {
        let count = self.count
        let result: Result<R, E> = storage.withUnsafeMutablePointerToElements { elements in
            do throws(E) {
                return .success(try body(UnsafeRawBufferPointer(start: elements, count: count)))
            } catch {
                return .failure(error)
            }
        }
        return try result.get()
    }

    /// A copy of the payload, for tests and small messages.
    public var bytes: [UInt8] { withUnsafeBytes { Array($0) } }
}

final class MessageStorage: ManagedBuffer<MessageHeader, UInt8> {}

/// The metadata stored with a message's payload. Laid out largest first, so
/// that it packs into 57 bytes after the object's own 16.
public struct MessageHeader: Sendable {
    var sequence: UInt64 = 0
    var time: UInt64 = 0
    var senderName: String?
    let count: Int
    let credentials: Credentials
    var isPrivate = false

    init(count: Int, credentials: Credentials) {
        self.count = count
        self.credentials = credentials
    }
}

/// A writer's identity as the kernel gave it: the calling thread's id and its
/// user and group ids. A front end takes them from its request; they cannot
/// be forged by the writer.
public struct Credentials: Sendable, Hashable {
    /// The writing thread's id (the process id of a single-threaded writer);
    /// 0 when the front end cannot see it (another pid namespace).
    public var pid: UInt32
    public var uid: UInt32
    public var gid: UInt32

    public init(pid: UInt32 = 0, uid: UInt32 = 0, gid: UInt32 = 0) {
        self.pid = pid
        self.uid = uid
        self.gid = gid
    }
}

/// A part of a message handed to a reader: the whole message, or the part that
/// fits the reader's buffer, the rest following on that reader's next receive.
public struct MessageChunk: Sendable {
    public let message: Message
    public let range: Range<Int>
    /// Messages this member missed before this one because it was
    /// drop-when-full and full, since the previous message it received
    /// (saturating at UInt32.max). Given with the first chunk of a message; 0
    /// on the rest of a split one.
    public let droppedBefore: UInt32

    init(message: Message, range: Range<Int>, droppedBefore: UInt32 = 0) {
        self.message = message
        self.range = range
        self.droppedBefore = droppedBefore
    }

    public var count: Int { range.count }
    /// True when this chunk ends the message.
    public var isLast: Bool { range.upperBound == message.count }

    public func withUnsafeBytes<R, E: Error>(
        _ body: (UnsafeRawBufferPointer) throws(E) -> R
    ) throws(E) -> R {
        try message.withUnsafeBytes { (all) throws(E) -> R in
            try body(UnsafeRawBufferPointer(rebasing: all[range]))
        }
    }

    public var bytes: [UInt8] { withUnsafeBytes { Array($0) } }

    /// Copies the chunk's bytes to `destination`, which has room for
    /// `count`. Not generic, unlike `withUnsafeBytes`: a front end copying
    /// every message of a batch (the framed view) then pays no generic
    /// dispatch across the module boundary per message (about 5% of the
    /// daemon's CPU on the framed path, perf).
    public func copyBytes(to destination: UnsafeMutableRawPointer) {
        guard count > 0 else { return }
        let start = range.lowerBound, count = self.count
        message.storage.withUnsafeMutablePointerToElements { elements in
            destination.copyMemory(from: elements.advanced(by: start), byteCount: count)
        }
    }
}
