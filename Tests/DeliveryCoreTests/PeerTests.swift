import DeliveryCore
import Testing

// Connected groups: every member's peer queue, `sendToPeer`, and private
// sends (Sources/DeliveryCore/Peers.swift; docs/contract.md, "Connected
// groups: peers").

private func text(_ chunk: MessageChunk?) -> String? { chunk.map { String(decoding: $0.bytes, as: UTF8.self) } }

/// The next message of `reader` whole, with its metadata.
private func next(_ reader: Reader) throws -> MessageChunk { try #require(try reader.tryReceive(maxBytes: 1 << 20)) }

private func isEmpty(_ reader: Reader) -> Bool { expectError(.wouldBlock) { _ = try reader.tryReceive(maxBytes: 10) } }

@Suite struct PeerQueueTests {
    @Test func thePeerGetsWhatItsMemberSendsWhileSendToPeerIsOn() throws {
        let group = try Group(name: "g")
        let alice = try group.join("alice", settings: MemberSettings(sendToPeer: true))
        let bob = try group.join("bob")
        let alicePeer = alice.makePeerReader(), bobPeer = bob.makePeerReader()
        let b = bob.makeReader()

        let receipt = try alice.trySend(message("hi"))
        // The peer is one more recipient of the same message.
        #expect(receipt.recipients == 2)
        let atBob = try next(b), atPeer = try next(alicePeer)
        #expect(atPeer.message.isSame(as: atBob.message))
        #expect(atPeer.message.sequence == receipt.sequence && atPeer.message.senderName == "alice")
        #expect(!atPeer.message.isPrivate)

        // Nobody else's messages reach a peer: not bob's, not anonymous ones.
        try bob.trySend(message("from bob"))
        try group.trySend(message("anon"))
        #expect(isEmpty(alicePeer) && isEmpty(bobPeer))

        try group.configureMember(named: "alice") { $0.sendToPeer = false }
        try alice.trySend(message("not to the peer"))
        #expect(isEmpty(alicePeer))
        #expect(group.snapshot().members.map(\.peerQueued) == [0, 0])
    }

    @Test func theGroupDefaultAppliesToMembersThatJoinLater() throws {
        let group = try Group(name: "g")
        let before = try group.join("before")
        try group.configure { $0.sendToPeer = true }
        let after = try group.join("after")
        #expect(!before.settings.sendToPeer && after.settings.sendToPeer)
        #expect(!GroupSettings().sendToPeer)
    }

    @Test func aFullPeerHoldsItsMembersWritesBackAndOnlyThose() throws {
        let group = try Group(name: "g")
        let alice = try group.join("alice", settings: MemberSettings(capacity: 2, sendToPeer: true))
        let bob = try group.join("bob")
        let peer = alice.makePeerReader(), b = bob.makeReader()
        try alice.trySend(batch: [message("1"), message("2")])
        #expect(group.snapshot().members[0].peerFull)
        // Nobody receives the refused message: bob got only the first two.
        #expect(expectError(.wouldBlock) { try alice.trySend(message("3")) })
        #expect(try b.text() == "1" && b.text() == "2" && isEmpty(b))
        // Others' writes do not need alice's peer (alice's own queue has room).
        try bob.trySend(message("from bob"))
        try group.trySend(message("anon"))
        #expect(try peer.text() == "1")
        try alice.trySend(message("3"))
        #expect(try peer.text() == "2" && peer.text() == "3")
    }

    @Test func thePeerHasItsMembersBoundsAndChangesWithThem() throws {
        let group = try Group(name: "g")
        let alice = try group.join("alice", settings: MemberSettings(capacity: 2, queueBytes: 1000, sendToPeer: true))
        try alice.trySend(message("1"))
        try alice.trySend(message("2"))
        #expect(expectError(.wouldBlock) { try alice.trySend(message("3")) })
        try group.configureMember(named: "alice") { $0.capacity = 3 }
        try alice.trySend(message("3"))
        #expect(expectError(.wouldBlock) { try alice.trySend(message("4")) })
        // Bytes count as well: a queue of at least queue_bytes is full.
        let bytes = try group.join("bytes", settings: MemberSettings(queueBytes: 4, sendToPeer: true))
        try bytes.trySend(message("four"))
        #expect(expectError(.wouldBlock) { try bytes.trySend(message("x")) })
    }

    @Test func aPeerNeverDropsEvenForADropWhenFullMember() throws {
        let group = try Group(name: "g")
        let alice = try group.join("alice", settings: MemberSettings(capacity: 1, dropWhenFull: true, sendToPeer: true))
        try alice.trySend(message("1"))
        #expect(expectError(.wouldBlock) { try alice.trySend(message("2")) })
        #expect(group.snapshot().members[0].dropped == 0)
    }

    @Test func aParkedSendWaitsForThePeerAndGoesToEveryoneAtOnce() throws {
        let group = try Group(name: "g")
        let alice = try group.join("alice", settings: MemberSettings(capacity: 1, sendToPeer: true))
        let bob = try group.join("bob")
        let peer = alice.makePeerReader(), b = bob.makeReader()
        try alice.trySend(message("1"))
        let done = Box<SendReceipt>()
        #expect(group.send(message("2"), as: alice, .blocking) { done.append(try! $0.get()) } != nil)
        #expect(group.snapshot().blockedWriters == 1)
        #expect(try b.text() == "1" && isEmpty(b))
        #expect(try peer.text() == "1")
        #expect(done.values.count == 1 && done.values[0].recipients == 2)
        let atBob = try next(b), atPeer = try next(peer)
        #expect(atBob.message.sequence == done.values[0].sequence && atPeer.message.isSame(as: atBob.message))
    }

    @Test func aBatchStopsWhereThePeerFills() throws {
        let group = try Group(name: "g")
        let alice = try group.join("alice", settings: MemberSettings(capacity: 2, sendToPeer: true))
        _ = try group.join("bob")
        let receipt = try alice.trySend(batch: ["1", "2", "3"].map(message))
        #expect(receipt.delivered == 2 && receipt.recipients == 4)
        #expect(expectError(.wouldBlock) { try alice.trySend(batch: [message("3")]) })
    }

    @Test func aLeavingMembersPeerReadsWhatIsQueuedThenEnds() throws {
        let group = try Group(name: "g")
        let alice = try group.join("alice", settings: MemberSettings(sendToPeer: true))
        let queued = alice.makePeerReader(), waiting = alice.makePeerReader()
        try alice.trySend(message("last words"))
        #expect(try queued.text() == "last words")
        let ended = Box<Bool>()
        let parked = waiting.receive(maxBytes: 100, .blocking) { ended.append(try! $0.get() == nil) }
        #expect(parked != nil)
        try alice.trySend(message("queued"))
        #expect(ended.values == [false])
        waiting.receive(maxBytes: 100, .blocking) { ended.append(try! $0.get() == nil) }
        alice.leave()
        #expect(ended.values == [false, true])
        // A reader made before the leave reads to the end.
        let late = Box<Bool>()
        #expect(queued.receive(maxBytes: 100, .blocking) { late.append(try! $0.get() == nil) } == nil)
        #expect(late.values == [true])
    }

    @Test func peerReadinessAndWatches() throws {
        let group = try Group(name: "g")
        let alice = try group.join("alice", settings: MemberSettings(sendToPeer: true))
        let peer = alice.makePeerReader()
        let fired = Box<Int>()
        #expect(!group.poll(reader: peer, writer: nil, watch: Watch(id: 1) { fired.append(1) }).readable)
        try alice.trySend(message("x"))
        #expect(fired.values == [1])
        #expect(group.poll(reader: peer, writer: nil).readable)
        _ = try peer.text()
        #expect(!group.poll(reader: peer, writer: nil, watch: Watch(id: 2) { fired.append(2) }).readable)
        alice.leave()
        #expect(fired.values == [1, 2])
        #expect(group.poll(reader: peer, writer: nil).readable)
    }

    @Test func shutDownReleasesPeerReceivesAndPrivateSends() throws {
        let group = try Group(name: "g")
        let alice = try group.join("alice", settings: MemberSettings(capacity: 1))
        try group.trySend(message("fill"))
        let results = Box<DeliveryError>()
        alice.makePeerReader().receive(maxBytes: 10, .blocking) { if case .failure(let e) = $0 { results.append(e) } }
        group.sendPrivate(message("p"), to: alice, .blocking) { if case .failure(let e) = $0 { results.append(e) } }
        group.shutDown()
        #expect(results.values == [.shutDown, .shutDown])
    }
}

@Suite struct PrivateSendTests {
    @Test func aPrivateMessageGoesToItsMemberAloneWithASequenceNumber() throws {
        let group = try Group(name: "g")
        let alice = try group.join("alice"), bob = try group.join("bob", settings: MemberSettings(loopback: true))
        let a = alice.makeReader(), b = bob.makeReader()
        let first = try group.trySend(message("to all"))
        let receipt = try group.trySendPrivate(message("to bob"), to: bob)
        let last = try group.trySend(message("to all again"))
        #expect(receipt.recipients == 1 && receipt.sequence == first.sequence + 1 && last.sequence == receipt.sequence + 1)
        #expect(group.snapshot().sent == 3)
        #expect(try a.text() == "to all" && a.text() == "to all again")
        let got = [try next(b), try next(b), try next(b)]
        #expect(got.map { text($0) } == ["to all", "to bob", "to all again"])
        #expect(got.map(\.message.isPrivate) == [false, true, false])
        #expect(got[1].message.senderName == nil && got[1].message.sequence == receipt.sequence)
        // Private messages never reach a peer queue.
        #expect(isEmpty(bob.makePeerReader()))
    }

    @Test func privateMessagesAreCheckedButNotForSendMembers() throws {
        let group = try Group(name: "g", settings: GroupSettings(maxMessage: 4, sendPolicy: .members))
        let alice = try group.join("alice")
        #expect(expectError(.messageTooLarge(size: 5, limit: 4)) { try group.trySendPrivate(message("12345"), to: alice) })
        #expect(expectError(.messageTooLarge(size: 5, limit: 4)) {
            try group.trySendPrivate(batch: [message("1"), message("12345")], to: alice)
        })
        #expect(expectError(.sendNotPermitted) { try group.trySend(message("anon")) })
        try group.trySendPrivate(message("ok"), to: alice)
        #expect(try alice.makeReader().text() == "ok")
    }

    @Test func aFullMemberMakesPrivateSendsWaitInTheOrderTheyBegan() throws {
        let group = try Group(name: "g")
        let alice = try group.join("alice", settings: MemberSettings(capacity: 1))
        let reader = alice.makeReader()
        try group.trySendPrivate(message("0"), to: alice)
        #expect(expectError(.wouldBlock) { try group.trySendPrivate(message("x"), to: alice) })
        let done = Box<String>()
        for text in ["1", "2", "3"] {
            #expect(group.sendPrivate(message(text), to: alice, .blocking) { _ in done.append(text) } != nil)
        }
        // No overtaking in the member's line, even with room for it.
        #expect(try reader.text() == "0")
        #expect(done.values == ["1"])
        #expect(expectError(.wouldBlock) { try group.trySendPrivate(message("x"), to: alice) })
        for expected in ["1", "2", "3"] { #expect(try reader.text() == expected) }
        #expect(done.values == ["1", "2", "3"])
        // They wait in the member's line, not the group's.
        #expect(group.snapshot().blockedWriters == 0)
    }

    @Test func aDropWhenFullMemberMissesPrivateMessagesInsteadOfHoldingThemBack() throws {
        let group = try Group(name: "g")
        let alice = try group.join("alice", settings: MemberSettings(capacity: 1, dropWhenFull: true))
        let reader = alice.makeReader()
        try group.trySendPrivate(message("1"), to: alice)
        let missed = try group.trySendPrivate(message("2"), to: alice)
        #expect(missed.recipients == 0 && missed.dropped == 1)
        #expect(try reader.text() == "1")
        try group.trySendPrivate(message("3"), to: alice)
        let chunk = try next(reader)
        #expect(text(chunk) == "3" && chunk.droppedBefore == 1)
        #expect(group.snapshot().members[0].dropped == 1)
    }

    @Test func switchingToDropWhenFullOrMoreRoomReleasesParkedPrivateSends() throws {
        let group = try Group(name: "g")
        let alice = try group.join("alice", settings: MemberSettings(capacity: 1))
        try group.trySendPrivate(message("0"), to: alice)
        let done = Box<SendReceipt>()
        for text in ["1", "2"] { group.sendPrivate(message(text), to: alice, .blocking) { done.append(try! $0.get()) } }
        try group.configureMember(named: "alice") { $0.capacity = 2 }
        #expect(done.values.map(\.recipients) == [1])
        try group.configureMember(named: "alice") { $0.dropWhenFull = true }
        #expect(done.values.map(\.dropped) == [0, 1])
    }

    @Test func privateSendsNeverWaitForTheGroupsLine() throws {
        // A group send waits for a full member; a private message to another
        // member, with room, is delivered at once.
        let group = try Group(name: "g")
        _ = try group.join("slow", settings: MemberSettings(capacity: 1))
        let alice = try group.join("alice")
        try group.trySend(message("fill"))
        let parked = Box<SendReceipt>()
        group.send(message("waits"), .blocking) { parked.append(try! $0.get()) }
        #expect(group.snapshot().blockedWriters == 1)
        try group.trySendPrivate(message("now"), to: alice)
        let a = alice.makeReader()
        #expect(try a.text() == "fill" && a.text() == "now")
        #expect(parked.values.isEmpty)
    }

    @Test func whenRoomAppearsTheOldestWaiterGoesFirst() throws {
        let group = try Group(name: "g")
        let alice = try group.join("alice", settings: MemberSettings(capacity: 1))
        let reader = alice.makeReader()
        try group.trySend(message("fill"))
        let order = Box<String>()
        // A group send, then a private one, both waiting for alice.
        group.send(message("group"), .blocking) { _ in order.append("group") }
        group.sendPrivate(message("private"), to: alice, .blocking) { _ in order.append("private") }
        #expect(try reader.text() == "fill")
        #expect(order.values == ["group"])
        #expect(try reader.text() == "group")
        #expect(order.values == ["group", "private"])

        // The other way round: the private send began first.
        group.sendPrivate(message("private 2"), to: alice, .blocking) { _ in order.append("private 2") }
        group.send(message("group 2"), .blocking) { _ in order.append("group 2") }
        #expect(try reader.text() == "private")
        #expect(order.values.suffix(1) == ["private 2"])
        #expect(try reader.text() == "private 2")
        #expect(order.values.suffix(2) == ["private 2", "group 2"])
    }

    @Test func aGroupSendHeldBackElsewhereDoesNotHoldAYoungerPrivateSend() throws {
        let group = try Group(name: "g")
        let alice = try group.join("alice", settings: MemberSettings(capacity: 1))
        _ = try group.join("carol", settings: MemberSettings(capacity: 1))
        try group.trySend(message("fill"))
        let order = Box<String>()
        group.send(message("group"), .blocking) { _ in order.append("group") }
        group.sendPrivate(message("private"), to: alice, .blocking) { _ in order.append("private") }
        let reader = alice.makeReader()
        #expect(try reader.text() == "fill")
        // The group send still waits for carol; the private one needs alice only.
        #expect(order.values == ["private"])
        #expect(try reader.text() == "private")
    }

    @Test func aMemberThatLeavesFailsItsPrivateSends() throws {
        let group = try Group(name: "g")
        let alice = try group.join("alice", settings: MemberSettings(capacity: 1))
        try group.trySendPrivate(message("0"), to: alice)
        let failed = Box<DeliveryError>()
        group.sendPrivate(message("1"), to: alice, .blocking) { if case .failure(let e) = $0 { failed.append(e) } }
        group.sendPrivate(batch: [message("2")], to: alice, .blocking) { if case .failure(let e) = $0 { failed.append(e) } }
        alice.leave()
        #expect(failed.values == [.recipientLeft, .recipientLeft])
        #expect(expectError(.recipientLeft) { try group.trySendPrivate(message("3"), to: alice) })
        // What was queued is still read, then the end.
        let reader = alice.makeReader()
        #expect(try reader.text() == "0" && reader.text() == nil)
    }

    @Test func aCancelledPrivateSendDeliveredNothing() throws {
        let group = try Group(name: "g")
        let alice = try group.join("alice", settings: MemberSettings(capacity: 1))
        try group.trySendPrivate(message("0"), to: alice)
        let done = Box<Int>()
        let first = try #require(group.sendPrivate(message("1"), to: alice, .blocking) { _ in done.append(1) })
        let second = try #require(group.sendPrivate(message("2"), to: alice, .blocking) { _ in done.append(2) })
        #expect(first.cancel() && !first.cancel())
        let reader = alice.makeReader()
        #expect(try reader.text() == "0")
        #expect(done.values == [2])
        #expect(!second.cancel())
        #expect(try reader.text() == "2" && isEmpty(reader))
    }

    @Test func aPrivateBatchDeliversWhatFitsEachWithItsNumber() throws {
        let group = try Group(name: "g")
        let alice = try group.join("alice", settings: MemberSettings(capacity: 2))
        let receipt = try group.trySendPrivate(batch: ["1", "2", "3"].map(message), to: alice)
        #expect(receipt.delivered == 2 && receipt.recipients == 2)
        let reader = alice.makeReader()
        let got = [try next(reader), try next(reader)]
        #expect(got.map(\.message.sequence) == [receipt.firstSequence, receipt.firstSequence + 1])
        #expect(got.allSatisfy { $0.message.isPrivate })
        // A parked batch, at the head, delivers what fits then: a short send.
        try group.trySendPrivate(batch: ["3", "4"].map(message), to: alice)
        let done = Box<BatchReceipt>()
        group.sendPrivate(batch: ["5", "6", "7"].map(message), to: alice, .blocking) { done.append(try! $0.get()) }
        #expect(try reader.text() == "3")
        #expect(done.values.map(\.delivered) == [1])
    }

    @Test func privateWritersAreWritableWhenTheirMemberHasRoom() throws {
        let group = try Group(name: "g")
        let alice = try group.join("alice", settings: MemberSettings(capacity: 1))
        let fired = Box<Int>()
        #expect(group.poll(reader: nil, writer: .peer(alice)).writable)
        try group.trySendPrivate(message("0"), to: alice)
        #expect(!group.poll(reader: nil, writer: .peer(alice), watch: Watch(id: 7) { fired.append(7) }).writable)
        // Other writers do not depend on alice's room for private messages.
        #expect(!group.poll(reader: nil, writer: .anonymous).writable)
        _ = try alice.makeReader().text()
        #expect(fired.values == [7])
        #expect(group.poll(reader: nil, writer: .peer(alice)).writable)
        alice.leave()
        // A private send would fail at once: it does not wait either.
        #expect(group.poll(reader: nil, writer: .peer(alice)).writable)
    }

    @Test func asyncPrivateSendsSuspendAndCancel() async throws {
        let group = try Group(name: "g")
        let alice = try group.join("alice", settings: MemberSettings(capacity: 1))
        let reader = alice.makeReader()
        _ = try await group.sendPrivate(message("a"), to: alice)
        async let blocked = group.sendPrivate(message("b"), to: alice)
        try await Task.sleep(for: .milliseconds(20))
        #expect(try reader.text() == "a")
        #expect(try await blocked.recipients == 1)
        let task = Task { try await group.sendPrivate(batch: [message("never")], to: alice) }
        try await Task.sleep(for: .milliseconds(20))
        task.cancel()
        await #expect(throws: DeliveryError.cancelled) { try await task.value }
        #expect(try reader.text() == "b" && isEmpty(reader))
    }

    @Test func theSnapshotShowsPeerQueues() throws {
        let group = try Group(name: "g")
        let alice = try group.join("alice", settings: MemberSettings(capacity: 2, sendToPeer: true))
        try alice.trySend(message("1"))
        #expect(group.snapshot().members[0].peerQueued == 1 && !group.snapshot().members[0].peerFull)
        try alice.trySend(message("2"))
        #expect(group.snapshot().members[0].peerQueued == 2 && group.snapshot().members[0].peerFull)
    }
}
