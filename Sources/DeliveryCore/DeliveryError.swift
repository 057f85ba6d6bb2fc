/// Everything that can go wrong in the core. Front ends map each case to their
/// own error space (the filesystem maps them to errno in one exhaustive switch).
public enum DeliveryError: Error, Sendable, Equatable {
    /// A non-blocking operation would have to wait: a recipient is full (send)
    /// or the queue is empty (receive). Nothing happened.
    case wouldBlock
    /// The message is longer than the group's `maxMessage`. Nobody received it.
    case messageTooLarge(size: Int, limit: Int)
    /// An anonymous send to a members-only group.
    case sendNotPermitted
    /// The sending member has left the group; it can no longer send.
    case senderLeft
    /// A parked operation was cancelled; it delivered or consumed nothing.
    case cancelled
    /// The group was destroyed.
    case groupClosed
    /// The group cannot be destroyed while it has members.
    case groupHasMembers
    /// A member of that name already exists.
    case memberExists
    /// No member of that name.
    case noSuchMember
    /// A setting outside its bounds.
    case invalidSetting(key: String, value: Int, allowed: ClosedRange<Int>)
    /// Topic patterns that break the grammar or its limits.
    case invalidSubscription(InvalidSubscription)
    /// A receive that takes whole frames only (a framed batch) has a buffer
    /// smaller than the oldest message's frame, of `size` bytes. Nothing
    /// was taken.
    case doesNotFit(size: Int, limit: Int)
    /// The group was shut down (the front end is going away); waiters are released.
    case shutDown
    /// The member a private message is for has left the group (before it
    /// was delivered: a parked private send fails so when its member leaves).
    case recipientLeft
    /// A relayed group's sequencer cannot be reached (Relay.swift): nothing
    /// was stored. `reason` says why, for logs.
    case unavailable(reason: String)
}
