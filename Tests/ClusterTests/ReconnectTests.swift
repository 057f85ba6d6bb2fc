import Cluster
import Glibc
import NATSClient
import NATSTestSupport
import Testing

@Suite struct ReconnectTests {
    @Test func aLostServerIsReportedCallsFailAndDeliveryResumesWithoutDuplicates() throws {
        let servers = try NATSServers()
        let a = try TestNode(servers, "a", timeout: .seconds(5))
        let made = try a.node.makeGroup(groupRecord("chat"))
        let sink = Collector()
        _ = try a.node.join("chat", memberRecord("m"), sink: sink)
        for i in 0..<20 { #expect(publish(a.node, "chat", ["before\(i)"]) == .success(1)) }
        #expect(sink.wait(count: 20))

        servers.kill(0)
        #expect(a.events.wait(timeout: .seconds(5)) { $0.contains(.disconnected) })
        #expect {
            try a.node.makeGroup(groupRecord("other"))
        } throws: { error in
            if case .unreachable = error as? ClusterError { true } else { false }
        }
        guard case .failure(.unreachable) = publish(a.node, "chat", ["lost"]) else {
            Issue.record("a publish while disconnected")
            return
        }
        try servers.restart(0)
        #expect(a.events.wait(timeout: .seconds(10)) { $0.contains(.reconnected) })
        #expect(Array(a.events.all.suffix(2)) == [.disconnected, .reconnected])

        for i in 0..<20 { #expect(publish(a.node, "chat", ["after\(i)"]) == .success(1)) }
        #expect(sink.wait(count: 40))
        usleep(300_000)
        #expect(sink.sequences == Array(1...40))
        #expect(sink.payloads == (0..<20).map { "before\($0)" } + (0..<20).map { "after\($0)" })
        // Handed over: one consumer, once the old one is deleted a
        // cluster_timeout after the hand-over.
        let (_, js) = try connect(servers)
        #expect(Recorder<Int>().wait(timeout: .seconds(8)) { _ in (try? js.streamInfo("mcastfs_G\(made.id)").state.consumers) == 1 })
        // The buckets' watchers resumed: a change after the outage is seen.
        try a.node.makeGroup(groupRecord("later"))
        #expect(a.events.wait(timeout: .seconds(2)) { $0.contains { if case .groupChanged(let g) = $0 { g.name == "later" } else { false } } })
    }

    @Test func aWriteWaitingForRoomFailsAtOnceOnADisconnect() throws {
        let servers = try NATSServers()
        let a = try TestNode(servers, "a", timeout: .seconds(5))
        try a.node.makeGroup(groupRecord("chat", backlog: 2))
        let sink = Collector(holding: true)
        _ = try a.node.join("chat", memberRecord("full"), sink: sink)
        for _ in 0..<2 { #expect(publish(a.node, "chat", ["x"]) == .success(1)) }
        let results = Recorder<Result<Int, ClusterError>>()
        a.node.publish("chat", [outgoing("parked")], blocking: true) { results.append($0) }
        usleep(200_000)
        #expect(results.all.isEmpty)
        let start = ContinuousClock.now
        servers.kill(0)
        #expect(results.wait(timeout: .seconds(5)) { !$0.isEmpty })
        print("a parked write failed \(ContinuousClock.now - start) after the server died")
        guard case .failure(.unreachable) = results.all.first else {
            Issue.record("\(results.all)")
            return
        }
        try servers.restart(0)
        #expect(a.events.wait(timeout: .seconds(10)) { $0.contains(.reconnected) })
        sink.release()
        #expect(sink.wait(count: 2))
        usleep(300_000)
        #expect(sink.payloads == ["x", "x"])
    }

    /// The server back at once, or after the unanswered publishes timed out
    /// (then they are settled by probing after the reconnect).
    @Test(arguments: [0, 700_000, 1_500_000])
    func aBatchInFlightAtADisconnectIsSettledAsAPrefix(outageMicroseconds: UInt32) throws {
        let servers = try NATSServers()
        let a = try TestNode(servers, "a", timeout: .seconds(5))
        try a.node.makeGroup(groupRecord("chat", backlog: 100_000))
        let sink = Collector()
        _ = try a.node.join("chat", memberRecord("m"), sink: sink)
        let n = 20_000
        let results = Recorder<Result<Int, ClusterError>>()
        a.node.publish("chat", (0..<n).map { outgoing("b\($0)") }, blocking: true) { results.append($0) }
        usleep(5_000)
        servers.kill(0)
        usleep(outageMicroseconds)
        try servers.restart(0)
        #expect(results.wait(timeout: .seconds(20)) { !$0.isEmpty })
        let stored: Int
        switch results.all.first {
        case .success(let k)?: stored = k
        case .failure(.unreachable)?: stored = 0
        default:
            Issue.record("\(results.all)")
            return
        }
        print("a batch of \(n) cut by a server restart (outage \(outageMicroseconds) µs): \(stored) stored, \(String(describing: results.all.first))")
        #expect(a.events.wait(timeout: .seconds(10)) { $0.contains(.reconnected) })
        // Something published after the batch marks the end of what came.
        #expect(publish(a.node, "chat", ["end"]) == .success(1))
        #expect(sink.wait(count: stored + 1, timeout: .seconds(20)))
        usleep(300_000)
        // What the write reported is exactly what was stored: a prefix,
        // once each, in order, then the marker.
        let ok = sink.payloads == (0..<stored).map { "b\($0)" } + ["end"]
        #expect(ok, "reported \(stored), delivered \(sink.payloads.count): \(sink.payloads.suffix(3))")
        #expect(sink.sequences == Array(1...UInt64(sink.payloads.count)))
    }
}
