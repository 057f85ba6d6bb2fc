/// The NATS names of a cluster's groups, members and nodes (docs/cluster.md,
/// "Names").
///
/// NATS forbids `.`, `*`, `>` and whitespace in stream and consumer names
/// and subject tokens, and allows only `-/_=.` besides letters and digits in
/// KV keys; mcastfs names allow any byte but `/` and NUL. `encode` maps one
/// onto the other reversibly: letters, digits, `_` and `-` stay; every other
/// byte becomes `=XY` (two upper-case hex digits).
public enum ClusterName {
    /// E(name): valid as a KV key, a subject token, a stream or consumer
    /// name (length permitting: up to three times the input's).
    public static func encode(_ name: some Collection<UInt8>) -> String {
        var out: [UInt8] = []
        out.reserveCapacity(name.count)
        for byte in name {
            if isPlain(byte) {
                out.append(byte)
            } else {
                out.append(UInt8(ascii: "="))
                out.append(hexDigits[Int(byte >> 4)])
                out.append(hexDigits[Int(byte & 0xF)])
            }
        }
        return String(decoding: out, as: UTF8.self)
    }

    public static func encode(_ name: String) -> String { encode(name.utf8) }

    /// The bytes `encode` made `encoded` from; nil when it is not an
    /// encoding (a byte that `encode` would have escaped, or `=` not
    /// followed by two upper-case hex digits).
    public static func decode(_ encoded: String) -> [UInt8]? { decode(encoded.utf8) }

    /// As `decode(_:)`, from the encoding's bytes.
    public static func decode(_ encoded: some Collection<UInt8>) -> [UInt8]? {
        let s = Array(encoded)
        var out: [UInt8] = []
        out.reserveCapacity(s.count)
        var i = 0
        while i < s.count {
            let byte = s[i]
            if isPlain(byte) {
                out.append(byte)
                i += 1
            } else if byte == UInt8(ascii: "="), i + 2 < s.count, let high = hexValue(s[i + 1]), let low = hexValue(s[i + 2]) {
                let decoded = high << 4 | low
                // Only the shortest form: a plain byte is never escaped.
                if isPlain(decoded) { return nil }
                out.append(decoded)
                i += 3
            } else {
                return nil
            }
        }
        return out
    }

    /// As `decode(_:)`, to a String, from bytes read in place: a name with
    /// nothing escaped (the common one) costs no copy but the String's.
    static func decodedString(_ encoded: UnsafeRawBufferPointer) -> String? {
        if encoded.allSatisfy(isPlain) { return String(decoding: encoded, as: UTF8.self) }
        return decode(encoded).map { String(decoding: $0, as: UTF8.self) }
    }

    private static let hexDigits = Array("0123456789ABCDEF".utf8)

    private static func isPlain(_ b: UInt8) -> Bool {
        (b >= 0x30 && b <= 0x39) || (b >= 0x41 && b <= 0x5A) || (b >= 0x61 && b <= 0x7A) || b == 0x5F || b == 0x2D
    }

    private static func hexValue(_ b: UInt8) -> UInt8? {
        switch b {
        case 0x30...0x39: b - 0x30
        case 0x41...0x46: b - 0x41 + 10
        default: nil
        }
    }
}

/// Every NATS name of one mcastfs cluster (`-o cluster_space=`, default
/// `mcastfs`).
public struct ClusterSpace: Sendable, Equatable {
    public let prefix: String

    /// Letters, digits, `_` and `-`, 1 to 32 of them (bucket names allow no more).
    public init?(_ prefix: String = "mcastfs") {
        let bytes = Array(prefix.utf8)
        guard (1...32).contains(bytes.count), ClusterName.encode(bytes) == prefix else { return nil }
        self.prefix = prefix
    }

    public var groupsBucket: String { "\(prefix)_groups" }
    public var membersBucket: String { "\(prefix)_members" }
    public var nodesBucket: String { "\(prefix)_nodes" }

    /// A group's key in the groups bucket.
    public func groupKey(_ group: String) -> String { ClusterName.encode(group) }

    /// `id`: 16 hex digits chosen when the group is made (one per incarnation).
    public func stream(_ id: String) -> String { "\(prefix)_G\(id)" }
    public func subject(_ id: String) -> String { "\(prefix).g.\(id)" }
    public func roomSubject(_ id: String) -> String { "\(prefix).room.\(id)" }
    public func fullSubject(_ id: String) -> String { "\(prefix).full.\(id)" }

    /// A member's key in the members bucket; `"<id>.*"` watches one group's.
    public func memberKey(group id: String, member: String) -> String { "\(id).\(ClusterName.encode(member))" }

    public func nodeKey(_ node: String) -> String { ClusterName.encode(node) }

    /// A node's `generation`-th consumer of a group since its daemon started
    /// with `boot` (8 hex digits).
    public func consumer(node: String, boot: String, generation: Int) -> String {
        "\(ClusterName.encode(node))_\(boot)_\(generation)"
    }

    /// What a node's message ids start with; the node's counter follows.
    public func messageIdPrefix(node: String, boot: String) -> String {
        "\(ClusterName.encode(node)).\(boot)."
    }
}
