@testable import Cluster
import Glibc
import NATSClient
import NATSTestSupport
import Testing

/// A blocked write cancelled (EINTR) in the moment between a round giving
/// it the turn and its retry: the turn must go on. It once stayed with the
/// cancelled write, and every later blocking write of the group on that
/// node queued behind it for ever (tests/cluster, the stress test's writer
/// that never returned, 1 run in about 15).
@Suite struct TurnTests {
    @Test func aWriteCancelledAsItGetsTheTurnGivesItOn() throws {
        let servers = try NATSServers()
        let a = try TestNode(servers, "a")
        let b = try TestNode(servers, "b")
        let made = try a.node.makeGroup(groupRecord("chat", backlog: 2))
        let sink = Collector(holding: true)
        _ = try a.node.join("chat", memberRecord("full"), sink: sink)
        #expect(b.events.wait(timeout: .seconds(1)) { _ in b.node.group("chat") != nil })
        for i in 0..<2 { #expect(publish(b.node, "chat", ["fill\(i)"]) == .success(1)) }

        let first = Recorder<Result<Int, ClusterError>>()
        let waiting = try #require(b.node.publish("chat", [outgoing("cancelled")], blocking: true) { first.append($0) })
        usleep(300_000)  // refused and parked
        let writers = try #require(b.node.local.read { $0.writers[made.id] })
        // The race, made by hand: the round's first half, the cancel, the
        // round's second half.
        let turn = try #require(writers.takeTurn { _ in true })
        #expect(waiting.cancel())
        turn.attempt(retrying: true)
        #expect(!writers.congested)

        let later = Recorder<Result<Int, ClusterError>>()
        b.node.publish("chat", [outgoing("later")], blocking: true) { later.append($0) }
        sink.release()
        #expect(later.wait(timeout: .seconds(5)) { !$0.isEmpty })
        #expect(later.all == [.success(1)])
        #expect(first.all.isEmpty)
        #expect(sink.wait(count: 3))
        #expect(sink.payloads == ["fill0", "fill1", "later"])
    }
}
