// Topic filters: which messages a member receives (docs/contract.md, "Topic
// filters"). A message's topic is the start of its payload; a member with
// patterns receives only the messages whose topic one of them matches. The
// grammar is NATS's subjects: tokens separated by `.`, `*` one token, `>` as
// the last token one or more. Tokens are compared whole, so `tx` does not
// match `tx_trytes` (the complaint that ZeroMQ's byte prefixes draw).

/// What makes a pattern, or a list of them, invalid.
public enum InvalidSubscription: Error, Sendable, Equatable {
    /// A pattern that is empty or has an empty token (`a..b`, `.a`, `a.`).
    case emptyToken
    /// `>` that is not the pattern's last token.
    case restNotLast
    /// `*` or `>` inside a token (`a*`, `>b`).
    case wildcardInToken
    /// Whitespace or a control character (as in names: a space, tab, newline
    /// or NUL ends a topic, and any of them would break `status`'s
    /// `KEY=VALUE` words), or the separator of patterns (`,`).
    case forbiddenCharacter
    /// More patterns than `Subscription.maxPatterns`.
    case tooManyPatterns(Int)
    /// More bytes than `Subscription.maxBytes`, the patterns and the commas
    /// between them counted as written.
    case tooLong(Int)
}

/// One token of a pattern.
enum PatternToken: Sendable, Hashable {
    case literal([UInt8])
    /// `*`: any one token.
    case any
    /// `>`, last: one or more tokens.
    case rest
}

/// One pattern, parsed and valid.
public struct TopicPattern: Sendable, Hashable, CustomStringConvertible {
    /// As written.
    public let text: String
    let tokens: [PatternToken]

    public init(_ text: some StringProtocol) throws(DeliveryError) {
        for scalar in text.unicodeScalars
        where scalar == "," || scalar.properties.isWhitespace || scalar.properties.generalCategory == .control {
            throw .invalidSubscription(.forbiddenCharacter)
        }
        let bytes = Array(text.utf8)
        var tokens: [PatternToken] = []
        for token in bytes.split(separator: UInt8(ascii: "."), omittingEmptySubsequences: false) {
            if token.isEmpty { throw .invalidSubscription(.emptyToken) }
            if tokens.last == .rest { throw .invalidSubscription(.restNotLast) }
            if token.count == 1 && token.first == UInt8(ascii: "*") {
                tokens.append(.any)
            } else if token.count == 1 && token.first == UInt8(ascii: ">") {
                tokens.append(.rest)
            } else if token.contains(UInt8(ascii: "*")) || token.contains(UInt8(ascii: ">")) {
                throw .invalidSubscription(.wildcardInToken)
            } else {
                tokens.append(.literal(Array(token)))
            }
        }
        self.text = String(text)
        self.tokens = tokens
    }

    public var description: String { text }

    /// Whether this pattern matches the topic of `payload`. A plain walk over
    /// the tokens: the group matches through its index instead, and tests
    /// use this as the reference the index must agree with.
    public func matches(payload: some Collection<UInt8>) -> Bool {
        guard let topic = Topic.tokens(of: payload) else { return false }
        var index = 0
        for token in tokens {
            switch token {
            case .rest: return index < topic.count
            case .any: guard index < topic.count else { return false }
            case .literal(let bytes): guard index < topic.count, topic[index].elementsEqual(bytes) else { return false }
            }
            index += 1
        }
        return index == topic.count
    }
}

/// A member's patterns: empty (the default) receives every message.
public struct Subscription: Sendable, Equatable, CustomStringConvertible {
    public static let maxPatterns = 64
    /// The patterns and the commas between them, as written.
    public static let maxBytes = 4096

    public let patterns: [TopicPattern]

    /// Every message.
    public init() { patterns = [] }

    public init(patterns: [TopicPattern]) throws(DeliveryError) {
        guard patterns.count <= Self.maxPatterns else { throw .invalidSubscription(.tooManyPatterns(patterns.count)) }
        let bytes = patterns.reduce(max(patterns.count - 1, 0)) { $0 + $1.text.utf8.count }
        guard bytes <= Self.maxBytes else { throw .invalidSubscription(.tooLong(bytes)) }
        self.patterns = patterns
    }

    /// Patterns separated by `,`, as the ctl key `subscribe=` takes them;
    /// the empty string is every message.
    public init(parsing text: some StringProtocol) throws(DeliveryError) {
        guard !text.isEmpty else {
            self.init()
            return
        }
        // The limits first: a long list is refused before it is parsed.
        let count = text.utf8.count
        guard count <= Self.maxBytes else { throw .invalidSubscription(.tooLong(count)) }
        // At the `,` bytes: split by Character, "," followed by a combining
        // mark is one Character, and no separator.
        let parts = String(text).utf8.split(separator: UInt8(ascii: ","), omittingEmptySubsequences: false)
        guard parts.count <= Self.maxPatterns else { throw .invalidSubscription(.tooManyPatterns(parts.count)) }
        var patterns: [TopicPattern] = []
        for part in parts { patterns.append(try TopicPattern(Substring(part))) }
        try self.init(patterns: patterns)
    }

    /// No patterns: every message.
    public var receivesEverything: Bool { patterns.isEmpty }

    /// The patterns as `subscribe=` takes them (empty: every message).
    public var text: String { patterns.map(\.text).joined(separator: ",") }

    public var description: String { text }

    /// Whether a member with these patterns receives a message with this
    /// payload (the reference walk; see `TopicPattern.matches`).
    public func matches(payload: some Collection<UInt8>) -> Bool {
        receivesEverything || patterns.contains { $0.matches(payload: payload) }
    }
}

/// The topic of a message: its payload up to the first space, tab, newline
/// or NUL, or all of it; split into tokens at `.`.
///
/// A topic that is empty, or has an empty token (`a..b`, `.a`, `a.`),
/// matches no pattern, since no pattern has an empty token: only members
/// without a filter receive such a message.
public enum Topic {
    @inline(__always)
    static func ends(at byte: UInt8) -> Bool {
        byte == UInt8(ascii: " ") || byte == UInt8(ascii: "\t") || byte == UInt8(ascii: "\n") || byte == 0
    }

    /// The topic's bytes.
    public static func of<C: Collection<UInt8>>(_ payload: C) -> C.SubSequence {
        payload[..<(payload.firstIndex(where: ends(at:)) ?? payload.endIndex)]
    }

    /// The topic's tokens; nil when it can match no pattern (empty, or an
    /// empty token).
    public static func tokens<C: Collection<UInt8>>(of payload: C) -> [C.SubSequence]? {
        let tokens = of(payload).split(separator: UInt8(ascii: "."), omittingEmptySubsequences: false)
        return tokens.contains(where: \.isEmpty) ? nil : tokens
    }
}
