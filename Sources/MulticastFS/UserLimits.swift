import DeliveryCore
import FileSystemTypes
import Locking
import SystemPackage

/// The mount's limits per user (docs/contract.md, "Limits per user"), each
/// per uid, root's included.
public struct UserLimits: Sendable, Equatable {
    /// Groups a user may own.
    public var groups: Int
    /// Members a user may own, across all groups.
    public var members: Int
    /// Bytes queued in the members a user owns (and their peer queues), and
    /// held for the user's blocked writes and line tails.
    public var bytes: Int

    public init(groups: Int = 1024, members: Int = 16384, bytes: Int = 1 << 30) {
        self.groups = groups
        self.members = members
        self.bytes = bytes
    }
}

/// What one user owns now, against the limits.
public struct UserUsage: Sendable, Equatable {
    public let uid: UInt32
    public let groups: Int
    public let members: Int
    public let queuedBytes: Int
    /// What the daemon holds for the user outside every queue (blocked
    /// writes, line tails, open snapshots): with `queuedBytes`, what counts
    /// against `user_bytes` when something more would be held.
    public let heldBytes: Int
}

/// What each user owns: groups and members counted here, bytes in the
/// user's `Account`, which every member the user made charges.
///
/// Who is charged: the owner at creation, for the object's life. chown does
/// not move a charge. Only root may give a file away (the kernel requires
/// CAP_CHOWN, `default_permissions`), so no user can shed a charge by it;
/// and a queue filled under one user's limit would otherwise land on
/// another's at once, past it, with no way to refuse a chown that is
/// already done. `status` and `.metrics` show the charged owner.
final class UserTable: Sendable {
    private struct Entry {
        var groups = 0
        var members = 0
        let account: Account
    }

    let limits: UserLimits
    private let entries = AdaptiveMutex<(users: [UInt32: Entry], charged: [ObjectIdentifier: (uid: UInt32, group: Bool)])>(([:], [:]))

    init(limits: UserLimits) { self.limits = limits }

    enum Kind { case group, member }

    /// Takes one group or member for `uid` (EDQUOT past its limit), and
    /// returns the account a member charges; `charged` binds it to the
    /// object made, `untake` gives it back if none was.
    func take(_ kind: Kind, for uid: UserID) throws(Errno) -> Account {
        try entries.withLock { (table) throws(Errno) -> Account in
            let limits = limits
            try update(&table.users, uid) { (entry) throws(Errno) in
                switch kind {
                case .group:
                    guard entry.groups < limits.groups else { throw .diskQuotaExceeded }
                    entry.groups += 1
                case .member:
                    guard entry.members < limits.members else { throw .diskQuotaExceeded }
                    entry.members += 1
                }
            }
            return table.users[uid.rawValue]!.account
        }
    }

    /// `object` (a group, or a member's handle as its node keeps it) was
    /// made, charged to `uid` by `take`.
    func charged(_ object: AnyObject, _ kind: Kind, to uid: UserID) {
        entries.withLock { table in table.charged[ObjectIdentifier(object)] = (uid.rawValue, kind == .group) }
    }

    /// `uid`'s account, for what the filesystem holds for it outside every
    /// queue (a blocked write's messages, a line tail): charged to the
    /// writer, whoever owns the files written.
    func account(for uid: UInt32) -> Account {
        entries.withLock { table in
            if let entry = table.users[uid] { return entry.account }
            let entry = Entry(account: Account(limit: limits.bytes))
            table.users[uid] = entry
            return entry.account
        }
    }

    func untake(_ kind: Kind, for uid: UserID) {
        entries.withLock { table in
            if kind == .group { table.users[uid.rawValue]?.groups -= 1 } else { table.users[uid.rawValue]?.members -= 1 }
        }
    }

    /// A group or member charged here is gone: its owner's count goes down.
    func release(_ object: AnyObject) {
        entries.withLock { table in
            guard let charge = table.charged.removeValue(forKey: ObjectIdentifier(object)) else { return }
            if charge.group { table.users[charge.uid]?.groups -= 1 } else { table.users[charge.uid]?.members -= 1 }
        }
    }

    private func update(_ entries: inout [UInt32: Entry], _ uid: UserID,
                        _ change: (inout Entry) throws(Errno) -> Void) throws(Errno) {
        var entry = entries[uid.rawValue] ?? Entry(account: Account(limit: limits.bytes))
        try change(&entry)
        entries[uid.rawValue] = entry
    }

    /// Every user who owns something or has bytes queued, by uid. (An
    /// entry stays once made: its account may still be charged by members
    /// that left and are still read.)
    var usage: [UserUsage] {
        entries.withLock { table in
            table.users.keys.sorted().compactMap { uid in
                let entry = table.users[uid]!
                let bytes = entry.account.queuedBytes, held = entry.account.heldBytes
                guard entry.groups != 0 || entry.members != 0 || bytes != 0 || held != 0 else { return nil }
                return UserUsage(uid: uid, groups: entry.groups, members: entry.members, queuedBytes: bytes, heldBytes: held)
            }
        }
    }
}
