import DeliveryCore

/// The pattern grammar and matching (docs/contract.md, "Topic filters"):
/// `Subscription(parsing:)` accepts exactly what the contract's grammar does
/// (the reference below, the Swift twin of tests/lib/topicfilter.py, which
/// works on bytes as the contract does) and keeps the patterns as written;
/// the reference walk (`Subscription.matches`) and a group's trie index (who
/// receives a message sent to the group) agree with the reference matching,
/// for members that join, change patterns and leave.
///
/// Input: subscriptions (`subscribe=` values) separated by 0xff, then 0xfe,
/// then payloads separated by 0xff (neither byte is in UTF-8: no pattern
/// can hold them). The patterns' own texts are sent as payloads too.
enum PatternsFuzzer {
    @Sendable static func check(_ input: UnsafeRawBufferPointer) {
        let bytes = Array(input)
        let halves = bytes.split(separator: 0xfe, maxSplits: 1, omittingEmptySubsequences: false)
        let texts = halves[0].split(separator: 0xff, omittingEmptySubsequences: false).prefix(6).map(Array.init)
        var payloads = halves.count > 1 ? halves[1].split(separator: 0xff).prefix(16).map(Array.init) : []

        var members: [(subscription: Subscription, reference: [[Reference.Token]])] = []
        for text in texts {
            let expected = Reference.parse(text)
            guard let string = String(validating: text, as: UTF8.self) else {
                require(expected == nil, "the reference took \(show(text)), which is not UTF-8")
                continue
            }
            let parsed = Result { () throws(DeliveryError) in try Subscription(parsing: string) }
            switch (parsed, expected) {
            case (.success(let subscription), let expected?):
                let patterns = subscription.patterns.map { Array($0.text.utf8) }
                require(patterns == text.split(separator: UInt8(ascii: ","), omittingEmptySubsequences: false).filter { _ in !text.isEmpty }.map(Array.init),
                        "\(show(text)) parsed as \(patterns.map(show))")
                require(Array(subscription.text.utf8) == text, "\(show(text)) renders as \(show(Array(subscription.text.utf8)))")
                require((try? Subscription(parsing: subscription.text)) == subscription, "\(show(text)) does not parse again")
                members.append((subscription, expected))
                payloads += subscription.patterns.prefix(4).map { Array($0.text.utf8) }
            case (.failure(let error), nil):
                guard case .invalidSubscription = error else { return require(false, "\(show(text)): \(error)") }
            case (.success(let subscription), nil):
                require(false, "accepted \(show(text)) as \(subscription.patterns.map(\.text)); the contract refuses it")
            case (.failure(let error), let expected?):
                require(false, "refused \(show(text)) (\(error)); the contract takes it as \(expected)")
            }
        }
        // At most 24: the reference walk (Subscription.matches) splits the
        // payload again for each pattern, and 64 patterns make it the cost.
        payloads = Array(payloads.filter { !$0.isEmpty }.prefix(24))
        for payload in payloads {
            for member in members {
                require(member.subscription.matches(payload: payload) == Reference.matches(member.reference, payload),
                        "\(member.subscription) on \(show(payload)): \(member.subscription.matches(payload: payload))")
            }
        }
        if !members.isEmpty && !payloads.isEmpty { checkIndex(members, payloads) }
    }

    /// Members of one group with these subscriptions receive what the
    /// reference says, while they change patterns and leave (the index
    /// adds and removes trie nodes and literal children).
    static func checkIndex(_ subscriptions: [(subscription: Subscription, reference: [[Reference.Token]])], _ payloads: [[UInt8]]) {
        let group: Group
        var members: [(member: Member, reader: Reader, subscription: Subscription, reference: [[Reference.Token]])] = []
        do throws(DeliveryError) {
            group = try Group(name: "g")
            for (index, entry) in subscriptions.enumerated() {
                let member = try group.join("m\(index)")
                try group.configureMember(named: "m\(index)") { $0.subscribe = entry.subscription }
                members.append((member, member.makeReader(), entry.subscription, entry.reference))
            }
            let everything = try group.join("all")
            members.append((everything, everything.makeReader(), Subscription(), []))
        } catch {
            return require(false, "group: \(error)")
        }
        func sendAll(_ phase: String) {
            for payload in payloads {
                do throws(DeliveryError) { _ = try group.trySend(Message(payload)) } catch {
                    return require(false, "\(phase): sending \(show(payload)): \(error)")
                }
                for entry in members {
                    let received = receivedOne(entry.reader, payload)
                    require(received == Reference.matches(entry.reference, payload),
                            "\(phase): \(entry.member.name) with \(entry.subscription) received \(show(payload)): \(received)")
                }
            }
        }
        sendAll("joined")
        // Each filtered member takes the next one's patterns; the first leaves.
        let filtered = members.count - 1
        if filtered > 1 {
            let rotated = (0..<filtered).map { members[($0 + 1) % filtered] }
            for index in 0..<filtered {
                let next = rotated[index]
                do throws(DeliveryError) {
                    try group.configureMember(named: "m\(index)") { $0.subscribe = next.subscription }
                } catch {
                    return require(false, "m\(index): \(error)")
                }
                members[index].subscription = next.subscription
                members[index].reference = next.reference
            }
        }
        members[0].member.leave()
        members.removeFirst()
        sendAll("rotated")
        // Each drops its first pattern: the others of its stay in the trie.
        for index in members.indices where !members[index].subscription.receivesEverything {
            let fewer: Subscription
            do throws(DeliveryError) {
                fewer = try Subscription(patterns: Array(members[index].subscription.patterns.dropFirst()))
                try group.configureMember(named: members[index].member.name) { $0.subscribe = fewer }
            } catch {
                return require(false, "dropping a pattern: \(error)")
            }
            members[index].subscription = fewer
            members[index].reference = Array(members[index].reference.dropFirst())
        }
        sendAll("fewer")
        for entry in members { entry.member.leave() }
    }

    /// Whether `reader` got `payload` (and nothing else) since the last look.
    static func receivedOne(_ reader: Reader, _ payload: [UInt8]) -> Bool {
        do throws(DeliveryError) {
            guard let chunk = try reader.tryReceive(maxBytes: 1 << 21) else { return false }
            require(chunk.bytes == payload, "received \(show(chunk.bytes)), sent \(show(payload))")
            do throws(DeliveryError) {
                if let extra = try reader.tryReceive(maxBytes: 1 << 21) { require(false, "received \(show(extra.bytes)) more") }
            } catch {
                require(error == .wouldBlock, "receiving: \(error)")
            }
            return true
        } catch {
            require(error == .wouldBlock, "receiving: \(error)")
            return false
        }
    }
}

/// The contract's topic filters on bytes, as tests/lib/topicfilter.py.
enum Reference {
    enum Token: Equatable {
        case literal([UInt8])
        case any
        case rest
    }

    static let maxPatterns = 64
    static let maxBytes = 4096
    /// Unicode White_Space (PropList.txt).
    static let whiteSpace: Set<UInt32> = Set(Array(0x09...0x0d) + [0x20, 0x85, 0xa0, 0x1680] + Array(0x2000...0x200a)
        + [0x2028, 0x2029, 0x202f, 0x205f, 0x3000])

    static func forbidden(_ scalar: UInt32) -> Bool {
        scalar == 0x2c || whiteSpace.contains(scalar) || scalar < 0x20 || (0x7f...0x9f).contains(scalar)
    }

    /// The patterns of a `subscribe=` value, each its tokens; [] for every
    /// message; nil when the contract refuses it.
    static func parse(_ text: [UInt8]) -> [[Token]]? {
        if text.isEmpty { return [] }
        guard text.count <= maxBytes else { return nil }
        let parts = text.split(separator: UInt8(ascii: ","), omittingEmptySubsequences: false)
        guard parts.count <= maxPatterns else { return nil }
        var patterns: [[Token]] = []
        for part in parts {
            guard let scalars = decode(Array(part)), !scalars.contains(where: forbidden) else { return nil }
            let words = part.split(separator: UInt8(ascii: "."), omittingEmptySubsequences: false)
            var tokens: [Token] = []
            for (index, word) in words.enumerated() {
                if word.isEmpty { return nil }
                if word.elementsEqual([UInt8(ascii: "*")]) {
                    tokens.append(.any)
                } else if word.elementsEqual([UInt8(ascii: ">")]) {
                    if index != words.count - 1 { return nil }
                    tokens.append(.rest)
                } else if word.contains(UInt8(ascii: "*")) || word.contains(UInt8(ascii: ">")) {
                    return nil
                } else {
                    tokens.append(.literal(Array(word)))
                }
            }
            patterns.append(tokens)
        }
        return patterns
    }

    /// The scalars of UTF-8 bytes; nil when they are not UTF-8.
    static func decode(_ bytes: [UInt8]) -> [UInt32]? {
        var scalars: [UInt32] = []
        var decoder = UTF8()
        var iterator = bytes.makeIterator()
        while true {
            switch decoder.decode(&iterator) {
            case .scalarValue(let scalar): scalars.append(scalar.value)
            case .emptyInput: return scalars
            case .error: return nil
            }
        }
    }

    /// The topic's tokens; nil when it matches no pattern (empty, or an empty token).
    static func topicTokens(_ payload: [UInt8]) -> [ArraySlice<UInt8>]? {
        let end = payload.firstIndex { $0 == 0x20 || $0 == 0x09 || $0 == 0x0a || $0 == 0x00 } ?? payload.count
        let tokens = payload[..<end].split(separator: UInt8(ascii: "."), omittingEmptySubsequences: false)
        return tokens.contains(where: \.isEmpty) ? nil : tokens
    }

    static func matches(_ patterns: [[Token]], _ payload: [UInt8]) -> Bool {
        if patterns.isEmpty { return true }
        guard let tokens = topicTokens(payload) else { return false }
        return patterns.contains { pattern in
            for (index, token) in pattern.enumerated() {
                switch token {
                case .rest: return tokens.count > index
                case .any: if index >= tokens.count { return false }
                case .literal(let bytes): if index >= tokens.count || !tokens[index].elementsEqual(bytes) { return false }
                }
            }
            return pattern.count == tokens.count
        }
    }
}
