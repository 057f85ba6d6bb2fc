public import DeliveryCore

/// The text of `ROOT/.metrics`: the counters and gauges of every group's
/// `status`, in the Prometheus text exposition format, version 0.0.4, from
/// the same snapshots (`Group.snapshot()`).
///
///     # HELP mcastfs_group_sent_messages_total Messages the group accepted.
///     # TYPE mcastfs_group_sent_messages_total counter
///     mcastfs_group_sent_messages_total{group="chat"} 17
///
/// One family after another, each with its HELP and TYPE lines even when it
/// has no sample (no group, no member), so that the file always names every
/// metric; groups in the order they were made, members in the order they
/// joined. Counters end in `_total` (the 0.0.4 format keeps the suffix in
/// the TYPE line; OpenMetrics readers drop it).
public enum MetricsFormat {
    private enum Kind: String {
        case counter, gauge
    }

    private struct GroupFamily: Sendable {
        let name: String
        let kind: Kind
        let help: String
        let value: @Sendable (GroupSnapshot) -> UInt64
    }

    private struct MemberFamily: Sendable {
        let name: String
        let kind: Kind
        let help: String
        let value: @Sendable (MemberSnapshot) -> UInt64
    }

    /// Each of `status`'s counters and gauges, by the key it has there.
    private static let groupFamilies: [GroupFamily] = [
        GroupFamily(name: "mcastfs_group_members", kind: .gauge,
                    help: "Members of the group (status: members).") { UInt64($0.members.count) },
        GroupFamily(name: "mcastfs_group_sent_messages_total", kind: .counter,
                    help: "Messages the group accepted (status: sent).") { $0.sent },
        GroupFamily(name: "mcastfs_group_blocked_writers", kind: .gauge,
                    help: "Writes waiting because a recipient's queue is full (status: blocked_writers).") {
            UInt64($0.blockedWriters)
        },
    ]

    private static let memberFamilies: [MemberFamily] = [
        MemberFamily(name: "mcastfs_member_delivered_messages_total", kind: .counter,
                     help: "Messages that entered the member's queue (status: delivered).") { $0.delivered },
        MemberFamily(name: "mcastfs_member_dropped_messages_total", kind: .counter,
                     help: "Messages the member missed because it was drop-when-full and full (status: dropped).") {
            $0.dropped
        },
        MemberFamily(name: "mcastfs_member_queued_messages", kind: .gauge,
                     help: "Messages waiting in the member's queue (status: queued).") { UInt64($0.queued) },
        MemberFamily(name: "mcastfs_member_queued_bytes", kind: .gauge,
                     help: "Bytes waiting in the member's queue (status: queued_bytes).") { UInt64($0.queuedBytes) },
        MemberFamily(name: "mcastfs_member_full", kind: .gauge,
                     help: "1 when the member's queue is full, else 0 (status: full).") { $0.full ? 1 : 0 },
        // The limits beside what is queued, so that an alert can say "90 %
        // full" without knowing the settings.
        MemberFamily(name: "mcastfs_member_capacity_messages", kind: .gauge,
                     help: "Messages the member's queue holds at most (status: capacity).") {
            UInt64($0.settings.capacity)
        },
        MemberFamily(name: "mcastfs_member_capacity_bytes", kind: .gauge,
                     help: "Bytes the member's queue holds at most (status: queue_bytes).") {
            UInt64($0.settings.queueBytes)
        },
    ]

    private struct UserFamily: Sendable {
        let name: String
        let help: String
        let value: @Sendable (UserUsage) -> Int
    }

    /// Limits per user: what counts against each, by the charged owner's uid
    /// (status: the `user` lines).
    private static let userFamilies: [UserFamily] = [
        UserFamily(name: "mcastfs_user_groups", help: "Groups the user owns, against user_groups (status: user groups).") { $0.groups },
        UserFamily(name: "mcastfs_user_members", help: "Members the user owns, against user_members (status: user members).") {
            $0.members
        },
        UserFamily(name: "mcastfs_user_queued_bytes",
                   help: "Bytes queued in the members the user owns, against user_bytes (status: user queued_bytes).") {
            $0.queuedBytes
        },
        UserFamily(name: "mcastfs_user_held_bytes",
                   help: "Bytes the daemon holds for the user outside every queue, against user_bytes with the queued ones (status: user held_bytes).") {
            $0.heldBytes
        },
    ]

    /// Every family's name, in the order `render` writes them.
    public static var familyNames: [String] {
        ["mcastfs_groups"] + groupFamilies.map(\.name) + memberFamilies.map(\.name) + userFamilies.map(\.name)
    }

    public static func render(_ groups: [GroupSnapshot], users: [UserUsage] = []) -> String {
        var text = ""
        header(&text, "mcastfs_groups", .gauge, "Groups in the filesystem.")
        text += "mcastfs_groups \(groups.count)\n"
        let groupLabels = groups.map { "group=\"\(escapeLabelValue($0.name))\"" }
        for family in groupFamilies {
            header(&text, family.name, family.kind, family.help)
            for (group, labels) in zip(groups, groupLabels) {
                text += "\(family.name){\(labels)} \(family.value(group))\n"
            }
        }
        let memberLabels = zip(groups, groupLabels).map { group, labels in
            group.members.map { "\(labels),member=\"\(escapeLabelValue($0.name))\"" }
        }
        for family in memberFamilies {
            header(&text, family.name, family.kind, family.help)
            for (group, labels) in zip(groups, memberLabels) {
                for (member, labels) in zip(group.members, labels) {
                    text += "\(family.name){\(labels)} \(family.value(member))\n"
                }
            }
        }
        for family in userFamilies {
            header(&text, family.name, .gauge, family.help)
            for user in users { text += "\(family.name){uid=\"\(user.uid)\"} \(family.value(user))\n" }
        }
        return text
    }

    private static func header(_ text: inout String, _ name: String, _ kind: Kind, _ help: String) {
        text += "# HELP \(name) \(escapeHelp(help))\n# TYPE \(name) \(kind.rawValue)\n"
    }

    /// A label value as the format wants it: backslash, double quote and
    /// line feed escaped. Names cannot hold a line feed today (they have no
    /// control characters), but the format must not depend on that rule.
    static func escapeLabelValue(_ value: String) -> String {
        escape(value, quote: true)
    }

    /// HELP text: backslash and line feed escaped (a quote is just a quote).
    static func escapeHelp(_ value: String) -> String {
        escape(value, quote: false)
    }

    private static func escape(_ value: String, quote: Bool) -> String {
        guard value.utf8.contains(where: { $0 == UInt8(ascii: "\\") || $0 == UInt8(ascii: "\n") || (quote && $0 == UInt8(ascii: "\"")) })
        else { return value }
        var escaped = ""
        for scalar in value.unicodeScalars {
            switch scalar {
            case "\\": escaped += "\\\\"
            case "\n": escaped += "\\n"
            case "\"" where quote: escaped += "\\\""
            default: escaped.unicodeScalars.append(scalar)
            }
        }
        return escaped
    }
}
