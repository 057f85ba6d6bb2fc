import Glibc

// The index that finds a message's recipients among filtered members: a trie
// of pattern tokens. Finding the members whose patterns match a topic walks
// the topic's tokens down the trie (a literal child and the `*` child at each
// level, the `>` members on the way), so it costs time in the tokens and in
// the members that match, not in the members that do not: a group of 1,000
// members of which one matches sends as fast as a group of 10 (core-bench,
// "filtered"). Touched only under the group's lock, as everything in
// GroupState.

/// A token as a dictionary key: a plain pointer, length and hash, so that a
/// lookup retains, releases and allocates nothing (an enum of an owned
/// array and a borrowed pointer spent most of the walk in retain and
/// release, perf). The bytes of a key stored in a node are the node's own
/// allocation, freed when the key leaves it; a key made for a lookup
/// borrows the payload's bytes, only for that lookup.
struct TokenKey: Equatable {
    let bytes: UnsafeRawBufferPointer
    /// FNV-1a of the bytes, its high bits folded into the low ones that
    /// pick a slot.
    let hash: UInt64

    init(borrowing bytes: UnsafeRawBufferPointer) {
        var hash: UInt64 = 0xcbf2_9ce4_8422_2325
        for byte in bytes { hash = (hash ^ UInt64(byte)) &* 0x0000_0100_0000_01b3 }
        self.bytes = bytes
        self.hash = hash ^ (hash >> 32)
    }

    /// A key that owns a copy of its bytes: `deallocate()` it when it
    /// leaves its node.
    func copied() -> TokenKey {
        let storage = UnsafeMutableRawBufferPointer.allocate(byteCount: max(bytes.count, 1), alignment: 1)
        if bytes.count > 0 { storage.copyMemory(from: bytes) }
        return TokenKey(bytes: UnsafeRawBufferPointer(rebasing: storage[..<bytes.count]), hash: hash)
    }

    private init(bytes: UnsafeRawBufferPointer, hash: UInt64) {
        self.bytes = bytes
        self.hash = hash
    }

    func deallocate() { UnsafeMutableRawPointer(mutating: bytes.baseAddress!).deallocate() }

    static func == (lhs: TokenKey, rhs: TokenKey) -> Bool {
        lhs.hash == rhs.hash && lhs.bytes.count == rhs.bytes.count
            && (lhs.bytes.count == 0 || memcmp(lhs.bytes.baseAddress!, rhs.bytes.baseAddress!, lhs.bytes.count) == 0)
    }
}

/// A node's literal children by token: open addressing with linear probing
/// on the token's own hash. A Dictionary would run Hasher (SipHash, seeded
/// for every lookup) on top of it: a fifth of the filtered send path (perf).
struct LiteralChildren {
    struct Slot {
        let key: TokenKey
        let node: TopicNode
    }

    /// A power of two long, or empty; at most half full.
    private var slots: [Slot?] = []
    private(set) var count = 0

    var isEmpty: Bool { count == 0 }
    var keys: [TokenKey] { slots.compactMap { $0?.key } }

    @inline(__always)
    private func home(of key: TokenKey, mask: Int) -> Int { Int(truncatingIfNeeded: key.hash) & mask }

    private func index(of key: TokenKey) -> Int? {
        guard !slots.isEmpty else { return nil }
        let mask = slots.count - 1
        var index = home(of: key, mask: mask)
        while let slot = slots[index] {
            if slot.key == key { return index }
            index = (index + 1) & mask
        }
        return nil
    }

    subscript(key: TokenKey) -> TopicNode? {
        guard let index = index(of: key) else { return nil }
        return slots[index]!.node
    }

    /// Adds a child whose key is not there yet.
    mutating func insert(_ node: TopicNode, for key: TokenKey) {
        if (count + 1) * 2 > slots.count { grow() }
        place(Slot(key: key, node: node))
        count += 1
    }

    private mutating func place(_ slot: Slot) {
        let mask = slots.count - 1
        var index = home(of: slot.key, mask: mask)
        while slots[index] != nil { index = (index + 1) & mask }
        slots[index] = slot
    }

    private mutating func grow() {
        let old = slots
        slots = Array(repeating: nil, count: max(8, old.count * 2))
        for case let slot? in old { place(slot) }
    }

    /// Removes the child for `key`; the key it was stored under, whose bytes
    /// the caller frees.
    mutating func remove(_ key: TokenKey) -> TokenKey? {
        guard var hole = index(of: key) else { return nil }
        let stored = slots[hole]!.key
        slots[hole] = nil
        count -= 1
        // Backward-shift deletion: move up each following entry of the run
        // that the hole would cut off from its home slot.
        let mask = slots.count - 1
        var next = (hole + 1) & mask
        while let slot = slots[next] {
            let home = home(of: slot.key, mask: mask)
            // The entry may stay when its home lies cyclically in (hole, next].
            let stays = hole <= next ? (hole < home && home <= next) : (hole < home || home <= next)
            if !stays {
                slots[hole] = slot
                slots[next] = nil
                hole = next
            }
            next = (next + 1) & mask
        }
        return stored
    }
}

/// One level of the trie: the patterns whose tokens so far lead here.
final class TopicNode: @unchecked Sendable {  // under the group lock, as MemberState
    @exclusivity(unchecked) var literals = LiteralChildren()
    /// The `*` child.
    @exclusivity(unchecked) var any: TopicNode?
    /// Members with a pattern that ends here.
    @exclusivity(unchecked) var ending: [MemberState] = []
    /// Members with a pattern that goes on with `>` from here: they match
    /// every topic that has one token or more left at this node.
    @exclusivity(unchecked) var rest: [MemberState] = []

    var isUnused: Bool { literals.isEmpty && any == nil && ending.isEmpty && rest.isEmpty }

    deinit { for key in literals.keys { key.deallocate() } }

    /// The child for a literal token, made if there is none.
    func child(for token: [UInt8]) -> TopicNode {
        token.withUnsafeBytes { bytes in
            let probe = TokenKey(borrowing: bytes)
            if let existing = literals[probe] { return existing }
            let child = TopicNode()
            literals.insert(child, for: probe.copied())
            return child
        }
    }

    /// The child for a literal token, if there is one.
    func existingChild(for token: [UInt8]) -> TopicNode? {
        token.withUnsafeBytes { literals[TokenKey(borrowing: $0)] }
    }

    /// Drops the child for a literal token, and its key's bytes.
    func removeChild(for token: [UInt8]) {
        token.withUnsafeBytes { bytes in
            literals.remove(TokenKey(borrowing: bytes))?.deallocate()
        }
    }
}

/// Every present member, by its subscription: those that receive everything
/// in a list, the others in the trie. (`package`: core-bench's locking
/// prototype finds its recipients through this same index.)
package struct SubscriptionIndex: Sendable {
    private let root = TopicNode()
    /// Members without a filter: recipients of every message.
    private(set) var unfiltered: [MemberState] = []
    /// Members with at least one pattern. While 0, every member receives
    /// every message and the group never asks the index.
    private(set) var filteredMembers = 0
    /// The recipients `collect` found last. Kept between messages so that
    /// its storage is reused: collecting allocates nothing once it has grown.
    package private(set) var recipients: [MemberState] = []
    /// Stamped on each member collected, so that one matching by several
    /// patterns is collected once, without a set per message.
    private var epoch: UInt64 = 0

    package init() {}

    /// No member is indexed, and the trie holds no node but its root.
    var isEmpty: Bool { unfiltered.isEmpty && filteredMembers == 0 && root.isUnused }

    /// Indexes a member (that joined, or whose patterns changed) by its
    /// current `settings.subscribe`.
    package mutating func add(_ member: MemberState) {
        let subscription = member.settings.subscribe
        if subscription.receivesEverything {
            unfiltered.append(member)
            return
        }
        filteredMembers += 1
        for pattern in subscription.patterns { insert(pattern.tokens[...], for: member, under: root) }
    }

    /// Forgets a member (that left, or before its patterns change), as
    /// indexed by its current `settings.subscribe`.
    mutating func remove(_ member: MemberState) {
        // The last message's recipients may hold it: let a member that left go now.
        recipients.removeAll(keepingCapacity: true)
        let subscription = member.settings.subscribe
        if subscription.receivesEverything {
            if let index = unfiltered.firstIndex(where: { $0 === member }) { unfiltered.remove(at: index) }
            return
        }
        filteredMembers -= 1
        for pattern in subscription.patterns { _ = remove(pattern.tokens[...], for: member, under: root) }
    }

    /// The recipients of `message` from `sender`, into `recipients`: the
    /// members without a filter, then those with a pattern that matches the
    /// message's topic, each once; the sender only if it has loopback.
    package mutating func collect(recipientsOf message: Message, from sender: MemberState?) {
        recipients.removeAll(keepingCapacity: true)
        for member in unfiltered where member !== sender || member.settings.loopback { recipients.append(member) }
        epoch &+= 1
        let epoch = self.epoch
        message.withUnsafeBytes { payload in
            guard let topic = Self.topic(of: payload) else { return }
            walk(root, topic, at: 0, epoch: epoch, sender: sender)
        }
    }

    /// The topic of `payload`; nil when it can match no pattern (empty, or
    /// with an empty token). One pass over the topic's bytes.
    @inline(__always)
    private static func topic(of payload: UnsafeRawBufferPointer) -> UnsafeRawBufferPointer? {
        var end = 0
        var afterDot = true  // the topic's start counts as after a dot: ".a" is refused
        while end < payload.count {
            let byte = payload[end]
            if Topic.ends(at: byte) { break }
            if byte == UInt8(ascii: ".") {
                if afterDot { return nil }
                afterDot = true
            } else {
                afterDot = false
            }
            end += 1
        }
        return afterDot ? nil : UnsafeRawBufferPointer(rebasing: payload[..<end])
    }

    /// Collects the members under `node` that match the topic's tokens from
    /// byte `start` on; `start` past the topic's end means none is left.
    private mutating func walk(_ node: TopicNode, _ topic: UnsafeRawBufferPointer, at start: Int, epoch: UInt64, sender: MemberState?) {
        guard start <= topic.count else {
            if !node.ending.isEmpty { take(node.ending, epoch: epoch, sender: sender) }
            return
        }
        if !node.rest.isEmpty { take(node.rest, epoch: epoch, sender: sender) }
        var end = start
        while end < topic.count && topic[end] != UInt8(ascii: ".") { end += 1 }
        if !node.literals.isEmpty,
           let child = node.literals[TokenKey(borrowing: UnsafeRawBufferPointer(rebasing: topic[start..<end]))] {
            walk(child, topic, at: end + 1, epoch: epoch, sender: sender)
        }
        if let any = node.any { walk(any, topic, at: end + 1, epoch: epoch, sender: sender) }
    }

    @inline(__always)
    private mutating func take(_ members: [MemberState], epoch: UInt64, sender: MemberState?) {
        for member in members where member.recipientMark != epoch {
            member.recipientMark = epoch
            if member !== sender || member.settings.loopback { recipients.append(member) }
        }
    }

    private func insert(_ tokens: ArraySlice<PatternToken>, for member: MemberState, under node: TopicNode) {
        guard let token = tokens.first else {
            node.ending.append(member)
            return
        }
        let child: TopicNode
        switch token {
        case .rest:
            node.rest.append(member)
            return
        case .any:
            if let existing = node.any { child = existing } else {
                child = TopicNode()
                node.any = child
            }
        case .literal(let bytes):
            child = node.child(for: bytes)
        }
        insert(tokens.dropFirst(), for: member, under: child)
    }

    /// Removes one entry of `member` for these tokens, and the nodes left
    /// unused, so that an index whose members change patterns does not grow.
    /// True: `node` is now unused.
    private func remove(_ tokens: ArraySlice<PatternToken>, for member: MemberState, under node: TopicNode) -> Bool {
        guard let token = tokens.first else {
            removeOne(member, from: &node.ending)
            return node.isUnused
        }
        switch token {
        case .rest:
            removeOne(member, from: &node.rest)
        case .any:
            if let child = node.any, remove(tokens.dropFirst(), for: member, under: child) { node.any = nil }
        case .literal(let bytes):
            if let child = node.existingChild(for: bytes), remove(tokens.dropFirst(), for: member, under: child) {
                node.removeChild(for: bytes)
            }
        }
        return node.isUnused
    }

    private func removeOne(_ member: MemberState, from members: inout [MemberState]) {
        if let index = members.firstIndex(where: { $0 === member }) { members.remove(at: index) }
    }
}
