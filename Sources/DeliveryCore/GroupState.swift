import DequeModule

// The state of one group, touched only while holding the group's lock.
//
// Every operation decides everything under the lock and records what must
// happen next in `Effects` (completions to run, watchers to notify); the caller
// runs those after releasing the lock, so no completion ever runs under it.

/// A member's queue and counters. Reachable from handles (`Member`, `Reader`),
/// but touched only under the group lock (handles reach it through `Guarded`);
/// hence @unchecked Sendable, and no dynamic exclusivity checks: the lock
/// already makes every access exclusive, and the checks cost more than the
/// delivery itself on the hot path.
final class MemberState: @unchecked Sendable {
    let id: UInt64
    let name: String
    @exclusivity(unchecked) var settings: MemberSettings
    @exclusivity(unchecked) var queue = Deque<Message>()
    @exclusivity(unchecked) var queuedBytes = 0
    @exclusivity(unchecked) var delivered: UInt64 = 0
    @exclusivity(unchecked) var dropped: UInt64 = 0
    /// False once the member has left: it receives nothing new.
    @exclusivity(unchecked) var present = true
    /// Receives parked on an empty queue, oldest first.
    @exclusivity(unchecked) var parkedReceives = Deque<ParkedReceive>()
    /// Poll watches waiting for this member to become readable.
    @exclusivity(unchecked) var readWatches: [UInt64: @Sendable () -> Void] = [:]

    init(id: UInt64, name: String, settings: MemberSettings) {
        self.id = id
        self.name = name
        self.settings = settings
    }

    /// Full: it holds `capacity` messages or `queueBytes` bytes. A queue that is
    /// not full accepts one more message whole, like a socket's receive buffer;
    /// an empty queue therefore always accepts one message.
    var isFull: Bool { queue.count >= settings.capacity || queuedBytes >= settings.queueBytes }

    /// Holds senders back: full and not drop-when-full.
    var isBlocking: Bool { !settings.dropWhenFull && isFull }
}

/// One open reader of a member (a file handle): it keeps the rest of a message
/// it began with a smaller buffer.
final class ReaderState: @unchecked Sendable {  // as MemberState
    let member: MemberState
    @exclusivity(unchecked) var remainder: MessageChunk?

    init(member: MemberState) { self.member = member }
}

/// How much one receive may take.
struct ReceiveLimit: Sendable {
    var maxMessages: Int
    var maxBytes: Int
    /// Split a message that does not fit `maxBytes` (a read(2) with a small
    /// buffer), rather than handing it whole.
    var splits: Bool
}

struct ParkedReceive: Sendable {
    let id: UInt64
    let reader: ReaderState
    let limit: ReceiveLimit
    let completion: @Sendable (Result<Received, DeliveryError>) -> Void
}

struct ParkedSend: Sendable {
    let id: UInt64
    let message: Message
    let sender: MemberState?
    let completion: @Sendable (Result<SendReceipt, DeliveryError>) -> Void
}

/// What a receive got.
enum Received: Sendable {
    case one(MessageChunk)
    case many([MessageChunk])
    case endOfStream
}

/// What must happen once the lock is released. Empty on the fast path, so it
/// allocates nothing there.
struct Effects: Sendable {
    private var actions: [@Sendable () -> Void] = []

    mutating func append(_ action: @escaping @Sendable () -> Void) { actions.append(action) }

    func run() {
        for action in actions { action() }
    }
}

struct GroupState: ~Copyable, Sendable {
    var settings: GroupSettings
    /// In the order they joined.
    var members: [MemberState] = []
    /// Member states, not handles: a handle refers to its group, so the
    /// group must not hold handles (a cycle). Handles are made on demand.
    var membersByName: [ExactName: MemberState] = [:]
    /// Blocked sends, in the order they began: only the oldest may complete.
    var parkedSends = Deque<ParkedSend>()
    /// Poll watches waiting for a sender to become writable, keyed by watch id.
    var writeWatches: [UInt64: @Sendable () -> Void] = [:]
    var sent: UInt64 = 0
    var nextSequence: UInt64 = 1
    var nextID: UInt64 = 1
    var closed = false
    var shutDown = false

    init(settings: GroupSettings) { self.settings = settings }

    mutating func makeID() -> UInt64 {
        defer { nextID &+= 1 }
        return nextID
    }

    // MARK: Sending

    /// True when a message from `sender` would be accepted now: no older send
    /// is waiting, and no recipient that holds senders back is full.
    func canSendNow(from sender: MemberState?) -> Bool {
        parkedSends.isEmpty && recipientsHaveRoom(from: sender)
    }

    func recipientsHaveRoom(from sender: MemberState?) -> Bool {
        for member in members where member.isBlocking {
            if member !== sender || member.settings.loopback { return false }
        }
        return true
    }

    /// Delivers to every recipient at once; the caller checked there is room.
    mutating func deliver(_ message: Message, from sender: MemberState?, effects: inout Effects) -> SendReceipt {
        let sequence = nextSequence
        nextSequence &+= 1
        sent &+= 1
        message.setSequence(sequence)
        var recipients = 0
        var dropped = 0
        for member in members where member !== sender || member.settings.loopback {
            if member.isFull {
                // Only a drop-when-full member can be full here.
                member.dropped &+= 1
                dropped += 1
                continue
            }
            member.delivered &+= 1
            recipients += 1
            if member.parkedReceives.isEmpty {
                member.queue.append(message)
                member.queuedBytes += message.count
                fireReadWatches(of: member, effects: &effects)
            } else {
                // A parked receive implies an empty queue: hand the message over.
                let receive = member.parkedReceives.removeFirst()
                let received = take(message, for: receive.reader, limit: receive.limit)
                effects.append { receive.completion(.success(received)) }
            }
        }
        return SendReceipt(sequence: sequence, recipients: recipients, dropped: dropped)
    }

    /// Completes parked sends, oldest first, while the oldest can be delivered.
    mutating func completeParkedSends(effects: inout Effects) {
        var completedAny = false
        while let head = parkedSends.first {
            if let sender = head.sender, !sender.present {
                parkedSends.removeFirst()
                effects.append { head.completion(.failure(.senderLeft)) }
                completedAny = true
                continue
            }
            guard recipientsHaveRoom(from: head.sender) else { break }
            parkedSends.removeFirst()
            let receipt = deliver(head.message, from: head.sender, effects: &effects)
            effects.append { head.completion(.success(receipt)) }
            completedAny = true
        }
        if completedAny { fireWriteWatches(effects: &effects) }
    }

    /// Room may have appeared (a queue drained, a member left, settings changed,
    /// a parked send went away): complete what can be, and wake writers' polls.
    mutating func roomMayHaveAppeared(effects: inout Effects) {
        if parkedSends.isEmpty {
            fireWriteWatches(effects: &effects)
        } else {
            completeParkedSends(effects: &effects)
            // Writers polling on other files may be writable though the oldest
            // parked send is not (different recipients); they re-poll and see.
            if !parkedSends.isEmpty { fireWriteWatches(effects: &effects) }
        }
    }

    // MARK: Receiving

    /// Hands `reader` a message already out of the queue.
    func take(_ message: Message, for reader: ReaderState, limit: ReceiveLimit) -> Received {
        let chunk = split(MessageChunk(message: message, range: 0..<message.count), for: reader, limit: limit)
        return limit.maxMessages == 1 ? .one(chunk) : .many([chunk])
    }

    /// The part of `chunk` that fits, leaving the rest with the reader.
    func split(_ chunk: MessageChunk, for reader: ReaderState, limit: ReceiveLimit) -> MessageChunk {
        guard limit.splits, chunk.count > limit.maxBytes else { return chunk }
        let cut = chunk.range.lowerBound + limit.maxBytes
        reader.remainder = MessageChunk(message: chunk.message, range: cut..<chunk.range.upperBound)
        return MessageChunk(message: chunk.message, range: chunk.range.lowerBound..<cut)
    }

    /// Receives what is there now, or nil when the reader must wait.
    mutating func receiveNow(_ reader: ReaderState, limit: ReceiveLimit, effects: inout Effects) -> Received? {
        if let remainder = reader.remainder {
            reader.remainder = nil
            let chunk = split(remainder, for: reader, limit: limit)
            return limit.maxMessages == 1 ? .one(chunk) : .many([chunk])
        }
        let member = reader.member
        guard !member.queue.isEmpty else {
            return member.present ? nil : .endOfStream
        }
        let wasBlocking = member.isBlocking
        if limit.maxMessages == 1 {
            let message = member.queue.removeFirst()
            member.queuedBytes -= message.count
            if wasBlocking && !member.isBlocking { roomMayHaveAppeared(effects: &effects) }
            return .one(split(MessageChunk(message: message, range: 0..<message.count), for: reader, limit: limit))
        }
        // A batch takes whole messages, and stops before one that would
        // overflow it, but always takes at least one.
        var chunks: [MessageChunk] = []
        chunks.reserveCapacity(min(limit.maxMessages, member.queue.count))
        var bytes = 0
        while chunks.count < limit.maxMessages, let next = member.queue.first {
            let count = next.count
            if !chunks.isEmpty && bytes + count > limit.maxBytes { break }
            bytes += count
            member.queuedBytes -= count
            chunks.append(MessageChunk(message: member.queue.removeFirst(), range: 0..<count))
        }
        if wasBlocking && !member.isBlocking { roomMayHaveAppeared(effects: &effects) }
        return .many(chunks)
    }

    /// Puts back a chunk whose hand-over failed, so that it is read next: the
    /// rest of a message stays with its reader; a whole or first part goes back
    /// to the front of the queue, as if never taken.
    mutating func putBack(_ chunk: MessageChunk, reader: ReaderState, effects: inout Effects) {
        let message = chunk.message
        if chunk.range.lowerBound > 0 {
            reader.remainder = MessageChunk(message: message, range: chunk.range.lowerBound..<message.count)
            return
        }
        if reader.remainder?.message.isSame(as: message) == true { reader.remainder = nil }
        let member = reader.member
        if let receive = member.parkedReceives.popFirst() {
            let received = take(message, for: receive.reader, limit: receive.limit)
            effects.append { receive.completion(.success(received)) }
            return
        }
        member.queue.prepend(message)
        member.queuedBytes += message.count
        fireReadWatches(of: member, effects: &effects)
    }

    // MARK: Membership and settings

    mutating func remove(_ member: MemberState, effects: inout Effects) {
        guard member.present else { return }
        member.present = false
        members.removeAll { $0 === member }
        membersByName[ExactName(member.name)] = nil
        // Parked receives imply an empty queue: they reach the end of the stream.
        while let receive = member.parkedReceives.popFirst() {
            effects.append { receive.completion(.success(.endOfStream)) }
        }
        fireReadWatches(of: member, effects: &effects)
        roomMayHaveAppeared(effects: &effects)
    }

    // MARK: Watches

    func fireReadWatches(of member: MemberState, effects: inout Effects) {
        guard !member.readWatches.isEmpty else { return }
        let watches = member.readWatches
        member.readWatches.removeAll()
        effects.append { for notify in watches.values { notify() } }
    }

    mutating func fireWriteWatches(effects: inout Effects) {
        guard !writeWatches.isEmpty else { return }
        let watches = writeWatches
        writeWatches.removeAll()
        effects.append { for notify in watches.values { notify() } }
    }

    // MARK: Shutdown

    mutating func failAllWaiters(with error: DeliveryError, effects: inout Effects) {
        while let send = parkedSends.popFirst() {
            effects.append { send.completion(.failure(error)) }
        }
        for member in members {
            while let receive = member.parkedReceives.popFirst() {
                effects.append { receive.completion(.failure(error)) }
            }
            fireReadWatches(of: member, effects: &effects)
        }
        fireWriteWatches(effects: &effects)
    }
}
