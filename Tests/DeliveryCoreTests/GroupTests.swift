import Locking
import DeliveryCore
import Dispatch
import Testing

import class Foundation.Thread

@Suite struct GroupLifetimeTests {
    @Test func settingsAreValidated() {
        #expect(throws: DeliveryError.self) { try Group(name: "g", settings: GroupSettings(capacity: 0)) }
        #expect(throws: DeliveryError.self) { try Group(name: "g", settings: GroupSettings(maxMessage: 1_044_481)) }
        #expect(throws: DeliveryError.self) { try Group(name: "g", settings: GroupSettings(queueBytes: (1 << 30) + 1)) }
    }

    @Test func closeIsRefusedWhileMembersExist() throws {
        let group = try Group(name: "g")
        let alice = try group.join("alice")
        #expect(expectError(.groupHasMembers) { try group.close() })
        alice.leave()
        try group.close()
        #expect(expectError(.groupClosed) { _ = try group.join("bob") })
        #expect(expectError(.groupClosed) { try group.trySend(message("x")) })
    }

    @Test func joinUsesGroupDefaultsAndRefusesDuplicates() throws {
        let group = try Group(name: "g", settings: GroupSettings(capacity: 7, queueBytes: 99))
        let alice = try group.join("alice")
        #expect(alice.settings == MemberSettings(capacity: 7, queueBytes: 99))
        #expect(expectError(.memberExists) { _ = try group.join("alice") })
        let bob = try group.join("bob", settings: MemberSettings(capacity: 3, loopback: true))
        #expect(bob.settings.capacity == 3 && bob.settings.loopback)
        #expect(group.members.map(\.name) == ["alice", "bob"])
        alice.leave()
        alice.leave()
        #expect(group.members.map(\.name) == ["bob"])
        #expect(group.member(named: "alice") == nil)
        // The name is free again.
        _ = try group.join("alice")
    }

    @Test func settingsChangeAllOrNothing() throws {
        let group = try Group(name: "g")
        #expect(throws: DeliveryError.self) {
            try group.configure { $0.capacity = 10; $0.maxMessage = 0 }
        }
        #expect(group.settings == GroupSettings())
        try group.configure { $0.capacity = 10; $0.sendPolicy = .members }
        #expect(group.settings.capacity == 10 && group.settings.sendPolicy == .members)

        _ = try group.join("a")
        #expect(throws: DeliveryError.self) {
            try group.configureMember(named: "a") { $0.loopback = true; $0.queueBytes = 0 }
        }
        #expect(group.member(named: "a")!.settings.loopback == false)
        #expect(expectError(.noSuchMember) { try group.configureMember(named: "zed") { $0.loopback = true } })
    }

    @Test func configureValidatesWhatItApplies() throws {
        // A change that depends on the current value, while another configure
        // lands as it runs: what is applied must be what was validated, and
        // the change must run once. The other configure is given a moment to
        // finish first; a configure that holds the lock throughout makes it
        // wait instead, and then it applies last.
        let group = try Group(name: "g")
        let calls = AdaptiveMutex(0)
        let concurrent = DispatchGroup()
        do {
            try group.configure { settings in
                let first = calls.withLock { calls in
                    calls += 1
                    return calls == 1
                }
                if first {
                    concurrent.enter()
                    Thread.detachNewThread {
                        try! group.configure { $0.capacity = 900_000 }
                        concurrent.leave()
                    }
                    _ = concurrent.wait(timeout: .now() + .milliseconds(200))
                }
                settings.capacity += 200_000
            }
        } catch {
            // Refused when it saw 900,000: 1,100,000 is out of bounds.
            #expect(error == .invalidSetting(key: "capacity", value: 1_100_000, allowed: Limits.capacity))
        }
        concurrent.wait()
        #expect(calls.withLock { $0 } == 1)
        #expect(throws: Never.self) { try group.settings.validate() }
        #expect(group.settings.capacity == 900_000)
    }
}

@Suite struct SendTests {
    @Test func groupWithoutMembersAcceptsAndDrops() throws {
        let group = try Group(name: "g")
        let receipt = try group.trySend(message("x"))
        #expect(receipt.recipients == 0)
        #expect(group.snapshot().sent == 1)
    }

    @Test func recipientsAreMembersExceptSenderUnlessLoopback() throws {
        let group = try Group(name: "g")
        let alice = try group.join("alice"), bob = try group.join("bob")
        let a = alice.makeReader(), b = bob.makeReader()
        try alice.trySend(message("from alice"))
        #expect(try b.text() == "from alice")
        #expect(expectError(.wouldBlock) { _ = try a.tryReceive(maxBytes: 100) })
        try group.configureMember(named: "alice") { $0.loopback = true }
        try alice.trySend(message("again"))
        #expect(try a.text() == "again")
        #expect(try b.text() == "again")
        try group.trySend(message("anon"))
        #expect(try a.text() == "anon")
        #expect(try b.text() == "anon")
    }

    @Test func membersOnlyRefusesAnonymousSends() throws {
        let group = try Group(name: "g", settings: GroupSettings(sendPolicy: .members))
        let alice = try group.join("alice"), bob = try group.join("bob")
        #expect(expectError(.sendNotPermitted) { try group.trySend(message("x")) })
        try alice.trySend(message("ok"))
        #expect(try bob.makeReader().text() == "ok")
    }

    @Test func tooLargeReachesNobody() throws {
        let group = try Group(name: "g", settings: GroupSettings(maxMessage: 4))
        let alice = try group.join("alice")
        #expect(expectError(.messageTooLarge(size: 5, limit: 4)) { try group.trySend(message("12345")) })
        try group.trySend(message("1234"))
        #expect(try alice.makeReader().text() == "1234")
        #expect(group.snapshot().sent == 1)
    }

    @Test func fullRecipientMakesNonBlockingSendFailForEveryone() throws {
        let group = try Group(name: "g")
        let small = try group.join("small", settings: MemberSettings(capacity: 1))
        let big = try group.join("big")
        try group.trySend(message("1"))
        #expect(expectError(.wouldBlock) { try group.trySend(message("2")) })
        let snapshot = group.snapshot()
        #expect(snapshot.sent == 1)
        #expect(snapshot.members.map(\.queued) == [1, 1])
        #expect(snapshot.members[0].full)
        _ = big
        #expect(try small.makeReader().text() == "1")
        try group.trySend(message("2"))
    }

    @Test func dropWhenFullMemberIsSkippedAndCounted() throws {
        let group = try Group(name: "g")
        let lossy = try group.join("lossy", settings: MemberSettings(capacity: 1, dropWhenFull: true))
        let steady = try group.join("steady")
        for i in 0..<3 { try group.trySend(message("\(i)")) }
        let snapshot = group.snapshot()
        #expect(snapshot.members[0].dropped == 2 && snapshot.members[0].delivered == 1)
        #expect(snapshot.members[1].delivered == 3)
        #expect(try lossy.makeReader().text() == "0")
        let reader = steady.makeReader()
        #expect(try [reader.text(), reader.text(), reader.text()] == ["0", "1", "2"])
    }

    @Test func sequenceNumbersAndSharedPayload() throws {
        let group = try Group(name: "g")
        let a = try group.join("a").makeReader(), b = try group.join("b").makeReader()
        let first = try group.trySend(message("x")), second = try group.trySend(message("y"))
        #expect(second.sequence == first.sequence + 1)
        let fromA = try a.tryReceive(maxBytes: 10)!, fromB = try b.tryReceive(maxBytes: 10)!
        #expect(fromA.message.isSame(as: fromB.message))
        #expect(fromA.message.sequence == first.sequence)
    }

    @Test func byteBoundAndEmptyQueueAcceptsOneLargeMessage() throws {
        let group = try Group(name: "g")
        let member = try group.join("m", settings: MemberSettings(capacity: 100, queueBytes: 10))
        try group.trySend(Message([UInt8](repeating: 1, count: 50)))  // empty queue: accepted
        #expect(group.snapshot().members[0].full)
        #expect(expectError(.wouldBlock) { try group.trySend(message("x")) })
        _ = try member.makeReader().tryReceive(maxBytes: 100)
        try group.trySend(message("12345"))
        try group.trySend(message("12345"))  // 5 < 10 held: accepted, now 10
        #expect(expectError(.wouldBlock) { try group.trySend(message("x")) })
    }

    @Test func loweringCapacityDropsNothing() throws {
        let group = try Group(name: "g")
        let member = try group.join("m")
        for i in 0..<5 { try group.trySend(message("\(i)")) }
        try group.configureMember(named: "m") { $0.capacity = 2 }
        #expect(group.snapshot().members[0].queued == 5)
        #expect(expectError(.wouldBlock) { try group.trySend(message("x")) })
        let reader = member.makeReader()
        for i in 0..<4 { #expect(try reader.text() == "\(i)") }
        try group.trySend(message("5"))
        #expect(try reader.text() == "4")
        #expect(try reader.text() == "5")
    }

    @Test func senderThatLeftCannotSend() throws {
        let group = try Group(name: "g")
        let alice = try group.join("alice")
        alice.leave()
        #expect(expectError(.senderLeft) { try alice.trySend(message("x")) })
    }
}

@Suite struct BlockingSendTests {
    func fullGroup() throws -> (Group, Member, Reader) {
        let group = try Group(name: "g")
        let slow = try group.join("slow", settings: MemberSettings(capacity: 1))
        try group.trySend(message("0"))
        return (group, slow, slow.makeReader())
    }

    @Test func parkedSendsCompleteInOrderWhenRoomAppears() throws {
        let (group, _, reader) = try fullGroup()
        let done = Box<String>()
        for text in ["1", "2", "3"] {
            let waiting = group.send(message(text), .blocking) { result in
                done.append(text + (try! result.get().recipients == 1 ? "" : "?"))
            }
            #expect(waiting != nil)
        }
        #expect(group.snapshot().blockedWriters == 3)
        // No overtaking while others wait, even with room for it.
        #expect(expectError(.wouldBlock) { try group.trySend(message("x")) })
        for expected in ["0", "1", "2", "3"] {
            #expect(try reader.text() == expected)
        }
        #expect(done.values == ["1", "2", "3"])
        #expect(group.snapshot().blockedWriters == 0)
    }

    @Test func leavingReleasesBlockedSenders() throws {
        let (group, slow, _) = try fullGroup()
        let other = try group.join("other").makeReader()
        let done = Box<SendReceipt>()
        group.send(message("1"), .blocking) { done.append(try! $0.get()) }
        #expect(done.values.isEmpty)
        slow.leave()
        #expect(done.values.count == 1 && done.values[0].recipients == 1)
        #expect(try other.text() == "1")
    }

    @Test func raisingCapacityOrDropWhenFullReleasesBlockedSenders() throws {
        let (group, _, _) = try fullGroup()
        let done = Box<Int>()
        group.send(message("1"), .blocking) { _ in done.append(1) }
        group.send(message("2"), .blocking) { _ in done.append(2) }
        try group.configureMember(named: "slow") { $0.capacity = 2 }
        #expect(done.values == [1])
        try group.configureMember(named: "slow") { $0.dropWhenFull = true }
        #expect(done.values == [1, 2])
        #expect(group.snapshot().members[0].dropped == 1)
    }

    @Test func cancelledSendDeliveredNothing() throws {
        let (group, _, reader) = try fullGroup()
        let other = try group.join("other").makeReader()
        let done = Box<Int>()
        let waiting = try #require(group.send(message("1"), .blocking) { _ in done.append(1) })
        #expect(waiting.cancel())
        #expect(!waiting.cancel())
        #expect(try reader.text() == "0")
        #expect(done.values.isEmpty)
        #expect(expectError(.wouldBlock) { _ = try other.tryReceive(maxBytes: 10) })
        #expect(group.snapshot().blockedWriters == 0)
    }

    @Test func cancellingTheHeadLetsTheNextSendThrough() throws {
        // The head waits for "slow"; the next one is sent by "slow" itself, so
        // it does not need room there.
        let (group, slow, _) = try fullGroup()
        let done = Box<String>()
        let head = try #require(group.send(message("anon"), .blocking) { _ in done.append("anon") })
        group.send(message("mine"), as: slow, .blocking) { _ in done.append("mine") }
        #expect(done.values.isEmpty)
        #expect(head.cancel())
        #expect(done.values == ["mine"])
    }

    @Test func cancelAfterCompletionReturnsFalse() throws {
        let (group, _, reader) = try fullGroup()
        let waiting = try #require(group.send(message("1"), .blocking) { _ in })
        _ = try reader.text()
        #expect(!waiting.cancel())
        #expect(try reader.text() == "1")
    }

    @Test func parkedSendOfALeavingSenderFails() throws {
        let (group, _, _) = try fullGroup()
        let alice = try group.join("alice")
        let done = Box<DeliveryError>()
        group.send(message("1"), as: alice, .blocking) { result in
            if case .failure(let error) = result { done.append(error) }
        }
        alice.leave()
        #expect(done.values == [.senderLeft])
    }

    @Test func shutDownReleasesEveryWaiter() throws {
        let (group, _, _) = try fullGroup()
        let idle = try group.join("idle").makeReader()
        let errors = Box<DeliveryError>()
        group.send(message("1"), .blocking) { if case .failure(let e) = $0 { errors.append(e) } }
        idle.receive(maxBytes: 10, .blocking) { if case .failure(let e) = $0 { errors.append(e) } }
        group.shutDown()
        #expect(errors.values == [.shutDown, .shutDown])
    }
}

@Suite struct ReceiveTests {
    @Test func smallBufferGetsTheRestBeforeTheNextMessage() throws {
        let group = try Group(name: "g")
        let member = try group.join("m")
        let reader = member.makeReader(), other = member.makeReader()
        try group.trySend(message("hello world"))
        try group.trySend(message("next"))
        let first = try #require(try reader.tryReceive(maxBytes: 5))
        #expect(first.bytes == Array("hello".utf8) && !first.isLast)
        // Another reader of the same member gets the next message, not the rest.
        #expect(try other.text() == "next")
        #expect(try reader.text(maxBytes: 3) == " wo")
        #expect(try reader.text() == "rld")
        #expect(expectError(.wouldBlock) { _ = try reader.tryReceive(maxBytes: 5) })
    }

    @Test func parkedReceiveCompletesOnSendAndCancelConsumesNothing() throws {
        let group = try Group(name: "g")
        let reader = try group.join("m").makeReader()
        let got = Box<String>()
        let waiting = reader.receive(maxBytes: 100, .blocking) { result in
            got.append(String(decoding: try! result.get()!.bytes, as: UTF8.self))
        }
        #expect(waiting != nil)
        try group.trySend(message("hi"))
        #expect(got.values == ["hi"])
        #expect(group.snapshot().members[0].queued == 0)

        let cancelled = try #require(reader.receive(maxBytes: 100, .blocking) { _ in got.append("!") })
        #expect(cancelled.cancel())
        try group.trySend(message("kept"))
        #expect(try reader.text() == "kept")
        #expect(got.values == ["hi"])
    }

    @Test func readersShareTheQueueOneMessageEach() throws {
        let group = try Group(name: "g")
        let member = try group.join("m")
        let got = Box<String>()
        for _ in 0..<3 {
            member.makeReader().receive(maxBytes: 100, .blocking) { result in
                got.append(String(decoding: try! result.get()!.bytes, as: UTF8.self))
            }
        }
        for text in ["a", "b", "c", "d"] { try group.trySend(message(text)) }
        #expect(got.values == ["a", "b", "c"])
        #expect(group.snapshot().members[0].queued == 1)
    }

    @Test func leavingKeepsQueuedThenEndOfStream() throws {
        let group = try Group(name: "g")
        let member = try group.join("m")
        let reader = member.makeReader(), parked = member.makeReader()
        try group.trySend(message("1"))
        _ = try parked.text()
        let ends = Box<Bool>()
        parked.receive(maxBytes: 10, .blocking) { ends.append(try! $0.get() == nil) }
        try group.trySend(message("2"))  // goes to the parked reader
        let waiting = parked.receive(maxBytes: 10, .blocking) { ends.append(try! $0.get() == nil) }
        #expect(waiting != nil)
        try group.trySend(message("3"))
        #expect(ends.values == [false, false])
        try group.trySend(message("4"))
        member.leave()
        try group.trySend(message("5"))
        #expect(try reader.text() == "4")
        #expect(try reader.text() == nil)
        #expect(try reader.text() == nil)
        let last = parked.receive(maxBytes: 10, .blocking) { ends.append(try! $0.get() == nil) }
        #expect(last == nil)
        #expect(ends.values == [false, false, true])
    }

    @Test func parkedReceiveSeesEndOfStreamWhenMemberLeaves() throws {
        let group = try Group(name: "g")
        let member = try group.join("m")
        let ends = Box<Bool>()
        member.makeReader().receive(maxBytes: 10, .blocking) { ends.append(try! $0.get() == nil) }
        member.leave()
        #expect(ends.values == [true])
    }

    @Test func batchReceiveRespectsLimits() throws {
        let group = try Group(name: "g")
        let reader = try group.join("m").makeReader()
        for i in 0..<10 { try group.trySend(Message([UInt8](repeating: UInt8(i), count: 10))) }
        #expect(try reader.tryReceiveBatch(maxMessages: 4, maxBytes: 1000).count == 4)
        #expect(try reader.tryReceiveBatch(maxMessages: 100, maxBytes: 25).count == 2)
        #expect(try reader.tryReceiveBatch(maxMessages: 100, maxBytes: 1).count == 1)  // at least one
        let rest = try reader.tryReceiveBatch(maxMessages: 100, maxBytes: 1000)
        #expect(rest.map { $0.bytes[0] } == [7, 8, 9])
        #expect(throws: DeliveryError.wouldBlock) { try reader.tryReceiveBatch(maxMessages: 10, maxBytes: 10) }
    }

    @Test func batchOfOneTakesOneAndLessThanOneCountsAsOne() throws {
        let group = try Group(name: "g")
        let reader = try group.join("m").makeReader()
        for i in 0..<4 { try group.trySend(Message([UInt8(i)])) }
        #expect(try reader.tryReceiveBatch(maxMessages: 1, maxBytes: 1000).map { $0.bytes[0] } == [0])
        #expect(try reader.tryReceiveBatch(maxMessages: 0, maxBytes: 1000).map { $0.bytes[0] } == [1])
        #expect(try reader.tryReceiveBatch(maxMessages: -5, maxBytes: 1000).map { $0.bytes[0] } == [2])
        #expect(group.snapshot().members[0].queued == 1)
    }

    @Test func batchReceiveParksTakesWhatIsThereAndPutsBack() throws {
        let group = try Group(name: "g")
        let member = try group.join("m")
        let reader = member.makeReader()
        let got = Box<[String]>()
        let record: @Sendable (Result<Received, DeliveryError>) -> Void = { result in
            got.append(try! result.get().map { String(decoding: $0.bytes, as: UTF8.self) })
        }
        let refused = Box<DeliveryError>()
        #expect(reader.receiveBatch(maxMessages: 8, maxBytes: 100, .nonBlocking) { result in
            if case .failure(let error) = result { refused.append(error) }
        } == nil)
        #expect(refused.values == [.wouldBlock])
        // Parked on an empty queue: the first message completes it alone.
        #expect(reader.receiveBatch(maxMessages: 8, maxBytes: 100, .blocking, completion: record) != nil)
        for text in ["a", "b", "c"] { try group.trySend(message(text)) }
        #expect(got.values == [["a"]])
        // Not empty: everything that fits, at once.
        #expect(reader.receiveBatch(maxMessages: 8, maxBytes: 100, .blocking, completion: record) == nil)
        #expect(got.values == [["a"], ["b", "c"]])
        // What could not be handed on comes back first, in order.
        try group.trySend(message("d"))
        reader.putBack(try reader.tryReceiveBatch(maxMessages: 8, maxBytes: 100))
        try group.trySend(message("e"))
        member.leave()
        reader.receiveBatch(maxMessages: 8, maxBytes: 100, .blocking, completion: record)
        reader.receiveBatch(maxMessages: 8, maxBytes: 100, .blocking, completion: record)
        #expect(got.values == [["a"], ["b", "c"], ["d", "e"], []])
    }

    @Test func afterShutDownQueuedMessagesAreReadAndWaitsRefused() throws {
        let group = try Group(name: "g")
        let reader = try group.join("m").makeReader()
        try group.trySend(message("kept"))
        group.shutDown()
        let results = Box<String>()
        for _ in 0..<2 {
            reader.receive(maxBytes: 100, .blocking) { result in
                switch result {
                case .success(let chunk): results.append(chunk.map { String(decoding: $0.bytes, as: UTF8.self) } ?? "end")
                case .failure(let error): results.append("\(error)")
                }
            }
        }
        #expect(results.values == ["kept", "shutDown"])
        #expect(expectError(.shutDown) { try group.trySend(message("x")) })
    }

    @Test func completionsRunWithTheLockReleased() throws {
        // A completion that calls into its group would deadlock if it ran
        // under the group's lock.
        let group = try Group(name: "g")
        let reader = try group.join("m").makeReader()
        let sent = Box<UInt64>()
        reader.receive(maxBytes: 100, .blocking) { _ in sent.append(group.snapshot().sent) }
        let done = DispatchSemaphore(value: 0)
        Thread.detachNewThread {
            try! group.trySend(message("x"))
            done.signal()
        }
        #expect(done.wait(timeout: .now() + 10) == .success)
        #expect(sent.values == [1])
    }

    @Test func putBackRestoresOrderAndParts() throws {
        let group = try Group(name: "g")
        let reader = try group.join("m").makeReader()
        try group.trySend(message("abcdef"))
        try group.trySend(message("next"))
        let first = try #require(try reader.tryReceive(maxBytes: 2))
        reader.putBack(first)
        #expect(try reader.text() == "abcdef")
        let part = try #require(try reader.tryReceive(maxBytes: 100))
        reader.putBack(part)
        let again = try #require(try reader.tryReceive(maxBytes: 3))
        let rest = try #require(try reader.tryReceive(maxBytes: 3))
        #expect(again.bytes + rest.bytes == Array("next".utf8).prefix(3) + Array("t".utf8))
        reader.putBack(rest)
        #expect(try reader.text() == "t")
    }

    @Test func putBackHandsToAParkedReader() throws {
        let group = try Group(name: "g")
        let member = try group.join("m")
        let a = member.makeReader(), b = member.makeReader()
        try group.trySend(message("x"))
        let chunk = try #require(try a.tryReceive(maxBytes: 10))
        let got = Box<String>()
        b.receive(maxBytes: 10, .blocking) { got.append(String(decoding: try! $0.get()!.bytes, as: UTF8.self)) }
        a.putBack(chunk)
        #expect(got.values == ["x"])
    }
}

@Suite struct ReadinessTests {
    @Test func readableAndWatchFiresOnArrival() throws {
        let group = try Group(name: "g")
        let member = try group.join("m")
        let reader = member.makeReader()
        let fired = Box<Int>()
        let watch = Watch(id: 1) { fired.append(1) }
        #expect(group.poll(reader: reader, writer: .member(member), watch: watch) == Readiness(readable: false, writable: true))
        try group.trySend(message("x"))
        #expect(fired.values == [1])
        #expect(group.poll(reader: reader, writer: .member(member)).readable)
        try group.trySend(message("y"))
        #expect(fired.values == [1])  // one-shot
    }

    @Test func writableFollowsRoomOfBlockingRecipients() throws {
        let group = try Group(name: "g")
        let slow = try group.join("slow", settings: MemberSettings(capacity: 1))
        _ = try group.join("lossy", settings: MemberSettings(capacity: 1, dropWhenFull: true))
        try group.trySend(message("x"))
        let fired = Box<Int>()
        #expect(!group.poll(reader: nil, writer: .anonymous, watch: Watch(id: 7) { fired.append(7) }).writable)
        // The full member itself may still send (it is not its own recipient).
        #expect(group.poll(reader: nil, writer: .member(slow)).writable)
        _ = try slow.makeReader().text()
        #expect(fired.values == [7])
        #expect(group.poll(reader: nil, writer: .anonymous).writable)
    }

    @Test func membersOnlyGroupIsWritableForAnonymousSendersBecauseTheyFailAtOnce() throws {
        let group = try Group(name: "g", settings: GroupSettings(sendPolicy: .members))
        let full = try group.join("full", settings: MemberSettings(capacity: 1))
        let other = try group.join("other")
        try other.trySend(message("x"))
        #expect(group.poll(reader: nil, writer: .member(other)).writable == false)
        #expect(group.poll(reader: nil, writer: .anonymous).writable)
        _ = full
    }

    @Test func memberNamesAreExactBytes() throws {
        let group = try Group(name: "g")
        _ = try group.join("\u{C5}")
        _ = try group.join("A\u{30A}")
        #expect(group.members.count == 2)
        try group.configureMember(named: "A\u{30A}") { $0.loopback = true }
        #expect(group.member(named: "\u{C5}")!.settings.loopback == false)
    }

    @Test func leavingMakesReadableAndWatchCanBeCancelled() throws {
        let group = try Group(name: "g")
        let member = try group.join("m")
        let reader = member.makeReader()
        let fired = Box<Int>()
        _ = group.poll(reader: reader, writer: nil, watch: Watch(id: 1) { fired.append(1) })
        _ = group.poll(reader: reader, writer: nil, watch: Watch(id: 2) { fired.append(2) })
        group.cancelWatch(id: 2, reader: reader)
        member.leave()
        #expect(fired.values == [1])
        #expect(group.poll(reader: reader, writer: nil) == Readiness(readable: true, writable: false))
    }
}

@Suite struct AsyncTests {
    @Test func sendAndReceiveSuspend() async throws {
        let group = try Group(name: "g")
        let slow = try group.join("slow", settings: MemberSettings(capacity: 1))
        let reader = slow.makeReader()
        async let received = reader.receive(maxBytes: 100)
        try await Task.sleep(for: .milliseconds(20))
        _ = try await group.send(message("a"))
        #expect(try await received?.bytes == Array("a".utf8))
        try group.trySend(message("b"))
        async let blocked = group.send(message("c"))
        try await Task.sleep(for: .milliseconds(20))
        #expect(try reader.text() == "b")
        #expect(try await blocked.recipients == 1)
    }

    @Test func taskCancellationCancelsAParkedSend() async throws {
        let group = try Group(name: "g")
        let slow = try group.join("slow", settings: MemberSettings(capacity: 1))
        try group.trySend(message("a"))
        let task = Task { try await group.send(message("never")) }
        try await Task.sleep(for: .milliseconds(20))
        task.cancel()
        await #expect(throws: DeliveryError.cancelled) { try await task.value }
        let reader = slow.makeReader()
        #expect(try reader.text() == "a")
        #expect(expectError(.wouldBlock) { _ = try reader.tryReceive(maxBytes: 10) })
    }
}
