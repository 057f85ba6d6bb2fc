@testable import Cluster
import DeliveryCore
import NATSClient
import NATSTestSupport
import TestSupport
import Testing

@Suite struct NamesTests {
    @Test func plainNamesStayReadable() {
        #expect(ClusterName.encode("chat") == "chat")
        #expect(ClusterName.encode("web1.example.org") == "web1=2Eexample=2Eorg")
        #expect(ClusterName.encode("a=b") == "a=3Db")
        #expect(ClusterName.encode("ünï") == "=C3=BCn=C3=AF")
        #expect(ClusterName.encode("a b*c>d") == "a=20b=2Ac=3Ed")
    }

    @Test func everyByteStringComesBack() {
        var rng = SeededGenerator(seed: 13)
        let every = (1...255).map { UInt8($0) }.filter { $0 != UInt8(ascii: "/") }
        #expect(ClusterName.decode(ClusterName.encode(every)) == every)
        for _ in 0..<2000 {
            let name = (0..<Int.random(in: 1...255, using: &rng)).map { _ in every.randomElement(using: &rng)! }
            let encoded = ClusterName.encode(name)
            #expect(ClusterName.decode(encoded) == name)
            // Only what every NATS name kind allows.
            #expect(encoded.utf8.allSatisfy { b in
                (b >= 0x30 && b <= 0x39) || (b >= 0x41 && b <= 0x5A) || (b >= 0x61 && b <= 0x7A) || b == 0x5F || b == 0x2D || b == 0x3D
            })
        }
    }

    @Test func distinctNamesStayDistinct() {
        var rng = SeededGenerator(seed: 7)
        var seen: [String: [UInt8]] = [:]
        for _ in 0..<5000 {
            let name = (0..<Int.random(in: 1...4, using: &rng)).map { _ in UInt8.random(in: 0x20...0x3F, using: &rng) }
            let encoded = ClusterName.encode(name)
            if let earlier = seen[encoded] { #expect(earlier == name) }
            seen[encoded] = name
        }
    }

    @Test func whatEncodeCannotMakeIsNoEncoding() {
        for bad in ["a.b", "=", "=4", "=4g", "=41", "=2e", "a b", "é"] {
            #expect(ClusterName.decode(bad) == nil, "\(bad)")
        }
        #expect(ClusterName.decode("=2E") == [UInt8(ascii: ".")])
    }

    @Test func theClusterSpaceNamesItsBucketsStreamsAndConsumers() throws {
        let space = try #require(ClusterSpace())
        #expect(space.groupsBucket == "mcastfs_groups" && space.membersBucket == "mcastfs_members" && space.nodesBucket == "mcastfs_nodes")
        #expect(space.stream("00c0ffee12345678") == "mcastfs_G00c0ffee12345678")
        #expect(space.subject("00c0ffee12345678") == "mcastfs.g.00c0ffee12345678")
        #expect(space.memberKey(group: "00c0ffee12345678", member: "alice.w") == "00c0ffee12345678.alice=2Ew")
        #expect(space.consumer(node: "web1.lan", boot: "0a1b2c3d", generation: 2) == "web1=2Elan_0a1b2c3d_2")
        #expect(space.messageIdPrefix(node: "web1", boot: "0a1b2c3d") + "9" == "web1.0a1b2c3d.9")
        #expect(ClusterSpace("prod-bus_2")?.prefix == "prod-bus_2")
        #expect(ClusterSpace("a.b") == nil && ClusterSpace("") == nil && ClusterSpace(String(repeating: "x", count: 33)) == nil)
    }

    @Test func theLongestNamesAreAcceptedByARealServer() throws {
        // The worst cases of docs/cluster.md's names: a 255-byte group or
        // member name all of escaped bytes (a 765-byte KV key), a 64-byte
        // node name likewise in a consumer name (under the 255 limit).
        let servers = try NATSServers()
        let (_, js) = try connect(servers)
        let space = try #require(ClusterSpace())
        let worstName = [UInt8](repeating: 0xE2, count: 255)
        let groups = try js.createKeyValue(KeyValueConfig(bucket: space.groupsBucket))
        let key = ClusterName.encode(worstName)
        #expect(key.utf8.count == 765)
        try groups.create(key, bytes("{}"))
        #expect(try groups.keys() == [key])
        #expect(ClusterName.decode(try groups.keys()[0]) == worstName)

        let members = try js.createKeyValue(KeyValueConfig(bucket: space.membersBucket))
        let id = "00c0ffee12345678"
        try members.create(space.memberKey(group: id, member: String(decoding: worstName, as: UTF8.self)), bytes("{}"))
        #expect(try members.keys().count == 1)

        var stream = StreamConfig(name: space.stream(id), subjects: [space.subject(id)])
        stream.retention = .interest
        _ = try js.addStream(stream)
        let node = String(repeating: "é", count: 32)  // 64 bytes, all escaped
        let consumer = space.consumer(node: node, boot: "0a1b2c3d", generation: 1_000_000)
        #expect(consumer.utf8.count <= 255)
        _ = try js.addConsumer(stream: space.stream(id), ConsumerConfig(name: consumer))
        let messageId = space.messageIdPrefix(node: node, boot: "0a1b2c3d") + String(UInt64.max)
        let ack = try js.publish(subject: space.subject(id), payload: bytes("x"), options: PublishOptions(msgId: messageId))
        #expect(ack.sequence == 1)
        #expect(try js.consumerInfo(stream: space.stream(id), consumer: consumer).numPending == 1)
    }
}

@Suite struct HeaderTests {
    private func read(_ text: String) -> ReceivedHeader? {
        Array(text.utf8).withUnsafeBytes { ReceivedHeader($0) }
    }

    @Test func whatANodeWritesReadsBack() {
        let cases: [(String, OutgoingMessage)] = [
            ("n0", OutgoingMessage(payload: Message([1], credentials: Credentials(pid: 12, uid: 1000, gid: 100)))),
            ("web1.example.org", OutgoingMessage(payload: Message([], credentials: Credentials(pid: 4_294_967_295, uid: 0, gid: 0)),
                                                 sender: "al ice")),
            ("b", OutgoingMessage(payload: Message([2], credentials: Credentials(pid: 1, uid: 2, gid: 3)), sender: "ünï", privateTo: "bob=b")),
            ("b", OutgoingMessage(payload: Message([2]), privateTo: "to")),
        ]
        for (node, message) in cases {
            let header = mcastfsHeader(encodedNode: ClusterName.encode(node), message)
            #expect(read(header) == ReceivedHeader(credentials: message.payload.credentials, node: node, sender: message.sender,
                                                   privateTo: message.privateTo), "\(header)")
        }
    }

    @Test func theHeaderIsWrittenAsTheWireFormatSays() {
        let message = OutgoingMessage(payload: Message([1], credentials: Credentials(pid: 0, uid: 1000, gid: 4_294_967_295)),
                                      sender: "al ice", privateTo: "b")
        #expect(mcastfsHeader(encodedNode: "web1=2Eorg", message) == "1 web1=2Eorg 0 1000 4294967295 1 al=20ice b")
        #expect(mcastfsHeader(encodedNode: "n0", OutgoingMessage(payload: Message([1]))) == "1 n0 0 0 0 0 -")
    }

    @Test func aHeaderOfAnotherVersionOrTooFewFieldsIsNone() {
        #expect(read("") == nil)
        #expect(read("2 n0 1 2 3 0 -") == nil)
        #expect(read("1 n0 1 2 3 0") == nil)
        #expect(read("10 n0 1 2 3 0 -") == nil)
    }

    @Test func badFieldsReadAsZeroOrNone() {
        // Numbers that are not (or overflow) are 0; a name that is not an
        // encoding is none; extra spaces and fields change nothing.
        #expect(read("1 n0 x 4294967296 +7 0 -") == ReceivedHeader(credentials: Credentials(pid: 0, uid: 0, gid: 7), node: "n0"))
        #expect(read("1  a=ZZ  1 2 3  1  b=2 ") == ReceivedHeader(credentials: Credentials(pid: 1, uid: 2, gid: 3), node: "", sender: nil))
        #expect(read("1 a 1 2 3 1 s t extra more") == ReceivedHeader(credentials: Credentials(pid: 1, uid: 2, gid: 3), node: "a",
                                                                      sender: "s", privateTo: "t"))
        // Not private: a target is not read.
        #expect(read("1 a 1 2 3 0 s t") == ReceivedHeader(credentials: Credentials(pid: 1, uid: 2, gid: 3), node: "a", sender: "s"))
    }
}
