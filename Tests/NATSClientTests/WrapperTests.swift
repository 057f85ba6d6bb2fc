import Glibc
import NATSClient
import NATSTestSupport
import Testing

@Suite struct ConnectionTests {
    @Test func connectsToTheFirstServerThatAnswersInTheList() throws {
        let servers = try NATSServers()
        // Port 1 on loopback refuses at once: nats.c goes on to the next URL.
        let connection = try NATSConnection(ConnectionOptions(servers: ["nats://127.0.0.1:1", servers.url(0)]))
        #expect(connection.status == .connected)
        #expect(connection.connectedURL == servers.url(0))
    }

    @Test func noServerAnsweringFailsTheConnect() {
        #expect(throws: NATSError.self) {
            _ = try NATSConnection(ConnectionOptions(servers: ["nats://127.0.0.1:1"]))
        }
        do {
            _ = try NATSConnection(ConnectionOptions(servers: ["nats://127.0.0.1:1"]))
        } catch {
            #expect(error.status == .noServer)
        }
    }

    @Test func reportsDisconnectedReconnectedAndClosedInOrder() throws {
        let servers = try NATSServers()
        let events = Recorder<ConnectionEvent>()
        var options = ConnectionOptions(servers: servers.urls)
        options.reconnectWait = .milliseconds(50)
        let connection = try NATSConnection(options) { events.append($0) }

        servers.kill(0)
        #expect(events.wait { $0.contains(.disconnected) })
        #expect(connection.status == .reconnecting)
        try servers.restart(0)
        #expect(events.wait { $0.contains(.reconnected(url: servers.url(0))) })
        #expect(connection.status == .connected)

        connection.close()
        #expect(events.wait { $0.last == .closed })
        #expect(events.all == [.disconnected, .reconnected(url: servers.url(0)), .disconnected, .closed])
    }

    @Test func corePublishReachesASubscriberAfterFlush() throws {
        let servers = try NATSServers()
        let (connection, _) = try connect(servers)
        let received = Recorder<CoreMessage>()
        let subscription = try connection.subscribe(subject: "notices.>") { received.append($0) }
        try connection.flush()
        try connection.publish(subject: "notices.room", payload: bytes("hi"))
        #expect(received.wait { $0.count == 1 })
        #expect(received.all.first?.subject == "notices.room")
        #expect(received.all.first?.payload == bytes("hi"))
        subscription.unsubscribe()
        try connection.flush()
        try connection.publish(subject: "notices.room", payload: bytes("again"))
        try connection.flush()
        usleep(50_000)
        #expect(received.all.count == 1)
    }
}

@Suite struct StreamTests {
    @Test func createInfoUpdateDeleteKeepTheConfiguration() throws {
        let servers = try NATSServers()
        let (_, js) = try connect(servers)
        var config = StreamConfig(name: "G_chat", subjects: ["mcastfs.g.chat"])
        config.retention = .interest
        config.discard = .new
        config.maxMessages = 8
        config.duplicateWindow = .seconds(30)
        config.description = "mcastfs group chat"

        let created = try js.addStream(config)
        #expect(created.config == config)
        #expect(created.state.messages == 0 && created.state.lastSequence == 0)

        config.maxMessages = 16
        #expect(try js.updateStream(config).config.maxMessages == 16)
        #expect(try js.streamInfo("G_chat").config == config)

        try js.deleteStream("G_chat")
        do {
            _ = try js.streamInfo("G_chat")
            Issue.record("the stream is still there")
        } catch {
            #expect(error.code == .streamNotFound)
        }
    }

    @Test func aSecondStreamOnTheSameSubjectsIsRefused() throws {
        let servers = try NATSServers()
        let (_, js) = try connect(servers)
        _ = try js.addStream(StreamConfig(name: "A", subjects: ["x"]))
        #expect { _ = try js.addStream(StreamConfig(name: "B", subjects: ["x"])) } throws: { error in
            (error as? NATSError)?.code == JetStreamErrorCode(rawValue: 10065)  // subjects overlap
        }
    }
}

@Suite struct PublishTests {
    @Test func publishReturnsTheSequenceAndHeadersReachTheConsumer() throws {
        let servers = try NATSServers()
        let (_, js) = try connect(servers)
        _ = try js.addStream(StreamConfig(name: "S", subjects: ["s"]))
        var cc = ConsumerConfig(name: "n1")
        cc.ackPolicy = .explicit
        _ = try js.addConsumer(stream: "S", cc)

        let first = try js.publish(subject: "s", payload: bytes("one"), headers: [("Mcastfs-Meta", "1 node-a 42")])
        let second = try js.publish(subject: "s", payload: bytes("two"))
        #expect(first == PubAck(stream: "S", sequence: 1, duplicate: false))
        #expect(second.sequence == 2)

        let sub = try js.pullSubscription(stream: "S", consumer: "n1")
        let messages = try sub.fetch(batch: 10, timeout: .seconds(2))
        #expect(messages.map(\.payload) == [bytes("one"), bytes("two")])
        #expect(messages.map(\.streamSequence) == [1, 2])
        #expect(messages[0].headers["Mcastfs-Meta"] == "1 node-a 42")
        #expect(messages[0].deliveries == 1 && messages[0].pending == 1 && messages[1].pending == 0)
        #expect(messages[0].timestamp > 0 && messages[0].timestamp <= messages[1].timestamp)
        for m in messages { try m.ack() }
    }

    @Test func asyncPublishCompletesEveryMessageInStreamOrder() throws {
        let servers = try NATSServers()
        let (_, js) = try connect(servers)
        _ = try js.addStream(StreamConfig(name: "S", subjects: ["s"]))
        let acks = Recorder<(Int, Result<PubAck, NATSError>)>()
        let count = 2000
        let payload = [UInt8](repeating: 7, count: 64)
        for i in 0..<count {
            try payload.withUnsafeBytes { b in
                try js.publishAsync(subject: "s", payload: b, msgId: "node-a-\(i)") { acks.append((i, $0)) }
            }
        }
        #expect(acks.wait { $0.count == count })
        let sequences = acks.all.sorted { $0.0 < $1.0 }.map { try? $0.1.get().sequence }
        #expect(sequences == (1...UInt64(count)).map { Optional($0) })
        #expect(try js.streamInfo("S").state.messages == UInt64(count))
    }

    @Test func asyncPublishReportsTheServersRefusal() throws {
        let servers = try NATSServers()
        let (_, js) = try connect(servers)
        var config = StreamConfig(name: "S", subjects: ["s"])
        config.discard = .new
        config.maxMessages = 1
        _ = try js.addStream(config)
        let acks = Recorder<Result<PubAck, NATSError>>()
        for i in 0..<2 {
            try [UInt8]([1]).withUnsafeBytes { b in
                try js.publishAsync(subject: "s", payload: b, msgId: "m\(i)") { acks.append($0) }
            }
            #expect(acks.wait { $0.count == i + 1 })
        }
        #expect((try? acks.all[0].get())?.sequence == 1)
        guard case .failure(let error) = acks.all[1] else {
            Issue.record("the second publish was stored")
            return
        }
        #expect(error.isMaximumMessagesExceeded)
    }

    @Test func anAsyncPublishWithNoAnswerTimesOut() throws {
        let servers = try NATSServers()
        var options = ConnectionOptions(servers: servers.urls)
        options.reconnectWait = .seconds(30)
        let connection = try NATSConnection(options)
        let js = try JetStream(connection)
        _ = try js.addStream(StreamConfig(name: "S", subjects: ["s"]))
        servers.kill(0)
        usleep(100_000)
        let acks = Recorder<Result<PubAck, NATSError>>()
        var po = PublishOptions()
        po.timeout = .milliseconds(300)
        try [UInt8]([1]).withUnsafeBytes { b in
            try js.publishAsync(subject: "s", payload: b, msgId: "lost", options: po) { acks.append($0) }
        }
        #expect(acks.wait(timeout: .seconds(3)) { !$0.isEmpty })
        guard case .failure(let error)? = acks.all.first else { Issue.record("\(acks.all)"); return }
        #expect(error.status == .timeout && error.isOutcomeUnknown)
    }

    /// `.zero`: no timeout in nats.c; the caller gives up with `abandon`,
    /// after which even a late answer does not complete it, and the id is
    /// free again.
    @Test func anAbandonedAsyncPublishNeverCompletes() throws {
        let servers = try NATSServers()
        let (connection, js) = try connect(servers)
        _ = try js.addStream(StreamConfig(name: "S", subjects: ["s"]))
        // A core subscriber that never answers: not "no responders".
        let replies = Recorder<String>()
        let silent = try connection.subscribe(subject: "silent") { m in if let r = m.reply { replies.append(r) } }
        defer { silent.unsubscribe() }
        try connection.flush(timeout: .seconds(2))
        let acks = Recorder<Result<PubAck, NATSError>>()
        var po = PublishOptions()
        po.timeout = .zero
        try [UInt8]([1]).withUnsafeBytes { b in
            try js.publishAsync(subject: "silent", payload: b, msgId: "quiet", options: po) { acks.append($0) }
        }
        #expect(replies.wait(timeout: .seconds(2)) { !$0.isEmpty })
        usleep(600_000)
        #expect(acks.all.isEmpty)
        js.abandon(["quiet"])
        try connection.publish(subject: replies.all[0], payload: Array(#"{"stream":"S","seq":1}"#.utf8))
        try connection.flush(timeout: .seconds(2))
        usleep(100_000)
        #expect(acks.all.isEmpty)
        // The id is free, and publishing goes on.
        try [UInt8]([2]).withUnsafeBytes { b in
            try js.publishAsync(subject: "s", payload: b, msgId: "quiet", options: po) { acks.append($0) }
        }
        #expect(acks.wait { !$0.isEmpty })
        #expect(acks.all.count == 1 && (try? acks.all[0].get().sequence) == 1)
    }

    @Test func aDuplicateAsyncMessageIDIsRefusedLocally() throws {
        let servers = try NATSServers()
        let (_, js) = try connect(servers)
        _ = try js.addStream(StreamConfig(name: "S", subjects: ["s"]))
        let done = Recorder<Bool>()
        let slowAck: @Sendable (Result<PubAck, NATSError>) -> Void = { _ in done.append(true) }
        try [UInt8]([1]).withUnsafeBytes { b in
            try js.publishAsync(subject: "s", payload: b, msgId: "same", completion: slowAck)
            // Whether or not the first PubAck is back, the id may be in use.
            do throws(NATSError) {
                try js.publishAsync(subject: "s", payload: b, msgId: "same", completion: slowAck)
            } catch {
                #expect(error.status == .invalidArgument)
            }
        }
        #expect(done.wait { $0.count >= 1 })
    }
}

@Suite struct ConsumerTests {
    @Test func consumerInfoTracksDeliveredAndAcked() throws {
        let servers = try NATSServers()
        let (_, js) = try connect(servers)
        _ = try js.addStream(StreamConfig(name: "S", subjects: ["s"]))
        var cc = ConsumerConfig(name: "node-b")
        cc.maxAckPending = 100
        cc.inactiveThreshold = .seconds(30)
        let info = try js.addConsumer(stream: "S", cc)
        #expect(info.name == "node-b" && info.stream == "S" && info.maxAckPending == 100)
        #expect(info.inactiveThreshold == .seconds(30))

        for i in 0..<5 { _ = try js.publish(subject: "s", payload: bytes("m\(i)")) }
        let sub = try js.pullSubscription(stream: "S", consumer: "node-b")
        let got = try sub.fetch(batch: 3, timeout: .seconds(2))
        #expect(got.count == 3)
        try got[0].ackSync()
        let after = try sub.consumerInfo()
        #expect(after.deliveredStreamSequence == 3)
        #expect(after.ackFloorStreamSequence == 1)
        #expect(after.numAckPending == 2)
        #expect(after.numPending == 2)

        try js.deleteConsumer(stream: "S", consumer: "node-b")
        #expect { _ = try js.consumerInfo(stream: "S", consumer: "node-b") } throws: { error in
            (error as? NATSError)?.code == .consumerNotFound
        }
    }

    @Test func fetchWithNothingPendingReturnsEmptyAfterTheTimeout() throws {
        let servers = try NATSServers()
        let (_, js) = try connect(servers)
        _ = try js.addStream(StreamConfig(name: "S", subjects: ["s"]))
        _ = try js.addConsumer(stream: "S", ConsumerConfig(name: "c"))
        let sub = try js.pullSubscription(stream: "S", consumer: "c")
        let start = ContinuousClock.now
        #expect(try sub.fetch(batch: 5, timeout: .milliseconds(200)).isEmpty)
        #expect(ContinuousClock.now - start >= .milliseconds(150))
    }

    @Test func bindingToAMissingConsumerFails() throws {
        let servers = try NATSServers()
        let (_, js) = try connect(servers)
        _ = try js.addStream(StreamConfig(name: "S", subjects: ["s"]))
        #expect(throws: NATSError.self) { _ = try js.pullSubscription(stream: "S", consumer: "nobody") }
    }

    @Test func aNakedMessageComesAgainWithItsDeliveryCount() throws {
        let servers = try NATSServers()
        let (_, js) = try connect(servers)
        _ = try js.addStream(StreamConfig(name: "S", subjects: ["s"]))
        _ = try js.addConsumer(stream: "S", ConsumerConfig(name: "c"))
        _ = try js.publish(subject: "s", payload: bytes("x"))
        let sub = try js.pullSubscription(stream: "S", consumer: "c")
        let first = try sub.fetch(batch: 1, timeout: .seconds(2))
        try first[0].nak()
        let again = try sub.fetch(batch: 1, timeout: .seconds(2))
        #expect(again.map(\.streamSequence) == [1])
        #expect(again.first?.deliveries == 2)
        try again[0].term()
    }
}

@Suite struct KeyValueTests {
    @Test func putCreateUpdateGetDelete() throws {
        let servers = try NATSServers()
        let (_, js) = try connect(servers)
        let kv = try js.createKeyValue(KeyValueConfig(bucket: "mcastfs_groups"))
        #expect(kv.name == "mcastfs_groups")
        #expect(try kv.get("chat") == nil)

        let r1 = try kv.create("chat", bytes("owner=1000"))
        #expect { try kv.create("chat", bytes("owner=0")) } throws: { error in
            (error as? NATSError)?.code == .streamWrongLastSequence
        }
        let r2 = try kv.update("chat", bytes("owner=1000 mode=755"), revision: r1)
        #expect(r2 > r1)
        #expect { try kv.update("chat", bytes("stale"), revision: r1) } throws: { error in
            (error as? NATSError)?.code == .streamWrongLastSequence
        }
        let entry = try #require(try kv.get("chat"))
        #expect(entry.value == bytes("owner=1000 mode=755") && entry.revision == r2 && entry.operation == .put)

        try kv.put("news", bytes("x"))
        #expect(Set(try kv.keys()) == ["chat", "news"])
        try kv.delete("chat")
        #expect(try kv.get("chat") == nil)
        #expect(try kv.keys() == ["news"])
        // A deleted key can be created again: the winner of a rmdir/mkdir race.
        #expect(try kv.create("chat", bytes("again")) > r2)

        let bound = try js.keyValue(bucket: "mcastfs_groups")
        #expect(try bound.get("news")?.value == bytes("x"))
        try js.deleteKeyValue(bucket: "mcastfs_groups")
        #expect(throws: NATSError.self) { _ = try js.keyValue(bucket: "mcastfs_groups") }
    }

    @Test func getTellsDeletedAndPurgedKeysFromLiveOnes() throws {
        let servers = try NATSServers()
        let (_, js) = try connect(servers)
        let kv = try js.createKeyValue(KeyValueConfig(bucket: "history"))
        let r1 = try kv.put("a", bytes("1"))
        let r2 = try kv.put("b", bytes("2"))
        let entry = try #require(try kv.get("a"))
        #expect(entry.key == "a" && entry.value == bytes("1") && entry.revision == r1 && entry.operation == .put && entry.created > 0)
        try kv.delete("a")
        try kv.purge("b")
        #expect(try kv.get("a") == nil)
        #expect(try kv.get("b") == nil)
        #expect(try kv.create("b", bytes("3")) > r2)
        #expect(try kv.get("b")?.value == bytes("3"))
        #expect(try kv.get("never") == nil)
    }

    /// Read-modify-write across nodes needs a get that sees every change
    /// whose call returned, whichever server answers it.
    @Test(.timeLimit(.minutes(2))) func getSeesEveryChangeThatReturnedOnEveryServer() throws {
        let servers = try NATSServers(count: 3)
        // Each connection to one server: the writer reads too, and so does a
        // connection on each other server.
        func jetStream(_ i: Int) throws -> JetStream {
            try JetStream(NATSConnection(ConnectionOptions(servers: [servers.url(i)], name: "NATSClientTests")))
        }
        let js1 = try jetStream(0)
        var config = KeyValueConfig(bucket: "replicated")
        config.replicas = 3
        let writer = try js1.createKeyValue(config)
        let readers = try [writer] + (1..<3).map { i in try jetStream(i).keyValue(bucket: "replicated") }
        // Other changes to the bucket meanwhile, as a cluster's nodes make:
        // the replicas then apply each change a moment after its leader.
        let busy = try jetStream(2).keyValue(bucket: "replicated")
        let done = Recorder<Bool>()
        startDetachedThread {
            var n = 0
            while done.all.isEmpty {
                _ = try? busy.put("other\(n % 16)", bytes("x"))
                n += 1
            }
        }
        defer { done.append(true) }
        var missed: [String] = []
        for k in 0..<300 {
            let key = "k\(k)"
            let made = try writer.create(key, bytes("v"))
            let changed = try writer.update(key, bytes("w"), revision: made)
            for reader in readers {
                let entry = try reader.get(key)
                if entry?.revision != changed { missed.append("\(key): \(entry.map { String($0.revision) } ?? "none") for \(changed)") }
            }
        }
        #expect(missed.isEmpty, "\(missed.count) of 900 gets behind: \(missed.prefix(5))")
    }

    @Test func watchGivesCurrentValuesThenEveryChangeInOrder() throws {
        let servers = try NATSServers()
        let (_, js) = try connect(servers)
        let kv = try js.createKeyValue(KeyValueConfig(bucket: "members"))
        try kv.put("chat.alice", bytes("node=a"))
        let watcher = try kv.watch("chat.*")
        #expect(try watcher.next(timeout: .seconds(2)).flatMap(entryKey) == "chat.alice")
        #expect(try watcher.next(timeout: .seconds(2)) == .initialValuesDone)

        // Changes made through another connection, as another node would.
        let (_, js2) = try connect(servers)
        let kv2 = try js2.keyValue(bucket: "members")
        try kv2.put("chat.bob", bytes("node=b"))
        try kv2.put("other.carol", bytes("node=b"))
        try kv2.delete("chat.alice")
        guard case .entry(let bob) = try watcher.next(timeout: .seconds(2)),
              case .entry(let gone) = try watcher.next(timeout: .seconds(2))
        else {
            Issue.record("missing updates")
            return
        }
        #expect(bob.key == "chat.bob" && bob.value == bytes("node=b") && bob.operation == .put)
        #expect(gone.key == "chat.alice" && gone.operation == .delete && gone.revision > bob.revision)
        #expect(try watcher.next(timeout: .milliseconds(200)) == nil)
    }

    @Test func stopEndsAWaitingNext() throws {
        let servers = try NATSServers()
        let (_, js) = try connect(servers)
        let kv = try js.createKeyValue(KeyValueConfig(bucket: "b"))
        let watcher = try kv.watch()
        #expect(try watcher.next(timeout: .seconds(1)) == .initialValuesDone)
        let outcome = Recorder<NATSStatus>()
        let thread = startThread {
            do throws(NATSError) {
                _ = try watcher.next(timeout: .seconds(30))
                outcome.append(.ok)
            } catch {
                outcome.append(error.status)
            }
        }
        usleep(100_000)
        watcher.stop()
        #expect(outcome.wait(timeout: .seconds(5)) { $0.count == 1 })
        #expect(outcome.all == [.illegalState])
        pthread_join(thread, nil)
    }
}

private func entryKey(_ update: KeyValueUpdate) -> String? {
    if case .entry(let e) = update { return e.key }
    return nil
}
