import Glibc
import NATSClient
import NATSTestSupport
import Testing

// The facts about nats-server 2.9.10 that docs/cluster.md builds groups
// across hosts on, each checked against a real server. If one of these
// fails after a server upgrade, the design must be looked at again.

/// A group's stream as docs/cluster.md configures it.
func groupStream(_ name: String, backlog: Int64, replicas: Int = 1) -> StreamConfig {
    var c = StreamConfig(name: name, subjects: ["mcastfs.g.\(name)"])
    c.retention = .interest
    c.discard = .new
    c.maxMessages = backlog
    c.replicas = replicas
    c.duplicateWindow = .seconds(120)
    return c
}

/// A node's consumer of a group's stream as docs/cluster.md configures it.
func nodeConsumer(_ node: String, maxAckPending: Int64 = 1024, inactiveThreshold: Duration = .seconds(5)) -> ConsumerConfig {
    var c = ConsumerConfig(name: node)
    c.deliverPolicy = .new
    c.ackPolicy = .explicit
    c.maxAckPending = maxAckPending
    c.inactiveThreshold = inactiveThreshold
    c.ackWait = .seconds(60)
    return c
}

func publishOne(_ js: JetStream, _ stream: String, _ text: String, id: String? = nil) throws(NATSError) -> PubAck {
    try js.publish(subject: "mcastfs.g.\(stream)", payload: bytes(text), options: PublishOptions(msgId: id))
}

@Suite struct StreamFacts {
    @Test func oneLaggingConsumerFillsAnInterestStreamAndRefusesWriters() throws {
        let servers = try NATSServers()
        let (_, js) = try connect(servers)
        _ = try js.addStream(groupStream("G", backlog: 5))
        _ = try js.addConsumer(stream: "G", nodeConsumer("a"))
        _ = try js.addConsumer(stream: "G", nodeConsumer("b"))
        for i in 1...5 { #expect(try publishOne(js, "G", "m\(i)").sequence == UInt64(i)) }

        #expect { _ = try publishOne(js, "G", "m6") } throws: { error in
            let e = error as? NATSError
            return e?.isMaximumMessagesExceeded == true && e?.code == .streamStoreFailed && e?.text == "maximum messages exceeded"
        }

        // Node a takes and acks everything; b lags: the stream stays full.
        let a = try js.pullSubscription(stream: "G", consumer: "a")
        for m in try a.fetch(batch: 5, timeout: .seconds(2)) { try m.ackSync() }
        #expect(try js.streamInfo("G").state.messages == 5)
        #expect(throws: NATSError.self) { _ = try publishOne(js, "G", "m6") }

        // b acks two: room for two.
        let b = try js.pullSubscription(stream: "G", consumer: "b")
        for m in try b.fetch(batch: 2, timeout: .seconds(2)) { try m.ackSync() }
        #expect(try js.streamInfo("G").state.messages == 3)
        // A refused publish took no sequence number.
        #expect(try publishOne(js, "G", "m6").sequence == 6)
    }

    @Test func withNoConsumerAnInterestStreamAcksWithASequenceAndStoresNothing() throws {
        let servers = try NATSServers()
        let (_, js) = try connect(servers)
        _ = try js.addStream(groupStream("G", backlog: 5))
        #expect(try publishOne(js, "G", "lost").sequence == 1)
        var state = try js.streamInfo("G").state
        #expect(state.messages == 0 && state.lastSequence == 1)

        // A consumer whose filter does not match the subject is no interest either.
        var filtered = nodeConsumer("a")
        filtered.filterSubject = "mcastfs.g.G.other"
        var config = groupStream("G", backlog: 5)
        config.subjects = ["mcastfs.g.G", "mcastfs.g.G.other"]
        _ = try js.updateStream(config)
        _ = try js.addConsumer(stream: "G", filtered)
        #expect(try publishOne(js, "G", "lost too").sequence == 2)
        state = try js.streamInfo("G").state
        #expect(state.messages == 0 && state.lastSequence == 2)

        // Not even a full stream refuses what nobody wants: no backpressure.
        _ = try js.deleteConsumer(stream: "G", consumer: "a")
        for _ in 0..<10 { _ = try publishOne(js, "G", "x") }
        #expect(try js.streamInfo("G").state.lastSequence == 12)
    }

    @Test func aMessageIDIsStoredOnceWithinTheDuplicateWindow() throws {
        let servers = try NATSServers()
        let (_, js) = try connect(servers)
        var config = groupStream("G", backlog: 100)
        config.duplicateWindow = .milliseconds(500)
        _ = try js.addStream(config)
        _ = try js.addConsumer(stream: "G", nodeConsumer("a"))

        let first = try publishOne(js, "G", "x", id: "node-a.1.1")
        let again = try publishOne(js, "G", "x", id: "node-a.1.1")
        #expect(!first.duplicate && again.duplicate && again.sequence == first.sequence)
        #expect(try js.streamInfo("G").state.messages == 1)

        usleep(800_000)
        let late = try publishOne(js, "G", "x", id: "node-a.1.1")
        #expect(!late.duplicate && late.sequence == first.sequence + 1)
    }

    @Test func aDuplicateIsAnsweredBeforeTheExpectedLastMessageIdIsChecked() throws {
        // The retry of a chained publish whose PubAck was lost, sent after
        // the chain went on (later messages stored): answered "duplicate",
        // or refused for its stale expected last message id?
        let servers = try NATSServers()
        let (_, js) = try connect(servers)
        _ = try js.addStream(groupStream("G", backlog: 100))
        _ = try js.addConsumer(stream: "G", nodeConsumer("a"))
        _ = try publishOne(js, "G", "0", id: "c.0")
        let first = try js.publish(subject: "mcastfs.g.G", payload: bytes("1"), options: PublishOptions(msgId: "c.1", expectLastMessageId: "c.0"))
        _ = try js.publish(subject: "mcastfs.g.G", payload: bytes("2"), options: PublishOptions(msgId: "c.2", expectLastMessageId: "c.1"))
        let retry = Result { () throws(NATSError) in
            try js.publish(subject: "mcastfs.g.G", payload: bytes("1"), options: PublishOptions(msgId: "c.1", expectLastMessageId: "c.0"))
        }
        print("a chained retry after the chain went on: \(retry)")
        #expect(retry == .success(PubAck(stream: "G", sequence: first.sequence, duplicate: true)))
    }

    @Test func afterARestartAStoredMessageIsStillADuplicate() throws {
        // A probe after a server restart (its PubAck lost with the server)
        // must still find a message stored before the restart.
        let servers = try NATSServers()
        var options = ConnectionOptions(servers: servers.urls)
        options.reconnectWait = .milliseconds(50)
        let connection = try NATSConnection(options)
        let js = try JetStream(connection)
        _ = try js.addStream(groupStream("G", backlog: 100_000))
        _ = try js.addConsumer(stream: "G", nodeConsumer("a"))
        for i in 0..<5000 {
            try [UInt8]([1]).withUnsafeBytes { b in
                try js.publishAsync(subject: "mcastfs.g.G", payload: b, msgId: "r.\(i)") { _ in }
            }
        }
        usleep(20_000)
        servers.kill(0)
        try servers.restart(0)
        var last: UInt64 = 0
        for _ in 0..<100 {
            if let info = try? js.streamInfo("G") { last = info.state.lastSequence; break }
            usleep(50_000)
        }
        usleep(1_000_000)  // what nats.c buffered meanwhile is in
        last = try js.streamInfo("G").state.lastSequence
        var duplicates = 0, refused = 0
        for i in 0..<Int(min(last, 5000)) {
            let probe = PublishOptions(msgId: "r.\(i)", expectLastSequence: .max)
            switch Result(catching: { () throws(NATSError) in try js.publish(subject: "mcastfs.g.G", payload: bytes("p"), options: probe) }) {
            case .success(let ack): if ack.duplicate { duplicates += 1 }
            case .failure: refused += 1
            }
        }
        print("after a restart: \(last) stored, probes: \(duplicates) duplicates, \(refused) refused")
        #expect(duplicates == Int(min(last, 5000)) && refused == 0)
    }

    @Test func aRefusedPublishDoesNotRecordItsMessageID() throws {
        let servers = try NATSServers()
        let (_, js) = try connect(servers)
        _ = try js.addStream(groupStream("G", backlog: 1))
        _ = try js.addConsumer(stream: "G", nodeConsumer("a"))
        _ = try publishOne(js, "G", "first", id: "w.1")
        #expect(throws: NATSError.self) { _ = try publishOne(js, "G", "second", id: "w.2") }
        let a = try js.pullSubscription(stream: "G", consumer: "a")
        for m in try a.fetch(batch: 1, timeout: .seconds(2)) { try m.ackSync() }
        // The retry of the refused write is stored, not taken for a duplicate.
        let retry = try publishOne(js, "G", "second", id: "w.2")
        #expect(!retry.duplicate && retry.sequence == 2)
    }

    @Test func theDuplicateCheckComesBeforeTheExpectedSequenceCheck() throws {
        // What a node does when a PubAck was lost to a disconnect: publish the
        // same id again with an impossible expected last sequence. Stored
        // before: the duplicate answer, with its sequence. Not stored: refused,
        // and it stays not stored.
        let servers = try NATSServers()
        let (_, js) = try connect(servers)
        _ = try js.addStream(groupStream("G", backlog: 100))
        _ = try js.addConsumer(stream: "G", nodeConsumer("a"))
        let stored = try publishOne(js, "G", "x", id: "w.1")
        let probe = PublishOptions(msgId: "w.1", expectLastSequence: UInt64.max)
        let known = try js.publish(subject: "mcastfs.g.G", payload: bytes("x"), options: probe)
        #expect(known.duplicate && known.sequence == stored.sequence)

        let unknown = PublishOptions(msgId: "w.2", expectLastSequence: UInt64.max)
        #expect { _ = try js.publish(subject: "mcastfs.g.G", payload: bytes("y"), options: unknown) } throws: { error in
            (error as? NATSError)?.code == .streamWrongLastSequence
        }
        #expect(try js.streamInfo("G").state.messages == 1)
        #expect(!(try publishOne(js, "G", "y", id: "w.2").duplicate))
    }

    @Test func maxMessagesAloneLosesNothingUnderConcurrentPublishes() throws {
        // nats-server#4771 (open): with max_bytes and discard new, the store
        // admits a message by its payload size, then counts its record size
        // and drops the oldest message to get back under max_bytes: an acked
        // message lost. The group stream sets no max_bytes; its max_msgs check
        // counts messages exactly. Here: far more publishes than room, in
        // flight at once; every acked one must be there, in order.
        let servers = try NATSServers()
        let (_, js) = try connect(servers)
        _ = try js.addStream(groupStream("G", backlog: 300))
        _ = try js.addConsumer(stream: "G", nodeConsumer("a", maxAckPending: 10_000))
        let results = Recorder<(Int, Result<PubAck, NATSError>)>()
        let payload = [UInt8](repeating: 1, count: 200)
        for i in 0..<1000 {
            try payload.withUnsafeBytes { b in
                try js.publishAsync(subject: "mcastfs.g.G", payload: b, msgId: "w.\(i)") { results.append((i, $0)) }
            }
        }
        #expect(results.wait { $0.count == 1000 })
        let acked = results.all.compactMap { (i, r) in (try? r.get()).map { (i, $0.sequence) } }.sorted { $0.1 < $1.1 }
        let refused = results.all.filter { (_, r) in if case .failure(let e) = r { return e.isMaximumMessagesExceeded } else { return false } }
        #expect(acked.count == 300 && refused.count == 700)
        let state = try js.streamInfo("G").state
        #expect(state.messages == 300 && state.firstSequence == 1 && state.lastSequence == 300)
        let a = try js.pullSubscription(stream: "G", consumer: "a")
        var delivered: [UInt64] = []
        while delivered.count < 300 {
            let batch = try a.fetch(batch: 300, timeout: .seconds(2))
            if batch.isEmpty { break }
            delivered += batch.map(\.streamSequence)
        }
        #expect(delivered == acked.map(\.1))
    }

    @Test func maxBytesWithDiscardNewDropsAnAckedMessage() throws {
        // The defect itself (nats-server#4771), so that docs/cluster.md's
        // reason for leaving max_bytes unset stays true. The store admits a
        // message when the bytes held plus its payload are under max_bytes,
        // but then adds its record size (payload, subject and ~30 bytes of
        // framing), and drops the oldest message to get back under; from then
        // on every publish is acked and the oldest message dropped, as
        // discard old would.
        let servers = try NATSServers()
        let (_, js) = try connect(servers)
        let payload = String(repeating: "x", count: 100)
        // A stream whose subject has the same length, to learn the record size.
        _ = try js.addStream(groupStream("P", backlog: 1000))
        _ = try js.addConsumer(stream: "P", nodeConsumer("a"))
        _ = try publishOne(js, "P", payload)
        let record = try js.streamInfo("P").state.bytes
        #expect(record > 100)

        // Room for ten records, and for the payload of an eleventh, not its record.
        var config = groupStream("G", backlog: 1000)
        config.maxBytes = Int64(10 * record + 100 + (record - 100) / 2)
        _ = try js.addStream(config)
        _ = try js.addConsumer(stream: "G", nodeConsumer("a"))
        var acked = 0
        while acked < 100, (try? publishOne(js, "G", payload)) != nil { acked += 1 }
        let state = try js.streamInfo("G").state
        print("#4771: records of \(record) bytes, max_bytes \(config.maxBytes!): \(acked) acked, \(state.messages) stored, first sequence \(state.firstSequence)")
        #expect(acked == 100 && state.messages == 10 && state.firstSequence == 91)
    }

    @Test func loweringMaxMessagesBelowWhatIsHeldDropsTheOldest() throws {
        // nats-server#2589: an update that lowers max_msgs under the stream's
        // count discards old messages even with discard new. Hence
        // cluster_backlog may only be lowered while no node holds messages.
        let servers = try NATSServers()
        let (_, js) = try connect(servers)
        _ = try js.addStream(groupStream("G", backlog: 10))
        _ = try js.addConsumer(stream: "G", nodeConsumer("a"))
        for i in 1...6 { _ = try publishOne(js, "G", "m\(i)") }
        _ = try js.updateStream(groupStream("G", backlog: 4))
        let state = try js.streamInfo("G").state
        #expect(state.messages == 4 && state.firstSequence == 3)
    }
}

@Suite struct ConsumerFacts {
    @Test func maxAckPendingHoldsBackAPullConsumer() throws {
        let servers = try NATSServers()
        let (_, js) = try connect(servers)
        _ = try js.addStream(groupStream("G", backlog: 100))
        _ = try js.addConsumer(stream: "G", nodeConsumer("a", maxAckPending: 3))
        for i in 1...10 { _ = try publishOne(js, "G", "m\(i)") }
        let a = try js.pullSubscription(stream: "G", consumer: "a")
        let first = try a.fetch(batch: 10, timeout: .seconds(2))
        #expect(first.map(\.streamSequence) == [1, 2, 3])
        #expect(try a.fetch(batch: 10, timeout: .milliseconds(200)).isEmpty)
        try first[0].ackSync()
        #expect(try a.fetch(batch: 10, timeout: .seconds(2)).map(\.streamSequence) == [4])
    }

    @Test func anInactiveConsumerIsDeletedAndReleasesWhatOnlyItHeld() throws {
        let servers = try NATSServers()
        let (connection, js) = try connect(servers)
        _ = try js.addStream(groupStream("G", backlog: 100))
        _ = try js.addConsumer(stream: "G", nodeConsumer("alive"))
        _ = try js.addConsumer(stream: "G", nodeConsumer("gone", inactiveThreshold: .seconds(1)))
        let advisories = Recorder<CoreMessage>()
        let sub = try connection.subscribe(subject: "$JS.EVENT.ADVISORY.CONSUMER.DELETED.G.*") { advisories.append($0) }
        try connection.flush()
        for i in 1...4 { _ = try publishOne(js, "G", "m\(i)") }

        let alive = try js.pullSubscription(stream: "G", consumer: "alive")
        for m in try alive.fetch(batch: 4, timeout: .seconds(2)) { try m.ackSync() }
        // "gone" takes two and its node dies: no more pulls, no acks.
        do {
            let gone = try js.pullSubscription(stream: "G", consumer: "gone")
            #expect(try gone.fetch(batch: 2, timeout: .seconds(2)).count == 2)
        }
        let start = ContinuousClock.now
        #expect(try js.streamInfo("G").state.messages == 4)
        #expect(advisories.wait(timeout: .seconds(5)) { !$0.isEmpty })
        let removedAfter = ContinuousClock.now - start
        print("inactive_threshold 1 s: consumer deleted after \(removedAfter)")
        #expect(advisories.all.first?.subject == "$JS.EVENT.ADVISORY.CONSUMER.DELETED.G.gone")
        #expect(removedAfter < .seconds(3))
        #expect { _ = try js.consumerInfo(stream: "G", consumer: "gone") } throws: { error in
            (error as? NATSError)?.code == .consumerNotFound
        }
        #expect(try js.streamInfo("G").state.messages == 0)
        sub.unsubscribe()
    }

    @Test func aStalledNodeKeepsItsConsumerAliveWithInProgressAcks() throws {
        // A node whose local member is full stops pulling. Without a sign of
        // life its consumer would be deleted after the inactive threshold and
        // what it holds released (lost to its members); an in-progress ack on
        // the message it holds is that sign, and also restarts its ack wait.
        let servers = try NATSServers()
        let (_, js) = try connect(servers)
        _ = try js.addStream(groupStream("G", backlog: 100))
        _ = try js.addConsumer(stream: "G", nodeConsumer("stalled", inactiveThreshold: .seconds(1)))
        _ = try js.addConsumer(stream: "G", nodeConsumer("silent", inactiveThreshold: .seconds(1)))
        for i in 1...3 { _ = try publishOne(js, "G", "m\(i)") }
        let stalled = try js.pullSubscription(stream: "G", consumer: "stalled")
        let held = try stalled.fetch(batch: 1, timeout: .seconds(2))
        let silent = try js.pullSubscription(stream: "G", consumer: "silent")
        #expect(try silent.fetch(batch: 1, timeout: .seconds(2)).count == 1)

        let deadline = ContinuousClock.now + .milliseconds(3500)
        while ContinuousClock.now < deadline {
            try held[0].inProgress()
            usleep(300_000)
        }
        #expect(throws: NATSError.self) { _ = try js.consumerInfo(stream: "G", consumer: "silent") }
        let info = try js.consumerInfo(stream: "G", consumer: "stalled")
        #expect(info.numAckPending == 1 && info.numRedelivered == 0)
        // Still in order after the stall: the held one, then the next.
        try held[0].ackSync()
        #expect(try stalled.fetch(batch: 5, timeout: .seconds(2)).map(\.streamSequence) == [2, 3])
    }

    @Test func aWaitingPullRequestKeepsAConsumerAlive() throws {
        // The other sign of life: a node that is not stalled always has a
        // fetch waiting at the server.
        let servers = try NATSServers()
        let (_, js) = try connect(servers)
        _ = try js.addStream(groupStream("G", backlog: 100))
        _ = try js.addConsumer(stream: "G", nodeConsumer("idle", inactiveThreshold: .seconds(1)))
        let idle = try js.pullSubscription(stream: "G", consumer: "idle")
        #expect(try idle.fetch(batch: 10, timeout: .milliseconds(3000)).isEmpty)
        #expect(try js.consumerInfo(stream: "G", consumer: "idle").name == "idle")
    }

    @Test func aNewConsumerStartingAtASequenceTakesOverWhatTheOldOneHeld() throws {
        // A node that reconnects cannot know which fetched messages were lost
        // on the way: it makes a fresh consumer at (last delivered + 1), then
        // deletes the old one, so nothing it has not delivered is released.
        let servers = try NATSServers()
        let (_, js) = try connect(servers)
        _ = try js.addStream(groupStream("G", backlog: 100))
        _ = try js.addConsumer(stream: "G", nodeConsumer("b_1"))
        for i in 1...5 { _ = try publishOne(js, "G", "m\(i)") }
        let old = try js.pullSubscription(stream: "G", consumer: "b_1")
        let fetched = try old.fetch(batch: 5, timeout: .seconds(2))
        try fetched[0].ackSync()
        try fetched[1].ackSync()   // delivered 1 and 2; 3..5 "lost in flight"

        var successor = nodeConsumer("b_2")
        successor.deliverPolicy = .startSequence(3)
        _ = try js.addConsumer(stream: "G", successor)
        try js.deleteConsumer(stream: "G", consumer: "b_1")
        #expect(try js.streamInfo("G").state.messages == 3)
        let new = try js.pullSubscription(stream: "G", consumer: "b_2")
        #expect(try new.fetch(batch: 10, timeout: .seconds(2)).map(\.streamSequence) == [3, 4, 5])
    }
}

@Suite struct KeyValueFacts {
    @Test func createOfAKeyIsWonByExactlyOneOfManyNodes() throws {
        let servers = try NATSServers()
        let (_, js) = try connect(servers)
        _ = try js.createKeyValue(KeyValueConfig(bucket: "nodes"))
        let outcomes = Recorder<Bool>()
        var threads: [pthread_t] = []
        for i in 0..<8 {
            let (_, jsi) = try connect(servers)
            let kv = try jsi.keyValue(bucket: "nodes")
            threads.append(startThread {
                outcomes.append((try? kv.create("node-a", bytes("daemon \(i)"))) != nil)
                _ = jsi
            })
        }
        for t in threads { pthread_join(t, nil) }
        #expect(outcomes.all.filter { $0 }.count == 1)
    }

    @Test func aBucketTTLExpiresValuesSilently() throws {
        // nats-server 2.9 has only the bucket's max age: a value that expires
        // leaves no delete marker, so no watcher hears of it. Liveness must
        // come from heartbeats that watchers see, not from expiry.
        let servers = try NATSServers()
        let (_, js) = try connect(servers)
        var config = KeyValueConfig(bucket: "nodes")
        config.ttl = .milliseconds(500)
        let kv = try js.createKeyValue(config)
        let watcher = try kv.watch()
        #expect(try watcher.next(timeout: .seconds(1)) == .initialValuesDone)
        try kv.put("node-a", bytes("alive"))
        guard case .entry(let put) = try watcher.next(timeout: .seconds(1)) else {
            Issue.record("the put was not seen")
            return
        }
        #expect(put.operation == .put)
        #expect(try watcher.next(timeout: .milliseconds(1500)) == nil)
        #expect(try kv.get("node-a") == nil)
    }
}

/// Publishes as a node does: with a message id, again with the same id after
/// any failure but a refusal (the outcome may be unknown, the stream may be
/// electing a leader), until the PubAck comes. Returns the PubAck and how
/// long it took; fails after 40 s (two Raft election rounds of up to 9 s, and a loaded machine).
func publishUntilAcked(_ js: JetStream, subject: String, payload: [UInt8], id: String) throws -> (PubAck, Duration, attempts: Int) {
    let start = ContinuousClock.now
    var attempts = 0
    var errors: [String] = []
    while true {
        if ContinuousClock.now - start > .seconds(40) {
            throw ServerError("no PubAck for \(id) within 40 s: \(Set(errors).sorted())")
        }
        attempts += 1
        var options = PublishOptions(msgId: id)
        options.timeout = .milliseconds(500)
        do {
            let ack = try js.publish(subject: subject, payload: payload, options: options)
            return (ack, ContinuousClock.now - start, attempts)
        } catch {
            precondition(!error.isMaximumMessagesExceeded)
            errors.append(error.description)
            usleep(20_000)
        }
    }
}

func percentile(_ sorted: [Duration], _ p: Double) -> Duration {
    sorted[min(sorted.count - 1, Int(Double(sorted.count) * p))]
}

@Suite struct ClusterFacts {
    enum Victim: Sendable, CustomStringConvertible {
        /// The stream's leader: a follower is elected.
        case streamLeader
        /// The server the writer is connected to: nats.c moves to another.
        case writersServer
        var description: String { self == .streamLeader ? "the stream leader" : "the writer's server" }
    }

    // In one CI run of three (2026-12-01) the reader saw a gap (stream
    // sequence 101 after 99) once the stream leader was killed. A gap is now
    // told apart: a message the stream still has (a fetch's message lost on
    // its way in the failover: pending on the consumer, which will not send
    // it again before its ack wait, 1 h) is read from the stream and
    // delivered, as the engine does (`Delivery`); one the stream lacks would
    // be a lost acked message, and fails the test.
    @Test(arguments: [Victim.streamLeader, .writersServer])
    func aServerOfThreeDiesAndNothingIsLostDuplicatedOrReordered(_ victim: Victim) throws {
        // A writer and a reading node, as mcastfs runs them: the writer
        // publishes with message ids and retries any failure with the same
        // id; the node pulls, delivers each stream sequence once (dropping
        // anything at or below the last it delivered) and acks. At message
        // 100 a server is killed; at 200 it comes back.
        let servers = try NATSServers(count: 3)
        let events = Recorder<ConnectionEvent>()
        var options = ConnectionOptions(servers: servers.urls)
        options.reconnectWait = .milliseconds(50)
        let connection = try NATSConnection(options) { events.append($0) }
        let js = try JetStream(connection)
        _ = try js.addStream(groupStream("G", backlog: 10_000, replicas: 3))
        _ = try js.addConsumer(stream: "G", nodeConsumer("a"))

        let total = 300
        let delivered = Recorder<String>()
        let redelivered = Recorder<UInt64>()
        let filled = Recorder<UInt64>()
        let missing = Recorder<UInt64>()
        var readerOptions = ConnectionOptions(servers: servers.urls.reversed())
        readerOptions.reconnectWait = .milliseconds(50)
        let readerConnection = try NATSConnection(readerOptions)
        let readerJS = try JetStream(readerConnection)
        let reader = startThread {
            var last: UInt64 = 0
            var subscription: PullSubscription?
            let deadline = ContinuousClock.now + .seconds(90)
            while delivered.all.count < total && ContinuousClock.now < deadline {
                do throws(NATSError) {
                    if subscription == nil { subscription = try readerJS.pullSubscription(stream: "G", consumer: "a") }
                    for m in try subscription!.fetch(batch: 64, timeout: .milliseconds(500)) {
                        if m.streamSequence <= last {
                            redelivered.append(m.streamSequence)
                        } else {
                            for gap in last + 1 ..< m.streamSequence {
                                if let stored = try readerJS.message(stream: "G", sequence: gap) {
                                    filled.append(gap)
                                    delivered.append(stored.withPayload { String(decoding: $0, as: UTF8.self) })
                                } else {
                                    missing.append(gap)
                                }
                                last = gap
                            }
                            last = m.streamSequence
                            delivered.append(String(decoding: m.payload, as: UTF8.self))
                        }
                        try? m.ack()
                    }
                } catch {
                    usleep(50_000)
                }
            }
        }

        var killed = 0
        var acks: [PubAck] = []
        var retried = 0
        for i in 0..<total {
            if i == 100 {
                switch victim {
                case .streamLeader:
                    killed = Int(try js.streamInfo("G").cluster!.leader!.dropFirst())! - 1
                case .writersServer:
                    killed = (0..<3).first { servers.url($0) == connection.connectedURL }!
                }
                servers.kill(killed)
            }
            if i == 200 {
                let start = ContinuousClock.now
                try servers.restart(killed)
                print("R3, \(victim) killed: restarted, healthy again after \(ContinuousClock.now - start)")
            }
            let (ack, took, attempts) = try publishUntilAcked(js, subject: "mcastfs.g.G", payload: bytes("\(i)"), id: "w.\(i)")
            acks.append(ack)
            retried += attempts - 1
            if i == 100 { print("R3, \(victim) killed: the next publish took \(took) (\(attempts) attempts)") }
        }
        #expect(acks.map(\.sequence) == (1...UInt64(total)).map { $0 })
        #expect(acks.filter(\.duplicate).isEmpty)
        if victim == .writersServer {
            #expect(events.all.contains(.disconnected) && events.all.contains { if case .reconnected = $0 { true } else { false } })
        }
        #expect(delivered.wait(timeout: .seconds(30)) { $0.count == total })
        pthread_join(reader, nil)
        print("R3, \(victim) killed: \(retried) publish retries; \(redelivered.all.count) redeliveries dropped by sequence; "
              + "gaps filled from the stream: \(filled.all); not in the stream: \(missing.all)")
        #expect(missing.all.isEmpty)
        #expect(delivered.all == (0..<total).map { "\($0)" })
    }

    @Test func publishLatencyWithAcksOnLoopbackOneAndThreeReplicas() throws {
        var lines: [String] = []
        for (count, replicas) in [(1, 1), (3, 3)] {
            let servers = try NATSServers(count: count)
            let (_, js) = try connect(servers)
            _ = try js.addStream(groupStream("G", backlog: 100_000, replicas: replicas))
            _ = try js.addConsumer(stream: "G", nodeConsumer("a", maxAckPending: 100_000))
            let payload = [UInt8](repeating: 1, count: 64)
            var latencies: [Duration] = []
            for i in 0..<500 {
                let start = ContinuousClock.now
                _ = try js.publish(subject: "mcastfs.g.G", payload: payload, options: PublishOptions(msgId: "s.\(i)"))
                latencies.append(ContinuousClock.now - start)
            }
            latencies.sort()

            let n = 10_000
            let done = Recorder<Bool>()
            let start = ContinuousClock.now
            try payload.withUnsafeBytes { b in
                for i in 0..<n {
                    try js.publishAsync(subject: "mcastfs.g.G", payload: b, msgId: "a.\(i)") { done.append((try? $0.get()) != nil) }
                }
            }
            #expect(done.wait(timeout: .seconds(30)) { $0.count == n })
            let elapsed = ContinuousClock.now - start
            let rate = Double(n) / (Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18)
            #expect(done.all.allSatisfy { $0 })
            lines.append("R\(replicas): sync publish p50 \(percentile(latencies, 0.5)) p99 \(percentile(latencies, 0.99)); async \(Int(rate)) msgs/s (64 B)")
            // Sanity bounds for loopback, loose enough for a loaded 2-core machine.
            #expect(percentile(latencies, 0.5) < .milliseconds(50))
        }
        for l in lines { print(l) }
    }

    @Test func aFullReplicatedStreamRefusesAsASingleOneDoes() throws {
        let servers = try NATSServers(count: 3)
        let (_, js) = try connect(servers)
        _ = try js.addStream(groupStream("G", backlog: 2, replicas: 3))
        _ = try js.addConsumer(stream: "G", nodeConsumer("a"))
        _ = try publishOne(js, "G", "1", id: "w.1")
        _ = try publishOne(js, "G", "2", id: "w.2")
        #expect { _ = try publishOne(js, "G", "3", id: "w.3") } throws: { error in
            (error as? NATSError)?.isMaximumMessagesExceeded == true
        }
        #expect(try publishOne(js, "G", "2", id: "w.2").duplicate)
        let a = try js.pullSubscription(stream: "G", consumer: "a")
        for m in try a.fetch(batch: 1, timeout: .seconds(2)) { try m.ackSync() }
        // On three replicas the removal follows the ack through the stream's
        // Raft log: under load the first retry can still find it full.
        var third: PubAck?
        for _ in 0..<40 where third == nil {
            third = try? publishOne(js, "G", "3", id: "w.3")
            if third == nil { usleep(50_000) }
        }
        #expect(third?.sequence == 3)
    }
}

@Suite struct BatchFacts {
    /// Publishes `texts` pipelined (asynchronously), each but the first
    /// expecting the previous one's id as the stream's last: a framed batch
    /// as docs/cluster.md publishes it. Returns each publish's outcome.
    func publishChained(_ js: JetStream, _ stream: String, _ texts: [String], idPrefix: String) throws -> [Result<PubAck, NATSError>] {
        let results = Recorder<(Int, Result<PubAck, NATSError>)>()
        for (i, text) in texts.enumerated() {
            var options = PublishOptions()
            if i > 0 { options.expectLastMessageId = "\(idPrefix).\(i - 1)" }
            try bytes(text).withUnsafeBytes { b in
                try js.publishAsync(subject: "mcastfs.g.\(stream)", payload: b, msgId: "\(idPrefix).\(i)", options: options) {
                    results.append((i, $0))
                }
            }
        }
        #expect(results.wait { $0.count == texts.count })
        return results.all.sorted { $0.0 < $1.0 }.map(\.1)
    }

    @Test func aChainedBatchIsStoredBackToBack() throws {
        let servers = try NATSServers()
        let (_, js) = try connect(servers)
        _ = try js.addStream(groupStream("G", backlog: 1000))
        _ = try js.addConsumer(stream: "G", nodeConsumer("a"))
        let sequences = try publishChained(js, "G", (0..<100).map { "m\($0)" }, idPrefix: "w.1").map { try $0.get().sequence }
        #expect(sequences == (1...100).map { UInt64($0) })
    }

    @Test func aChainIsCutWhereAnotherWriterGetsIn() throws {
        let servers = try NATSServers()
        let (_, js) = try connect(servers)
        let (_, other) = try connect(servers)
        _ = try js.addStream(groupStream("G", backlog: 1000))
        _ = try js.addConsumer(stream: "G", nodeConsumer("a"))
        // Two chains at once from two connections: each is stored as a
        // consecutive run from its start, then refused from the first
        // message the other writer got in before.
        let results = Recorder<[Result<PubAck, NATSError>]>()
        let t = startThread { results.append((try? self.publishChained(other, "G", (0..<200).map { "b\($0)" }, idPrefix: "w.b")) ?? []) }
        let mine = try publishChained(js, "G", (0..<200).map { "a\($0)" }, idPrefix: "w.a")
        pthread_join(t, nil)
        for chain in [mine, results.all.first ?? []] {
            let stored = chain.prefix { (try? $0.get()) != nil }.map { try! $0.get().sequence }
            #expect(!stored.isEmpty)
            // Back to back, and nothing of the chain after its first refusal.
            #expect(stored == Array(stored.first!...stored.last!))
            #expect(chain.dropFirst(stored.count).allSatisfy { (try? $0.get()) == nil })
        }
    }

    @Test func aChainIsCutAtAFullStreamEvenWhenRoomComesBack() throws {
        // Without the chain, a pipelined batch meeting a full stream could
        // be stored with a hole: message k refused, k+1 stored after an ack
        // made room in between, and the writer's order broken on retry.
        let servers = try NATSServers()
        let (_, js) = try connect(servers)
        _ = try js.addStream(groupStream("G", backlog: 20))
        _ = try js.addConsumer(stream: "G", nodeConsumer("a", maxAckPending: 1000))
        let (_, readerJS) = try connect(servers)
        let reader = try readerJS.pullSubscription(stream: "G", consumer: "a")
        let stop = Recorder<Bool>()
        // A node acking as fast as it can, so room keeps coming back.
        let t = startThread {
            while stop.all.isEmpty {
                for m in (try? reader.fetch(batch: 5, timeout: .milliseconds(20))) ?? [] { try? m.ack() }
            }
        }
        var holes = 0
        var cuts = 0
        for round in 0..<20 {
            let chain = try publishChained(js, "G", (0..<100).map { "r\(round).\($0)" }, idPrefix: "w.\(round)")
            let stored = chain.prefix { (try? $0.get()) != nil }.count
            if stored < chain.count { cuts += 1 }
            holes += chain.dropFirst(stored).filter { (try? $0.get()) != nil }.count
        }
        // The same batches unchained, for comparison.
        var unchainedHoles = 0
        for round in 0..<20 {
            let results = Recorder<(Int, Result<PubAck, NATSError>)>()
            for i in 0..<100 {
                try bytes("u\(round).\(i)").withUnsafeBytes { b in
                    try js.publishAsync(subject: "mcastfs.g.G", payload: b, msgId: "u.\(round).\(i)") { results.append((i, $0)) }
                }
            }
            #expect(results.wait { $0.count == 100 })
            let chain = results.all.sorted { $0.0 < $1.0 }.map(\.1)
            let stored = chain.prefix { (try? $0.get()) != nil }.count
            unchainedHoles += chain.dropFirst(stored).filter { (try? $0.get()) != nil }.count
        }
        stop.append(true)
        pthread_join(t, nil)
        print("batches of 100 into a 20-message stream drained meanwhile: chained \(cuts) of 20 cut, \(holes) messages stored after a cut; unchained \(unchainedHoles) stored after a refusal")
        #expect(holes == 0)
        #expect(cuts > 0)
    }
}

@Suite struct RoomNoticeFacts {
    /// How often a writer's retry, made the moment it hears a room notice
    /// published right after an ack, still finds the stream full: the
    /// notice outruns the ack's effect.
    func earlyNotices(servers: NATSServers, replicas: Int, sync: Bool, rounds: Int) throws -> Int {
        let (writerConnection, writer) = try connect(servers)
        let (nodeConnection, node) = try connect(servers)
        _ = try writer.addStream(groupStream("G", backlog: 1, replicas: replicas))
        _ = try writer.addConsumer(stream: "G", nodeConsumer("b", inactiveThreshold: .seconds(60)))
        let notices = Recorder<Int>()
        let subscription = try writerConnection.subscribe(subject: "mcastfs.room.G") { _ in notices.append(1) }
        try writerConnection.flush()
        let b = try node.pullSubscription(stream: "G", consumer: "b")
        var early = 0
        _ = try publishOne(writer, "G", "first")
        for i in 0..<rounds {
            #expect(throws: NATSError.self) { _ = try publishOne(writer, "G", "refused") }
            let seen = notices.all.count
            // A message that does not come in time fails the test, not the process.
            let held = try #require(try b.fetch(batch: 1, timeout: .seconds(5)).first)
            if sync { try held.ackSync() } else { try held.ack() }
            try nodeConnection.publish(subject: "mcastfs.room.G")
            #expect(notices.wait { $0.count > seen })
            do {
                _ = try publishOne(writer, "G", "\(i)")
            } catch {
                early += 1
                // Room comes: the removal was only late.
                var retried = false
                for _ in 0..<100 where !retried {
                    usleep(1_000)
                    retried = (try? publishOne(writer, "G", "\(i)")) != nil
                }
                #expect(retried)
            }
        }
        subscription.unsubscribe()
        return early
    }

    @Test func aRoomNoticeSentAfterAnAckFindsTheRoom() throws {
        // docs/cluster.md's notices rest on this; its short retries after a
        // notice cover the case the server's code allows (the removal is
        // applied after the ack is answered, in a cluster after a Raft
        // commit) but these rounds have not shown.
        let r1Async = try earlyNotices(servers: try NATSServers(), replicas: 1, sync: false, rounds: 50)
        let r1Sync = try earlyNotices(servers: try NATSServers(), replicas: 1, sync: true, rounds: 50)
        let r3Async = try earlyNotices(servers: try NATSServers(count: 3), replicas: 3, sync: false, rounds: 50)
        let r3Sync = try earlyNotices(servers: try NATSServers(count: 3), replicas: 3, sync: true, rounds: 50)
        print("room notice before the room, of 50: R1 ack \(r1Async), R1 ackSync \(r1Sync), R3 ack \(r3Async), R3 ackSync \(r3Sync)")
        // On one server a synchronous ack is answered after the removal.
        #expect(r1Sync == 0)
    }
}

@Suite struct IdempotenceFacts {
    @Test func creatingAStreamOrBucketAgainWithTheSameConfigSucceeds() throws {
        // Nodes start in any order and each makes the buckets; a node that
        // finds a group without its stream (its maker died between the two
        // steps) makes the stream.
        let servers = try NATSServers()
        let (_, js) = try connect(servers)
        _ = try js.addStream(groupStream("G", backlog: 10))
        _ = try js.addConsumer(stream: "G", nodeConsumer("a"))
        _ = try publishOne(js, "G", "kept")
        let again = try js.addStream(groupStream("G", backlog: 10))
        #expect(again.state.messages == 1)
        #expect { _ = try js.addStream(groupStream("G", backlog: 11)) } throws: { error in
            (error as? NATSError)?.code == .streamNameExists
        }

        var config = KeyValueConfig(bucket: "mcastfs_groups")
        config.history = 1
        let kv = try js.createKeyValue(config)
        try kv.put("chat", bytes("v1"))
        let other = try js.createKeyValue(config)
        #expect(try other.get("chat")?.value == bytes("v1"))
    }
}
