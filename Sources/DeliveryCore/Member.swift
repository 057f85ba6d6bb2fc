/// A member of a group: it has a bounded queue, and may send as itself.
public final class Member: Sendable {
    public let group: Group
    public let name: String
    let state: Guarded<MemberState>

    init(group: Group, state: MemberState) {
        self.group = group
        self.name = state.name
        self.state = Guarded(state)
    }

    /// What the member's queued bytes are charged to (`Group.join`).
    public var account: Account? { group.state.withLock { state(&$0).account } }

    public var settings: MemberSettings {
        group.state.withLock { state(&$0).settings }
    }

    /// False once the member has left.
    public var isPresent: Bool {
        group.state.withLock { state(&$0).present }
    }

    /// Leaves the group: nothing new is queued for this member, blocked senders
    /// waiting on it are re-checked, and readers parked on its empty queue see
    /// the end of the stream. What is queued stays readable. Leaving twice does
    /// nothing.
    public func leave() {
        group.locked { groupState, actions in
            let memberState = state(&groupState)
            if memberState.present, let account = memberState.account { account.unregister(group) }
            groupState.leave(memberState, actions: &actions)
        }
    }

    /// A new reader of this member's queue (one per open file). Readers of one
    /// member share its queue: each message goes to exactly one of them.
    public func makeReader() -> Reader {
        Reader(member: self, state: group.state.withLock { ReaderState(member: state(&$0)) })
    }

    /// Sends as this member without waiting; see `Group.trySend`.
    @discardableResult
    public func trySend(_ message: Message) throws(DeliveryError) -> SendReceipt {
        try group.trySend(message, as: self)
    }

    /// Sends a batch as this member without waiting; see `Group.trySend(batch:as:)`.
    @discardableResult
    public func trySend(batch messages: [Message]) throws(DeliveryError) -> BatchReceipt {
        try group.trySend(batch: messages, as: self)
    }
}

/// One reader of a member's queue (or of its peer queue: `makePeerReader`).
/// It holds the rest of a message that it began with a buffer too small for
/// it, and returns that before anything else.
public final class Reader: Sendable {
    public let member: Member
    let state: Guarded<ReaderState>

    init(member: Member, state: ReaderState) {
        self.member = member
        self.state = Guarded(state)
    }

    private var group: Group { member.group }

    /// Receives without waiting: the oldest message, or its first `maxBytes`
    /// (the rest comes on this reader's next receive). Nil: the member has left
    /// and everything queued was read. Throws `.wouldBlock` on an empty queue.
    public func tryReceive(maxBytes: Int) throws(DeliveryError) -> MessageChunk? {
        try tryReceive(.one(maxBytes: maxBytes)).first
    }

    /// Receives up to `maxMessages` whole messages and about `maxBytes` without
    /// waiting. It always takes at least one message, so a `maxMessages` below
    /// 1 counts as 1, as a `maxBytes` smaller than the next message does.
    /// Empty: end of the stream. Throws `.wouldBlock` on an empty queue.
    ///
    /// With `framing`, each message counts against `maxBytes` as its framed
    /// size, so the batch is what fits a buffer of that many bytes.
    public func tryReceiveBatch(maxMessages: Int, maxBytes: Int, framing: ReceiveFraming = .none) throws(DeliveryError) -> Received {
        try tryReceive(.batch(maxMessages: maxMessages, maxBytes: maxBytes, framing: framing))
    }

    /// Receives, or parks the receive in the same lock hold on an empty queue
    /// (`.nonBlocking`: fails with `.wouldBlock` instead). `completion` runs
    /// exactly once: at once (and then the result is nil) or later, from the
    /// sending thread. A nil chunk is the end of the stream. The `Waiting`
    /// cancels a parked receive, which then consumed nothing. Once the group
    /// is shut down, a blocking receive that would wait fails with `.shutDown`
    /// (what is queued can still be received).
    @discardableResult
    public func receive(
        maxBytes: Int,
        _ blocking: Blocking,
        completion: @escaping @Sendable (Result<MessageChunk?, DeliveryError>) -> Void
    ) -> Waiting? {
        receive(.one(maxBytes: maxBytes), blocking, completion) { $0.first }
    }

    /// As `receive(maxBytes:_:completion:)`, for whole messages as
    /// `tryReceiveBatch` takes them. An empty `Received` is the end of the stream.
    @discardableResult
    public func receiveBatch(
        maxMessages: Int,
        maxBytes: Int,
        framing: ReceiveFraming = .none,
        _ blocking: Blocking,
        completion: @escaping @Sendable (Result<Received, DeliveryError>) -> Void
    ) -> Waiting? {
        receive(.batch(maxMessages: maxMessages, maxBytes: maxBytes, framing: framing), blocking, completion) { $0 }
    }

    /// Puts back chunks that were received but could not be handed on (the
    /// requester went away), so they are received next, in the same order.
    public func putBack(_ chunks: some BidirectionalCollection<MessageChunk>) {
        group.locked { groupState, actions in
            let readerState = state(&groupState)
            for chunk in chunks.reversed() {
                groupState.putBack(chunk, reader: readerState, actions: &actions)
            }
        }
    }

    public func putBack(_ chunk: MessageChunk) { putBack(CollectionOfOne(chunk)) }

    @inline(__always)
    private func tryReceive(_ limit: ReceiveLimit) throws(DeliveryError) -> Received {
        let received: Result<Received, DeliveryError> = group.locked { groupState, actions in
            let readerState = state(&groupState)
            if let refusal = groupState.refusal(for: readerState, limit: limit) { return .failure(refusal) }
            guard let received = groupState.receive(readerState, limit: limit, actions: &actions) else { return .failure(.wouldBlock) }
            return .success(received)
        }
        return try received.get()
    }

    /// The one receive step: what is there now, or parked in the same lock
    /// hold. `shape` turns what was received into what `completion` takes; it
    /// captures nothing, and the completion that applies it is only made when
    /// the receive parks, so a receive done at once allocates nothing here.
    private func receive<T: Sendable>(
        _ limit: ReceiveLimit,
        _ blocking: Blocking,
        _ completion: @escaping @Sendable (Result<T, DeliveryError>) -> Void,
        shape: @escaping @Sendable (Received) -> T
    ) -> Waiting? {
        let step: Step<T> = group.locked { groupState, actions in
            let readerState = state(&groupState)
            if let refusal = groupState.refusal(for: readerState, limit: limit) { return .done(.failure(refusal)) }
            if let received = groupState.receive(readerState, limit: limit, actions: &actions) {
                return .done(.success(shape(received)))
            }
            guard blocking == .blocking else { return .done(.failure(.wouldBlock)) }
            switch groupState.park(readerState, limit: limit, completion: { completion($0.map(shape)) }) {
            case .success(let id): return .parked(Waiting(group: group, id: id, member: Guarded(readerState.member)))
            case .failure(let error): return .done(.failure(error))
            }
        }
        return step.finish(completion)
    }
}
