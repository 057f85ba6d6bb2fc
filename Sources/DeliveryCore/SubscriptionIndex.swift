import Glibc

// The index that finds a message's recipients among filtered members: a trie
// of pattern tokens. Finding the members whose patterns match a topic walks
// the topic's tokens down the trie (a literal child and the `*` child at each
// level, the `>` members on the way), so it costs time in the tokens and in
// the members that match, not in the members that do not: a group of 1,000
// members of which one matches sends as fast as a group of 10 (core-bench,
// "filtered"). Touched only under the group's lock, as everything in
// GroupState.

/// A token as a dictionary key: owned by the index, or borrowed from a
/// payload for one lookup, so that matching allocates nothing per message.
enum TokenKey: Hashable {
    case owned([UInt8])
    /// Valid only during the lookup it is made for.
    case borrowed(UnsafeRawBufferPointer)

    @inline(__always)
    func withBytes<R>(_ body: (UnsafeRawBufferPointer) -> R) -> R {
        switch self {
        case .owned(let bytes): return bytes.withUnsafeBytes(body)
        case .borrowed(let bytes): return body(bytes)
        }
    }

    static func == (lhs: TokenKey, rhs: TokenKey) -> Bool {
        lhs.withBytes { left in
            rhs.withBytes { right in
                left.count == right.count
                    && (left.count == 0 || memcmp(left.baseAddress!, right.baseAddress!, left.count) == 0)
            }
        }
    }

    func hash(into hasher: inout Hasher) { withBytes { hasher.combine(bytes: $0) } }
}

/// One level of the trie: the patterns whose tokens so far lead here.
final class TopicNode: @unchecked Sendable {  // under the group lock, as MemberState
    @exclusivity(unchecked) var literals: [TokenKey: TopicNode] = [:]
    /// The `*` child.
    @exclusivity(unchecked) var any: TopicNode?
    /// Members with a pattern that ends here.
    @exclusivity(unchecked) var ending: [MemberState] = []
    /// Members with a pattern that goes on with `>` from here: they match
    /// every topic that has one token or more left at this node.
    @exclusivity(unchecked) var rest: [MemberState] = []

    var isUnused: Bool { literals.isEmpty && any == nil && ending.isEmpty && rest.isEmpty }
}

/// Every present member, by its subscription: those that receive everything
/// in a list, the others in the trie.
struct SubscriptionIndex: Sendable {
    private let root = TopicNode()
    /// Members without a filter: recipients of every message.
    private(set) var unfiltered: [MemberState] = []
    /// Members with at least one pattern. While 0, every member receives
    /// every message and the group never asks the index.
    private(set) var filteredMembers = 0
    /// The recipients `collect` found last. Kept between messages so that
    /// its storage is reused: collecting allocates nothing once it has grown.
    private(set) var recipients: [MemberState] = []
    /// Stamped on each member collected, so that one matching by several
    /// patterns is collected once, without a set per message.
    private var epoch: UInt64 = 0

    /// No member is indexed, and the trie holds no node but its root.
    var isEmpty: Bool { unfiltered.isEmpty && filteredMembers == 0 && root.isUnused }

    /// Indexes a member (that joined, or whose patterns changed) by its
    /// current `settings.subscribe`.
    mutating func add(_ member: MemberState) {
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
    mutating func collect(recipientsOf message: Message, from sender: MemberState?) {
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
            take(node.ending, epoch: epoch, sender: sender)
            return
        }
        take(node.rest, epoch: epoch, sender: sender)
        var end = start
        while end < topic.count && topic[end] != UInt8(ascii: ".") { end += 1 }
        if !node.literals.isEmpty,
           let child = node.literals[.borrowed(UnsafeRawBufferPointer(rebasing: topic[start..<end]))] {
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
            if let existing = node.literals[.owned(bytes)] { child = existing } else {
                child = TopicNode()
                node.literals[.owned(bytes)] = child
            }
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
            if let child = node.literals[.owned(bytes)], remove(tokens.dropFirst(), for: member, under: child) {
                node.literals[.owned(bytes)] = nil
            }
        }
        return node.isUnused
    }

    private func removeOne(_ member: MemberState, from members: inout [MemberState]) {
        if let index = members.firstIndex(where: { $0 === member }) { members.remove(at: index) }
    }
}
