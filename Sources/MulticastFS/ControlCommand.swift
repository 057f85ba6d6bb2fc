public import DeliveryCore

/// One command written to `G/ctl`, parsed. A command applies all its keys or
/// none: parsing checks every key and value first.
///
///     set KEY=VALUE ...              capacity queue_bytes max_message send
///     member NAME KEY=VALUE ...      capacity queue_bytes loopback drop_when_full
public enum ControlCommand: Equatable, Sendable {
    /// The longest command, in bytes (with every key, a 255-byte name and
    /// generous spacing, a command stays far below it).
    public static let maxLength = 4096

    case group([GroupKey])
    case member(name: String, [MemberKey])

    public enum GroupKey: Equatable, Sendable {
        case capacity(Int), queueBytes(Int), maxMessage(Int), send(SendPolicy)
    }

    public enum MemberKey: Equatable, Sendable {
        case capacity(Int), queueBytes(Int), loopback(Bool), dropWhenFull(Bool)
    }

    /// Parses one command; a single trailing newline is allowed. Any error is
    /// EINVAL, as the contract says.
    public init(parsing bytes: some Collection<UInt8>) throws(FileSystemError) {
        var text = Array(bytes)
        if text.last == UInt8(ascii: "\n") { text.removeLast() }
        guard let line = String(validating: text, as: UTF8.self), !line.contains("\n") else { throw .invalid }
        let words = line.split(separator: " ", omittingEmptySubsequences: true)
        guard let verb = words.first else { throw .invalid }
        switch verb {
        case "set":
            let pairs = try Self.pairs(words.dropFirst())
            self = .group(try pairs.map { (key, value) throws(FileSystemError) in try Self.groupKey(key, value) })
        case "member":
            guard words.count >= 3 else { throw .invalid }
            let pairs = try Self.pairs(words.dropFirst(2))
            self = .member(name: String(words[1]), try pairs.map { (key, value) throws(FileSystemError) in try Self.memberKey(key, value) })
        default:
            throw .invalid
        }
    }

    private static func pairs(_ words: ArraySlice<Substring>) throws(FileSystemError) -> [(Substring, Substring)] {
        guard !words.isEmpty else { throw .invalid }
        var seen: Set<Substring> = []
        return try words.map { (word) throws(FileSystemError) in
            guard let equals = word.firstIndex(of: "=") else { throw .invalid }
            let key = word[..<equals], value = word[word.index(after: equals)...]
            guard !value.isEmpty, seen.insert(key).inserted else { throw .invalid }
            return (key, value)
        }
    }

    private static func groupKey(_ key: Substring, _ value: Substring) throws(FileSystemError) -> GroupKey {
        switch key {
        case "capacity": return .capacity(try number(value, in: Limits.capacity))
        case "queue_bytes": return .queueBytes(try number(value, in: Limits.queueBytes))
        case "max_message": return .maxMessage(try number(value, in: Limits.maxMessage))
        case "send":
            guard let policy = SendPolicy(rawValue: String(value)) else { throw .invalid }
            return .send(policy)
        default: throw .invalid
        }
    }

    private static func memberKey(_ key: Substring, _ value: Substring) throws(FileSystemError) -> MemberKey {
        switch key {
        case "capacity": return .capacity(try number(value, in: Limits.capacity))
        case "queue_bytes": return .queueBytes(try number(value, in: Limits.queueBytes))
        case "loopback": return .loopback(try flag(value))
        case "drop_when_full": return .dropWhenFull(try flag(value))
        default: throw .invalid
        }
    }

    /// Plain decimal digits only: no sign, no spaces, no hex.
    private static func number(_ text: Substring, in range: ClosedRange<Int>) throws(FileSystemError) -> Int {
        guard text.utf8.allSatisfy({ $0 >= UInt8(ascii: "0") && $0 <= UInt8(ascii: "9") }),
              let value = Int(text), range.contains(value) else { throw .invalid }
        return value
    }

    private static func flag(_ text: Substring) throws(FileSystemError) -> Bool {
        switch text {
        case "0": return false
        case "1": return true
        default: throw .invalid
        }
    }

    /// Applies the command to `group`, all keys or none.
    public func apply(to group: Group) throws(FileSystemError) {
        do throws(DeliveryError) {
            switch self {
            case .group(let keys):
                try group.configure { settings in
                    for key in keys {
                        switch key {
                        case .capacity(let value): settings.capacity = value
                        case .queueBytes(let value): settings.queueBytes = value
                        case .maxMessage(let value): settings.maxMessage = value
                        case .send(let policy): settings.sendPolicy = policy
                        }
                    }
                }
            case .member(let name, let keys):
                try group.configureMember(named: name) { settings in
                    for key in keys {
                        switch key {
                        case .capacity(let value): settings.capacity = value
                        case .queueBytes(let value): settings.queueBytes = value
                        case .loopback(let value): settings.loopback = value
                        case .dropWhenFull(let value): settings.dropWhenFull = value
                        }
                    }
                }
            }
        } catch {
            throw FileSystemError(error)
        }
    }
}
