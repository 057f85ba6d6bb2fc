/// What one receive got: chunks, oldest first; none at the end of the stream
/// (the member has left and its queue is drained).
///
/// A receive of one message (a read(2)) gets one chunk; a batch receive gets
/// whole messages. One chunk is held without an array, so that the common
/// receive of one message allocates nothing.
public struct Received: Sendable, RandomAccessCollection {
    private enum Chunks: Sendable {
        case none
        case one(MessageChunk)
        /// Two or more.
        case many([MessageChunk])
    }

    private let chunks: Chunks

    init(_ chunk: MessageChunk) { chunks = .one(chunk) }

    /// `chunks` holds two or more.
    init(_ chunks: [MessageChunk]) { self.chunks = .many(chunks) }

    private init(_ chunks: Chunks) { self.chunks = chunks }

    static let endOfStream = Received(Chunks.none)

    /// True: the member has left and everything queued for it was received.
    public var isEndOfStream: Bool {
        if case .none = chunks { return true }
        return false
    }

    public var first: MessageChunk? {
        switch chunks {
        case .none: nil
        case .one(let chunk): chunk
        case .many(let chunks): chunks.first
        }
    }

    public var startIndex: Int { 0 }

    public var endIndex: Int {
        switch chunks {
        case .none: 0
        case .one: 1
        case .many(let chunks): chunks.count
        }
    }

    public subscript(position: Int) -> MessageChunk {
        switch chunks {
        case .one(let chunk) where position == 0: chunk
        case .many(let chunks): chunks[position]
        case .none, .one: preconditionFailure("Received: index \(position) out of range")
        }
    }
}

/// How a front end that frames messages counts them against a batch's
/// bytes: each takes its payload, a fixed header, and (if the frame carries
/// it) the sender's name, rounded up to a multiple of `alignment`. So a batch
/// receive can stop exactly where the reader's buffer is full, instead of
/// taking more than fits and putting the rest back.
public struct ReceiveFraming: Sendable, Equatable {
    public var headerBytes: Int
    public var carriesSenderName: Bool
    public var alignment: Int

    public init(headerBytes: Int, carriesSenderName: Bool, alignment: Int) {
        precondition(alignment >= 1 && alignment & (alignment - 1) == 0, "ReceiveFraming: alignment must be a power of 2")
        self.headerBytes = headerBytes
        self.carriesSenderName = carriesSenderName
        self.alignment = alignment
    }

    /// Payloads only.
    public static let none = ReceiveFraming(headerBytes: 0, carriesSenderName: false, alignment: 1)

    /// The bytes `message` takes in a batch framed this way.
    @inline(__always)
    public func size(of message: Message) -> Int {
        guard self != .none else { return message.count }
        let name = carriesSenderName ? message.senderName?.utf8.count ?? 0 : 0
        return (headerBytes + name + message.count + alignment - 1) & ~(alignment - 1)
    }
}
