public import DeliveryCore

/// The text of `G/status`: nested-keyed lines, as cgroup v2 interface files.
///
///     group NAME send=... capacity=... queue_bytes=... max_message=... members=N sent=N blocked_writers=N message=write|line send_to_peer=0|1
///     member NAME queued=N queued_bytes=N capacity=N queue_bytes=N loopback=0|1 drop_when_full=0|1 full=0|1 delivered=N dropped=N send_to_peer=0|1 peer_queued=N peer_full=0|1 subscribe=[PATTERN,...]
///
/// A group shared with other mounts (a cluster) lists the members of every
/// mount, each with `node=NAME` last; those of other mounts with the counters
/// their node last reported, and their peer queues (which live there) as 0.
public enum StatusFormat {
    public static func render(_ snapshot: GroupSnapshot, node: String? = nil, remote: [RemoteMember] = [],
                              users: [UserUsage] = []) -> String {
        let settings = snapshot.settings
        var text = "group \(snapshot.name) send=\(settings.sendPolicy.rawValue) capacity=\(settings.capacity)"
            + " queue_bytes=\(settings.queueBytes) max_message=\(settings.maxMessage)"
            + " members=\(snapshot.members.count + remote.count) sent=\(snapshot.sent) blocked_writers=\(snapshot.blockedWriters)"
            + " message=\(settings.messageBoundary.rawValue)" + peerKeys(settings) + "\n"
        for member in snapshot.members {
            text += "member \(member.name) queued=\(member.queued) queued_bytes=\(member.queuedBytes)"
                + " capacity=\(member.settings.capacity) queue_bytes=\(member.settings.queueBytes)"
                + " loopback=\(bit(member.settings.loopback)) drop_when_full=\(bit(member.settings.dropWhenFull))"
                + " full=\(bit(member.full)) delivered=\(member.delivered) dropped=\(member.dropped)" + peerKeys(member)
            // Appended last, so that parsers of the keys before it keep working.
            text += " subscribe=\(member.settings.subscribe.text)" + nodeKey(node) + "\n"
        }
        for member in remote {
            text += "member \(member.name) queued=\(member.queued) queued_bytes=\(member.queuedBytes)"
                + " capacity=\(member.settings.capacity) queue_bytes=\(member.settings.queueBytes)"
                + " loopback=\(bit(member.settings.loopback)) drop_when_full=\(bit(member.settings.dropWhenFull))"
                + " full=\(bit(member.full)) delivered=\(member.delivered) dropped=\(member.dropped)"
                + " send_to_peer=\(bit(member.settings.sendToPeer)) peer_queued=0 peer_full=0"
                + " subscribe=\(member.settings.subscribe.text)" + nodeKey(member.node) + "\n"
        }
        text += userLines(users)
        return text
    }

    /// Limits per user: after every member, one line per user who owns
    /// something on the mount (the owner charged at creation), with what
    /// counts against `user_groups`, `user_members` and `user_bytes`.
    ///
    ///     user UID groups=N members=N queued_bytes=N held_bytes=N
    private static func userLines(_ users: [UserUsage]) -> String {
        users.map {
            "user \($0.uid) groups=\($0.groups) members=\($0.members) queued_bytes=\($0.queuedBytes) held_bytes=\($0.heldBytes)\n"
        }.joined()
    }

    /// After `subscribe=`, whose value may be empty: a parser that splits
    /// the line on spaces still finds every key.
    private static func nodeKey(_ node: String?) -> String { node.map { " node=\($0)" } ?? "" }

    private static func bit(_ value: Bool) -> Int { value ? 1 : 0 }

    // Connected groups: appended after the keys of v1, so that a parser of
    // those keeps working.
    private static func peerKeys(_ settings: GroupSettings) -> String { " send_to_peer=\(bit(settings.sendToPeer))" }

    private static func peerKeys(_ member: MemberSnapshot) -> String {
        " send_to_peer=\(bit(member.settings.sendToPeer)) peer_queued=\(member.peerQueued) peer_full=\(bit(member.peerFull))"
    }
}
