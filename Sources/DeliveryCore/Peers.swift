// Connected groups (docs/contract.md, "Connected groups: peers"): the
// multicast design's SOCK_SEQPACKET side. Every member has a peer queue, the
// accepted socket of the design: a queue of its own that gets what the
// member sends while `sendToPeer` is on (UNIX_MREQ_SEND_TO_PEER), and from
// which the group's listener answers the member alone with private messages.
//
// How private sends wait, against the group's line of parked sends:
//
// - A private message to N needs only N's room. It waits while N's queue is
//   full (N not drop-when-full), in a line of its own, N's: private sends to
//   N complete in the order they began. A drop-when-full N never makes one
//   wait: a full one misses it, counted as dropped.
// - It never waits for a group send. A group send held back by another
//   member (or by a sender's full peer queue) would otherwise hold every
//   answer back, and the listener that answers is also the one that drains
//   the peer queues: one blocked answer would stop it for good.
// - When N gets room, what waits for it is served oldest first across the
//   two lines: a group send that began before the private line's head, and
//   can be delivered, goes first; one that cannot (it also waits for
//   another member) does not hold a younger private send back. So a group
//   send is overtaken at N only at a moment it could not be delivered
//   anyway, and the group's own line stays first come, first served.

extension MemberSettings {
    /// The settings of a member's peer queue: the member's bounds. A peer
    /// never drops, has no loopback and never sends.
    var ofPeer: MemberSettings { MemberSettings(capacity: capacity, queueBytes: queueBytes) }
}

extension MemberState {
    /// This member's sends must wait: they go to its peer too, and the peer
    /// queue is full.
    @inline(__always)
    var peerHoldsSends: Bool { settings.sendToPeer && peer?.isFull == true }

    /// A private message to this member would wait now: older ones wait, or
    /// its queue is full and it does not drop.
    var privateSendsWait: Bool { !parkedPrivateSends.isEmpty || isBlocking }
}

extension GroupState {
    // MARK: Private sends

    /// Why a private message to `member` cannot be sent at all, if so. The
    /// group's `send=members` does not apply: a private message is the
    /// listener's answer, not a send to the group.
    func refusal(ofPrivate messages: some Sequence<Message>, to member: MemberState) -> DeliveryError? {
        if shutDown { return .shutDown }
        if closed { return .groupClosed }
        let limit = settings.maxMessage
        for message in messages where message.count > limit {
            return .messageTooLarge(size: message.count, limit: limit)
        }
        return member.present ? nil : .recipientLeft
    }

    /// A private send: refused, or delivered to `member` now (or dropped, if
    /// it is drop-when-full and full). Nil: it must wait.
    mutating func sendPrivate(
        _ message: Message, to member: MemberState, at now: UInt64 = realtimeNanoseconds(), actions: inout [Action]
    ) -> Result<SendReceipt, DeliveryError>? {
        if let refusal = refusal(ofPrivate: CollectionOfOne(message), to: member) { return .failure(refusal) }
        guard !member.privateSendsWait else { return nil }
        return .success(deliverPrivate(message, to: member, time: acceptanceTime(now), actions: &actions))
    }

    /// A private batch: refused as a whole, or the longest prefix `member`
    /// can take now, at least one message. Nil: not even the first fits.
    mutating func sendPrivate(
        batch messages: [Message], to member: MemberState, at now: UInt64 = realtimeNanoseconds(),
        actions: inout [Action]
    ) -> Result<BatchReceipt, DeliveryError>? {
        if let refusal = refusal(ofPrivate: messages, to: member) { return .failure(refusal) }
        guard !messages.isEmpty else { return .success(.nothing) }
        guard !member.privateSendsWait else { return nil }
        return .success(deliverPrivate(batch: messages, to: member, time: acceptanceTime(now), actions: &actions))
    }

    /// Writable, for a private writer to `member`: it would not wait (or it
    /// would fail at once, which does not wait either).
    func privateSendIsReady(to member: MemberState) -> Bool {
        closed || shutDown || !member.present || !member.privateSendsWait
    }

    /// Parks a private send in `member`'s line.
    mutating func parkPrivate(_ payload: ParkedSend.Payload, to member: MemberState) -> UInt64 {
        let id = makeID()
        member.parkedPrivateSends.append(ParkedSend(id: id, sender: nil, payload: payload))
        return id
    }

    /// Cancels a parked private send. False: it is no longer parked. The
    /// sends behind it wait for the same room, so nothing else can go now.
    func cancelPrivateSend(id: UInt64, to member: MemberState) -> Bool {
        guard let index = member.parkedPrivateSends.firstIndex(where: { $0.id == id }) else { return false }
        member.parkedPrivateSends.remove(at: index)
        return true
    }

    /// Accepts a private message (a group sequence number, no sender, marked
    /// private) and delivers it to `member`, or counts it dropped; the
    /// caller checked it may.
    mutating func deliverPrivate(_ message: Message, to member: MemberState, time: UInt64, actions: inout [Action]) -> SendReceipt {
        let sequence = nextSequence
        nextSequence &+= 1
        sent &+= 1
        message.stamp(sequence: sequence, time: time, senderName: nil, isPrivate: true)
        // A full member here is drop-when-full: enqueue counts the drop.
        var tally = Tally()
        enqueue(message, sequence: sequence, into: member, tracksRoom: false, tally: &tally, actions: &actions)
        return SendReceipt(sequence: sequence, recipients: tally.recipients, dropped: tally.dropped)
    }

    /// Delivers a prefix of `messages` (not empty) to `member`: the first
    /// (the caller checked there is room), then each next one while it has
    /// room, in this lock hold, so they are consecutive in its queue.
    mutating func deliverPrivate(batch messages: [Message], to member: MemberState, time: UInt64, actions: inout [Action]) -> BatchReceipt {
        var receipt = BatchReceipt(delivered: 0, firstSequence: nextSequence, recipients: 0, dropped: 0)
        for message in messages {
            if receipt.delivered > 0 && member.isBlocking { break }
            let one = deliverPrivate(message, to: member, time: time, actions: &actions)
            receipt.delivered += 1
            receipt.recipients += one.recipients
            receipt.dropped += one.dropped
        }
        return receipt
    }

    // MARK: Room

    /// `member`'s queue has room again, or its settings changed: serve what
    /// waits for it, oldest first across the group's line and its private
    /// line (see the top of this file), then the rest of the group's line.
    mutating func roomAppeared(at member: MemberState, actions: inout [Action]) {
        var time: UInt64?
        while let head = member.parkedPrivateSends.first {
            completeParkedSends(before: head.id, actions: &actions)
            guard !member.isBlocking else { break }
            member.parkedPrivateSends.removeFirst()
            // Never older than what the group's line just stamped.
            time = acceptanceTime(time ?? realtimeNanoseconds())
            let receipt: BatchReceipt
            switch head.payload {
            case .one(let message, _):
                receipt = BatchReceipt(single: deliverPrivate(message, to: member, time: time!, actions: &actions))
            case .batch(let messages, _):
                receipt = deliverPrivate(batch: messages, to: member, time: time!, actions: &actions)
            // A relayed group parks private deliveries in the group's line.
            case .relayed: preconditionFailure("a relayed delivery in a member's private line")
            }
            actions.append(.completeSend(head, .success(receipt)))
        }
        // It wakes every writer's poll watch, private writers' included.
        roomMayHaveAppeared(actions: &actions)
    }

    // MARK: The end of a peer

    /// `member` left: its peer queue ends as a member that left does (what
    /// is queued stays readable, then the end of the stream), and private
    /// sends waiting for it fail.
    mutating func endPeer(of member: MemberState, actions: inout [Action]) {
        while let send = member.parkedPrivateSends.popFirst() {
            actions.append(.completeSend(send, .failure(.recipientLeft)))
        }
        guard let peer = member.peer else { return }
        peer.present = false
        while let receive = peer.parkedReceives.popFirst() {
            actions.append(.completeReceive(receive, .success(.endOfStream)))
        }
        fireReadWatches(of: peer, actions: &actions)
    }

    /// The group shuts down: private sends and peer receives that wait fail.
    mutating func shutDownPeer(of member: MemberState, actions: inout [Action]) {
        while let send = member.parkedPrivateSends.popFirst() {
            actions.append(.completeSend(send, .failure(.shutDown)))
        }
        guard let peer = member.peer else { return }
        while let receive = peer.parkedReceives.popFirst() {
            actions.append(.completeReceive(receive, .failure(.shutDown)))
        }
        fireReadWatches(of: peer, actions: &actions)
    }
}

extension Group {
    /// Sends `message` to `member` alone, without waiting: delivered now,
    /// or dropped if `member` is drop-when-full and full. It gets a group
    /// sequence number, no sender name, and is marked private; it is no
    /// other member's. Throws `.wouldBlock` when `member`'s queue is full
    /// (or older private sends to it wait), `.recipientLeft` once it left.
    @discardableResult
    public func trySendPrivate(_ message: Message, to member: Member) throws(DeliveryError) -> SendReceipt {
        precondition(member.group === self, "Group.trySendPrivate: \(member.name) is not a member of \(name)")
        if isRelayed { throw .wouldBlock }
        let now = realtimeNanoseconds()
        let result = locked { state, actions in state.sendPrivate(message, to: member.state(&state), at: now, actions: &actions) }
        guard let result else { throw .wouldBlock }
        return try result.get()
    }

    /// As `trySendPrivate`, parking the send in `member`'s line of private
    /// sends while its queue is full (`.nonBlocking`: `.wouldBlock`). It
    /// waits for `member` only, never for a group send (see Peers.swift).
    /// `completion` runs exactly once, as for `send(_:as:_:completion:)`;
    /// the `Waiting` cancels a parked send, which then delivered nothing.
    /// If `member` leaves first, it fails with `.recipientLeft`.
    @discardableResult
    public func sendPrivate(
        _ message: Message, to member: Member, _ blocking: Blocking,
        completion: @escaping @Sendable (Result<SendReceipt, DeliveryError>) -> Void
    ) -> Waiting? {
        precondition(member.group === self, "Group.sendPrivate: \(member.name) is not a member of \(name)")
        if isRelayed {
            return relay([message], from: nil, privatelyTo: member, blocking) { completion($0.map(SendReceipt.init(single:))) }
        }
        let now = realtimeNanoseconds()
        let step: Step<SendReceipt> = locked { state, actions in
            let target = member.state(&state)
            if let result = state.sendPrivate(message, to: target, at: now, actions: &actions) { return .done(result) }
            guard blocking == .blocking else { return .done(.failure(.wouldBlock)) }
            let id = state.parkPrivate(.one(message, completion), to: target)
            return .parked(Waiting(group: self, id: id, member: nil, privateRecipient: member.state))
        }
        return step.finish(completion)
    }

    /// Private messages to `member`, without waiting: the longest prefix it
    /// can take now, at least one, consecutive in its queue (each with its
    /// own sequence number). Throws `.wouldBlock` when not even the first
    /// fits. The whole batch is checked first, as a group batch is.
    @discardableResult
    public func trySendPrivate(batch messages: [Message], to member: Member) throws(DeliveryError) -> BatchReceipt {
        precondition(member.group === self, "Group.trySendPrivate: \(member.name) is not a member of \(name)")
        if isRelayed { throw .wouldBlock }
        let now = realtimeNanoseconds()
        let result = locked { state, actions in
            state.sendPrivate(batch: messages, to: member.state(&state), at: now, actions: &actions)
        }
        guard let result else { throw .wouldBlock }
        return try result.get()
    }

    /// As `trySendPrivate(batch:to:)`, parking the batch in `member`'s line
    /// when not even its first message fits; at the head, once it does, it
    /// delivers what fits then and completes with the count (a short send).
    @discardableResult
    public func sendPrivate(
        batch messages: [Message], to member: Member, _ blocking: Blocking,
        completion: @escaping @Sendable (Result<BatchReceipt, DeliveryError>) -> Void
    ) -> Waiting? {
        precondition(member.group === self, "Group.sendPrivate: \(member.name) is not a member of \(name)")
        if isRelayed { return relay(messages, from: nil, privatelyTo: member, blocking, completion: completion) }
        let now = realtimeNanoseconds()
        let step: Step<BatchReceipt> = locked { state, actions in
            let target = member.state(&state)
            if let result = state.sendPrivate(batch: messages, to: target, at: now, actions: &actions) { return .done(result) }
            guard blocking == .blocking else { return .done(.failure(.wouldBlock)) }
            let id = state.parkPrivate(.batch(messages, completion), to: target)
            return .parked(Waiting(group: self, id: id, member: nil, privateRecipient: member.state))
        }
        return step.finish(completion)
    }

    /// Sends privately, suspending while `member`'s queue is full. Throws
    /// `.cancelled` if the task is cancelled while parked (nothing was
    /// delivered then).
    public func sendPrivate(_ message: Message, to member: Member) async throws(DeliveryError) -> SendReceipt {
        try await awaitCompletion { completion in
            self.sendPrivate(message, to: member, .blocking, completion: completion)
        }
    }

    /// Sends a private batch, suspending until its first message fits.
    public func sendPrivate(batch messages: [Message], to member: Member) async throws(DeliveryError) -> BatchReceipt {
        try await awaitCompletion { completion in
            self.sendPrivate(batch: messages, to: member, .blocking, completion: completion)
        }
    }
}

extension Member {
    /// A new reader of this member's peer queue (`G/peers/NAME`), one per
    /// open file, like `makeReader`: what this member sent while
    /// `sendToPeer` was on. Once the member has left, it reads what is
    /// queued, then the end of the stream.
    public func makePeerReader() -> Reader {
        Reader(member: self, state: group.state.withLock { ReaderState(member: state(&$0).peer!) })
    }
}
