/// One message: a header and its payload in a single allocation.
///
/// A message is stored once, however many queues it enters: every queue holds
/// this 8-byte reference, so a message queued for 64 members costs its payload
/// once plus 64 pointers.
public struct Message: @unchecked Sendable {
    // @unchecked Sendable: the payload is written once, before the message is
    // published; `sequence` is written under the group's lock before any other
    // thread can reach the message, and read after taking that lock, or after
    // being handed the message by a completion that ran after that lock.
    let storage: MessageStorage

    /// Copies `bytes` into a new message.
    public init(copying bytes: UnsafeRawBufferPointer) {
        let buffer = MessageStorage.create(minimumCapacity: bytes.count) { _ in
            MessageHeader(count: bytes.count)
        }
        storage = unsafeDowncast(buffer, to: MessageStorage.self)
        if let base = bytes.baseAddress, bytes.count > 0 {
            storage.withUnsafeMutablePointerToElements { elements in
                elements.initialize(from: base.assumingMemoryBound(to: UInt8.self), count: bytes.count)
            }
        }
    }

    public init(_ bytes: some Collection<UInt8>) {
        self = Array(bytes).withUnsafeBytes { Message(copying: $0) }
    }

    // The header is reached through its pointer: `ManagedBuffer.header` is a
    // class property, and its dynamic exclusivity checks cost more than a
    // whole delivery. The rules in the type's comment make these accesses safe.

    /// Payload length in bytes.
    public var count: Int { storage.withUnsafeMutablePointerToHeader { $0.pointee.count } }

    /// The group sequence number, given when the group accepted the message
    /// (0 before that). Increases by one per accepted message of a group.
    public var sequence: UInt64 { storage.withUnsafeMutablePointerToHeader { $0.pointee.sequence } }

    /// Under the group lock, before the message is published.
    func setSequence(_ sequence: UInt64) {
        storage.withUnsafeMutablePointerToHeader { $0.pointee.sequence = sequence }
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

public struct MessageHeader: Sendable {
    let count: Int
    var sequence: UInt64 = 0
}

/// A part of a message handed to a reader: the whole message, or the part that
/// fits the reader's buffer, the rest following on that reader's next receive.
public struct MessageChunk: Sendable {
    public let message: Message
    public let range: Range<Int>

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
}
