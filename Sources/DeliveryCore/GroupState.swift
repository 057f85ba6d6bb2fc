import DequeModule
import Glibc

// The state of one group, touched only while holding the group's lock.
//
// As in swift-nio's state machines, each event (a send, a receive, a member
// leaving, ...) is decided here, under the lock, and what must follow is
// returned as data: the event's own outcome, and `Action`s for everyone else
// (complete these parked operations, wake those poll watches). The caller
// carries the actions out after releasing the lock, so no completion or
// notification ever runs under it, and a test can read what was decided.

/// A member's queue and counters. Reachable from handles (`Member`, `Reader`),
/// but touched only under the group lock (handles reach it through `Guarded`);
/// hence @unchecked Sendable, and no dynamic exclusivity checks: the lock
/// already makes every access exclusive, and the checks cost more than the
/// delivery itself on the hot path. (`package`: for core-bench's locking
/// prototype, which indexes its members through SubscriptionIndex.)
package final class MemberState: @unchecked Sendable {
    package let id: UInt64
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
    /// Messages dropped since the last one that reached this member.
    @exclusivity(unchecked) var dropsPending: UInt32 = 0
    /// The queued messages that follow drops, oldest first, with how many
    /// were dropped before each. Kept beside the queue rather than in it, so
    /// that a queue entry stays one 8-byte reference: only a member that
    /// dropped ever has one, and the hot paths pay a test of `isEmpty`.
    @exclusivity(unchecked) var dropMarks = Deque<DropMark>()
    /// The last collection of recipients that took this member (see
    /// SubscriptionIndex): a member matching by two patterns is taken once.
    @exclusivity(unchecked) var recipientMark: UInt64 = 0
    /// The member's peer queue (`G/peers/NAME`): a queue of its own, read
    /// like any member's, that receives what this member sends while
    /// `sendToPeer` is on. Nil for a peer queue itself. See Peers.swift.
    let peer: MemberState?
    /// Private messages to this member waiting for room, oldest first.
    @exclusivity(unchecked) var parkedPrivateSends = Deque<ParkedSend>()
    /// In a relayed group, the member receives only messages numbered above
    /// this (`Member.receiveOnly(after:)`, Relay.swift).
    @exclusivity(unchecked) var receivesAfter: UInt64 = 0
    /// A member of a relayed group whose place in the shared order is not
    /// known yet (it joined with `awaitingItsSequence`): what its node
    /// delivers meanwhile waits here, neither queued nor counted, until
    /// `receiveOnly(after:)` queues what was stored after it joined. Nil
    /// once known.
    @exclusivity(unchecked) var early: [Message]?
    @exclusivity(unchecked) var earlyBytes = 0
    /// What the member's queued bytes are charged to, with its peer queue's
    /// (Account.swift); nil: no limit beyond its own queue's.
    let account: Account?

    package init(id: UInt64, name: String, settings: MemberSettings, peer: MemberState? = nil, account: Account? = nil) {
        self.id = id
        self.name = name
        self.settings = settings
        self.peer = peer
        self.account = account
    }

    /// What is still queued when the last reference goes (the member left,
    /// its last reader closed) leaves its account. Handles and actions hold
    /// member states, so the last release is never under a group lock, and
    /// the wake-up may take group locks.
    deinit {
        if let account, queuedBytes != 0, account.release(queuedBytes) { account.wakeGroups() }
    }

    /// Full: it holds `capacity` messages or `queueBytes` bytes, or its
    /// account is at its limit. A queue that is not full accepts one more
    /// message whole, like a socket's receive buffer; an empty queue whose
    /// account is below its limit therefore always accepts one message.
    var isFull: Bool {
        queue.count >= settings.capacity || queuedBytes >= settings.queueBytes || account?.isFull == true
    }

    /// `count` bytes entered the queue.
    @inline(__always)
    func queued(_ count: Int) {
        queuedBytes += count
        account?.charge(count)
    }

    /// `count` bytes left the queue; a release that takes the account below
    /// its limit wakes, after the lock, whom it held back.
    @inline(__always)
    func unqueued(_ count: Int, actions: inout [Action]) {
        queuedBytes -= count
        if let account, account.release(count) { actions.append(.wake(account)) }
    }

    /// Holds senders back: full and not drop-when-full.
    var isBlocking: Bool { !settings.dropWhenFull && isFull }

    /// The drops recorded before `message`, just taken from the queue front.
    /// Marks are matched by sequence number; one at or below the message's
    /// belongs to it (below only when a message was sent twice and
    /// restamped, where the count comes one message early rather than stick).
    @inline(__always)
    func dropsBefore(_ message: Message) -> UInt32 {
        guard !dropMarks.isEmpty else { return 0 }
        let sequence = message.sequence
        var drops: UInt32 = 0
        while let mark = dropMarks.first, mark.sequence <= sequence {
            dropMarks.removeFirst()
            drops = drops.addingReportingOverflow(mark.drops).overflow ? .max : drops + mark.drops
        }
        return drops
    }
}

/// `drops` messages were dropped before the queued message numbered `sequence`.
struct DropMark: Sendable {
    let sequence: UInt64
    let drops: UInt32
}

/// CLOCK_REALTIME in nanoseconds.
func realtimeNanoseconds() -> UInt64 {
    var now = timespec()
    clock_gettime(CLOCK_REALTIME, &now)
    return UInt64(now.tv_sec) &* 1_000_000_000 &+ UInt64(now.tv_nsec)
}

/// One open reader of a member (a file handle): it keeps the rest of a message
/// it began with a smaller buffer.
final class ReaderState: @unchecked Sendable {  // as MemberState
    let member: MemberState
    @exclusivity(unchecked) var remainder: MessageChunk?

    init(member: MemberState) { self.member = member }
}

/// How much one receive may take. Every receive takes at least one message
/// (or part of one), whatever its limits say.
struct ReceiveLimit: Sendable {
    var maxMessages: Int
    var maxBytes: Int
    /// Split a message that does not fit `maxBytes` (a read(2) with a small
    /// buffer), rather than handing it whole.
    var splits: Bool
    /// What each message of a batch costs of `maxBytes` beyond its payload.
    var framing: ReceiveFraming = .none

    /// A read(2): the oldest message, or its first `maxBytes`.
    static func one(maxBytes: Int) -> ReceiveLimit {
        ReceiveLimit(maxMessages: 1, maxBytes: max(maxBytes, 1), splits: true)
    }

    /// Whole messages, up to `maxMessages` and about `maxBytes`: it stops
    /// before a message whose framed size would overflow `maxBytes`.
    static func batch(maxMessages: Int, maxBytes: Int, framing: ReceiveFraming = .none) -> ReceiveLimit {
        ReceiveLimit(maxMessages: max(maxMessages, 1), maxBytes: maxBytes, splits: false, framing: framing)
    }

    /// Why `message` cannot be the first of this receive: a framed batch
    /// takes whole frames only, so one whose frame is larger than the buffer
    /// is refused, and stays where it is. Unframed receives take any message
    /// (a read(2) splits it, a batch takes at least one).
    @inline(__always)
    func refusal(of message: Message) -> DeliveryError? {
        guard framing != .none else { return nil }
        let size = framing.size(of: message)
        return size > maxBytes ? .doesNotFit(size: size, limit: maxBytes) : nil
    }
}

struct ParkedReceive: Sendable {
    let id: UInt64
    let reader: ReaderState
    let limit: ReceiveLimit
    let completion: @Sendable (Result<Received, DeliveryError>) -> Void
}

/// A send waiting in line: one message, or a batch. Both wait in the one
/// queue of parked sends, so a batch keeps the fairness of single sends.
struct ParkedSend: Sendable {
    enum Payload: Sendable {
        case one(Message, @Sendable (Result<SendReceipt, DeliveryError>) -> Void)
        /// Not empty.
        case batch([Message], @Sendable (Result<BatchReceipt, DeliveryError>) -> Void)
        /// A relayed group's delivery of a stored message (Relay.swift):
        /// the only kind such a group parks.
        case relayed(Message, Stamp, @Sendable () -> Void)
    }

    let id: UInt64
    let sender: MemberState?
    let payload: Payload

    /// Runs the completion; a single send gets its one message's receipt.
    func complete(_ result: Result<BatchReceipt, DeliveryError>) {
        switch payload {
        case .one(_, let completion): completion(result.map(SendReceipt.init(single:)))
        case .batch(_, let completion): completion(result)
        case .relayed(_, _, let completion): completion()
        }
    }
}

/// What must happen once the group's lock is released.
enum Action: Sendable {
    /// A parked receive is done: messages, the end of the stream, or an error.
    case completeReceive(ParkedReceive, Result<Received, DeliveryError>)
    /// A parked send is done: delivered (a single send's receipt is that of a
    /// batch of one), or failed.
    case completeSend(ParkedSend, Result<BatchReceipt, DeliveryError>)
    /// Poll watches whose readiness may have changed (they poll again).
    case notify([UInt64: @Sendable () -> Void])
    /// An account went below its limit: every group where it has members
    /// looks again at what it held back (Account.swift).
    case wake(Account)
}

extension [Action] {
    /// Carries out what was decided; only with the group's lock released.
    /// Nothing is recorded on the fast path (no parked waiter, no watch), and
    /// an empty array allocates nothing.
    func run() {
        for action in self {
            switch action {
            case .completeReceive(let receive, let result): receive.completion(result)
            case .completeSend(let send, let result): send.complete(result)
            case .notify(let watches): for notify in watches.values { notify() }
            case .wake(let account): account.wakeGroups()
            }
        }
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
    /// The members by their topic filters (Recipients.swift).
    var subscriptions = SubscriptionIndex()
    var sent: UInt64 = 0
    var nextSequence: UInt64 = 1
    /// The time stamped on the last accepted message: times never go back
    /// from one sequence number to the next, even if the clock read before
    /// taking the lock was a little older, or the clock was set back.
    var lastTime: UInt64 = 0
    var nextID: UInt64 = 1
    var closed = false
    var shutDown = false

    init(settings: GroupSettings) { self.settings = settings }

    mutating func makeID() -> UInt64 {
        defer { nextID &+= 1 }
        return nextID
    }

    // MARK: Sending

    /// Why a message cannot be sent at all (waiting would not help), if so.
    // Inlined: as a call it cost 2% more instructions in core-bench's batch
    // rows (callgrind).
    @inline(__always)
    func refusal(of message: Message, from sender: MemberState?) -> DeliveryError? {
        if shutDown { return .shutDown }
        if closed { return .groupClosed }
        if message.count > settings.maxMessage {
            return .messageTooLarge(size: message.count, limit: settings.maxMessage)
        }
        return refusal(from: sender)
    }

    @inline(__always)
    func refusal(from sender: MemberState?) -> DeliveryError? {
        if let sender {
            if !sender.present { return .senderLeft }
        } else if settings.sendPolicy == .members {
            return .sendNotPermitted
        }
        return nil
    }

    /// A send: refused, or delivered to every recipient now. Nil: it must
    /// wait (the caller parks it in the same lock hold, or fails it with
    /// `.wouldBlock`).
    ///
    /// `now` is the clock read by the sender just before it took the lock:
    /// read there, it keeps a vDSO call (about 28 ns here) out of the lock
    /// hold; `acceptanceTime` keeps the stamps in sequence order.
    mutating func send(
        _ message: Message, from sender: MemberState?, at now: UInt64 = realtimeNanoseconds(), actions: inout [Action]
    ) -> Result<SendReceipt, DeliveryError>? {
        if let refusal = refusal(of: message, from: sender) { return .failure(refusal) }
        guard canSendNow(message, from: sender) else { return nil }
        return .success(deliver(message, from: sender, time: acceptanceTime(now), actions: &actions))
    }

    /// A batch send: refused as a whole (any message above `maxMessage`
    /// refuses all of it), or the longest prefix that every blocking
    /// recipient can take now, at least one message. Nil: not even the first
    /// message can be delivered now (the caller parks the batch or fails it
    /// with `.wouldBlock`). An empty batch delivers nothing and never waits.
    mutating func send(
        batch messages: [Message], from sender: MemberState?, at now: UInt64 = realtimeNanoseconds(),
        actions: inout [Action]
    ) -> Result<BatchReceipt, DeliveryError>? {
        if let refusal = refusal(ofBatch: messages, from: sender) { return .failure(refusal) }
        guard !messages.isEmpty else { return .success(.nothing) }
        guard canSendNow(messages[0], from: sender) else { return nil }
        return .success(deliver(batch: messages, from: sender, time: acceptanceTime(now), actions: &actions))
    }

    /// As `refusal(of:from:)`, for every message of a batch.
    func refusal(ofBatch messages: [Message], from sender: MemberState?) -> DeliveryError? {
        if shutDown { return .shutDown }
        if closed { return .groupClosed }
        let limit = settings.maxMessage
        for message in messages where message.count > limit {
            return .messageTooLarge(size: message.count, limit: limit)
        }
        return refusal(from: sender)
    }

    /// Parks a batch that must wait, in the same line as single sends.
    mutating func park(
        batch messages: [Message], from sender: MemberState?,
        completion: @escaping @Sendable (Result<BatchReceipt, DeliveryError>) -> Void
    ) -> UInt64 {
        let id = makeID()
        parkedSends.append(ParkedSend(id: id, sender: sender, payload: .batch(messages, completion)))
        return id
    }

    /// The time to stamp on what is accepted now, given a clock reading.
    @inline(__always)
    mutating func acceptanceTime(_ now: UInt64) -> UInt64 {
        if now > lastTime { lastTime = now }
        return lastTime
    }

    /// Parks a send that must wait, behind every send that began before it.
    mutating func park(
        _ message: Message, from sender: MemberState?,
        completion: @escaping @Sendable (Result<SendReceipt, DeliveryError>) -> Void
    ) -> UInt64 {
        let id = makeID()
        parkedSends.append(ParkedSend(id: id, sender: sender, payload: .one(message, completion)))
        return id
    }

    /// True when no older send is waiting, and no member that holds senders
    /// back is full, whatever its filter: poll's conservative writability.
    /// A send asks `canSendNow(_:from:)`, about its message's recipients.
    func canSendNow(from sender: MemberState?) -> Bool {
        parkedSends.isEmpty && recipientsHaveRoom(from: sender)
    }

    func recipientsHaveRoom(from sender: MemberState?) -> Bool {
        if let sender, sender.peerHoldsSends { return false }
        for member in members where member.isBlocking {
            if member !== sender || member.settings.loopback { return false }
        }
        return true
    }

    /// Delivers to every recipient at once; the caller checked there is room.
    mutating func deliver(_ message: Message, from sender: MemberState?, time: UInt64, actions: inout [Action]) -> SendReceipt {
        deliver(message, from: sender, time: time, actions: &actions, tracksRoom: false).receipt
    }

    /// Delivers a prefix of `messages` (not empty) one after another in this
    /// lock hold: the first (the caller checked there is room), then each
    /// next one while every blocking recipient still has room. Without
    /// filters every message has the same recipients, so only the queues just
    /// appended to can have filled; with filters each next message has its
    /// own recipients (`deliverFiltered`).
    mutating func deliver(batch messages: [Message], from sender: MemberState?, time: UInt64, actions: inout [Action]) -> BatchReceipt {
        if !everyMemberReceives { return deliverFiltered(batch: messages, from: sender, time: time, actions: &actions) }
        var receipt = BatchReceipt(delivered: 0, firstSequence: nextSequence, recipients: 0, dropped: 0)
        for message in messages {
            let (one, roomLeft) = deliver(message, from: sender, time: time, actions: &actions, tracksRoom: true)
            receipt.delivered += 1
            receipt.recipients += one.recipients
            receipt.dropped += one.dropped
            if !roomLeft { break }
        }
        return receipt
    }

    /// As `deliver(batch:...)` when some member has a filter: each message
    /// after the first goes only if its own recipients have room (which
    /// collects them for its delivery). A queue that filled on the way stops
    /// only the messages that go to it.
    private mutating func deliverFiltered(batch messages: [Message], from sender: MemberState?, time: UInt64, actions: inout [Action]) -> BatchReceipt {
        var receipt = BatchReceipt(delivered: 0, firstSequence: nextSequence, recipients: 0, dropped: 0)
        for message in messages {
            if receipt.delivered > 0 && !recipientsHaveRoom(for: message, from: sender) { break }
            let one = deliver(message, from: sender, time: time, actions: &actions, tracksRoom: false).receipt
            receipt.delivered += 1
            receipt.recipients += one.recipients
            receipt.dropped += one.dropped
        }
        return receipt
    }

    /// The delivery of one message. With `tracksRoom`, it also says whether
    /// every blocking recipient still has room for one more: only the queues
    /// it just appended to can have filled (the caller checked the rest), so
    /// this costs a test per recipient instead of a second pass over the
    /// members. Inlined, so a single send's `tracksRoom: false` costs nothing.
    /// With filters, the recipients are those the caller's room check
    /// collected for this message.
    @inline(__always)
    private mutating func deliver(
        _ message: Message, from sender: MemberState?, time: UInt64, actions: inout [Action], tracksRoom: Bool
    ) -> (receipt: SendReceipt, roomLeft: Bool) {
        let sequence = nextSequence
        nextSequence &+= 1
        sent &+= 1
        message.stamp(sequence: sequence, time: time, senderName: sender?.name)
        var tally = Tally()
        if everyMemberReceives {
            for member in members where member !== sender || member.settings.loopback {
                enqueue(message, sequence: sequence, into: member, tracksRoom: tracksRoom, tally: &tally, actions: &actions)
            }
        } else {
            // A loop of its own: iterating a local copy of either array cost
            // the unfiltered loop a retain and a release per recipient.
            for member in subscriptions.recipients {
                enqueue(message, sequence: sequence, into: member, tracksRoom: tracksRoom, tally: &tally, actions: &actions)
            }
        }
        // The sender's peer (send_to_peer): one more recipient, whatever the
        // filters; the room check included it.
        if let sender, sender.settings.sendToPeer, let peer = sender.peer {
            enqueue(message, sequence: sequence, into: peer, tracksRoom: tracksRoom, tally: &tally, actions: &actions)
        }
        return (SendReceipt(sequence: sequence, recipients: tally.recipients, dropped: tally.dropped), tally.roomLeft)
    }

    /// What one delivery did so far, over its recipients.
    struct Tally {
        var recipients = 0
        var dropped = 0
        var roomLeft = true
    }

    /// `message` into one recipient's queue, or handed to its parked receive,
    /// or dropped if it is full and drop-when-full. A member that holds
    /// senders back passed the room check in this lock hold, but its account
    /// is shared with other groups and may have reached its limit since: it
    /// takes the message all the same (the account passes its limit by less
    /// than a message, Account.swift), as dropping it would lose a message
    /// that member was promised.
    @inline(__always)
    func enqueue(
        _ message: Message, sequence: UInt64, into member: MemberState, tracksRoom: Bool, tally: inout Tally,
        actions: inout [Action]
    ) {
        // The setting first: most members do not drop, and `isFull` reads
        // the shared account's count.
        if member.settings.dropWhenFull && member.isFull {
            member.dropped &+= 1
            if member.dropsPending < .max { member.dropsPending += 1 }
            tally.dropped += 1
            return
        }
        member.delivered &+= 1
        tally.recipients += 1
        let dropsBefore = member.dropsPending
        if dropsBefore != 0 { member.dropsPending = 0 }
        // A parked receive implies an empty queue: hand the message over.
        if member.parkedReceives.isEmpty || !handOver(message, droppedBefore: dropsBefore, in: member, actions: &actions) {
            member.queue.append(message)
            member.queued(message.count)
            if dropsBefore != 0 { member.dropMarks.append(DropMark(sequence: sequence, drops: dropsBefore)) }
            if tracksRoom && member.isBlocking { tally.roomLeft = false }
            fireReadWatches(of: member, actions: &actions)
        }
    }

    /// Completes parked sends, oldest first, while the oldest can be
    /// delivered (and, with `bound`, began before the waiter of that id).
    mutating func completeParkedSends(before bound: UInt64 = .max, actions: inout [Action]) {
        var completedAny = false
        // Read once, and only when something is delivered: this runs under
        // the lock, on the path that makes room.
        var time: UInt64?
        while let head = parkedSends.first, head.id < bound {
            if let sender = head.sender, !sender.present {
                parkedSends.removeFirst()
                actions.append(.completeSend(head, .failure(.senderLeft)))
                completedAny = true
                continue
            }
            if case .relayed(let message, let stamp, _) = head.payload {
                guard relayedRecipientsHaveRoom(message, stamp: stamp) else { break }
                parkedSends.removeFirst()
                deliverRelayedNow(message, stamp: stamp, actions: &actions)
                actions.append(.completeSend(head, .success(.nothing)))
                completedAny = true
                continue
            }
            guard recipientsHaveRoom(for: head.firstMessage, from: head.sender) else { break }
            parkedSends.removeFirst()
            if time == nil { time = acceptanceTime(realtimeNanoseconds()) }
            let receipt: BatchReceipt
            switch head.payload {
            case .one(let message, _):
                receipt = BatchReceipt(single: deliver(message, from: head.sender, time: time!, actions: &actions))
            case .batch(let messages, _):
                // The head delivers what fits now and completes: a short send.
                receipt = deliver(batch: messages, from: head.sender, time: time!, actions: &actions)
            case .relayed: preconditionFailure("delivered above")
            }
            actions.append(.completeSend(head, .success(receipt)))
            completedAny = true
        }
        if completedAny { fireWriteWatches(actions: &actions) }
    }

    /// Room may have appeared (a queue drained, a member left, settings changed,
    /// a parked send went away): complete what can be, and wake writers' polls.
    mutating func roomMayHaveAppeared(actions: inout [Action]) {
        if parkedSends.isEmpty {
            fireWriteWatches(actions: &actions)
        } else {
            completeParkedSends(actions: &actions)
            // Writers polling on other files may be writable though the oldest
            // parked send is not (different recipients); they re-poll and see.
            if !parkedSends.isEmpty { fireWriteWatches(actions: &actions) }
        }
    }

    /// Cancels a parked send. False: it is no longer parked (it completed).
    mutating func cancelSend(id: UInt64, actions: inout [Action]) -> Bool {
        guard let index = parkedSends.firstIndex(where: { $0.id == id }) else { return false }
        parkedSends.remove(at: index)
        // The next send in line may need different recipients.
        roomMayHaveAppeared(actions: &actions)
        return true
    }

    // MARK: Receiving

    /// Why `reader` cannot take its oldest message now, though there is one:
    /// a framed receive whose buffer is smaller than that message's frame.
    /// Checked before `receive`, so that nothing is taken.
    func refusal(for reader: ReaderState, limit: ReceiveLimit) -> DeliveryError? {
        guard limit.framing != .none, reader.remainder == nil, let first = reader.member.queue.first else { return nil }
        return limit.refusal(of: first)
    }

    /// A receive: what is there now (the rest of a message this reader began,
    /// or from the queue), or the end of the stream. Nil: it must wait. (A
    /// receive is never refused: a member that left reads to its end.)
    mutating func receive(_ reader: ReaderState, limit: ReceiveLimit, actions: inout [Action]) -> Received? {
        if let remainder = reader.remainder {
            reader.remainder = nil
            return Received(split(remainder, for: reader, limit: limit))
        }
        let member = reader.member
        guard !member.queue.isEmpty else {
            return member.present ? nil : .endOfStream
        }
        let wasBlocking = member.isBlocking
        let received = dequeue(from: member, for: reader, limit: limit, actions: &actions)
        if wasBlocking && !member.isBlocking { roomAppeared(at: member, actions: &actions) }
        return received
    }

    /// Takes from a queue that is not empty: the first message (or the part
    /// that fits), then, for a batch, whole messages while they fit.
    // Inlined: as a call it cost each receive about 25 more instructions
    // (callgrind, core-bench's fan-out rows).
    @inline(__always)
    private func dequeue(from member: MemberState, for reader: ReaderState, limit: ReceiveLimit, actions: inout [Action]) -> Received {
        let message = member.queue.removeFirst()
        member.unqueued(message.count, actions: &actions)
        let first = MessageChunk(message: message, range: 0..<message.count, droppedBefore: member.dropsBefore(message))
        var bytes = limit.framing.size(of: message)
        guard limit.maxMessages > 1, let second = member.queue.first,
              bytes + limit.framing.size(of: second) <= limit.maxBytes else {
            return Received(split(first, for: reader, limit: limit))
        }
        // A batch stops before a message that would overflow it.
        var chunks: [MessageChunk] = []
        chunks.reserveCapacity(min(limit.maxMessages, member.queue.count + 1))
        chunks.append(first)
        // Released from the account once for the batch: one atomic
        // subtraction on a line all its members share, not one per message.
        var released = 0
        while chunks.count < limit.maxMessages, let next = member.queue.first,
              bytes + limit.framing.size(of: next) <= limit.maxBytes {
            bytes += limit.framing.size(of: next)
            released += next.count
            let message = member.queue.removeFirst()
            chunks.append(MessageChunk(message: message, range: 0..<next.count, droppedBefore: member.dropsBefore(message)))
        }
        member.unqueued(released, actions: &actions)
        return Received(chunks)
    }

    /// Parks a receive that must wait on an empty queue; refused once the
    /// group is shut down.
    mutating func park(
        _ reader: ReaderState, limit: ReceiveLimit,
        completion: @escaping @Sendable (Result<Received, DeliveryError>) -> Void
    ) -> Result<UInt64, DeliveryError> {
        if shutDown { return .failure(.shutDown) }
        let id = makeID()
        reader.member.parkedReceives.append(ParkedReceive(id: id, reader: reader, limit: limit, completion: completion))
        return .success(id)
    }

    /// Cancels a parked receive. False: it is no longer parked (it completed).
    func cancelReceive(id: UInt64, of member: MemberState) -> Bool {
        guard let index = member.parkedReceives.firstIndex(where: { $0.id == id }) else { return false }
        member.parkedReceives.remove(at: index)
        return true
    }

    /// Hands `reader` a message already out of the queue.
    func take(_ message: Message, droppedBefore: UInt32, for reader: ReaderState, limit: ReceiveLimit) -> Received {
        Received(split(MessageChunk(message: message, range: 0..<message.count, droppedBefore: droppedBefore), for: reader, limit: limit))
    }

    /// Hands `message` to the oldest parked receive that can take it; those
    /// before it that cannot (a framed read whose buffer is smaller than its
    /// frame) fail, consuming nothing. False: no parked receive took it.
    func handOver(_ message: Message, droppedBefore: UInt32, in member: MemberState, actions: inout [Action]) -> Bool {
        while let receive = member.parkedReceives.popFirst() {
            if let refusal = receive.limit.refusal(of: message) {
                actions.append(.completeReceive(receive, .failure(refusal)))
                continue
            }
            let received = take(message, droppedBefore: droppedBefore, for: receive.reader, limit: receive.limit)
            actions.append(.completeReceive(receive, .success(received)))
            return true
        }
        return false
    }

    /// The part of `chunk` that fits, leaving the rest with the reader.
    func split(_ chunk: MessageChunk, for reader: ReaderState, limit: ReceiveLimit) -> MessageChunk {
        guard limit.splits, chunk.count > limit.maxBytes else { return chunk }
        let cut = chunk.range.lowerBound + limit.maxBytes
        reader.remainder = MessageChunk(message: chunk.message, range: cut..<chunk.range.upperBound)
        return MessageChunk(message: chunk.message, range: chunk.range.lowerBound..<cut, droppedBefore: chunk.droppedBefore)
    }

    /// Puts back a chunk whose hand-over failed, so that it is read next: the
    /// rest of a message stays with its reader; a whole or first part goes back
    /// to the front of the queue, as if never taken.
    mutating func putBack(_ chunk: MessageChunk, reader: ReaderState, actions: inout [Action]) {
        let message = chunk.message
        if chunk.range.lowerBound > 0 {
            reader.remainder = MessageChunk(message: message, range: chunk.range.lowerBound..<message.count)
            return
        }
        if reader.remainder?.message.isSame(as: message) == true { reader.remainder = nil }
        let member = reader.member
        if !member.parkedReceives.isEmpty, handOver(message, droppedBefore: chunk.droppedBefore, in: member, actions: &actions) {
            return
        }
        member.queue.prepend(message)
        member.queued(message.count)
        if chunk.droppedBefore != 0 {
            member.dropMarks.prepend(DropMark(sequence: message.sequence, drops: chunk.droppedBefore))
        }
        fireReadWatches(of: member, actions: &actions)
    }

    // MARK: Membership and settings

    /// Adds a member with the group's defaults, or `memberSettings` (already
    /// validated) if given.
    mutating func join(_ name: String, settings memberSettings: MemberSettings?, account: Account? = nil,
                       awaitingItsSequence: Bool = false) -> Result<MemberState, DeliveryError> {
        guard !closed else { return .failure(.groupClosed) }
        guard membersByName[ExactName(name)] == nil else { return .failure(.memberExists) }
        let defaults = MemberSettings(capacity: settings.capacity, queueBytes: settings.queueBytes, sendToPeer: settings.sendToPeer)
        let chosen = memberSettings ?? defaults
        // The peer queue is charged to the member's account: it fills with
        // what the member sends.
        let peer = MemberState(id: makeID(), name: name, settings: chosen.ofPeer, account: account)
        let member = MemberState(id: makeID(), name: name, settings: chosen, peer: peer, account: account)
        if awaitingItsSequence { member.early = [] }
        members.append(member)
        membersByName[ExactName(name)] = member
        subscriptions.add(member)
        return .success(member)
    }

    /// A member leaves: nothing new is queued for it, receives parked on its
    /// (empty) queue reach the end of the stream, and senders it held back
    /// are re-checked. Leaving twice does nothing.
    mutating func leave(_ member: MemberState, actions: inout [Action]) {
        guard member.present else { return }
        member.present = false
        members.removeAll { $0 === member }
        membersByName[ExactName(member.name)] = nil
        subscriptions.remove(member)
        while let receive = member.parkedReceives.popFirst() {
            actions.append(.completeReceive(receive, .success(.endOfStream)))
        }
        fireReadWatches(of: member, actions: &actions)
        endPeer(of: member, actions: &actions)
        roomMayHaveAppeared(actions: &actions)
    }

    /// Applies `change` to the current settings if the result is within
    /// bounds; all of it or nothing.
    mutating func configure(_ change: (inout GroupSettings) -> Void) -> Result<Void, DeliveryError> {
        guard !closed else { return .failure(.groupClosed) }
        var candidate = settings
        change(&candidate)
        do throws(DeliveryError) { try candidate.validate() } catch { return .failure(error) }
        settings = candidate
        return .success(())
    }

    /// As `configure`, for one member. A larger queue, drop-when-full or
    /// patterns that no longer match the waiting message can release blocked
    /// senders.
    mutating func configureMember(
        named name: String, _ change: (inout MemberSettings) -> Void, actions: inout [Action]
    ) -> Result<Void, DeliveryError> {
        guard let member = membersByName[ExactName(name)] else { return .failure(.noSuchMember) }
        var candidate = member.settings
        change(&candidate)
        do throws(DeliveryError) { try candidate.validate() } catch { return .failure(error) }
        apply(candidate, to: member)
        member.peer?.settings = candidate.ofPeer
        roomAppeared(at: member, actions: &actions)
        return .success(())
    }

    // MARK: Watches

    func fireReadWatches(of member: MemberState, actions: inout [Action]) {
        guard !member.readWatches.isEmpty else { return }
        actions.append(.notify(member.readWatches))
        member.readWatches = [:]
    }

    mutating func fireWriteWatches(actions: inout [Action]) {
        guard !writeWatches.isEmpty else { return }
        actions.append(.notify(writeWatches))
        writeWatches = [:]
    }

    // MARK: Shutdown

    /// Fails every parked send and receive with `.shutDown`, and wakes every
    /// watch; from now on sends and waits are refused.
    mutating func shutDown(actions: inout [Action]) {
        shutDown = true
        while let send = parkedSends.popFirst() {
            actions.append(.completeSend(send, .failure(.shutDown)))
        }
        for member in members {
            while let receive = member.parkedReceives.popFirst() {
                actions.append(.completeReceive(receive, .failure(.shutDown)))
            }
            fireReadWatches(of: member, actions: &actions)
            shutDownPeer(of: member, actions: &actions)
        }
        fireWriteWatches(actions: &actions)
    }
}
