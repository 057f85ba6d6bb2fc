import DeliveryCore
import Synchronization
import Testing

// Relayed groups (Sources/DeliveryCore/Relay.swift): sends go to a
// sequencer, and stored messages come back through `deliver(_:stamp:)`.

private func text(_ chunk: MessageChunk?) -> String? { chunk.map { String(decoding: $0.bytes, as: UTF8.self) } }

private func isEmpty(_ reader: Reader) -> Bool { expectError(.wouldBlock) { _ = try reader.tryReceive(maxBytes: 10) } }

/// A sequencer that records what it is given and answers as told.
private final class RecordingSequencer: Sequencer, @unchecked Sendable {  // state behind its mutex
    struct Pending {
        let submission: Submission
        let blocking: Blocking
        let completion: @Sendable (Result<Sequenced, DeliveryError>) -> Void
    }
    private let state = Mutex<(pending: [Pending], open: Bool, next: UInt64)>(([], true, 1))

    var acceptsNow: Bool { state.withLock { $0.open } }
    func setOpen(_ open: Bool) { state.withLock { $0.open = open } }

    func submit(_ submission: Submission, _ blocking: Blocking,
                completion: @escaping @Sendable (Result<Sequenced, DeliveryError>) -> Void) -> Waiting? {
        state.withLock { $0.pending.append(Pending(submission: submission, blocking: blocking, completion: completion)) }
        return Waiting { [self] in
            state.withLock { state in
                guard let index = state.pending.firstIndex(where: { $0.submission.messages[0].isSame(as: submission.messages[0]) })
                else { return false }
                state.pending.remove(at: index)
                return true
            }
        }
    }

    /// Stores the oldest pending submission whole and completes it.
    @discardableResult
    func storeOldest() throws -> (Submission, UInt64) {
        let (pending, first) = try #require(state.withLock { state -> (Pending, UInt64)? in
            guard !state.pending.isEmpty else { return nil }
            let pending = state.pending.removeFirst()
            defer { state.next += UInt64(pending.submission.messages.count) }
            return (pending, state.next)
        })
        pending.completion(.success(Sequenced(stored: pending.submission.messages.count, firstSequence: first)))
        return (pending.submission, first)
    }

    var pendingCount: Int { state.withLock { $0.pending.count } }
    var waitingSends: Int { pendingCount }
}

private func stamp(_ sequence: UInt64, from sender: String? = nil, here: Bool = false, to recipient: String? = nil) -> Stamp {
    Stamp(sequence: sequence, time: 1_000 + sequence, senderName: sender, sentHere: here, privateTo: recipient)
}

/// Counts completions of deliveries.
private final class Completions: Sendable {
    private let count = Atomic<Int>(0)
    var value: Int { count.load(ordering: .relaxed) }
    func callback() -> @Sendable () -> Void { { self.count.add(1, ordering: .relaxed) } }
}

@Suite struct RelayedSendTests {
    @Test func aSendIsHandedToTheSequencerAndDeliversNothingByItself() throws {
        let sequencer = RecordingSequencer()
        let group = try Group(name: "g", sequencer: sequencer)
        #expect(group.isRelayed)
        let alice = try group.join("alice"), bob = try group.join("bob")
        let b = bob.makeReader()

        let result = Mutex<Result<SendReceipt, DeliveryError>?>(nil)
        let waiting = group.send(message("hi"), as: alice, .blocking) { r in result.withLock { $0 = r } }
        #expect(waiting != nil && result.withLock { $0 } == nil)
        #expect(isEmpty(b))

        let (submission, first) = try sequencer.storeOldest()
        #expect(submission.sender == "alice" && submission.privateTo == nil && submission.messages.count == 1)
        let receipt = try #require(try result.withLock { $0 }?.get())
        #expect(receipt.sequence == first && receipt.recipients == 0 && receipt.dropped == 0)
        // Still nothing here until the stored message comes back.
        #expect(isEmpty(b))
    }

    @Test func refusalsAreDecidedHereBeforeTheSequencerHearsOfThem() throws {
        let sequencer = RecordingSequencer()
        let group = try Group(name: "g", settings: GroupSettings(maxMessage: 4, sendPolicy: .members), sequencer: sequencer)
        let alice = try group.join("alice")
        let outcome = Mutex<[DeliveryError]>([])
        let record: @Sendable (Result<SendReceipt, DeliveryError>) -> Void = { r in
            if case .failure(let e) = r { outcome.withLock { $0.append(e) } }
        }
        #expect(group.send(message("too long"), as: alice, .blocking, completion: record) == nil)
        #expect(group.send(message("anon"), .blocking, completion: record) == nil)
        alice.leave()
        #expect(group.send(message("gone"), as: alice, .blocking, completion: record) == nil)
        #expect(outcome.withLock { $0 } == [.messageTooLarge(size: 8, limit: 4), .sendNotPermitted, .senderLeft])
        #expect(sequencer.pendingCount == 0)
    }

    @Test func trySendNeverAcceptsAtOnce() throws {
        let group = try Group(name: "g", sequencer: RecordingSequencer())
        let alice = try group.join("alice")
        #expect(expectError(.wouldBlock) { try group.trySend(message("x")) })
        #expect(expectError(.wouldBlock) { try group.trySend(batch: [message("x")], as: alice) })
        #expect(expectError(.wouldBlock) { try group.trySendPrivate(message("x"), to: alice) })
    }

    @Test func aPrivateSendNamesItsRecipientAndNoSender() throws {
        let sequencer = RecordingSequencer()
        let group = try Group(name: "g", sequencer: sequencer)
        let alice = try group.join("alice")
        group.sendPrivate(batch: [message("a"), message("b")], to: alice, .blocking) { _ in }
        let (submission, _) = try sequencer.storeOldest()
        #expect(submission.sender == nil && submission.privateTo == "alice" && submission.messages.count == 2)
    }

    @Test func cancellingAWaitingSendGoesToTheSequencer() throws {
        let sequencer = RecordingSequencer()
        let group = try Group(name: "g", sequencer: sequencer)
        let waiting = try #require(group.send(message("x"), .blocking) { _ in Issue.record("completed after cancel") })
        #expect(waiting.cancel())
        #expect(sequencer.pendingCount == 0)
        #expect(!waiting.cancel())
    }

    @Test func writersPollTheSequencersRoomNotTheParkedDeliveries() throws {
        let sequencer = RecordingSequencer()
        let group = try Group(name: "g", settings: GroupSettings(capacity: 1), sequencer: sequencer)
        let alice = try group.join("alice")
        // alice full, and a delivery parked behind her: local sends still go.
        group.deliver(message("1"), stamp: stamp(1)) {}
        group.deliver(message("2"), stamp: stamp(2)) {}
        #expect(group.poll(reader: nil, writer: .anonymous).writable)
        sequencer.setOpen(false)
        let woken = Completions()
        #expect(!group.poll(reader: nil, writer: .member(alice), watch: Watch(id: 7, notify: woken.callback())).writable)
        sequencer.setOpen(true)
        group.writersMayProceed()
        #expect(woken.value == 1)
        #expect(group.poll(reader: nil, writer: .peer(alice)).writable)
    }

    @Test func blockedWritersCountsSendsInTheSequencerNotParkedDeliveries() throws {
        let sequencer = RecordingSequencer()
        let group = try Group(name: "g", settings: GroupSettings(capacity: 1), sequencer: sequencer)
        _ = try group.join("alice")
        group.deliver(message("1"), stamp: stamp(1)) {}
        group.deliver(message("2"), stamp: stamp(2)) {}  // parked behind full alice
        #expect(group.snapshot().blockedWriters == 0)
        _ = group.send(message("a"), .blocking) { _ in }
        _ = group.send(message("b"), .blocking) { _ in }
        #expect(group.snapshot().blockedWriters == 2)
        try sequencer.storeOldest()
        #expect(group.snapshot().blockedWriters == 1)
    }
}

@Suite struct RelayedDeliveryTests {
    @Test func deliveryCarriesTheStampAndSkipsALocalSenderWithoutLoopback() throws {
        let group = try Group(name: "g", sequencer: RecordingSequencer())
        let alice = try group.join("alice"), bob = try group.join("bob")
        let a = alice.makeReader(), b = bob.makeReader()
        let done = Completions()

        group.deliver(message("from alice"), stamp: stamp(5, from: "alice", here: true), completion: done.callback())
        group.deliver(message("from far alice"), stamp: stamp(6, from: "alice", here: false), completion: done.callback())
        #expect(done.value == 2)
        let first = try #require(try b.tryReceive(maxBytes: 100))
        #expect(text(first) == "from alice")
        #expect(first.message.sequence == 5 && first.message.time == 1_005 && first.message.senderName == "alice")
        #expect(text(try b.tryReceive(maxBytes: 100)) == "from far alice")
        // A sender of the same name on another node is somebody else.
        #expect(text(try a.tryReceive(maxBytes: 100)) == "from far alice")
        #expect(isEmpty(a))
    }

    @Test func aFullMemberParksDeliveryAndEverythingAfterItInOrder() throws {
        let group = try Group(name: "g", settings: GroupSettings(capacity: 1), sequencer: RecordingSequencer())
        let slow = try group.join("slow"), fast = try group.join("fast")
        let drops = try group.join("drops", settings: MemberSettings(capacity: 1, dropWhenFull: true))
        let s = slow.makeReader(), f = fast.makeReader(), d = drops.makeReader()
        let done = Completions()
        group.deliver(message("1"), stamp: stamp(1), completion: done.callback())
        #expect(text(try f.tryReceive(maxBytes: 10)) == "1")
        group.deliver(message("2"), stamp: stamp(2), completion: done.callback())
        // Private to fast, which has room: still behind 2, in the one line.
        group.deliver(message("3"), stamp: stamp(3, to: "fast"), completion: done.callback())
        #expect(done.value == 1)
        #expect(isEmpty(f))

        #expect(text(try s.tryReceive(maxBytes: 10)) == "1")
        #expect(done.value == 2)  // 2 went; 3 waits for fast, full with 2
        #expect(text(try f.tryReceive(maxBytes: 10)) == "2")
        #expect(done.value == 3)
        let private3 = try #require(try f.tryReceive(maxBytes: 10))
        #expect(text(private3) == "3" && private3.message.isPrivate && private3.message.senderName == nil)
        #expect(text(try s.tryReceive(maxBytes: 10)) == "2" && isEmpty(s))
        // The drop-when-full member took 1, missed 2 (full), never holds anything.
        #expect(text(try d.tryReceive(maxBytes: 10)) == "1" && isEmpty(d))
        #expect(group.snapshot().members.first { $0.name == "drops" }?.dropped == 1)
    }

    @Test func aRunGoesAtOnceUpToTheFirstMessageAFullMemberHolds() throws {
        let group = try Group(name: "g", settings: GroupSettings(capacity: 2), sequencer: RecordingSequencer())
        let slow = try group.join("slow"), fast = try group.join("fast", settings: MemberSettings(capacity: 10))
        let s = slow.makeReader(), f = fast.makeReader()
        let run = (1...4).map { (message("\($0)"), stamp(UInt64($0))) }
        // slow holds two: 1 and 2 go, 3 would overflow it.
        #expect(group.deliverNow(run) == 2)
        #expect(text(try f.tryReceive(maxBytes: 10)) == "1")
        #expect(text(try f.tryReceive(maxBytes: 10)) == "2")
        #expect(isEmpty(f))
        // The rest go one at a time: 3 parks behind slow, and a later run waits behind it.
        let done = Completions()
        group.deliver(run[2].0, stamp: run[2].1, completion: done.callback())
        #expect(done.value == 0)
        #expect(group.deliverNow([run[3]]) == 0)
        #expect(text(try s.tryReceive(maxBytes: 10)) == "1")
        #expect(done.value == 1)
        #expect(group.snapshot().sent == 3)
        #expect(text(try f.tryReceive(maxBytes: 10)) == "3")
    }

    @Test func aMemberReceivesOnlyWhatWasStoredAfterItJoined() throws {
        let group = try Group(name: "g", sequencer: RecordingSequencer())
        let old = try group.join("old")
        let late = try group.join("late")
        late.receiveOnly(after: 10)
        let o = old.makeReader(), l = late.makeReader()
        for sequence: UInt64 in [9, 10, 11] { group.deliver(message("\(sequence)"), stamp: stamp(sequence)) {} }
        group.deliver(message("p10"), stamp: stamp(12, to: "late")) {}
        #expect(text(try l.tryReceive(maxBytes: 10)) == "11")
        #expect(text(try l.tryReceive(maxBytes: 10)) == "p10")
        #expect(isEmpty(l))
        #expect([9, 10, 11].map { _ in text(try? o.tryReceive(maxBytes: 10)) } == ["9", "10", "11"])
    }

    @Test func aMemberAwaitingItsSequenceKeepsAsideWhatComesAndQueuesOnlyWhatWasStoredAfterIt() throws {
        let group = try Group(name: "g", sequencer: RecordingSequencer())
        let late = try group.join("late", settings: MemberSettings(capacity: 4), awaitingItsSequence: true)
        let done = Completions()
        // Delivered here before its place was known: 7 and 8 were stored before it, 9 and 10 after.
        for sequence: UInt64 in [7, 8, 9] { group.deliver(message("\(sequence)"), stamp: stamp(sequence), completion: done.callback()) }
        group.deliver(message("p10"), stamp: stamp(10, to: "late"), completion: done.callback())
        // Kept aside, counted nowhere.
        #expect(done.value == 4)
        let before = try #require(group.snapshot().members.first)
        #expect(before.delivered == 0 && before.queued == 0)
        let l = late.makeReader()
        #expect(isEmpty(l))
        late.receiveOnly(after: 8)
        #expect(text(try l.tryReceive(maxBytes: 10)) == "9")
        #expect(text(try l.tryReceive(maxBytes: 10)) == "p10")
        #expect(isEmpty(l))
        #expect(group.snapshot().members.first?.delivered == 2)
        // From now on, as any member.
        group.deliver(message("11"), stamp: stamp(11), completion: done.callback())
        #expect(text(try l.tryReceive(maxBytes: 10)) == "11")
    }

    @Test func whatIsKeptAsideIsBoundedByTheMembersQueue() throws {
        let group = try Group(name: "g", sequencer: RecordingSequencer())
        let late = try group.join("late", settings: MemberSettings(capacity: 2), awaitingItsSequence: true)
        let done = Completions()
        for sequence: UInt64 in 1...3 { group.deliver(message("\(sequence)"), stamp: stamp(sequence), completion: done.callback()) }
        #expect(done.value == 2)  // two kept aside: the third waits, as behind a full queue
        late.receiveOnly(after: 1)
        #expect(done.value == 3)  // 2 queued, room for 3
        let l = late.makeReader()
        #expect(text(try l.tryReceive(maxBytes: 10)) == "2")
        #expect(text(try l.tryReceive(maxBytes: 10)) == "3")
        #expect(isEmpty(l))
    }

    @Test func filtersAndTheSendersPeerApply() throws {
        let group = try Group(name: "g", sequencer: RecordingSequencer())
        let alice = try group.join("alice", settings: MemberSettings(sendToPeer: true))
        let tx = try group.join("tx", settings: MemberSettings(subscribe: try Subscription(parsing: "tx.>")))
        let peer = alice.makePeerReader(), t = tx.makeReader()
        group.deliver(message("tx.1 hello"), stamp: stamp(1, from: "alice", here: true)) {}
        group.deliver(message("rx.1 hello"), stamp: stamp(2, from: "alice", here: true)) {}
        group.deliver(message("tx.2 from afar"), stamp: stamp(3, from: "alice", here: false)) {}
        #expect(text(try t.tryReceive(maxBytes: 100)) == "tx.1 hello")
        #expect(text(try t.tryReceive(maxBytes: 100)) == "tx.2 from afar" && isEmpty(t))
        // Only what alice sent from here reaches her peer, filtered or not.
        #expect(text(try peer.tryReceive(maxBytes: 100)) == "tx.1 hello")
        #expect(text(try peer.tryReceive(maxBytes: 100)) == "rx.1 hello" && isEmpty(peer))
    }

    @Test func aMemberLeavingReleasesTheParkedDeliveryAndShutdownReleasesAll() throws {
        let group = try Group(name: "g", settings: GroupSettings(capacity: 1), sequencer: RecordingSequencer())
        let slow = try group.join("slow")
        let done = Completions()
        group.deliver(message("1"), stamp: stamp(1), completion: done.callback())
        group.deliver(message("2"), stamp: stamp(2), completion: done.callback())
        group.deliver(message("3"), stamp: stamp(3), completion: done.callback())
        #expect(done.value == 1)
        slow.leave()
        #expect(done.value == 3)

        let other = try group.join("other")
        _ = other
        group.deliver(message("4"), stamp: stamp(4), completion: done.callback())
        group.deliver(message("5"), stamp: stamp(5), completion: done.callback())
        #expect(done.value == 4)
        group.shutDown()
        #expect(done.value == 5)
        // After shutdown a delivery completes at once and reaches nobody.
        group.deliver(message("6"), stamp: stamp(6), completion: done.callback())
        #expect(done.value == 6)
    }
}
