import Locking
import Synchronization

// Accounts (docs/contract.md, "Limits per user"): the bytes queued in many
// members, in many groups, against one limit. The filesystem gives each
// owner (uid) one account and every member it owns charges it; the core
// knows only accounts, not who they belong to.
//
// The rules, and why:
//
// - A member whose account is at or over its limit is full, as if its own
//   queue were: a blocking send waits for it, a drop-when-full member misses
//   the message and counts a drop. Below the limit a member takes one more
//   message whole, as a queue below its bounds does, so any message can go
//   once the account drains below the limit (none waits for ever because it
//   is larger than the limit), and the account can pass its limit by less
//   than one message for each group delivering at that moment (each checks
//   under its own lock, then charges).
// - The count is one atomic integer: the members of one account live in
//   groups under different locks, and a delivery must not take a second lock.
//   A charge or a release is one atomic add; an account below its limit adds
//   one relaxed load to each room check. A member without an account (the
//   core's own tests, core-bench) pays a nil test.
// - Waking: when a read in group G2 takes an account below its limit, sends
//   held back by that account's members in other groups (G1) must be woken.
//   Every group where the account has members is registered with it; the
//   release that crosses the limit hands the wake-up to the reader as an
//   action, run after G2's lock is released, which takes each registered
//   group's lock in turn: never one group's lock under another's.
// - No lost wake-up, without a lock on the hot path: a room check that finds
//   the account at its limit first sets `held` (seq_cst), then loads the
//   count again (seq_cst) and decides on that; the crossing release subtracts
//   (seq_cst), then takes `held` (seq_cst exchange), and wakes only if it was
//   set. In the single total order of these operations, either the release's
//   exchange comes after the check's store (it wakes; the wake-up takes G1's
//   lock, so it runs after G1 has parked), or its subtraction comes before
//   the check's second load (which then sees the account below its limit, or
//   a later charge that a later crossing release will answer). A spurious
//   wake-up costs a lock hold and a look at what is parked.

/// Bytes queued in the members that charge it, against a limit.
public final class Account: Sendable {
    /// Bytes; at or over it, the account's members are full.
    public let limit: Int
    private let bytes = Atomic<Int>(0)
    /// Set by a room check that found the account at its limit: someone may
    /// be held back, and the release that crosses below must wake them.
    private let held = Atomic<Bool>(false)
    /// The groups where the account has members, with how many: the groups a
    /// crossing release wakes. (Strong references: a group is here only while
    /// members of the account are in it, and they leave before it closes.)
    private let groups = AdaptiveMutex<[ObjectIdentifier: (group: Group, members: Int)]>([:])

    public init(limit: Int) {
        precondition(limit > 0, "Account: the limit must be positive")
        self.limit = limit
    }

    /// The bytes queued now in the members that charge it.
    public var queuedBytes: Int { bytes.load(ordering: .relaxed) }

    /// Bytes a front end holds for the account's user outside every queue:
    /// blocked writes' messages, line tails. They count against the limit
    /// only when the front end asks whether it may hold more (`mayHold`),
    /// never in a room check: a member is full by what is queued in it, so
    /// that a write held back elsewhere cannot make its writer's own members
    /// full and so wait for itself. Not on any send's path.
    private let outside = Atomic<Int>(0)

    /// What the front end holds now (`hold`).
    public var heldBytes: Int { outside.load(ordering: .relaxed) }

    /// Queued and held together are below the limit: the front end may hold
    /// one more thing for the user, whatever its size (the limit can be
    /// passed by less than one write per thread deciding at that moment).
    public var mayHold: Bool {
        bytes.load(ordering: .relaxed) + outside.load(ordering: .relaxed) < limit
    }

    /// `count` more bytes held for the user (after `mayHold`, or bytes that
    /// were held already and change hands).
    public func hold(_ count: Int) { outside.wrappingAdd(count, ordering: .relaxed) }

    /// `count` held bytes were sent, failed or dropped.
    public func unhold(_ count: Int) { outside.wrappingSubtract(count, ordering: .relaxed) }

    /// At or over the limit: the account's members are full. On the room
    /// checks' path: one relaxed load while below the limit.
    @inline(__always)
    var isFull: Bool {
        guard bytes.load(ordering: .relaxed) >= limit else { return false }
        return holdsBack()
    }

    /// The slow half of `isFull`: the handshake with `release` (see the top
    /// of this file).
    private func holdsBack() -> Bool {
        held.store(true, ordering: .sequentiallyConsistent)
        return bytes.load(ordering: .sequentiallyConsistent) >= limit
    }

    /// `count` bytes entered a queue that charges this account.
    @inline(__always)
    func charge(_ count: Int) {
        bytes.wrappingAdd(count, ordering: .relaxed)
    }

    /// `count` bytes left such a queue. True: this took the account below
    /// its limit while someone was held back; the caller wakes the groups
    /// (`wakeGroups`), with no group lock held.
    @inline(__always)
    func release(_ count: Int) -> Bool {
        let old = bytes.wrappingSubtract(count, ordering: .sequentiallyConsistent).oldValue
        guard old >= limit, old - count < limit else { return false }
        return held.exchange(false, ordering: .sequentiallyConsistent)
    }

    /// A member of the account joined `group` (under the group's lock, so
    /// that the group is registered before any room check can see the member).
    func register(_ group: Group) {
        groups.withLock { groups in
            groups[ObjectIdentifier(group), default: (group, 0)].members += 1
        }
    }

    /// A member of the account left `group`.
    func unregister(_ group: Group) {
        groups.withLock { groups in
            let key = ObjectIdentifier(group)
            guard let entry = groups[key] else { return }
            groups[key] = entry.members > 1 ? (group, entry.members - 1) : nil
        }
    }

    /// Room may have appeared in every group where the account has members:
    /// each completes what it can. Only with no group lock held.
    func wakeGroups() {
        let targets = groups.withLock { groups in groups.values.map(\.group) }
        for group in targets { group.accountHasRoom(self) }
    }

    /// Groups where the account has members now (for tests).
    var registeredGroups: Int { groups.withLock { $0.count } }
}

extension Group {
    /// `account` went below its limit: serve what its members held back, in
    /// their private lines and in the group's line, and wake writers' polls.
    func accountHasRoom(_ account: Account) {
        locked { state, actions in
            for member in state.members where member.account === account {
                if !member.parkedPrivateSends.isEmpty { state.roomAppeared(at: member, actions: &actions) }
            }
            state.roomMayHaveAppeared(actions: &actions)
        }
    }
}
