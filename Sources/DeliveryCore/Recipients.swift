// Who receives a message: the one definition, for the room check and the
// delivery alike (docs/contract.md, "Sending" and "Topic filters").
//
// Every member of the group at the moment of delivery, except the sending
// member unless it has loopback, and except the members whose patterns do not
// match the message's topic. A member that is not a recipient neither
// receives the message, nor holds its sender back, nor counts it as dropped.
//
// Two ways to the same answer, chosen per group by whether any member has a
// filter:
// - none has (`everyMemberReceives`): the recipients are `members` minus the
//   sender, and the hot paths loop over `members` directly, as before filters
//   existed: nothing is collected, nothing is looked up;
// - some have: `collectRecipients` gathers them into the index's reusable
//   buffer, once per message, and the room check and the delivery of that
//   message both read it, in the same lock hold.

extension GroupState {
    /// True while no member has a filter: every member but a non-loopback
    /// sender receives every message.
    @inline(__always)
    var everyMemberReceives: Bool { subscriptions.filteredMembers == 0 }

    /// The recipients of `message` from `sender`, into `subscriptions.recipients`,
    /// when some member has a filter: the members without one, then those
    /// with a pattern that matches the topic, each once, the sender only with
    /// loopback. The cost grows with the recipients and the topic's tokens,
    /// not with the members that do not match.
    @inline(__always)
    mutating func collectRecipients(of message: Message, from sender: MemberState?) {
        subscriptions.collect(recipientsOf: message, from: sender)
    }

    /// True when no recipient of `message` that holds senders back is full.
    /// With filters, it leaves the recipients collected for the delivery of
    /// `message` that follows in this lock hold (`deliver` reads them).
    @inline(__always)
    mutating func recipientsHaveRoom(for message: Message, from sender: MemberState?) -> Bool {
        if everyMemberReceives { return recipientsHaveRoom(from: sender) }
        if let sender, sender.peerHoldsSends { return false }
        collectRecipients(of: message, from: sender)
        for member in subscriptions.recipients where member.isBlocking { return false }
        return true
    }

    /// True when `message` from `sender` would be accepted now: no older
    /// send is waiting, and none of its recipients that hold senders back is
    /// full. (`canSendNow(from:)`, asking about every member whatever its
    /// filter, is poll's conservative answer.)
    @inline(__always)
    mutating func canSendNow(_ message: Message, from sender: MemberState?) -> Bool {
        parkedSends.isEmpty && recipientsHaveRoom(for: message, from: sender)
    }

    /// Indexes a member's new patterns: the index forgets it under its old
    /// settings before they change, and takes it again under the new ones.
    mutating func apply(_ settings: MemberSettings, to member: MemberState) {
        guard settings.subscribe != member.settings.subscribe else {
            member.settings = settings
            return
        }
        subscriptions.remove(member)
        member.settings = settings
        subscriptions.add(member)
    }
}

extension ParkedSend {
    /// The message that must fit before this send can go: the one, or the
    /// batch's first.
    var firstMessage: Message {
        switch payload {
        case .one(let message, _): message
        case .batch(let messages, _): messages[0]
        case .relayed(let message, _, _): message
        }
    }
}
