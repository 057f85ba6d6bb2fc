import Cluster
import Foundation
import DeliveryCore
import Glibc
import NATSClient
import NATSTestSupport
import Testing

@Suite struct DeliveryTests {
    @Test func concurrentWritersOnTwoNodesAreDeliveredInOneOrderExactlyOnceOnBoth() throws {
        let servers = try NATSServers()
        let a = try TestNode(servers, "a")
        let b = try TestNode(servers, "b")
        try a.node.makeGroup(groupRecord("chat"))
        #expect(b.events.wait(timeout: .seconds(1)) { _ in b.node.group("chat") != nil })
        let sinkA = Collector(), sinkB = Collector()
        #expect(try a.node.join("chat", memberRecord("ma"), sink: sinkA) == 0)
        #expect(try b.node.join("chat", memberRecord("mb"), sink: sinkB) == 0)

        let n = 150
        let writers = [(a, "a"), (b, "b")].map { node, tag in
            startThread {
                for i in 0..<n {
                    guard case .success(1) = publish(node.node, "chat", ["\(tag)\(i)"]) else { return }
                }
            }
        }
        for t in writers { pthread_join(t, nil) }
        #expect(sinkA.wait(count: 2 * n) && sinkB.wait(count: 2 * n))
        usleep(100_000)
        // Exactly once, one order on both nodes, the group sequence is the
        // stream's (1, 2, 3 ...).
        #expect(sinkA.sequences == Array(1...UInt64(2 * n)))
        #expect(sinkB.sequences == sinkA.sequences)
        #expect(sinkB.payloads == sinkA.payloads)
        // Each writer's order.
        for tag in ["a", "b"] {
            #expect(sinkA.payloads.filter { $0.hasPrefix(tag) } == (0..<n).map { "\(tag)\($0)" })
        }
        #expect(sinkA.messages.filter { $0.senderNode == "a" }.count == n)
    }

    @Test func aBatchIsStoredBackToBackBetweenOtherWriters() throws {
        let servers = try NATSServers()
        let a = try TestNode(servers, "a")
        let b = try TestNode(servers, "b")
        try a.node.makeGroup(groupRecord("chat"))
        let sink = Collector()
        _ = try a.node.join("chat", memberRecord("m"), sink: sink)
        #expect(b.events.wait(timeout: .seconds(1)) { _ in b.node.group("chat") != nil })
        let other = startThread {
            for i in 0..<100 { _ = publish(b.node, "chat", ["single\(i)"]) }
        }
        var batches = 0
        for round in 0..<5 {
            let texts = (0..<40).map { "batch\(round).\($0)" }
            if case .success(let k) = publish(a.node, "chat", texts) {
                // A cut batch is a prefix; what was cut is not stored.
                #expect(k >= 1 && k <= 40)
                batches += 1
            }
        }
        pthread_join(other, nil)
        #expect(batches == 5)
        usleep(300_000)
        let payloads = sink.payloads
        for round in 0..<5 {
            let positions = payloads.indices.filter { payloads[$0].hasPrefix("batch\(round).") }
            // Back to back: consecutive positions, in order.
            #expect(positions == Array((positions.first ?? 0)..<((positions.first ?? 0) + positions.count)))
            #expect(positions.map { payloads[$0] } == (0..<positions.count).map { "batch\(round).\($0)" })
        }
        #expect(sink.sequences == Array(1...UInt64(payloads.count)))
    }

    @Test func theHeaderCarriesCredentialsSenderAndPrivateTarget() throws {
        let servers = try NATSServers()
        let a = try TestNode(servers, "node.a")
        let b = try TestNode(servers, "b")
        try a.node.makeGroup(groupRecord("chat"))
        #expect(b.events.wait(timeout: .seconds(1)) { _ in b.node.group("chat") != nil })
        let sink = Collector()
        _ = try b.node.join("chat", memberRecord("bob b"), sink: sink)
        let before = UInt64(Int(Double(time(nil)))) * 1_000_000_000
        let result = Recorder<Result<Int, ClusterError>>()
        a.node.publish("chat", [outgoing("hi", sender: "al.ice", to: "bob b", uid: 1234), outgoing("all", uid: 77)], blocking: true) { result.append($0) }
        #expect(result.wait { !$0.isEmpty })
        #expect(result.all.first == .success(2))
        #expect(sink.wait(count: 2))
        let m = sink.messages
        #expect(m[0].senderNode == "node.a" && m[0].senderMember == "al.ice" && m[0].privateTo == "bob b")
        #expect(m[0].payload.credentials == Credentials(pid: UInt32(getpid()), uid: 1234, gid: 1234))
        #expect(m[0].time >= before && m[0].time < before + 10_000_000_000)
        #expect(m[1].senderMember == nil && m[1].privateTo == nil && m[1].payload.credentials.uid == 77)
        #expect(m[1].time >= m[0].time && m[1].sequence == m[0].sequence + 1)
    }

    @Test func aBareNATSClientsMessageComesFromNobody() throws {
        let servers = try NATSServers()
        let a = try TestNode(servers, "a")
        let made = try a.node.makeGroup(groupRecord("chat"))
        let sink = Collector()
        _ = try a.node.join("chat", memberRecord("m"), sink: sink)
        let (_, js) = try connect(servers)
        _ = try js.publish(subject: "mcastfs.g.\(made.id)", payload: bytes("plain"))
        #expect(sink.wait(count: 1))
        #expect(sink.payloads == ["plain"] && sink.messages[0].senderNode == "" && sink.messages[0].payload.credentials == Credentials())
    }

    @Test func aMemberJoinsAtTheStreamsLastSequence() throws {
        let servers = try NATSServers()
        let a = try TestNode(servers, "a")
        let b = try TestNode(servers, "b")
        try a.node.makeGroup(groupRecord("chat"))
        let sinkA = Collector()
        _ = try a.node.join("chat", memberRecord("early"), sink: sinkA)
        for i in 0..<3 { #expect(publish(a.node, "chat", ["m\(i)"]) == .success(1)) }
        #expect(b.events.wait(timeout: .seconds(1)) { _ in b.node.group("chat") != nil })
        let sinkB = Collector()
        #expect(try b.node.join("chat", memberRecord("late"), sink: sinkB) == 3)
        #expect(b.node.members(of: "chat").first { $0.name == "late" }?.from == 3)
        #expect(publish(a.node, "chat", ["m3"]) == .success(1))
        #expect(sinkB.wait(count: 1) && sinkA.wait(count: 4))
        usleep(100_000)
        #expect(sinkB.sequences == [4] && sinkA.sequences == [1, 2, 3, 4])
    }

    /// A message the node's consumer handed out that never reached the
    /// node (here taken by another subscriber of the same consumer, as a
    /// fetch lost in a leader's failover is) stays pending on the consumer
    /// for its ack wait (1 h); the node reads it from the stream when the
    /// next one comes, and delivers it first.
    @Test func aMessageTheConsumerSkippedIsReadFromTheStreamInOrder() throws {
        let servers = try NATSServers()
        let a = try TestNode(servers, "a")
        let made = try a.node.makeGroup(groupRecord("chat"))
        let sink = Collector(holding: true)
        _ = try a.node.join("chat", memberRecord("m"), sink: sink)
        #expect(publish(a.node, "chat", ["m0"]) == .success(1))
        #expect(sink.wait(count: 1))
        // The delivery thread waits on m0 now; its fetch's pull request
        // expires (1 s), so that the next message goes to the thief.
        usleep(1_500_000)
        #expect(publish(a.node, "chat", ["m1", "m2"]) == .success(2))
        let (_, js) = try connect(servers)
        let entry = try #require(try js.keyValue(bucket: "mcastfs_nodes").get("a"))
        struct Consumers: Decodable { var consumers: [String: String] }
        let consumer = try #require(try JSONDecoder().decode(Consumers.self, from: Data(entry.value)).consumers[made.id])
        let thief = try js.pullSubscription(stream: "mcastfs_G\(made.id)", consumer: consumer)
        let stolen = try thief.fetch(batch: 1, timeout: .seconds(2))
        #expect(stolen.map(\.streamSequence) == [2])
        sink.release()
        #expect(sink.wait(count: 3))
        usleep(200_000)
        #expect(sink.payloads == ["m0", "m1", "m2"] && sink.sequences == [1, 2, 3])
        // m2's ack (AckAll) covered m1: the interest stream holds nothing.
        let deadline = ContinuousClock.now + .seconds(2)
        while try js.streamInfo("mcastfs_G\(made.id)").state.messages != 0 && ContinuousClock.now < deadline { usleep(20_000) }
        #expect(try js.streamInfo("mcastfs_G\(made.id)").state.messages == 0)
    }

    @Test func aGroupWithoutMembersAcceptsAndDrops() throws {
        let servers = try NATSServers()
        let a = try TestNode(servers, "a")
        try a.node.makeGroup(groupRecord("chat", backlog: 2))
        for _ in 0..<5 { #expect(publish(a.node, "chat", ["x"], blocking: false) == .success(1)) }
        #expect(publish(a.node, "nope", ["x"]) == .failure(.notFound))
        var big = groupRecord("small")
        big.settings.maxMessage = 4
        try a.node.makeGroup(big)
        #expect(publish(a.node, "small", ["12345"]) == .failure(.tooLarge))
        #expect(publish(a.node, "small", ["1234"]) == .success(1))
    }

    @Test func aHeldDeliveryKeepsItsConsumerAliveWithInProgressAcks() throws {
        let servers = try NATSServers()
        let a = try TestNode(servers, "a")  // cluster_timeout 1 s: the consumer's inactive threshold
        let made = try a.node.makeGroup(groupRecord("chat"))
        let sink = Collector(holding: true)
        _ = try a.node.join("chat", memberRecord("full"), sink: sink)
        for i in 0..<3 { #expect(publish(a.node, "chat", ["m\(i)"]) == .success(1)) }
        #expect(sink.wait(count: 1))
        // Three thresholds of holding the first message's `done`.
        usleep(3_000_000)
        let (_, js) = try connect(servers)
        #expect(try js.streamInfo("mcastfs_G\(made.id)").state.consumers == 1)
        #expect(sink.messages.count == 1)
        sink.release()
        #expect(sink.wait(count: 3))
        usleep(300_000)
        #expect(sink.sequences == [1, 2, 3])
        // Acked: the interest stream holds nothing more.
        #expect(try js.streamInfo("mcastfs_G\(made.id)").state.messages == 0)
    }
}
