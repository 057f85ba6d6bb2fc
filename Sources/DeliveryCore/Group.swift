import Locking
import Synchronization
/// What a completed send did.
public struct SendReceipt: Sendable, Equatable {
    /// The group sequence number of the message.
    public let sequence: UInt64
    /// How many members it entered.
    public let recipients: Int
    /// How many drop-when-full members missed it because they were full.
    public let dropped: Int
}

/// What a completed batch send did. The messages delivered are the batch's
/// first `delivered`, numbered `firstSequence` onwards without a gap: they
/// entered every queue consecutively, in order.
public struct BatchReceipt: Sendable, Equatable {
    /// How many of the batch's messages were delivered, from its start; fewer
    /// than the batch holds is a short send (the rest was not sent).
    public internal(set) var delivered: Int
    /// The sequence number of the first message delivered (0 when none was).
    public let firstSequence: UInt64
    /// Deliveries: the messages that entered members' queues, summed over
    /// the messages delivered.
    public internal(set) var recipients: Int
    /// Misses by drop-when-full members that were full, summed likewise.
    public internal(set) var dropped: Int

    /// The receipt of an empty batch.
    static let nothing = BatchReceipt(delivered: 0, firstSequence: 0, recipients: 0, dropped: 0)

    init(delivered: Int, firstSequence: UInt64, recipients: Int, dropped: Int) {
        self.delivered = delivered
        self.firstSequence = firstSequence
        self.recipients = recipients
        self.dropped = dropped
    }

    init(single receipt: SendReceipt) {
        self.init(delivered: 1, firstSequence: receipt.sequence, recipients: receipt.recipients, dropped: receipt.dropped)
    }
}

extension SendReceipt {
    /// The receipt of a batch of one.
    init(single receipt: BatchReceipt) {
        self.init(sequence: receipt.firstSequence, recipients: receipt.recipients, dropped: receipt.dropped)
    }
}

/// Whether an operation may wait.
public enum Blocking: Sendable {
    /// Fail with `.wouldBlock` instead of waiting.
    case nonBlocking
    /// Park until it can complete; the completion runs later.
    case blocking
}

/// A multicast group: members, their bounded queues (and peer queues, see
/// Peers.swift), and the blocked sends.
///
/// One lock per group guards all of it. Delivery of one message to every
/// recipient happens under that lock, which is what makes it all-or-nothing
/// and gives every pair of members the same order (see docs/locking.md for
/// the measurements behind this choice). Completions and poll notifications
/// run after the lock is released, on the thread whose operation caused them.
public final class Group: Sendable {
    public let name: String
    let state: AdaptiveMutex<GroupState>
    /// `settings.messageBoundary`, readable without the lock: a front end
    /// asks it on every write to decide how to cut it, and taking the group
    /// lock for that would add a lock hold to every write. Written under the
    /// lock whenever the settings change.
    private let boundary: Atomic<Bool>
    /// Where sends go in a relayed group (Relay.swift); nil for a group whose
    /// order is its own.
    let sequencer: (any Sequencer)?
    /// `sequencer != nil`, asked on every send: testing the existential
    /// itself copies it (a retain and a release), 14 % of a single send's
    /// instructions in core-bench (callgrind).
    public let isRelayed: Bool

    /// A group; with a `sequencer`, a relayed group: its sends are stored in
    /// an order kept elsewhere, and delivered here through
    /// `deliver(_:stamp:completion:)` (see Relay.swift). A relayed group never
    /// accepts a send at once: its `trySend`s throw `.wouldBlock`.
    public init(name: String, settings: GroupSettings = GroupSettings(), sequencer: (any Sequencer)? = nil) throws(DeliveryError) {
        try settings.validate()
        self.sequencer = sequencer
        isRelayed = sequencer != nil
        self.name = name
        self.state = AdaptiveMutex(GroupState(settings: settings))
        self.boundary = Atomic(settings.messageBoundary == .line)
    }

    /// Where a front end cuts written bytes into messages (no lock taken).
    public var messageBoundary: MessageBoundary { boundary.load(ordering: .relaxed) ? .line : .write }

    /// Runs `body` under the lock, then the actions it decided, unlocked.
    @inline(__always)
    func locked<R>(_ body: (inout GroupState, inout [Action]) -> R) -> R {
        var actions: [Action] = []
        let result = state.withLock { body(&$0, &actions) }
        if !actions.isEmpty { actions.run() }
        return result
    }

    // MARK: Settings

    public var settings: GroupSettings { state.withLock { $0.settings } }

    /// Changes settings all at once, or not at all when a value is out of bounds.
    /// `change` runs once, under the group's lock, on the current settings, so
    /// that what is validated is what is applied: it must only set values
    /// (calling into the group from it would deadlock).
    public func configure(_ change: (inout GroupSettings) -> Void) throws(DeliveryError) {
        try state.withLock { state in
            defer { boundary.store(state.settings.messageBoundary == .line, ordering: .relaxed) }
            return state.configure(change)
        }.get()
    }

    // MARK: Membership

    /// Adds a member with the group's default settings, or `settings` if given.
    /// With `account`, what is queued for it (and its peer queue) is charged
    /// there, and it is full while the account is at its limit (Account.swift).
    /// `awaitingItsSequence`: a member of a relayed group that will be told
    /// its place in the shared order (`Member.receiveOnly(after:)`), and
    /// receives nothing until then.
    public func join(_ memberName: String, settings memberSettings: MemberSettings? = nil,
                     account: Account? = nil, awaitingItsSequence: Bool = false) throws(DeliveryError) -> Member {
        if let memberSettings { try memberSettings.validate() }
        let memberState = try state.withLock { state in
            let joined = state.join(memberName, settings: memberSettings, account: account,
                                    awaitingItsSequence: awaitingItsSequence && isRelayed)
            // In the same lock hold: registered before any room check sees it.
            if case .success = joined { account?.register(self) }
            return joined
        }.get()
        return Member(group: self, state: memberState)
    }

    public func member(named memberName: String) -> Member? {
        state.withLock { $0.membersByName[ExactName(memberName)] }.map { Member(group: self, state: $0) }
    }

    /// The current members, in the order they joined.
    public var members: [Member] {
        state.withLock { state in state.members }.map { Member(group: self, state: $0) }
    }

    /// Changes one member's settings all at once, or not at all. As with
    /// `configure`, `change` runs once, under the lock, and must only set values.
    public func configureMember(named memberName: String, _ change: (inout MemberSettings) -> Void) throws(DeliveryError) {
        try locked { state, actions in state.configureMember(named: memberName, change, actions: &actions) }.get()
    }

    // MARK: Lifetime

    /// Destroys the group. Refused while it has members; afterwards every
    /// operation fails with `.groupClosed`.
    public func close() throws(DeliveryError) {
        let result: Result<Void, DeliveryError> = state.withLock { state in
            guard state.members.isEmpty else { return .failure(.groupHasMembers) }
            state.closed = true
            return .success(())
        }
        try result.get()
    }

    /// Releases every waiter with `.shutDown`, and refuses new sends and waits.
    /// For a front end that is going away. Its members' accounts let go of
    /// it (nothing will wait for their room again): members still in it at
    /// the end hold their accounts, which would otherwise hold the group, a
    /// cycle that outlives the front end (LeakSanitizer's report at exit).
    public func shutDown() {
        locked { state, actions in
            state.shutDown(actions: &actions)
            for member in state.members { member.account?.unregister(self) }
        }
    }

    // MARK: Sending

    /// Sends without waiting: delivered to every recipient now, or `.wouldBlock`
    /// and nobody received it.
    @discardableResult
    public func trySend(_ message: Message, as sender: Member? = nil) throws(DeliveryError) -> SendReceipt {
        if isRelayed { throw .wouldBlock }
        let now = realtimeNanoseconds()
        let result = locked { state, actions in
            state.send(message, from: sender.map { $0.state(&state) }, at: now, actions: &actions)
        }
        guard let result else { throw .wouldBlock }
        return try result.get()
    }

    /// Sends, or parks the send in the same lock hold when a recipient is full
    /// (`.nonBlocking`: fails with `.wouldBlock` instead). `completion` runs
    /// exactly once: at once (before this returns, and then the result is nil)
    /// or later, from the thread that made room, after the group's lock is
    /// released. The returned `Waiting` cancels a parked send.
    @discardableResult
    public func send(
        _ message: Message,
        as sender: Member? = nil,
        _ blocking: Blocking,
        completion: @escaping @Sendable (Result<SendReceipt, DeliveryError>) -> Void
    ) -> Waiting? {
        if isRelayed {
            return relay([message], from: sender, blocking) { completion($0.map(SendReceipt.init(single:))) }
        }
        let now = realtimeNanoseconds()
        let step: Step<SendReceipt> = locked { state, actions in
            let senderState = sender.map { $0.state(&state) }
            if let result = state.send(message, from: senderState, at: now, actions: &actions) { return .done(result) }
            guard blocking == .blocking else { return .done(.failure(.wouldBlock)) }
            let id = state.park(message, from: senderState, completion: completion)
            return .parked(Waiting(group: self, id: id, member: nil))
        }
        return step.finish(completion)
    }

    /// Sends a batch without waiting: the longest prefix of `messages` that
    /// every blocking recipient can take now, at least one message, delivered
    /// in one lock hold, so the messages enter every queue consecutively and
    /// in order. The whole batch is checked first: a message above
    /// `maxMessage` (`.messageTooLarge`), or any refusal of a single send,
    /// delivers none of it. Throws `.wouldBlock` when not even the first
    /// message fits. An empty batch delivers nothing.
    @discardableResult
    public func trySend(batch messages: [Message], as sender: Member? = nil) throws(DeliveryError) -> BatchReceipt {
        if isRelayed { throw .wouldBlock }
        let now = realtimeNanoseconds()
        let result = locked { state, actions in
            state.send(batch: messages, from: sender.map { $0.state(&state) }, at: now, actions: &actions)
        }
        guard let result else { throw .wouldBlock }
        return try result.get()
    }

    /// As `trySend(batch:as:)`, parking the batch in the same lock hold when
    /// not even its first message fits (`.nonBlocking`: fails with
    /// `.wouldBlock` instead). A parked batch waits in line with parked
    /// single sends, in the order they began; at the head, once its first
    /// message fits, it delivers that one and every following one that fits
    /// at that moment, and completes with the count (a short send). The
    /// `Waiting` cancels a parked batch, which then delivered nothing.
    /// `completion` runs exactly once, as for `send(_:as:_:completion:)`.
    @discardableResult
    public func send(
        batch messages: [Message],
        as sender: Member? = nil,
        _ blocking: Blocking,
        completion: @escaping @Sendable (Result<BatchReceipt, DeliveryError>) -> Void
    ) -> Waiting? {
        if isRelayed { return relay(messages, from: sender, blocking, completion: completion) }
        let now = realtimeNanoseconds()
        let step: Step<BatchReceipt> = locked { state, actions in
            let senderState = sender.map { $0.state(&state) }
            if let result = state.send(batch: messages, from: senderState, at: now, actions: &actions) { return .done(result) }
            guard blocking == .blocking else { return .done(.failure(.wouldBlock)) }
            let id = state.park(batch: messages, from: senderState, completion: completion)
            return .parked(Waiting(group: self, id: id, member: nil))
        }
        return step.finish(completion)
    }

    // MARK: Readiness

    /// Readable: `reader` would not wait. Writable: a send by `writer` would
    /// not wait (nil: not asked, reported false). When `watch` is given,
    /// `watch.notify` runs once when an asked readiness may have changed (a
    /// message arrived, room may have appeared; then poll again); a later
    /// watch with the same id replaces it. It is kept even when the file is
    /// ready now: the kernel polls an edge-triggered (EPOLLET) file again only
    /// after a notification, so every message and every room must notify, as
    /// a pipe's write does.
    public func poll(reader: Reader?, writer: Writer?, watch: Watch? = nil) -> Readiness {
        locked { state, _ in
            var readiness = Readiness(readable: false, writable: false)
            if let reader {
                let readerState = reader.state(&state)
                readiness.readable = readerState.remainder != nil
                    || !readerState.member.queue.isEmpty || !readerState.member.present
                if let watch {
                    readerState.member.readWatches[watch.id] = watch.notify
                }
            }
            if let writer {
                let sender: MemberState?
                switch writer {
                case .anonymous: sender = nil
                case .member(let member): sender = member.state(&state)
                case .peer(let member) where isRelayed:
                    let target = member.state(&state)
                    readiness.writable = state.closed || state.shutDown || !target.present || sequencer!.acceptsNow
                    if let watch { state.writeWatches[watch.id] = watch.notify }
                    return readiness
                case .peer(let member):
                    readiness.writable = state.privateSendIsReady(to: member.state(&state))
                    if let watch { state.writeWatches[watch.id] = watch.notify }
                    return readiness
                }
                // A send that would fail at once does not wait either.
                let refused = sender.map { !$0.present } ?? (state.settings.sendPolicy == .members)
                let fails = state.closed || state.shutDown || refused
                // A relayed group's sends wait for its sequencer, never for
                // the deliveries parked here.
                readiness.writable = fails || (isRelayed ? sequencer!.acceptsNow : state.canSendNow(from: sender))
                if let watch {
                    state.writeWatches[watch.id] = watch.notify
                }
            }
            return readiness
        }
    }

    /// Forgets a watch (its file was closed).
    public func cancelWatch(id: UInt64, reader: Reader?) {
        state.withLock { state in
            state.writeWatches[id] = nil
            if let reader { reader.state(&state).member.readWatches[id] = nil }
        }
    }

    // MARK: Statistics

    /// A consistent snapshot of the group and its members.
    public func snapshot() -> GroupSnapshot {
        // A relayed group's writes wait in its sequencer, for room in the
        // shared order; what it parks here are deliveries, not writes.
        let waitingInSequencer = sequencer?.waitingSends ?? 0
        return state.withLock { state in
            GroupSnapshot(
                name: name,
                settings: state.settings,
                sent: state.sent,
                blockedWriters: isRelayed ? waitingInSequencer : state.parkedSends.count,
                members: state.members.map { member in
                    MemberSnapshot(
                        name: member.name,
                        settings: member.settings,
                        queued: member.queue.count,
                        queuedBytes: member.queuedBytes,
                        full: member.isFull,
                        delivered: member.delivered,
                        dropped: member.dropped,
                        peerQueued: member.peer?.queue.count ?? 0,
                        peerFull: member.peer?.isFull ?? false
                    )
                }
            )
        }
    }
}

/// Who would send, for writability.
public enum Writer: Sendable {
    case anonymous
    case member(Member)
    /// Private messages to this member (its peer file).
    case peer(Member)
}

/// A one-shot poll watch.
public struct Watch: Sendable {
    public let id: UInt64
    public let notify: @Sendable () -> Void

    public init(id: UInt64, notify: @escaping @Sendable () -> Void) {
        self.id = id
        self.notify = notify
    }
}

public struct Readiness: Sendable, Equatable {
    public var readable: Bool
    public var writable: Bool

    public init(readable: Bool, writable: Bool) {
        self.readable = readable
        self.writable = writable
    }
}

/// How a send or receive that may wait went: done under the lock (its
/// completion runs now, unlocked), or parked in the same lock hold.
enum Step<T: Sendable>: Sendable {
    case done(Result<T, DeliveryError>)
    case parked(Waiting)

    func finish(_ completion: (Result<T, DeliveryError>) -> Void) -> Waiting? {
        switch self {
        case .done(let result):
            completion(result)
            return nil
        case .parked(let waiting):
            return waiting
        }
    }
}

/// A parked send or receive, or a relayed send waiting in its sequencer.
public struct Waiting: Sendable {
    let group: Group?
    let id: UInt64
    /// The member whose queue a parked receive waits on; nil for a send.
    let member: Guarded<MemberState>?
    /// The member a parked private send waits for (it waits in that
    /// member's line, not the group's); nil otherwise.
    var privateRecipient: Guarded<MemberState>? = nil
    /// A sequencer's own way to cancel (`init(cancel:)`).
    private var external: (@Sendable () -> Bool)? = nil

    init(group: Group, id: UInt64, member: Guarded<MemberState>?, privateRecipient: Guarded<MemberState>? = nil) {
        self.group = group
        self.id = id
        self.member = member
        self.privateRecipient = privateRecipient
    }

    /// For a `Sequencer`: a send waiting in it, which `cancel` cancels.
    /// `cancel` must keep `cancel()`'s promise: true only if the send stored
    /// nothing and its completion will never run.
    public init(cancel: @escaping @Sendable () -> Bool) {
        group = nil
        id = 0
        member = nil
        external = cancel
    }

    /// Cancels the parked operation. True: it was still parked, it delivered
    /// or consumed nothing, and its completion will never run. False: it has
    /// completed, or is completing; its completion runs (or ran) as usual.
    public func cancel() -> Bool {
        if let external { return external() }
        return group!.locked { state, actions in
            if let member { return state.cancelReceive(id: id, of: member(&state)) }
            if let privateRecipient { return state.cancelPrivateSend(id: id, to: privateRecipient(&state)) }
            return state.cancelSend(id: id, actions: &actions)
        }
    }
}
