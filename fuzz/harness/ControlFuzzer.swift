import DeliveryCore
import MulticastFS
import SystemPackage

/// The ctl grammar, `ControlCommand(parsing:)` (docs/contract.md, "`G/ctl`"):
/// it accepts exactly the commands of the contract's grammar (the reference
/// below works on bytes, as the contract's words and names are bytes) and
/// means what the reference means; every refusal is EINVAL; a command
/// rendered again parses to itself; applied to a group it changes exactly
/// its keys, or (a member that does not exist) fails with EINVAL and
/// changes nothing.
enum ControlFuzzer {
    @Sendable static func check(_ input: UnsafeRawBufferPointer) {
        let bytes = Array(input)
        let expected = ControlReference.parse(bytes)
        let parsed = Result { () throws(Errno) in try ControlCommand(parsing: bytes) }
        switch (parsed, expected) {
        case (.success(let command), let expected?):
            require(command == expected, "\(show(bytes)) parsed as \(command), the contract's \(expected)")
            for text in [render(command), render(command) + "\n"] {
                require((try? ControlCommand(parsing: Array(text.utf8))) == command, "\(command) rendered as \(show(Array(text.utf8))) parses otherwise")
            }
            checkApply(command, memberExists: bytes.count % 2 == 0)
        case (.failure(let error), nil):
            require(error == .invalidArgument, "\(show(bytes)): \(error), not EINVAL")
        case (.success(let command), nil):
            require(false, "accepted \(show(bytes)) as \(command); the contract refuses it")
        case (.failure(let error), let expected?):
            require(false, "refused \(show(bytes)) (\(error)); the contract takes it as \(expected)")
        }
    }

    /// The command as a writer would write it.
    static func render(_ command: ControlCommand) -> String {
        func bit(_ value: Bool) -> String { value ? "1" : "0" }
        switch command {
        case .group(let keys):
            return "set " + keys.map { key in
                switch key {
                case .capacity(let value): "capacity=\(value)"
                case .queueBytes(let value): "queue_bytes=\(value)"
                case .maxMessage(let value): "max_message=\(value)"
                case .send(let policy): "send=\(policy.rawValue)"
                case .message(let boundary): "message=\(boundary.rawValue)"
                case .sendToPeer(let value): "send_to_peer=\(bit(value))"
                }
            }.joined(separator: " ")
        case .member(let name, let keys):
            return "member \(name) " + keys.map { key in
                switch key {
                case .capacity(let value): "capacity=\(value)"
                case .queueBytes(let value): "queue_bytes=\(value)"
                case .loopback(let value): "loopback=\(bit(value))"
                case .dropWhenFull(let value): "drop_when_full=\(bit(value))"
                case .subscribe(let subscription): "subscribe=\(subscription.text)"
                case .sendToPeer(let value): "send_to_peer=\(bit(value))"
                }
            }.joined(separator: " ")
        }
    }

    /// Applies `command` to a new group (that has the member it names, or
    /// not), and looks at what changed.
    static func checkApply(_ command: ControlCommand, memberExists: Bool) {
        let group: Group
        do throws(DeliveryError) {
            group = try Group(name: "g")
            _ = try group.join("other")
            if memberExists, case .member(let name, _) = command, !name.utf8.elementsEqual("other".utf8) { _ = try group.join(name) }
        } catch {
            // DeliveryCore takes any name; the filesystem checks them.
            return require(false, "joining: \(error)")
        }
        let before = group.snapshot()
        let result = Result { () throws(Errno) in try command.apply(to: group) }
        let after = group.snapshot()
        switch command {
        case .group(let keys):
            require((try? result.get()) != nil, "\(command) failed: \(result)")
            var settings = before.settings
            for key in keys {
                switch key {
                case .capacity(let value): settings.capacity = value
                case .queueBytes(let value): settings.queueBytes = value
                case .maxMessage(let value): settings.maxMessage = value
                case .send(let policy): settings.sendPolicy = policy
                case .message(let boundary): settings.messageBoundary = boundary
                case .sendToPeer(let value): settings.sendToPeer = value
                }
            }
            require(after.settings == settings, "\(command) made \(after.settings)")
            require(after.members.map(\.settings) == before.members.map(\.settings), "\(command) changed a member")
        case .member(let name, let keys):
            guard memberExists || name.utf8.elementsEqual("other".utf8) else {
                if case .failure(let error) = result {
                    require(error == .invalidArgument, "\(command) on no such member: \(error), not EINVAL")
                } else {
                    require(false, "\(command) on no such member succeeded")
                }
                return require(after == before, "\(command) on no such member changed the group")
            }
            require((try? result.get()) != nil, "\(command) failed: \(result)")
            require(after.settings == before.settings, "\(command) changed the group's settings")
            for (old, new) in zip(before.members, after.members) {
                var settings = old.settings
                if old.name.utf8.elementsEqual(name.utf8) { ControlCommand.apply(keys, to: &settings) }
                require(new.settings == settings, "\(command): \(new.name) has \(new.settings)")
            }
            // What `apply(_:to:)` did, key by key, as the contract says.
            if let member = after.members.first(where: { $0.name.utf8.elementsEqual(name.utf8) }) {
                for key in keys {
                    let holds = switch key {
                    case .capacity(let value): member.settings.capacity == value
                    case .queueBytes(let value): member.settings.queueBytes == value
                    case .loopback(let value): member.settings.loopback == value
                    case .dropWhenFull(let value): member.settings.dropWhenFull == value
                    case .subscribe(let subscription): member.settings.subscribe == subscription
                    case .sendToPeer(let value): member.settings.sendToPeer == value
                    }
                    require(holds, "\(command): \(key) not applied")
                }
            }
        }
    }
}

/// The contract's ctl grammar, on bytes.
enum ControlReference {
    static func parse(_ input: [UInt8]) -> ControlCommand? {
        var bytes = input
        if bytes.last == UInt8(ascii: "\n") { bytes.removeLast() }
        guard Reference.decode(bytes) != nil, !bytes.contains(UInt8(ascii: "\n")) else { return nil }
        let words = bytes.split(separator: UInt8(ascii: " ")).map(Array.init)
        guard let verb = words.first else { return nil }
        switch verb {
        case Array("set".utf8):
            guard let pairs = pairs(words.dropFirst()) else { return nil }
            var keys: [ControlCommand.GroupKey] = []
            for (key, value) in pairs {
                guard let parsed = groupKey(key, value) else { return nil }
                keys.append(parsed)
            }
            return .group(keys)
        case Array("member".utf8):
            guard words.count >= 3, let pairs = pairs(words.dropFirst(2)) else { return nil }
            var keys: [ControlCommand.MemberKey] = []
            for (key, value) in pairs {
                guard let parsed = memberKey(key, value) else { return nil }
                keys.append(parsed)
            }
            return .member(name: String(decoding: words[1], as: UTF8.self), keys)
        default:
            return nil
        }
    }

    static func pairs(_ words: ArraySlice<[UInt8]>) -> [(String, [UInt8])]? {
        guard !words.isEmpty else { return nil }
        var seen: Set<[UInt8]> = []
        var pairs: [(String, [UInt8])] = []
        for word in words {
            guard let equals = word.firstIndex(of: UInt8(ascii: "=")) else { return nil }
            let key = Array(word[..<equals]), value = Array(word[(equals + 1)...])
            guard !value.isEmpty || key == Array("subscribe".utf8), seen.insert(key).inserted else { return nil }
            pairs.append((String(decoding: key, as: UTF8.self), value))
        }
        return pairs
    }

    static func number(_ value: [UInt8], _ range: ClosedRange<Int>) -> Int? {
        guard !value.isEmpty, value.allSatisfy({ (0x30...0x39).contains($0) }) else { return nil }
        // Leading zeros are digits too; past the range's digits it is out of range anyway.
        var number = 0
        for digit in value.drop(while: { $0 == 0x30 }) {
            number = number * 10 + Int(digit - 0x30)
            if number > range.upperBound { return nil }
        }
        return range.contains(number) ? number : nil
    }

    static func flag(_ value: [UInt8]) -> Bool? {
        value == [0x30] ? false : value == [0x31] ? true : nil
    }

    static func groupKey(_ key: String, _ value: [UInt8]) -> ControlCommand.GroupKey? {
        switch key {
        case "capacity": number(value, 1...1_000_000).map { .capacity($0) }
        case "queue_bytes": number(value, 1...1_073_741_824).map { .queueBytes($0) }
        case "max_message": number(value, 1...1_044_480).map { .maxMessage($0) }
        case "send": value == Array("anyone".utf8) ? .send(.anyone) : value == Array("members".utf8) ? .send(.members) : nil
        case "message": value == Array("write".utf8) ? .message(.write) : value == Array("line".utf8) ? .message(.line) : nil
        case "send_to_peer": flag(value).map { .sendToPeer($0) }
        default: nil
        }
    }

    static func memberKey(_ key: String, _ value: [UInt8]) -> ControlCommand.MemberKey? {
        switch key {
        case "capacity": return number(value, 1...1_000_000).map { .capacity($0) }
        case "queue_bytes": return number(value, 1...1_073_741_824).map { .queueBytes($0) }
        case "loopback": return flag(value).map { .loopback($0) }
        case "drop_when_full": return flag(value).map { .dropWhenFull($0) }
        case "send_to_peer": return flag(value).map { .sendToPeer($0) }
        case "subscribe":
            guard let patterns = Reference.parse(value) else { return nil }
            // The patterns, each made alone (no `,` to split on): the
            // reference decided what the list is.
            let made = patterns.map { tokens in
                let words = tokens.map { token -> [UInt8] in
                    switch token {
                    case .literal(let bytes): bytes
                    case .any: [UInt8(ascii: "*")]
                    case .rest: [UInt8(ascii: ">")]
                    }
                }
                return try? TopicPattern(String(decoding: Array(words.joined(separator: [UInt8(ascii: ".")])), as: UTF8.self))
            }
            require(!made.contains(where: { $0 == nil }), "TopicPattern refuses a pattern of \(show(value))")
            return (try? Subscription(patterns: made.map { $0! })).map { .subscribe($0) }
        default: return nil
        }
    }
}
