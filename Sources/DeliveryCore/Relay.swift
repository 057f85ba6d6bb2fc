// Relayed groups: a group whose order is decided outside this process.
//
// A group spanning several machines (docs/cluster.md) cannot number its
// messages under its own lock: the order is the one a shared log stores them
// in, and every node must deliver in that order. A relayed group therefore
// splits what a local group does in one lock hold in two:
//
// - its sends are checked here (size, `send=members`, a sender or private
//   recipient that left) and handed to its `Sequencer`, which stores them in
//   the shared order and completes the send once they are stored. Nothing is
//   delivered at send time, not even to this node's own members;
// - the sequencer hands back every stored message, this node's and the
//   others', in the shared order, one at a time, with its stamp (sequence,
//   time, sender), through `deliver(_:stamp:completion:)`. Delivery decides
//   the recipients among the members present here, and is atomic over them
//   as a local send is; a full recipient that holds senders back parks the
//   delivery in the group's line, and everything after it waits behind it,
//   so that every member sees the shared order.
//
// The core knows nothing of how or where the order is kept: the Cluster
// module implements `Sequencer` on NATS JetStream.

/// What a relayed group's sends are handed to.
public protocol Sequencer: Sendable {
    /// Puts `submission`'s messages, in order, into the group's shared order,
    /// and completes with how many of them were stored, from the first (a
    /// short send stored a prefix, back to back). Blocking: waits while the
    /// shared order has no room; `.nonBlocking`: fails with `.wouldBlock`
    /// instead. `completion` runs exactly once, at once or later, never
    /// under the group's lock; the `Waiting`, when given, cancels a send that
    /// is still waiting (and stored nothing).
    func submit(_ submission: Submission, _ blocking: Blocking,
                completion: @escaping @Sendable (Result<Sequenced, DeliveryError>) -> Void) -> Waiting?

    /// True when a send would not wait now, as far as the sequencer knows:
    /// writers' poll readiness. The sequencer calls `Group.writersMayProceed()`
    /// when this may have become true.
    var acceptsNow: Bool { get }

    /// Sends waiting now for room in the shared order (`blocked_writers`).
    var waitingSends: Int { get }
}

/// Messages on their way to a relayed group's sequencer.
public struct Submission: Sendable {
    /// Not empty; each within the group's `maxMessage`.
    public let messages: [Message]
    /// The sending member's name on this node; nil for an anonymous send
    /// (and for a private message).
    public let sender: String?
    /// The one member a private message is for (`G/peers/NAME`).
    public let privateTo: String?
}

/// What a sequencer stored of a submission.
public struct Sequenced: Sendable, Equatable {
    /// The submission's first `stored` messages, from its start.
    public let stored: Int
    /// The sequence number of the first of them (0 when none was).
    public let firstSequence: UInt64

    public init(stored: Int, firstSequence: UInt64) {
        self.stored = stored
        self.firstSequence = firstSequence
    }
}

/// A stored message's place in the shared order, as its sequencer gives it.
public struct Stamp: Sendable, Equatable {
    /// Its number in the shared order: greater than every number delivered
    /// to this group before it.
    public let sequence: UInt64
    /// CLOCK_REALTIME in nanoseconds, as the shared order stamped it.
    public let time: UInt64
    /// The member that sent it (on whatever node), for frames; nil for an
    /// anonymous send and a private message.
    public let senderName: String?
    /// The sender is a member on this node: it is not a recipient unless it
    /// has loopback, and its peer queue receives it with `send_to_peer`.
    public let sentHere: Bool
    /// The one member a private message is for; nil for a group message.
    public let privateTo: String?

    public init(sequence: UInt64, time: UInt64, senderName: String?, sentHere: Bool, privateTo: String?) {
        self.sequence = sequence
        self.time = time
        self.senderName = senderName
        self.sentHere = sentHere
        self.privateTo = privateTo
    }
}

extension Group {
    /// Hands checked messages to the sequencer (the caller knows there is one).
    func relay(
        _ messages: [Message], from sender: Member?, privatelyTo recipient: Member? = nil, _ blocking: Blocking,
        completion: @escaping @Sendable (Result<BatchReceipt, DeliveryError>) -> Void
    ) -> Waiting? {
        let refusal: DeliveryError? = state.withLock { state in
            if let recipient { return state.refusal(ofPrivate: messages, to: recipient.state(&state)) }
            return state.refusal(ofBatch: messages, from: sender.map { $0.state(&state) })
        }
        if let refusal {
            completion(.failure(refusal))
            return nil
        }
        guard !messages.isEmpty else {
            completion(.success(.nothing))
            return nil
        }
        let submission = Submission(messages: messages, sender: recipient == nil ? sender?.name : nil,
                                    privateTo: recipient?.name)
        return sequencer!.submit(submission, blocking) { result in
            // Recipients are decided on every node at delivery: a send that
            // was stored knows none of them.
            completion(result.map { BatchReceipt(delivered: $0.stored, firstSequence: $0.firstSequence, recipients: 0, dropped: 0) })
        }
    }

    /// Delivers a message of the shared order to this node's recipients:
    /// now, or (a recipient that holds senders back is full, or an earlier
    /// delivery waits) once they have room, behind every delivery that came
    /// before it. `completion` runs once it is delivered, after the group's
    /// lock is released (at once, before this returns, when nothing waits),
    /// or when the group shuts down. Only for relayed groups.
    ///
    /// The recipients: for a private message, its member if present here;
    /// otherwise every member present whose filter matches, less the sender
    /// (if it is here) unless it has loopback, plus the sender's peer queue
    /// with `send_to_peer`. A member receives only messages numbered above
    /// the sequence it was given (`Member.receiveOnly(after:)`).
    public func deliver(_ message: Message, stamp: Stamp, completion: @escaping @Sendable () -> Void) {
        precondition(isRelayed, "Group.deliver(_:stamp:): \(name) is not a relayed group")
        let now: Bool = locked { state, actions in
            state.deliverRelayed(message, stamp: stamp, completion: completion, actions: &actions)
        }
        if now { completion() }
    }

    /// Delivers the leading messages of a run of the shared order that can
    /// go now (their recipients that hold senders back have room, and no
    /// delivery waits before them), in one hold of the group's lock: a
    /// waiting reader is woken once for all of them, not once each. Returns
    /// how many went, from the start; the caller passes the rest to
    /// `deliver(_:stamp:completion:)`, one at a time, which parks the first.
    /// Only for relayed groups.
    public func deliverNow(_ run: [(message: Message, stamp: Stamp)]) -> Int {
        precondition(isRelayed, "Group.deliverNow: \(name) is not a relayed group")
        return locked { state, actions in
            if state.closed || state.shutDown { return run.count }
            var delivered = 0
            for (message, stamp) in run {
                guard state.parkedSends.isEmpty, state.relayedRecipientsHaveRoom(message, stamp: stamp) else { break }
                state.deliverRelayedNow(message, stamp: stamp, actions: &actions)
                delivered += 1
            }
            return delivered
        }
    }
}

extension Member {
    /// From now on, this member of a relayed group receives only messages
    /// numbered above `sequence`. A member joins a relayed group before its
    /// join is known everywhere, so that it misses nothing stored after the
    /// shared order's last message at that moment (`sequence`, learnt once
    /// the join is known). One that joined `awaitingItsSequence` has had
    /// what its node delivered in between kept aside: what of it is
    /// numbered above `sequence` is queued now, as if delivered now, and
    /// the rest, stored before it joined, is dropped unseen.
    public func receiveOnly(after sequence: UInt64) {
        group.locked { groupState, actions in
            let member = state(&groupState)
            member.receivesAfter = sequence
            guard let early = member.early else { return }
            let heldBack = member.holdsRelayedBack
            member.early = nil
            member.earlyBytes = 0
            var tally = GroupState.Tally()
            for message in early where message.sequence > sequence {
                groupState.enqueue(message, sequence: message.sequence, into: member, tracksRoom: false, tally: &tally, actions: &actions)
            }
            if heldBack && !member.isBlocking { groupState.roomAppeared(at: member, actions: &actions) }
        }
    }
}

extension Group {
    /// The sequencer may accept sends again: writers' polls look again.
    public func writersMayProceed() {
        locked { state, actions in state.fireWriteWatches(actions: &actions) }
    }
}

extension MemberState {
    /// A recipient of a relayed delivery that makes it wait: full and not
    /// dropping; or, while its place in the shared order is not known,
    /// holding aside as much as its queue could hold (so what is kept aside
    /// stays bounded, whatever the member's settings: the join takes a
    /// round trip or two to the cluster).
    var holdsRelayedBack: Bool {
        guard let early else { return isBlocking }
        return early.count >= settings.capacity || earlyBytes >= settings.queueBytes
    }
}

extension GroupState {
    /// Into the member's queue, or aside while its place in the shared
    /// order is not known yet (`receiveOnly(after:)` sorts it out).
    func enqueueRelayed(_ message: Message, into member: MemberState, tally: inout Tally, actions: inout [Action]) {
        if member.early != nil {
            member.early!.append(message)
            member.earlyBytes += message.count
            return
        }
        enqueue(message, sequence: message.sequence, into: member, tracksRoom: false, tally: &tally, actions: &actions)
    }

    /// Delivers now (true: the caller completes it), or parks the delivery
    /// at the end of the line (false: it completes from there).
    mutating func deliverRelayed(
        _ message: Message, stamp: Stamp, completion: @escaping @Sendable () -> Void, actions: inout [Action]
    ) -> Bool {
        if closed || shutDown { return true }
        guard parkedSends.isEmpty, relayedRecipientsHaveRoom(message, stamp: stamp) else {
            parkedSends.append(ParkedSend(id: makeID(), sender: nil, payload: .relayed(message, stamp, completion)))
            return false
        }
        deliverRelayedNow(message, stamp: stamp, actions: &actions)
        return true
    }

    /// The local member that sent a stamped message, if it is here.
    private func localSender(of stamp: Stamp) -> MemberState? {
        guard stamp.sentHere, let name = stamp.senderName else { return nil }
        return membersByName[ExactName(name)]
    }

    private func privateRecipient(of stamp: Stamp) -> MemberState? {
        guard let name = stamp.privateTo, let member = membersByName[ExactName(name)],
              member.receivesAfter < stamp.sequence else { return nil }
        return member
    }

    /// True when no recipient of the stamped message that holds senders
    /// back is full. With filters, it leaves the message's recipients
    /// collected for `deliverRelayedNow`, in this lock hold.
    mutating func relayedRecipientsHaveRoom(_ message: Message, stamp: Stamp) -> Bool {
        if stamp.privateTo != nil { return !(privateRecipient(of: stamp)?.holdsRelayedBack ?? false) }
        let sender = localSender(of: stamp)
        if let sender, sender.peerHoldsSends { return false }
        if everyMemberReceives {
            for member in members where member.holdsRelayedBack && member.receivesAfter < stamp.sequence {
                if member !== sender || member.settings.loopback { return false }
            }
            return true
        }
        collectRecipients(of: message, from: sender)
        for member in subscriptions.recipients where member.holdsRelayedBack && member.receivesAfter < stamp.sequence {
            return false
        }
        return true
    }

    /// Delivers a stamped message; the caller checked there is room (with
    /// filters, in this lock hold, which collected its recipients).
    mutating func deliverRelayedNow(_ message: Message, stamp: Stamp, actions: inout [Action]) {
        sent &+= 1
        nextSequence = stamp.sequence &+ 1
        if stamp.time > lastTime { lastTime = stamp.time }
        message.stamp(sequence: stamp.sequence, time: stamp.time, senderName: stamp.senderName,
                      isPrivate: stamp.privateTo != nil)
        var tally = Tally()
        if stamp.privateTo != nil {
            if let member = privateRecipient(of: stamp) {
                enqueueRelayed(message, into: member, tally: &tally, actions: &actions)
            }
            return
        }
        let sender = localSender(of: stamp)
        if everyMemberReceives {
            for member in members where (member !== sender || member.settings.loopback) && member.receivesAfter < stamp.sequence {
                enqueueRelayed(message, into: member, tally: &tally, actions: &actions)
            }
        } else {
            for member in subscriptions.recipients where member.receivesAfter < stamp.sequence {
                enqueueRelayed(message, into: member, tally: &tally, actions: &actions)
            }
        }
        if let sender, sender.settings.sendToPeer, let peer = sender.peer {
            enqueue(message, sequence: stamp.sequence, into: peer, tracksRoom: false, tally: &tally, actions: &actions)
        }
    }
}
