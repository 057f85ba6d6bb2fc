@testable import DeliveryCore
import TestSupport
import Testing

// Topic filters (docs/contract.md, "Topic filters"): the pattern grammar and
// its limits, matching by tokens, the index against a brute-force walk, and
// what a member that does not match is spared: receiving, holding the writer
// back, counting a drop.

private func pattern(_ text: String) throws -> TopicPattern { try TopicPattern(text) }

private func subscription(_ text: String) throws -> Subscription { try Subscription(parsing: text) }

private func matches(_ patterns: String, _ payload: String) throws -> Bool {
    try subscription(patterns).matches(payload: Array(payload.utf8))
}

private func drain(_ reader: Reader) -> [String] {
    var got: [String] = []
    while let chunk = try? reader.tryReceive(maxBytes: 1 << 20) { got.append(String(decoding: chunk.bytes, as: UTF8.self)) }
    return got
}

private func filtered(_ text: String, capacity: Int = 256, loopback: Bool = false, dropWhenFull: Bool = false) throws -> MemberSettings {
    MemberSettings(capacity: capacity, loopback: loopback, dropWhenFull: dropWhenFull, subscribe: try subscription(text))
}

@Suite struct PatternGrammarTests {
    @Test(arguments: ["a", "a.b.c", "*", ">", "a.*", "a.>", "*.b.>", "orders.*.new", "*.*", "café.*", "x-1.y_2", "a=b", "日本.*"])
    func validPatterns(text: String) throws {
        #expect(try pattern(text).text == text)
    }

    @Test(arguments: [
        ("", InvalidSubscription.emptyToken), ("a..b", .emptyToken), (".a", .emptyToken), ("a.", .emptyToken),
        ("a.>.b", .restNotLast), (">.a", .restNotLast), (">.>", .restNotLast),
        ("a*", .wildcardInToken), (">b", .wildcardInToken), ("a.b*", .wildcardInToken), ("x>", .wildcardInToken),
        ("**", .wildcardInToken), ("a.*>", .wildcardInToken),
        ("a b", .forbiddenCharacter), ("a\tb", .forbiddenCharacter), ("a\nb", .forbiddenCharacter),
        ("a\0b", .forbiddenCharacter), ("a,b", .forbiddenCharacter), ("a\rb", .forbiddenCharacter),
        ("a\u{7F}", .forbiddenCharacter), ("a\u{85}", .forbiddenCharacter), ("a\u{A0}b", .forbiddenCharacter),
        ("\u{2028}", .forbiddenCharacter), ("x\u{1B}", .forbiddenCharacter),
    ])
    func invalidPatterns(text: String, reason: InvalidSubscription) {
        #expect(throws: DeliveryError.invalidSubscription(reason)) { try TopicPattern(text) }
    }

    @Test func anEmptySubscriptionReceivesEverything() throws {
        let everything = try subscription("")
        #expect(everything.receivesEverything && everything == Subscription() && everything.text == "")
        #expect(everything.matches(payload: Array(" no topic".utf8)))
        #expect(try subscription("a.b,c.>").patterns.map(\.text) == ["a.b", "c.>"])
        #expect(try subscription("a.b,c.>").text == "a.b,c.>")
    }

    @Test func emptyPatternsInAListAreRefused() {
        for text in ["a,,b", "a,", ",a", ","] {
            #expect(throws: DeliveryError.invalidSubscription(.emptyToken)) { try Subscription(parsing: text) }
        }
    }

    @Test func atMost64Patterns() throws {
        let sixtyFour = (0..<64).map { "p\($0)" }.joined(separator: ",")
        #expect(try subscription(sixtyFour).patterns.count == 64)
        #expect(throws: DeliveryError.invalidSubscription(.tooManyPatterns(65))) {
            try Subscription(parsing: sixtyFour + ",p64")
        }
        let patterns = try (0..<65).map { try pattern("p\($0)") }
        #expect(throws: DeliveryError.invalidSubscription(.tooManyPatterns(65))) { try Subscription(patterns: patterns) }
    }

    @Test func atMost4KiBInAllCommasIncluded() throws {
        // Two patterns of 2047 bytes and the comma between them: 4095 bytes.
        let long = String(repeating: "x", count: 2047)
        #expect(try subscription(long + "," + long + "y").text.utf8.count == 4096)
        #expect(throws: DeliveryError.invalidSubscription(.tooLong(4097))) {
            try Subscription(parsing: long + "," + long + "yz")
        }
        #expect(throws: DeliveryError.invalidSubscription(.tooLong(4097))) {
            try Subscription(patterns: [pattern(long), pattern(long + "yz")])
        }
        #expect(try subscription(String(repeating: "z", count: 4096)).patterns.count == 1)
    }
}

@Suite struct TopicMatchingTests {
    @Test func theContractsExamples() throws {
        #expect(try matches("orders.*.new", "orders.eu.new"))
        #expect(try !matches("orders.*.new", "orders.eu.old"))
        #expect(try !matches("orders.*.new", "orders.new"))
        #expect(try matches("orders.>", "orders.eu"))
        #expect(try matches("orders.>", "orders.eu.new"))
        #expect(try !matches("orders.>", "orders"))
        #expect(try matches("orders", "orders"))
        #expect(try !matches("orders", "orders.eu"))
    }

    @Test func tokensNotBytePrefixes() throws {
        #expect(try matches("tx", "tx"))
        #expect(try !matches("tx", "tx_trytes"))
        #expect(try !matches("tx.>", "tx_trytes.a"))
        #expect(try !matches("tx.*", "tx_trytes.a"))
        #expect(try !matches("tx_trytes", "tx"))
        #expect(try !matches("a.b", "a.bc"))
        #expect(try matches("*.b", "zzz.b"))
    }

    @Test func theTopicEndsAtTheFirstSpaceTabNewlineOrNul() throws {
        for payload in ["a.b", "a.b hello", "a.b\tx", "a.b\nx", "a.b\0x", "a.b\n", "a.b the.rest is not.topic"] {
            #expect(try matches("a.b", payload), "\(payload.debugDescription)")
            #expect(try !matches("a.b.>", payload), "\(payload.debugDescription)")
        }
        #expect(try matches("a.>", "a.b.c d.e"))
    }

    @Test func wildcardsCountTokens() throws {
        #expect(try matches("*", "a"))
        #expect(try !matches("*", "a.b"))
        #expect(try matches(">", "a"))
        #expect(try matches(">", "a.b.c"))
        #expect(try matches("*.>", "a.b"))
        #expect(try !matches("*.>", "a"))
        #expect(try matches("*.*.*", "a.b.c"))
    }

    @Test func anEmptyTopicOrAnEmptyTokenMatchesNoPattern() throws {
        for payload in ["", " hello", "\n", "a..b", ".a", "a.", "a. x", "."] {
            #expect(try !matches(">", payload), "\(payload.debugDescription)")
            #expect(try !matches("*", payload), "\(payload.debugDescription)")
            #expect(try !matches("a.>,*.*,*.*.*", payload), "\(payload.debugDescription)")
            #expect(try matches("", payload), "unfiltered gets \(payload.debugDescription)")
        }
    }

    @Test func bytesAreComparedExactly() throws {
        // "é" as one code point and as e + combining accent: two topics, as two file names.
        #expect(try matches("caf\u{E9}", "caf\u{E9}"))
        #expect(try !matches("caf\u{E9}", "cafe\u{301}"))
        #expect(try !matches("A", "a"))
    }
}

// MARK: The index against the reference

/// Random patterns and topics over a few tokens that share prefixes.
private struct Words {
    static let tokens = ["a", "b", "tx", "tx_trytes", "ab"]

    static func pattern(using generator: inout SeededGenerator) -> String {
        let count = Int.random(in: 1...4, using: &generator)
        var parts: [String] = (0..<count).map { _ in
            Int.random(in: 0..<4, using: &generator) == 0 ? "*" : tokens.randomElement(using: &generator)!
        }
        if Int.random(in: 0..<4, using: &generator) == 0 { parts[count - 1] = ">" }
        return parts.joined(separator: ".")
    }

    static func subscription(using generator: inout SeededGenerator) -> String {
        (0..<Int.random(in: 0...3, using: &generator)).map { _ in pattern(using: &generator) }.joined(separator: ",")
    }

    static func payload(using generator: inout SeededGenerator) -> String {
        let count = Int.random(in: 0...5, using: &generator)
        let topic = (0..<count).map { _ in
            Int.random(in: 0..<20, using: &generator) == 0 ? "" : tokens.randomElement(using: &generator)!
        }.joined(separator: ".")
        return topic + ["", " body", "\n", "\0x", "\tx"].randomElement(using: &generator)!
    }
}

@Suite struct SubscriptionIndexTests {
    @Test(arguments: [1, 2, 3, 4] as [UInt64])
    func theIndexFindsWhatTheReferenceWalkFinds(seed: UInt64) throws {
        var generator = SeededGenerator(seed: seed)
        var state = GroupState(settings: GroupSettings())
        var actions: [Action] = []
        var serial = 0
        func join(_ state: inout GroupState, using generator: inout SeededGenerator) throws {
            serial += 1
            let settings = try filtered(Words.subscription(using: &generator), loopback: Bool.random(using: &generator))
            _ = try state.join("m\(serial)", settings: settings).get()
        }
        for _ in 0..<30 { try join(&state, using: &generator) }
        for round in 0..<40 {
            // Membership and patterns change between rounds, so that removal
            // from the index (and its pruning) is exercised as well.
            for _ in 0..<5 {
                let member = state.members.randomElement(using: &generator)!
                switch Int.random(in: 0..<3, using: &generator) {
                case 0:
                    state.leave(member, actions: &actions)
                    try join(&state, using: &generator)
                default:
                    let text = Words.subscription(using: &generator)
                    let subscribe = try subscription(text)
                    try state.configureMember(named: member.name, { $0.subscribe = subscribe }, actions: &actions).get()
                }
            }
            for _ in 0..<25 {
                let payload = Words.payload(using: &generator)
                let sender = Bool.random(using: &generator) ? state.members.randomElement(using: &generator) : nil
                let expected = state.members.filter { member in
                    (member !== sender || member.settings.loopback)
                        && member.settings.subscribe.matches(payload: Array(payload.utf8))
                }.map(ObjectIdentifier.init)
                state.collectRecipients(of: message(payload), from: sender)
                let found = state.subscriptions.recipients.map(ObjectIdentifier.init)
                #expect(found.count == Set(found).count, "a recipient collected twice, round \(round)")
                #expect(Set(found) == Set(expected), "payload \(payload.debugDescription), round \(round)")
            }
        }
        // Everyone leaves: the index is left with nothing in it.
        for member in state.members { state.leave(member, actions: &actions) }
        let emptied = state.subscriptions.isEmpty
        #expect(emptied)
    }

    @Test func literalChildrenAgreeWithADictionary() {
        // Many keys in few slots, inserted and removed at random: lookups
        // must survive every backward shift of a removal.
        var generator = SeededGenerator(seed: 11)
        let tokens = (0..<300).map { Array("t\($0)".utf8) }
        var table = LiteralChildren()
        var reference: [[UInt8]: TopicNode] = [:]
        for _ in 0..<5000 {
            let token = tokens.randomElement(using: &generator)!
            token.withUnsafeBytes { bytes in
                let key = TokenKey(borrowing: bytes)
                if reference[token] == nil {
                    let node = TopicNode()
                    table.insert(node, for: key.copied())
                    reference[token] = node
                } else {
                    table.remove(key)?.deallocate()
                    reference[token] = nil
                }
            }
            #expect(table.count == reference.count)
        }
        for token in tokens {
            token.withUnsafeBytes { bytes in
                #expect(table[TokenKey(borrowing: bytes)] === reference[token], "\(token)")
            }
        }
        for key in table.keys { key.deallocate() }
    }

    @Test func aMemberMatchingByTwoPatternsReceivesOnce() throws {
        let group = try Group(name: "g")
        let reader = try group.join("m", settings: filtered("a.*,*.b,a.>,a.b")).makeReader()
        #expect(try group.trySend(message("a.b")).recipients == 1)
        #expect(drain(reader) == ["a.b"])
    }

    @Test func theIndexForgetsPatternsThatChange() throws {
        var state = GroupState(settings: GroupSettings())
        var actions: [Action] = []
        _ = try state.join("m", settings: filtered("a.b.c,x.>,*.y")).get()
        let filteredAtFirst = !state.everyMemberReceives
        try state.configureMember(named: "m", { $0.subscribe = Subscription() }, actions: &actions).get()
        let unfilteredNow = state.everyMemberReceives && state.subscriptions.unfiltered.count == 1
        state.leave(state.members[0], actions: &actions)
        let emptied = state.subscriptions.isEmpty
        #expect(filteredAtFirst && unfilteredNow && emptied)
    }
}

// MARK: Recipients, blocking and dropping

@Suite struct FilteredDeliveryTests {
    @Test func aFilteredMemberReceivesOnlyWhatMatches() throws {
        let group = try Group(name: "g")
        let all = try group.join("all").makeReader()
        let eu = try group.join("eu", settings: filtered("orders.eu.>")).makeReader()
        let new = try group.join("new", settings: filtered("orders.*.new")).makeReader()
        let texts = ["orders.eu.new 1", "orders.us.new 2", "orders.eu.old 3", "orders 4", "tx_trytes 5"]
        let recipients = try texts.map { try group.trySend(message($0)).recipients }
        #expect(recipients == [3, 2, 2, 1, 1])
        #expect(drain(all) == texts)
        #expect(drain(eu) == ["orders.eu.new 1", "orders.eu.old 3"])
        #expect(drain(new) == ["orders.eu.new 1", "orders.us.new 2"])
        let delivered = group.snapshot().members.map(\.delivered)
        #expect(delivered == [5, 2, 2])
    }

    @Test func theSenderIsARecipientOnlyWithLoopbackAndOnlyIfItMatches() throws {
        let group = try Group(name: "g")
        let me = try group.join("me", settings: filtered("mine", loopback: true))
        let reader = me.makeReader()
        #expect(try me.trySend(message("mine x")).recipients == 1)
        #expect(try me.trySend(message("other x")).recipients == 0)
        #expect(drain(reader) == ["mine x"])
        try group.configureMember(named: "me") { $0.loopback = false }
        #expect(try me.trySend(message("mine y")).recipients == 0)
    }

    @Test func aFullMemberThatDoesNotMatchHoldsNoWriterBack() throws {
        let group = try Group(name: "g")
        let full = try group.join("full", settings: filtered("a", capacity: 1))
        try group.trySend(message("a"))
        #expect(group.snapshot().members[0].full)
        #expect(try group.trySend(message("b")).recipients == 0)
        #expect(try group.trySend(batch: [message("b"), message("c")]).delivered == 2)
        #expect(throws: DeliveryError.wouldBlock) { try group.trySend(message("a")) }
        #expect(throws: DeliveryError.wouldBlock) { try group.trySend(batch: [message("a")]) }
        #expect(drain(full.makeReader()) == ["a"])
    }

    @Test func aDropWhenFullMemberThatDoesNotMatchCountsNoDrop() throws {
        let group = try Group(name: "g")
        _ = try group.join("lossy", settings: filtered("a", capacity: 1, dropWhenFull: true))
        try group.trySend(message("a 1"))
        let missed = try group.trySend(message("a 2"))
        #expect(missed.dropped == 1 && missed.recipients == 0)
        let other = try group.trySend(message("b 1"))
        #expect(other.dropped == 0 && other.recipients == 0)
        #expect(group.snapshot().members[0].dropped == 1)
    }

    @Test func pollStaysConservativeWhateverTheFilter() throws {
        let group = try Group(name: "g")
        _ = try group.join("full", settings: filtered("a", capacity: 1))
        try group.trySend(message("a"))
        // Not writable, though a message on another topic would go through.
        #expect(!group.poll(reader: nil, writer: .anonymous).writable)
        #expect(try group.trySend(message("b")).recipients == 0)
    }

    @Test func parkedSendsKeepTheirOrderWhateverTheirRecipients() throws {
        let group = try Group(name: "g")
        let slow = try group.join("slow", settings: filtered("a", capacity: 1)).makeReader()
        let other = try group.join("other", settings: filtered("b")).makeReader()
        try group.trySend(message("a"))
        let done = Box<UInt64>()
        group.send(message("a"), .blocking) { done.append(try! $0.get().sequence) }
        // "b" does not go to slow, but an older send is waiting: it waits behind it.
        #expect(throws: DeliveryError.wouldBlock) { try group.trySend(message("b")) }
        group.send(message("b"), .blocking) { done.append(try! $0.get().sequence) }
        #expect(done.values.isEmpty && group.snapshot().blockedWriters == 2)
        #expect(try slow.text() == "a")
        #expect(done.values == [2, 3])
        #expect(drain(slow) == ["a"] && drain(other) == ["b"])
    }

    @Test func aParkedSendWhoseRecipientsHaveRoomGoesWhenTheHeadDoes() throws {
        let group = try Group(name: "g")
        let a = try group.join("a", settings: filtered("a", capacity: 1)).makeReader()
        let b = try group.join("b", settings: filtered("b", capacity: 1)).makeReader()
        try group.trySend(message("a"))
        try group.trySend(message("b"))
        let done = Box<String>()
        group.send(message("a"), .blocking) { _ in done.append("a") }
        group.send(message("b"), .blocking) { _ in done.append("b") }
        // The head waits on a; b's draining lets nothing overtake it.
        #expect(try b.text() == "b")
        #expect(done.values.isEmpty)
        #expect(try a.text() == "a")
        #expect(done.values == ["a", "b"])
    }

    @Test func aFullMemberThatStopsMatchingReleasesTheWaitingSend() throws {
        let group = try Group(name: "g")
        let full = try group.join("full", settings: filtered("a", capacity: 1))
        try group.trySend(message("a 1"))
        let done = Box<SendReceipt>()
        group.send(message("a 2"), .blocking) { done.append(try! $0.get()) }
        #expect(done.values.isEmpty)
        let other = try subscription("b")
        try group.configureMember(named: "full") { $0.subscribe = other }
        #expect(done.values.map(\.recipients) == [0])
        #expect(drain(full.makeReader()) == ["a 1"])
    }

    @Test func aParkedBatchWaitsForItsFirstMessagesRecipientsOnly() throws {
        let group = try Group(name: "g")
        let a = try group.join("a", settings: filtered("a", capacity: 1)).makeReader()
        try group.trySend(message("a"))
        let done = Box<BatchReceipt>()
        group.send(batch: [message("a"), message("b")], .blocking) { done.append(try! $0.get()) }
        #expect(done.values.isEmpty)
        #expect(try a.text() == "a")
        // At the head, both go: "b" has no recipient that is full.
        #expect(done.values.map(\.delivered) == [2])
    }

    @Test func eachMessageOfABatchIsCheckedAgainstItsOwnRecipients() throws {
        let group = try Group(name: "g")
        let a = try group.join("a", settings: filtered("a", capacity: 2)).makeReader()
        let b = try group.join("b", settings: filtered("b", capacity: 1)).makeReader()
        try group.trySend(message("b"))
        // b is full: the batch stops before its first "b", though "a" had room.
        let stopped = try group.trySend(batch: [message("a"), message("b"), message("a")])
        #expect(stopped.delivered == 1)
        #expect(group.snapshot().members[1].queued == 1, "b's queue went past its capacity")
        #expect(drain(b) == ["b"])
        // A queue that fills on the way stops only the messages that go to it.
        let mixed = try group.trySend(batch: [message("a"), message("b"), message("a"), message("b")])
        #expect(mixed.delivered == 2 && mixed.recipients == 2)
        #expect(drain(a) == ["a", "a"] && drain(b) == ["b"])
    }

    @Test func theSnapshotHasEachMembersPatterns() throws {
        let group = try Group(name: "g")
        _ = try group.join("m", settings: filtered("a.*,b.>"))
        _ = try group.join("n")
        #expect(group.snapshot().members.map(\.settings.subscribe.text) == ["a.*,b.>", ""])
    }
}
