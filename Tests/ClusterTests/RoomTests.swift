import Cluster
import Glibc
import NATSClient
import NATSTestSupport
import Testing

@Suite struct RoomTests {
    /// Two nodes; on `a` a member whose deliveries are held (a full member
    /// that is not drop-when-full), the group's stream `backlog` long; the
    /// stream filled by `b`.
    /// (Keep the first node: dropping it shuts it down, which deletes its
    /// consumer and so makes room.)
    private func fullGroup(_ servers: NATSServers, backlog: Int = 5) throws -> (TestNode, TestNode, Collector, String) {
        let a = try TestNode(servers, "a")
        let b = try TestNode(servers, "b")
        let made = try a.node.makeGroup(groupRecord("chat", backlog: backlog))
        let sink = Collector(holding: true)
        _ = try a.node.join("chat", memberRecord("full"), sink: sink)
        #expect(b.events.wait(timeout: .seconds(1)) { _ in b.node.group("chat") != nil })
        for i in 0..<backlog { #expect(publish(b.node, "chat", ["fill\(i)"]) == .success(1)) }
        return (a, b, sink, made.id)
    }

    @Test func aFullStreamRefusesANonBlockingWriteOnAnyNode() throws {
        let servers = try NATSServers()
        let (a, b, sink, _) = try fullGroup(servers)
        #expect(publish(b.node, "chat", ["more"], blocking: false) == .failure(.full))
        #expect(publish(a.node, "chat", ["more"], blocking: false) == .failure(.full))
        sink.release()
        #expect(sink.wait(count: 5))
        usleep(200_000)
        #expect(publish(b.node, "chat", ["more"], blocking: false) == .success(1))
    }

    @Test func aBlockedWriterElsewhereIsReleasedWhenTheFullMemberDrains() throws {
        let servers = try NATSServers()
        let (a, b, sink, _) = try fullGroup(servers)
        defer { withExtendedLifetime(a) {} }
        let results = Recorder<Result<Int, ClusterError>>()
        let waiting = b.node.publish("chat", [outgoing("blocked")], blocking: true) { results.append($0) }
        #expect(waiting != nil)
        usleep(500_000)
        #expect(results.all.isEmpty)
        let start = ContinuousClock.now
        sink.release()
        #expect(results.wait(timeout: .seconds(5)) { !$0.isEmpty })
        let released = ContinuousClock.now - start
        print("released \(released) after the full member drained")
        #expect(results.all == [.success(1)])
        // Well before the backstop (cluster_timeout, 1 s here): the notices did it.
        #expect(released < .milliseconds(800))
        #expect(sink.wait(count: 6))
        #expect(sink.payloads.last == "blocked" && sink.sequences == Array(1...6))
    }

    @Test func parkedWritesOfANodeAreReleasedInTheOrderTheyBegan() throws {
        let servers = try NATSServers()
        let (a, b, sink, _) = try fullGroup(servers, backlog: 3)
        defer { withExtendedLifetime(a) {} }
        let results = Recorder<String>()
        for i in 0..<4 {
            b.node.publish("chat", [outgoing("w\(i)")], blocking: true) { r in results.append("w\(i) \(r)") }
            usleep(50_000)
        }
        usleep(300_000)
        #expect(results.all.isEmpty)
        sink.release()
        #expect(results.wait(timeout: .seconds(10)) { $0.count == 4 })
        #expect(sink.wait(count: 7))
        #expect(Array(sink.payloads.suffix(4)) == ["w0", "w1", "w2", "w3"])
    }

    @Test func cancellingAParkedWriteStoresNothingAndNeverCompletes() throws {
        let servers = try NATSServers()
        let (a, b, sink, id) = try fullGroup(servers)
        let results = Recorder<Result<Int, ClusterError>>()
        let waiting = try #require(b.node.publish("chat", [outgoing("cancelled")], blocking: true) { results.append($0) })
        usleep(300_000)
        #expect(waiting.cancel())
        #expect(!waiting.cancel())
        sink.release()
        #expect(sink.wait(count: 5))
        usleep(1_500_000)  // past the backstop retry (cluster_timeout)
        #expect(results.all.isEmpty)
        let (_, js) = try connect(servers)
        #expect(try js.streamInfo("mcastfs_G\(id)").state.lastSequence == 5)
        #expect(sink.payloads.count == 5)
        _ = a
    }

    @Test func theFullMemberLeavingReleasesTheWriters() throws {
        let servers = try NATSServers()
        let (a, b, _, id) = try fullGroup(servers)
        let results = Recorder<Result<Int, ClusterError>>()
        b.node.publish("chat", [outgoing("after")], blocking: true) { results.append($0) }
        usleep(300_000)
        let start = ContinuousClock.now
        try a.node.leave("chat", "full")
        #expect(results.wait(timeout: .seconds(5)) { !$0.isEmpty })
        print("released \(ContinuousClock.now - start) after the full member left")
        #expect(results.all == [.success(1)])
        let (_, js) = try connect(servers)
        #expect(try js.streamInfo("mcastfs_G\(id)").state.consumers == 0)
    }

    @Test func aBatchMeetingAFullStreamIsAShortWrite() throws {
        let servers = try NATSServers()
        let a = try TestNode(servers, "a")
        try a.node.makeGroup(groupRecord("chat", backlog: 4))
        let sink = Collector(holding: true)
        _ = try a.node.join("chat", memberRecord("full"), sink: sink)
        #expect(publish(a.node, "chat", ["0", "1", "2", "3", "4", "5"]) == .success(4))
        sink.release()
        #expect(sink.wait(count: 4))
        usleep(200_000)
        #expect(sink.payloads == ["0", "1", "2", "3"])
    }
}

/// Lets each message go a little later, on a thread of its own: a member
/// slower than the writers.
final class SlowSink: DeliverySink, @unchecked Sendable {
    let collector = Collector()
    let delay: UInt32
    init(delayMicroseconds: UInt32) { delay = delayMicroseconds }
    func deliver(_ message: IncomingMessage, done: @escaping @Sendable () -> Void) {
        collector.deliver(message) {}
        let delay = delay
        startDetachedThread {
            usleep(delay)
            done()
        }
    }
}

@Suite struct RoomStressTests {
    @Test func writersOnTwoNodesIntoASmallStreamAllGetThroughInOneOrder() throws {
        let servers = try NATSServers()
        let a = try TestNode(servers, "a")
        let b = try TestNode(servers, "b")
        try a.node.makeGroup(groupRecord("chat", backlog: 8))
        #expect(b.events.wait(timeout: .seconds(1)) { _ in b.node.group("chat") != nil })
        let slow = SlowSink(delayMicroseconds: 500)
        let fast = Collector()
        _ = try a.node.join("chat", memberRecord("slow"), sink: slow)
        _ = try b.node.join("chat", memberRecord("fast"), sink: fast)
        let n = 60
        let failures = Recorder<String>()
        let start = ContinuousClock.now
        let threads = [(a, "a0"), (a, "a1"), (b, "b0"), (b, "b1")].map { node, tag in
            startThread {
                for i in 0..<n {
                    let r = publish(node.node, "chat", ["\(tag).\(i)"])
                    if r != .success(1) { failures.append("\(tag).\(i): \(String(describing: r))") }
                }
            }
        }
        for t in threads { pthread_join(t, nil) }
        print("\(4 * n) blocking writes through an 8-message stream in \(ContinuousClock.now - start)")
        #expect(failures.all.isEmpty, "\(failures.all.prefix(3))")
        #expect(slow.collector.wait(count: 4 * n) && fast.wait(count: 4 * n))
        usleep(100_000)
        #expect(fast.sequences == Array(1...UInt64(4 * n)))
        #expect(slow.collector.payloads == fast.payloads)
        for tag in ["a0", "a1", "b0", "b1"] {
            #expect(fast.payloads.filter { $0.hasPrefix(tag + ".") } == (0..<n).map { "\(tag).\($0)" })
        }
    }

    @Test func aParkedWriteCostsNoTrafficWhileItWaits() throws {
        let servers = try NATSServers()
        let a = try TestNode(servers, "a", timeout: .seconds(5))
        let b = try TestNode(servers, "b", timeout: .seconds(5))
        try a.node.makeGroup(groupRecord("chat", backlog: 2))
        let sink = Collector(holding: true)
        _ = try a.node.join("chat", memberRecord("full"), sink: sink)
        #expect(b.events.wait(timeout: .seconds(1)) { _ in b.node.group("chat") != nil })
        for _ in 0..<2 { #expect(publish(b.node, "chat", ["x"]) == .success(1)) }
        let results = Recorder<Result<Int, ClusterError>>()
        b.node.publish("chat", [outgoing("parked")], blocking: true) { results.append($0) }
        usleep(300_000)
        func inMessages() -> Int {
            let varz = servers.monitor(0, "/varz") ?? ""
            // "in_msgs": N, in nats-server's indented JSON.
            guard let line = varz.split(separator: "\n").first(where: { $0.contains("\"in_msgs\"") }) else { return -1 }
            return Int(line.filter(\.isNumber)) ?? -1
        }
        let before = inMessages()
        usleep(2_000_000)
        let during = inMessages() - before
        print("messages into the server in 2 s of a parked write: \(during)")
        // Heartbeats (two nodes, one a second each) and in-progress acks
        // (one every 5/3 s); a polling writer would be hundreds.
        #expect(during >= 0 && during < 15)
        #expect(results.all.isEmpty)
        sink.release()
        #expect(results.wait(timeout: .seconds(5)) { !$0.isEmpty })
        #expect(results.all == [.success(1)])
    }
}
