import DeliveryCore
import NATSClient

// The `Mcastfs` header every message a node publishes carries
// (docs/cluster.md, "The message on the wire"):
// `1 <E(node)> <pid> <uid> <gid> <flags> <E(sender)|-> [<E(to)>]`, names
// encoded (`ClusterName`), flags bit 0 private.

/// The `Mcastfs` header of a message this node publishes, `encodedNode`
/// its name encoded. Built byte by byte: it is made for every write, before
/// its first publish, and string interpolation (with the node's name
/// encoded again each time) was 9,500 of a record-view write's 65,700
/// instructions on the FUSE worker (callgrind, paced 1->1).
func mcastfsHeader(encodedNode: String, _ message: OutgoingMessage) -> String {
    let c = message.payload.credentials
    var b: [UInt8] = []
    b.reserveCapacity(48 + encodedNode.utf8.count)
    func field(_ s: some Sequence<UInt8>) {
        if !b.isEmpty { b.append(UInt8(ascii: " ")) }
        b.append(contentsOf: s)
    }
    field("1".utf8)
    field(encodedNode.utf8)
    for n in [c.pid, c.uid, c.gid, message.privateTo == nil ? 0 : 1] { field(String(n).utf8) }
    field(message.sender.map { ClusterName.encode($0) }?.utf8 ?? "-".utf8)
    if let to = message.privateTo { field(ClusterName.encode(to).utf8) }
    return String(decoding: b, as: UTF8.self)
}

extension OutgoingMessage {
    /// Whether `mcastfsHeader` says the same of both.
    func hasSameHeader(as other: OutgoingMessage) -> Bool {
        payload.credentials == other.payload.credentials && sender == other.sender && privateTo == other.privateTo
    }
}

/// What a received message's `Mcastfs` header says, read in place. It runs
/// for every message a node delivers, before the reply to a waiting read:
/// splitting the header into Strings and arrays was 7,400 instructions of a
/// delivery's 72,000 (callgrind, paced 1->1), and each name decoded into
/// three arrays.
struct ReceivedHeader: Equatable {
    var credentials: Credentials
    var node: String
    var sender: String?
    var privateTo: String?

    init(credentials: Credentials, node: String, sender: String? = nil, privateTo: String? = nil) {
        self.credentials = credentials
        self.node = node
        self.sender = sender
        self.privateTo = privateTo
    }

    /// nil: not a version-1 header of at least seven fields. Fields are
    /// separated by spaces (runs of them count as one); a number that is
    /// not one reads as 0, a name that is not an encoding as none.
    init?(_ header: UnsafeRawBufferPointer) {
        var fields = Fields(header)
        guard let version = fields.next(), header.isEqual(version, "1"),
              let node = fields.next(), let pid = fields.next(), let uid = fields.next(), let gid = fields.next(),
              let flags = fields.next(), let sender = fields.next()
        else { return nil }
        func name(_ r: Range<Int>) -> String? { ClusterName.decodedString(UnsafeRawBufferPointer(rebasing: header[r])) }
        func number(_ r: Range<Int>) -> UInt32 { header.decimal(r) ?? 0 }
        credentials = Credentials(pid: number(pid), uid: number(uid), gid: number(gid))
        self.node = name(node) ?? ""
        self.sender = header.isEqual(sender, "-") ? nil : name(sender)
        let isPrivate = number(flags) & 1 != 0
        privateTo = isPrivate ? fields.next().flatMap(name) : nil
    }

    /// The ranges of the space-separated fields, in order.
    private struct Fields {
        let bytes: UnsafeRawBufferPointer
        var at = 0
        init(_ bytes: UnsafeRawBufferPointer) { self.bytes = bytes }

        mutating func next() -> Range<Int>? {
            while at < bytes.count, bytes[at] == UInt8(ascii: " ") { at += 1 }
            guard at < bytes.count else { return nil }
            let start = at
            while at < bytes.count, bytes[at] != UInt8(ascii: " ") { at += 1 }
            return start..<at
        }
    }
}

private extension UnsafeRawBufferPointer {
    func isEqual(_ r: Range<Int>, _ s: StaticString) -> Bool {
        r.count == s.utf8CodeUnitCount && (0..<r.count).allSatisfy { self[r.lowerBound + $0] == s.utf8Start[$0] }
    }

    /// Decimal digits, an optional `+` first (as `UInt32(_: String)`); nil
    /// when they are not, or overflow.
    func decimal(_ r: Range<Int>) -> UInt32? {
        var i = r.lowerBound
        if i < r.upperBound, self[i] == UInt8(ascii: "+") { i += 1 }
        guard i < r.upperBound else { return nil }
        var value: UInt32 = 0
        while i < r.upperBound {
            let digit = self[i] &- UInt8(ascii: "0")
            guard digit < 10 else { return nil }
            let (times, o1) = value.multipliedReportingOverflow(by: 10)
            let (sum, o2) = times.addingReportingOverflow(UInt32(digit))
            guard !o1, !o2 else { return nil }
            value = sum
            i += 1
        }
        return value
    }
}

extension IncomingMessage {
    /// From the stream's message and its `Mcastfs` header. A message
    /// published by a bare NATS client (no header) comes from no node and
    /// no member, with zero credentials.
    init(_ m: some StreamMessage) {
        sequence = m.streamSequence
        time = UInt64(max(m.timestamp, 0))
        let header = m.withHeader("Mcastfs") { $0.flatMap(ReceivedHeader.init) }
        payload = m.withPayload { Message(copying: $0, credentials: header?.credentials ?? Credentials()) }
        senderNode = header?.node ?? ""
        senderMember = header?.sender
        privateTo = header?.privateTo
    }
}
