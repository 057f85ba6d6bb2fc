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
        group.locked { groupState, effects in
            groupState.remove(state(&groupState), effects: &effects)
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
}

/// One reader of a member's queue. It holds the rest of a message that it began
/// with a buffer too small for it, and returns that before anything else.
public final class Reader: Sendable {
    public let member: Member
    let state: Guarded<ReaderState>

    init(member: Member, state: ReaderState) {
        self.member = member
        self.state = Guarded(state)
    }

    private var group: Group { member.group }

    private static func limit(_ maxBytes: Int) -> ReceiveLimit {
        ReceiveLimit(maxMessages: 1, maxBytes: max(maxBytes, 1), splits: true)
    }

    /// Receives without waiting: the oldest message, or its first `maxBytes`
    /// (the rest comes on this reader's next receive). Nil: the member has left
    /// and everything queued was read. Throws `.wouldBlock` on an empty queue.
    public func tryReceive(maxBytes: Int) throws(DeliveryError) -> MessageChunk? {
        let received: Received? = group.locked { groupState, effects in
            groupState.receiveNow(state(&groupState), limit: Self.limit(maxBytes), effects: &effects)
        }
        switch received {
        case .one(let chunk): return chunk
        case .many(let chunks): return chunks.first
        case .endOfStream: return nil
        case nil: throw .wouldBlock
        }
    }

    /// Receives, waiting on an empty queue. `completion` runs exactly once: at
    /// once (and then the result is nil) or later, from the sending thread. A
    /// nil chunk is the end of the stream. The `Waiting` cancels a parked
    /// receive, which then consumed nothing.
    @discardableResult
    public func receive(
        maxBytes: Int,
        _ blocking: Blocking,
        completion: @escaping @Sendable (Result<MessageChunk?, DeliveryError>) -> Void
    ) -> Waiting? {
        park(limit: Self.limit(maxBytes), blocking) { result in
            completion(result.map { received in
                switch received {
                case .one(let chunk): chunk
                case .many(let chunks): chunks.first
                case .endOfStream: nil
                }
            })
        }
    }

    /// Receives up to `maxMessages` whole messages and about `maxBytes` without
    /// waiting. It always takes at least one message, so a `maxMessages` below
    /// 1 counts as 1, as a `maxBytes` smaller than the next message does.
    /// Empty: end of the stream.
    public func tryReceiveBatch(maxMessages: Int, maxBytes: Int) throws(DeliveryError) -> [MessageChunk] {
        let limit = ReceiveLimit(maxMessages: max(maxMessages, 1), maxBytes: maxBytes, splits: false)
        let received: Received? = group.locked { groupState, effects in
            groupState.receiveNow(state(&groupState), limit: limit, effects: &effects)
        }
        switch received {
        case .one(let chunk): return [chunk]
        case .many(let chunks): return chunks
        case .endOfStream: return []
        case nil: throw .wouldBlock
        }
    }

    /// Puts back chunks that were received but could not be handed on (the
    /// requester went away), so they are received next, in the same order.
    public func putBack(_ chunks: [MessageChunk]) {
        group.locked { groupState, effects in
            let readerState = state(&groupState)
            for chunk in chunks.reversed() {
                groupState.putBack(chunk, reader: readerState, effects: &effects)
            }
        }
    }

    public func putBack(_ chunk: MessageChunk) { putBack([chunk]) }

    private func park(
        limit: ReceiveLimit,
        _ blocking: Blocking,
        completion: @escaping @Sendable (Result<Received, DeliveryError>) -> Void
    ) -> Waiting? {
        let step: Step<Received> = group.locked { groupState, effects in
            if groupState.shutDown { return .done(.failure(.shutDown)) }
            let readerState = state(&groupState)
            if let received = groupState.receiveNow(readerState, limit: limit, effects: &effects) {
                return .done(.success(received))
            }
            guard blocking == .blocking else { return .done(.failure(.wouldBlock)) }
            let id = groupState.makeID()
            readerState.member.parkedReceives.append(
                ParkedReceive(id: id, reader: readerState, limit: limit, completion: completion))
            return .parked(Waiting(group: group, id: id, member: Guarded(readerState.member)))
        }
        return step.finish(completion)
    }
}
