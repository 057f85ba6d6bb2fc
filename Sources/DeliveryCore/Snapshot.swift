/// A consistent view of a group at one instant.
public struct GroupSnapshot: Sendable, Equatable {
    public let name: String
    public let settings: GroupSettings
    /// Messages the group accepted.
    public let sent: UInt64
    /// Sends parked because a recipient is full.
    public let blockedWriters: Int
    /// In the order they joined.
    public let members: [MemberSnapshot]
}

public struct MemberSnapshot: Sendable, Equatable {
    public let name: String
    public let settings: MemberSettings
    public let queued: Int
    public let queuedBytes: Int
    public let full: Bool
    /// Messages that entered this member's queue.
    public let delivered: UInt64
    /// Messages missed because the queue was full (drop-when-full members only).
    public let dropped: UInt64
    /// What waits in the member's peer queue (`G/peers/NAME`), and whether
    /// it is full.
    public let peerQueued: Int
    public let peerFull: Bool
}
