public import SystemPackage
public import DeliveryCore

/// One command written to `G/ctl`, parsed. A command applies all its keys or
/// none: parsing checks every key and value first.
///
///     set KEY=VALUE ...              capacity queue_bytes max_message send message send_to_peer
///     member NAME KEY=VALUE ...      capacity queue_bytes loopback drop_when_full subscribe send_to_peer
public enum ControlCommand: Equatable, Sendable {
    /// The longest command, in bytes (with every key, a 255-byte name and
    /// generous spacing, a command stays far below it; a long `subscribe=`
    /// list can reach it, and then this limit comes before the list's own
    /// 4 KiB).
    public static let maxLength = 4096

    case group([GroupKey])
    case member(name: String, [MemberKey])

    public enum GroupKey: Equatable, Sendable {
        case capacity(Int), queueBytes(Int), maxMessage(Int), send(SendPolicy), message(MessageBoundary)
        case sendToPeer(Bool)
    }

    public enum MemberKey: Equatable, Sendable {
        case capacity(Int), queueBytes(Int), loopback(Bool), dropWhenFull(Bool)
        /// `subscribe=PATTERN[,PATTERN...]`; `subscribe=` (empty) receives everything.
        case subscribe(Subscription)
        case sendToPeer(Bool)
    }

    /// Parses one command; a single trailing newline is allowed. Any error is
    /// EINVAL, as the contract says.
    public init(parsing bytes: some Collection<UInt8>) throws(Errno) {
        var text = Array(bytes)
        if text.last == UInt8(ascii: "\n") { text.removeLast() }
        guard let line = String(validating: text, as: UTF8.self), !text.contains(UInt8(ascii: "\n")) else { throw .invalidArgument }
        // Split by byte, as names are bytes: a String splits by Character,
        // and a space followed by a combining mark is one Character that is
        // not " " (so `member \u{301}x ...` missed its member).
        let words = line.utf8.split(separator: UInt8(ascii: " ")).map { Substring($0) }
        guard let verb = words.first else { throw .invalidArgument }
        switch verb {
        case "set":
            let pairs = try Self.pairs(words.dropFirst())
            self = .group(try pairs.map { (key, value) throws(Errno) in try Self.groupKey(key, value) })
        case "member":
            guard words.count >= 3 else { throw .invalidArgument }
            let pairs = try Self.pairs(words.dropFirst(2))
            self = .member(name: String(words[1]), try pairs.map { (key, value) throws(Errno) in try Self.memberKey(key, value) })
        default:
            throw .invalidArgument
        }
    }

    private static func pairs(_ words: ArraySlice<Substring>) throws(Errno) -> [(Substring, Substring)] {
        guard !words.isEmpty else { throw .invalidArgument }
        var seen: Set<Substring> = []
        return try words.map { (word) throws(Errno) in
            // By byte too: "=" followed by a combining mark is one Character.
            guard let equals = word.utf8.firstIndex(of: UInt8(ascii: "=")) else { throw .invalidArgument }
            let key = Substring(word.utf8[..<equals]), value = Substring(word.utf8[word.utf8.index(after: equals)...])
            // Only `subscribe=` may be empty: it clears the member's filter.
            guard !value.isEmpty || key == "subscribe", seen.insert(key).inserted else { throw .invalidArgument }
            return (key, value)
        }
    }

    private static func groupKey(_ key: Substring, _ value: Substring) throws(Errno) -> GroupKey {
        switch key {
        case "capacity": return .capacity(try number(value, in: Limits.capacity))
        case "queue_bytes": return .queueBytes(try number(value, in: Limits.queueBytes))
        case "max_message": return .maxMessage(try number(value, in: Limits.maxMessage))
        case "send":
            guard let policy = SendPolicy(rawValue: String(value)) else { throw .invalidArgument }
            return .send(policy)
        case "message":
            guard let boundary = MessageBoundary(rawValue: String(value)) else { throw .invalidArgument }
            return .message(boundary)
        case "send_to_peer": return .sendToPeer(try flag(value))
        default: throw .invalidArgument
        }
    }

    private static func memberKey(_ key: Substring, _ value: Substring) throws(Errno) -> MemberKey {
        switch key {
        case "capacity": return .capacity(try number(value, in: Limits.capacity))
        case "queue_bytes": return .queueBytes(try number(value, in: Limits.queueBytes))
        case "loopback": return .loopback(try flag(value))
        case "drop_when_full": return .dropWhenFull(try flag(value))
        case "subscribe": return .subscribe(try subscription(value))
        case "send_to_peer": return .sendToPeer(try flag(value))
        default: throw .invalidArgument
        }
    }

    private static func subscription(_ text: Substring) throws(Errno) -> Subscription {
        do throws(DeliveryError) { return try Subscription(parsing: text) } catch { throw Errno(error) }
    }

    /// Plain decimal digits only: no sign, no spaces, no hex.
    private static func number(_ text: Substring, in range: ClosedRange<Int>) throws(Errno) -> Int {
        guard text.utf8.allSatisfy({ $0 >= UInt8(ascii: "0") && $0 <= UInt8(ascii: "9") }),
              let value = Int(text), range.contains(value) else { throw .invalidArgument }
        return value
    }

    private static func flag(_ text: Substring) throws(Errno) -> Bool {
        switch text {
        case "0": return false
        case "1": return true
        default: throw .invalidArgument
        }
    }

    /// Whether `apply(to:)` would succeed now (a value out of bounds, a
    /// member that is not there), changing nothing.
    public func check(against group: Group) throws(Errno) {
        do throws(DeliveryError) {
            switch self {
            case .group(let keys):
                var settings = group.settings
                Self.apply(keys, to: &settings)
                try settings.validate()
            case .member(let name, let keys):
                guard var settings = group.member(named: name)?.settings else { throw DeliveryError.noSuchMember }
                Self.apply(keys, to: &settings)
                try settings.validate()
            }
        } catch {
            throw Errno(error)
        }
    }

    /// Applies the command to `group`, all keys or none.
    public func apply(to group: Group) throws(Errno) {
        do throws(DeliveryError) {
            switch self {
            case .group(let keys):
                try group.configure { settings in Self.apply(keys, to: &settings) }
            case .member(let name, let keys):
                try group.configureMember(named: name) { settings in Self.apply(keys, to: &settings) }
            }
        } catch {
            throw Errno(error)
        }
    }

    /// A group command's keys on `settings`, unchecked (the caller
    /// validates the result).
    public static func apply(_ keys: [GroupKey], to settings: inout GroupSettings) {
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
    }

    /// A member command's keys on `settings`, unchecked (the caller
    /// validates the result).
    public static func apply(_ keys: [MemberKey], to settings: inout MemberSettings) {
        for key in keys {
            switch key {
            case .capacity(let value): settings.capacity = value
            case .queueBytes(let value): settings.queueBytes = value
            case .loopback(let value): settings.loopback = value
            case .dropWhenFull(let value): settings.dropWhenFull = value
            case .subscribe(let subscription): settings.subscribe = subscription
            case .sendToPeer(let value): settings.sendToPeer = value
            }
        }
    }
}
