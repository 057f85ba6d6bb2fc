import Cluster
import Foundation
import Glibc
import NATSClient
import NATSTestSupport
import Testing

@Suite struct NodeTests {
    @Test func aNodeMakesTheBucketsAndClaimsItsName() throws {
        let servers = try NATSServers()
        let a = try TestNode(servers, "web1.lan")
        let (_, js) = try connect(servers)
        for bucket in ["mcastfs_groups", "mcastfs_members"] { _ = try js.keyValue(bucket: bucket) }
        let nodes = try js.keyValue(bucket: "mcastfs_nodes")
        let entry = try #require(try nodes.get("web1=2Elan"))
        let json = String(decoding: entry.value, as: UTF8.self)
        #expect(json.contains("\"v\":1") && json.contains("\"node\":\"web1.lan\"") && json.contains("\"pid\":\(getpid())"))
        #expect(json.contains("\"timeout_ms\":1000"))
        // Heartbeats: the key's revision moves every timeout/5.
        usleep(700_000)
        #expect(try nodes.get("web1=2Elan")!.revision >= entry.revision + 2)
        #expect(a.node.nodes() == ["web1.lan"])
    }

    @Test func anUnreachableClusterFailsWithinSeconds() {
        let time = elapsed {
            #expect(throws: ClusterError.self) {
                _ = try ClusterNode(ClusterConfiguration(servers: ["nats://127.0.0.1:1"], node: "a")) { _ in }
            }
        }
        #expect(time < .seconds(3))
        do {
            _ = try ClusterNode(ClusterConfiguration(servers: ["nats://127.0.0.1:1"], node: "a")) { _ in }
        } catch {
            guard case .unreachable = error else { Issue.record("\(error)"); return }
        }
    }

    @Test func badConfigurationsAreRefused() {
        for config in [ClusterConfiguration(servers: [], node: "a"),
                       ClusterConfiguration(servers: ["nats://127.0.0.1:1"], node: ""),
                       ClusterConfiguration(servers: ["nats://127.0.0.1:1"], node: String(repeating: "n", count: 65)),
                       ClusterConfiguration(servers: ["nats://127.0.0.1:1"], node: "a", timeout: .milliseconds(500)),
                       ClusterConfiguration(servers: ["nats://127.0.0.1:1"], node: "a", space: "a.b")] {
            do {
                _ = try ClusterNode(config) { _ in }
                Issue.record("accepted \(config)")
            } catch {
                guard case .invalid = error else { Issue.record("\(error)"); continue }
            }
        }
    }

    @Test func aSecondNodeWithTheSameNameFailsWithOneClearLine() throws {
        let servers = try NATSServers()
        let a = try TestNode(servers, "web1")
        var failure: ClusterError?
        let time = elapsed {
            do throws(ClusterError) { _ = try TestNode(servers, "web1") } catch { failure = error }
        }
        let error = try #require(failure)
        guard case .nodeNameInUse(let node, _, let pid) = error else { Issue.record("\(error)"); return }
        #expect(node == "web1" && pid == getpid())
        #expect(error.description.hasPrefix("node name web1 is in use by a running mcastfs (host "))
        #expect(error.description.hasSuffix("choose another with -o node="))
        // It watched the holder for its timeout + 1 s at most: a heartbeat
        // (every 200 ms) told sooner.
        #expect(time < .seconds(2))
        _ = a
    }

    @Test func aDeadNodesNameIsTakenOverAfterItsTimeoutAndASecond() throws {
        let servers = try NATSServers()
        let (_, js) = try connect(servers)
        // What a daemon killed with SIGKILL leaves: its key, no heartbeats.
        let nodes = try js.createKeyValue(KeyValueConfig(bucket: "mcastfs_nodes"))
        try nodes.create("ghost", bytes(#"{"v":1,"node":"ghost","boot":"00000000","host":"gone","pid":1,"timeout_ms":1000,"beat":7,"consumers":{}}"#))
        var node: TestNode?
        let time = try elapsed { node = try TestNode(servers, "ghost") }
        #expect(time >= .milliseconds(1900) && time < .seconds(4))
        let json = String(decoding: try #require(try nodes.get("ghost")).value, as: UTF8.self)
        #expect(json.contains("\"pid\":\(getpid())"))
        _ = node
    }

    @Test func anotherSpaceIsAnotherCluster() throws {
        let servers = try NATSServers()
        let a = try TestNode(servers, "n")
        let b = try TestNode(servers, "n", space: "other")
        try a.node.makeGroup(groupRecord("chat"))
        #expect(b.node.groups().isEmpty)
        try b.node.makeGroup(groupRecord("chat"))
    }
}

@Suite struct GroupTests {
    @Test func aGroupAppearsOnEveryNodeWithItsSettingsAndStream() throws {
        let servers = try NATSServers()
        let a = try TestNode(servers, "a")
        let b = try TestNode(servers, "b")
        var record = groupRecord("chat.room ü", backlog: 500, uid: 1234, mode: 0o1770)
        record.settings.send = "members"
        record.settings.maxMessage = 4096
        let made = try a.node.makeGroup(record)
        #expect(made.id.count == 16)
        #expect(a.node.groups().map(\.name) == ["chat.room ü"])
        #expect(b.events.wait(timeout: .seconds(1)) { $0.contains(.groupChanged(made)) })
        #expect(b.node.group("chat.room ü") == made)

        let (_, js) = try connect(servers)
        let entry = try #require(try js.keyValue(bucket: "mcastfs_groups").get("chat=2Eroom=20=C3=BC"))
        let json = String(decoding: entry.value, as: UTF8.self)
        for field in ["\"v\":1", "\"queue_bytes\":", "\"max_message\":4096", "\"send\":\"members\"", "\"send_to_peer\":false",
                      "\"cluster_backlog\":500", "\"replicas\":1", "\"state\":\"live\"", "\"uid\":1234", "\"mode\":1016"] {
            #expect(json.contains(field), "\(field) in \(json)")
        }
        let stream = try js.streamInfo("mcastfs_G\(made.id)")
        #expect(stream.config.retention == .interest && stream.config.discard == .new)
        #expect(stream.config.maxMessages == 500 && stream.config.maxBytes == nil)
        #expect(stream.config.subjects == ["mcastfs.g.\(made.id)"])
        #expect(stream.config.duplicateWindow == .seconds(120))
    }

    /// What a node's sink says of its members reaches the other nodes with
    /// its next heartbeat (every timeout / 5 = 0.2 s here). The ghost of
    /// LivenessTests, a record without counters (an older daemon), is read
    /// as reporting none.
    @Test func aNodesMemberCountersReachTheOthersWithItsHeartbeats() throws {
        let servers = try NATSServers()
        let a = try TestNode(servers, "a")
        let b = try TestNode(servers, "b")
        try a.node.makeGroup(groupRecord("chat"))
        #expect(b.events.wait(timeout: .seconds(1)) { _ in b.node.group("chat") != nil })
        let counters = [MemberCounters(member: "café", queued: 3, queuedBytes: 30, full: true, delivered: 7, dropped: 2),
                        MemberCounters(member: "cafe\u{301}", queued: 0, queuedBytes: 0, full: false, delivered: 9, dropped: 0)]
        _ = try b.node.join("chat", memberRecord("café"), sink: Reporting(counters))
        let deadline = ContinuousClock.now + .seconds(2)
        while a.node.reportedCounters(of: "chat", on: "b") != counters && ContinuousClock.now < deadline { usleep(10_000) }
        #expect(a.node.reportedCounters(of: "chat", on: "b") == counters)
        // Two names, not one: Swift's == takes them for equal.
        #expect(a.node.reportedCounters(of: "chat", on: "b").map { Array($0.member.utf8) } == counters.map { Array($0.member.utf8) })
        #expect(a.node.reportedCounters(of: "chat", on: "a") == [])
        #expect(a.node.reportedCounters(of: "nothing", on: "b") == [])
    }

    /// A value of another version (a later daemon's) or garbage is left
    /// alone: not a group, not an error; a version 1 value beside it is read.
    @Test func recordsOfAnotherVersionAreLeftAlone() throws {
        let servers = try NATSServers()
        let a = try TestNode(servers, "a")
        let made = try a.node.makeGroup(groupRecord("known"))
        let (_, js) = try connect(servers)
        let groups = try js.keyValue(bucket: "mcastfs_groups")
        var future = String(decoding: try #require(try groups.get("known")).value, as: UTF8.self)
        #expect(future.hasSuffix("\"v\":1}"))
        future = future.replacingOccurrences(of: "\"v\":1}", with: "\"v\":2}").replacingOccurrences(of: "known", with: "future")
        try groups.put("future", bytes(future))
        try groups.put("garbage", bytes("{not json"))
        let b = try TestNode(servers, "b")
        #expect(b.node.groups() == [made])
    }

    @Test func makingAGroupTwiceOnAnyNodeIsExists() throws {
        let servers = try NATSServers()
        let a = try TestNode(servers, "a")
        let b = try TestNode(servers, "b")
        try a.node.makeGroup(groupRecord("chat"))
        #expect(throws: ClusterError.exists) { try a.node.makeGroup(groupRecord("chat")) }
        #expect(throws: ClusterError.exists) { try b.node.makeGroup(groupRecord("chat")) }
        // The losers' streams are gone again: three buckets and one group.
        #expect(servers.monitor(0, "/jsz")?.contains("\"streams\": 4,") == true, "\(servers.monitor(0, "/jsz") ?? "")")
        #expect(a.node.groups().count == 1)
    }

    @Test func updateGroupChangesSettingsEverywhereAndTheStream() throws {
        let servers = try NATSServers()
        let a = try TestNode(servers, "a")
        let b = try TestNode(servers, "b")
        let made = try a.node.makeGroup(groupRecord("chat", backlog: 100))
        try b.node.updateGroup("chat") { r in
            r.settings.clusterBacklog = 200
            r.mode = 0o700
            r.name = "renamed"  // not changeable: stays
        }
        var expected = made
        expected.settings.clusterBacklog = 200
        expected.mode = 0o700
        #expect(b.node.group("chat") == expected)
        #expect(a.events.wait(timeout: .seconds(1)) { $0.contains(.groupChanged(expected)) })
        let (_, js) = try connect(servers)
        #expect(try js.streamInfo("mcastfs_G\(made.id)").config.maxMessages == 200)
        #expect(throws: ClusterError.notFound) { try a.node.updateGroup("nope") { $0.mode = 0 } }
        #expect(throws: ClusterError.self) { try a.node.updateGroup("chat") { $0.settings.send = "some" } }
    }

    @Test func loweringTheBacklogWithMembersIsBusy() throws {
        let servers = try NATSServers()
        let a = try TestNode(servers, "a")
        try a.node.makeGroup(groupRecord("chat", backlog: 100))
        _ = try a.node.join("chat", memberRecord("m"), sink: Collector())
        #expect(throws: ClusterError.busy) { try a.node.updateGroup("chat") { $0.settings.clusterBacklog = 50 } }
        try a.node.leave("chat", "m")
        try a.node.updateGroup("chat") { $0.settings.clusterBacklog = 50 }
        #expect(a.node.group("chat")?.settings.clusterBacklog == 50)
    }

    @Test func removeGroupFailsWhileAnyNodeHasMembers() throws {
        let servers = try NATSServers()
        let a = try TestNode(servers, "a")
        let b = try TestNode(servers, "b")
        let made = try a.node.makeGroup(groupRecord("chat"))
        #expect(b.events.wait(timeout: .seconds(1)) { $0.contains(.groupChanged(made)) })
        _ = try b.node.join("chat", memberRecord("m"), sink: Collector())
        #expect(throws: ClusterError.notEmpty) { try a.node.removeGroup("chat") }
        #expect(a.node.group("chat")?.state == .live)
        try b.node.leave("chat", "m")
        try a.node.removeGroup("chat")
        #expect(a.node.groups().isEmpty)
        #expect(b.events.wait(timeout: .seconds(1)) { $0.contains(.groupRemoved("chat")) })
        #expect(b.node.groups().isEmpty)
        let (_, js) = try connect(servers)
        #expect { _ = try js.streamInfo("mcastfs_G\(made.id)") } throws: { ($0 as? NATSError)?.code == .streamNotFound }
        #expect(throws: ClusterError.notFound) { try a.node.removeGroup("chat") }
        // A new incarnation gets a new stream.
        let again = try b.node.makeGroup(groupRecord("chat"))
        #expect(again.id != made.id)
    }
}

@Suite struct MemberTests {
    @Test func aMemberNameIsUniqueInItsGroupAcrossNodes() throws {
        let servers = try NATSServers()
        let a = try TestNode(servers, "a")
        let b = try TestNode(servers, "b")
        try a.node.makeGroup(groupRecord("chat"))
        #expect(b.events.wait(timeout: .seconds(1)) { $0.contains { if case .groupChanged = $0 { true } else { false } } })
        let from = try a.node.join("chat", memberRecord("x"), sink: Collector())
        #expect(from == 0)
        #expect(throws: ClusterError.exists) { _ = try b.node.join("chat", memberRecord("x"), sink: Collector()) }
        #expect(throws: ClusterError.exists) { _ = try a.node.join("chat", memberRecord("x"), sink: Collector()) }
        #expect(throws: ClusterError.notFound) { _ = try a.node.join("nope", memberRecord("x"), sink: Collector()) }
        #expect(b.events.wait(timeout: .seconds(1)) { $0.contains { if case .memberChanged("chat", let m) = $0 { m.name == "x" } else { false } } })
        #expect(b.node.members(of: "chat").map(\.node) == ["a"])
        #expect(a.node.members(of: "chat").map(\.name) == ["x"])
        // b's member of another name joins beside it.
        _ = try b.node.join("chat", memberRecord("y"), sink: Collector())
        #expect(a.events.wait(timeout: .seconds(1)) { _ in a.node.members(of: "chat").map(\.name) == ["x", "y"] })
        // A member elsewhere cannot be left from here.
        #expect(throws: ClusterError.notFound) { try a.node.leave("chat", "y") }
    }

    @Test func updateMemberOnAnyNodeReachesTheOwner() throws {
        let servers = try NATSServers()
        let a = try TestNode(servers, "a")
        let b = try TestNode(servers, "b")
        try a.node.makeGroup(groupRecord("chat"))
        _ = try a.node.join("chat", memberRecord("x"), sink: Collector())
        #expect(b.events.wait(timeout: .seconds(1)) { _ in b.node.members(of: "chat").count == 1 })
        try b.node.updateMember("chat", "x") { m in
            m.settings.loopback = true
            m.settings.subscribe = "news.*"
            m.node = "b"  // not changeable: stays
        }
        #expect(a.events.wait(timeout: .seconds(1)) { events in
            events.contains { if case .memberChanged("chat", let m) = $0 { m.settings.loopback && m.settings.subscribe == "news.*" && m.node == "a" } else { false } }
        })
        #expect(throws: ClusterError.notFound) { try b.node.updateMember("chat", "nobody") { $0.mode = 0 } }
    }

    @Test func leaveIsSeenEverywhereAndTheLastLeaveDeletesTheConsumer() throws {
        let servers = try NATSServers()
        let a = try TestNode(servers, "a")
        let b = try TestNode(servers, "b")
        let made = try a.node.makeGroup(groupRecord("chat"))
        _ = try a.node.join("chat", memberRecord("x"), sink: Collector())
        _ = try a.node.join("chat", memberRecord("y"), sink: Collector())
        let (_, js) = try connect(servers)
        #expect(try js.streamInfo("mcastfs_G\(made.id)").state.consumers == 1)
        try a.node.leave("chat", "x")
        #expect(b.events.wait(timeout: .seconds(1)) { $0.contains(.memberRemoved(group: "chat", member: "x")) })
        #expect(try js.streamInfo("mcastfs_G\(made.id)").state.consumers == 1)
        try a.node.leave("chat", "y")
        #expect(try js.streamInfo("mcastfs_G\(made.id)").state.consumers == 0)
        #expect(a.node.members(of: "chat").isEmpty)
        #expect(throws: ClusterError.notFound) { try a.node.leave("chat", "y") }
    }

    @Test func aNodeStartingLaterHasEveryGroupAndMemberWhenItReturns() throws {
        let servers = try NATSServers()
        let a = try TestNode(servers, "a")
        for i in 0..<5 { try a.node.makeGroup(groupRecord("g\(i)")) }
        _ = try a.node.join("g3", memberRecord("m1"), sink: Collector())
        _ = try a.node.join("g3", memberRecord("m2"), sink: Collector())
        let c = try TestNode(servers, "c")
        #expect(c.node.groups().map(\.name) == ["g0", "g1", "g2", "g3", "g4"])
        #expect(c.node.members(of: "g3").map(\.name) == ["m1", "m2"])
        #expect(c.node.nodes() == ["a", "c"])
        // The initial load is not reported as events.
        usleep(100_000)
        #expect(!c.events.all.contains { if case .groupChanged = $0 { true } else { false } })
    }

    @Test func shutDownRemovesTheNodesMembersConsumersAndKey() throws {
        let servers = try NATSServers()
        let a = try TestNode(servers, "a")
        let b = try TestNode(servers, "b")
        let made = try a.node.makeGroup(groupRecord("chat"))
        _ = try b.node.join("chat", memberRecord("x"), sink: Collector())
        b.node.shutDown()
        #expect(a.events.wait(timeout: .seconds(1)) { $0.contains(.memberRemoved(group: "chat", member: "x")) })
        let (_, js) = try connect(servers)
        #expect(try js.streamInfo("mcastfs_G\(made.id)").state.consumers == 0)
        #expect(try js.keyValue(bucket: "mcastfs_nodes").get("b") == nil)
        #expect(throws: ClusterError.cancelled) { try b.node.makeGroup(groupRecord("other")) }
    }
}

/// A sink whose members' counters are fixed: what a heartbeat reports.
private struct Reporting: DeliverySink {
    let reported: [MemberCounters]
    init(_ reported: [MemberCounters]) { self.reported = reported }
    func deliver(_ message: IncomingMessage, done: @escaping @Sendable () -> Void) { done() }
    func counters() -> [MemberCounters] { reported }
}
