import DeliveryCore
import Testing

// A batch send delivers the longest prefix every blocking recipient can take,
// at least one message, in one lock hold; a batch that must wait waits in
// line with single sends.

private func batch(_ texts: String...) -> [Message] { texts.map(message) }

private func drain(_ reader: Reader) throws -> [String] {
    var got: [String] = []
    // Until it would block (or the end of the stream).
    while let chunk = try? reader.tryReceive(maxBytes: 1 << 20) {
        got.append(String(decoding: chunk.bytes, as: UTF8.self))
    }
    return got
}

private func sequences(_ reader: Reader) -> [UInt64] {
    var got: [UInt64] = []
    while let chunk = try? reader.tryReceive(maxBytes: 1 << 20) { got.append(chunk.message.sequence) }
    return got
}

@Suite struct BatchSendTests {
    @Test func aBatchThatFitsIsDeliveredWholeWithConsecutiveSequences() throws {
        let group = try Group(name: "g")
        let a = try group.join("a").makeReader(), b = try group.join("b").makeReader()
        try group.trySend(message("before"))
        let receipt = try group.trySend(batch: batch("1", "2", "3", "4", "5"))
        #expect(receipt.delivered == 5 && receipt.firstSequence == 2)
        #expect(receipt.recipients == 10 && receipt.dropped == 0)
        #expect(try drain(a) == ["before", "1", "2", "3", "4", "5"])
        #expect(sequences(b) == [1, 2, 3, 4, 5, 6])
        #expect(group.snapshot().sent == 6)
    }

    @Test func oneMessageTooLargeRefusesTheWholeBatch() throws {
        let group = try Group(name: "g", settings: GroupSettings(maxMessage: 4))
        let reader = try group.join("m").makeReader()
        #expect(throws: DeliveryError.messageTooLarge(size: 7, limit: 4)) {
            try group.trySend(batch: batch("a", "b", "toolong", "c"))
        }
        let result = Box<Result<BatchReceipt, DeliveryError>>()
        group.send(batch: batch("a", "toolong"), .blocking) { result.append($0) }
        #expect(throws: DeliveryError.messageTooLarge(size: 7, limit: 4)) { try result.values.first?.get() }
        #expect(try drain(reader).isEmpty && group.snapshot().sent == 0)
    }

    @Test func theRefusalsOfSingleSendsApply() throws {
        let group = try Group(name: "g", settings: GroupSettings(sendPolicy: .members))
        let alice = try group.join("alice")
        #expect(throws: DeliveryError.sendNotPermitted) { try group.trySend(batch: batch("x")) }
        #expect(try alice.trySend(batch: batch("x")).delivered == 1)
        alice.leave()
        #expect(throws: DeliveryError.senderLeft) { try group.trySend(batch: batch("x"), as: alice) }
        try group.close()
        #expect(throws: DeliveryError.groupClosed) { try group.trySend(batch: batch("x"), as: alice) }

        let other = try Group(name: "h")
        other.shutDown()
        #expect(throws: DeliveryError.shutDown) { try other.trySend(batch: batch("x")) }
    }

    @Test func anEmptyBatchDeliversNothingAndNeverWaits() throws {
        let group = try Group(name: "g")
        let slow = try group.join("slow", settings: MemberSettings(capacity: 1))
        try group.trySend(message("0"))
        #expect(try group.trySend(batch: []).delivered == 0)
        let result = Box<Result<BatchReceipt, DeliveryError>>()
        #expect(group.send(batch: [], .blocking) { result.append($0) } == nil)
        #expect(try result.values.first?.get().delivered == 0)
        #expect(group.snapshot().sent == 1)
        _ = slow
    }

    @Test func theLongestPrefixThatFitsByCountAndByBytes() throws {
        let group = try Group(name: "g")
        let byCount = try group.join("count", settings: MemberSettings(capacity: 3)).makeReader()
        try group.trySend(message("0"))
        let receipt = try group.trySend(batch: batch("1", "2", "3", "4"))
        #expect(receipt.delivered == 2 && receipt.firstSequence == 2)
        #expect(try drain(byCount) == ["0", "1", "2"])

        // A queue that is not full takes one more message whole.
        let bytes = try Group(name: "b")
        let byBytes = try bytes.join("bytes", settings: MemberSettings(capacity: 100, queueBytes: 5)).makeReader()
        #expect(try bytes.trySend(batch: batch("aa", "bb", "cc", "dd")).delivered == 3)
        #expect(try drain(byBytes) == ["aa", "bb", "cc"])
    }

    @Test func notEvenTheFirstFitsWouldBlockAndNothingIsDelivered() throws {
        let group = try Group(name: "g")
        let slow = try group.join("slow", settings: MemberSettings(capacity: 1)).makeReader()
        let fast = try group.join("fast").makeReader()
        try group.trySend(message("0"))
        #expect(throws: DeliveryError.wouldBlock) { try group.trySend(batch: batch("1", "2")) }
        let result = Box<Result<BatchReceipt, DeliveryError>>()
        #expect(group.send(batch: batch("1"), .nonBlocking) { result.append($0) } == nil)
        #expect(throws: DeliveryError.wouldBlock) { try result.values.first?.get() }
        #expect(try drain(fast) == ["0"] && group.snapshot().sent == 1)
        _ = slow
    }

    @Test func dropWhenFullMembersAndTheSenderDoNotShortenTheBatch() throws {
        let group = try Group(name: "g")
        let lossy = try group.join("lossy", settings: MemberSettings(capacity: 1, dropWhenFull: true)).makeReader()
        let steady = try group.join("steady").makeReader()
        // The sender's own queue is full, but it does not receive its own sends.
        let sender = try group.join("sender", settings: MemberSettings(capacity: 1))
        try group.trySend(message("fill"))
        let receipt = try sender.trySend(batch: batch("1", "2", "3"))
        #expect(receipt.delivered == 3 && receipt.recipients == 3 && receipt.dropped == 3)
        #expect(try drain(steady) == ["fill", "1", "2", "3"])
        let first = try #require(try lossy.tryReceive(maxBytes: 10))
        #expect(first.bytes == Array("fill".utf8))
        try sender.trySend(message("4"))
        #expect(try #require(try lossy.tryReceive(maxBytes: 10)).droppedBefore == 3)
    }

    @Test func aBatchHandsItsFirstMessageToAParkedReceive() throws {
        let group = try Group(name: "g")
        let reader = try group.join("m").makeReader()
        let got = Box<String>()
        reader.receive(maxBytes: 10, .blocking) { got.append(String(decoding: try! $0.get()!.bytes, as: UTF8.self)) }
        #expect(try group.trySend(batch: batch("1", "2", "3")).delivered == 3)
        #expect(got.values == ["1"])
        #expect(try drain(reader) == ["2", "3"])
    }

    @Test func aBatchIsStampedOnceWithItsSender() throws {
        let group = try Group(name: "g")
        let alice = try group.join("alice")
        let reader = try group.join("r").makeReader()
        let messages = (0..<3).map { Message([UInt8($0)], credentials: Credentials(pid: UInt32($0), uid: 7, gid: 8)) }
        try alice.trySend(batch: messages)
        let got = try reader.tryReceiveBatch(maxMessages: 8, maxBytes: 100).map(\.message)
        #expect(got.map(\.senderName) == ["alice", "alice", "alice"])
        #expect(got.map(\.credentials.pid) == [0, 1, 2])
        #expect(Set(got.map(\.time)).count == 1 && got[0].time > 0)
    }

    @Test func aParkedBatchWaitsInLineAndDeliversWhatFitsAtTheHead() throws {
        let group = try Group(name: "g")
        let slow = try group.join("slow", settings: MemberSettings(capacity: 2)).makeReader()
        try group.trySend(batch: batch("0", "0"))
        let done = Box<String>()
        group.send(message("A"), .blocking) { done.append("A:\(try! $0.get().sequence)") }
        group.send(batch: batch("b1", "b2", "b3"), .blocking) { result in
            let receipt = try! result.get()
            done.append("B:\(receipt.delivered) from \(receipt.firstSequence)")
        }
        group.send(message("C"), .blocking) { done.append("C:\(try! $0.get().sequence)") }
        #expect(group.snapshot().blockedWriters == 3)
        // No overtaking: a batch that would fit still waits behind them.
        #expect(throws: DeliveryError.wouldBlock) { try group.trySend(batch: batch("x")) }

        // Room for two: A, then the batch's first; its second does not fit.
        _ = try slow.tryReceiveBatch(maxMessages: 2, maxBytes: 100)
        #expect(done.values == ["A:3", "B:1 from 4"])
        #expect(try slow.text() == "A")
        #expect(done.values == ["A:3", "B:1 from 4", "C:5"])
        #expect(try drain(slow) == ["b1", "C"])
    }

    @Test func aParkedBatchAtTheHeadTakesEveryMessageThatFitsThen() throws {
        let group = try Group(name: "g")
        let slow = try group.join("slow", settings: MemberSettings(capacity: 4)).makeReader()
        try group.trySend(batch: batch("0", "0", "0", "0"))
        let done = Box<BatchReceipt>()
        group.send(batch: batch("1", "2", "3", "4", "5"), .blocking) { done.append(try! $0.get()) }
        _ = try slow.tryReceiveBatch(maxMessages: 3, maxBytes: 100)
        #expect(done.values.map(\.delivered) == [3])
        #expect(try drain(slow) == ["0", "1", "2", "3"])
    }

    @Test func aCancelledParkedBatchDeliveredNothing() throws {
        let group = try Group(name: "g")
        let slow = try group.join("slow", settings: MemberSettings(capacity: 1)).makeReader()
        let other = try group.join("other").makeReader()
        try group.trySend(message("0"))
        let done = Box<Int>()
        let waiting = try #require(group.send(batch: batch("1", "2"), .blocking) { _ in done.append(1) })
        let next = Box<UInt64>()
        group.send(message("next"), .blocking) { next.append(try! $0.get().sequence) }
        #expect(waiting.cancel())
        #expect(try drain(slow) == ["0", "next"])
        #expect(try drain(other) == ["0", "next"] && done.values.isEmpty && next.values == [2])
    }

    @Test func aParkedBatchFailsWhenItsSenderLeavesOrTheGroupShutsDown() throws {
        let group = try Group(name: "g")
        let slow = try group.join("slow", settings: MemberSettings(capacity: 1))
        let alice = try group.join("alice")
        try group.trySend(message("0"))
        let errors = Box<DeliveryError>()
        for sender in [alice, nil] {
            group.send(batch: batch("1", "2"), as: sender, .blocking) { result in
                if case .failure(let error) = result { errors.append(error) }
            }
        }
        alice.leave()
        #expect(errors.values == [.senderLeft])
        group.shutDown()
        #expect(errors.values == [.senderLeft, .shutDown])
        _ = slow
    }

    @Test func asyncBatchSendSuspendsAndCancels() async throws {
        let group = try Group(name: "g")
        let slow = try group.join("slow", settings: MemberSettings(capacity: 1)).makeReader()
        try group.trySend(message("0"))
        let sending = Task { try await group.send(batch: batch("1", "2")) }
        while group.snapshot().blockedWriters == 0 { await Task.yield() }
        _ = try slow.tryReceive(maxBytes: 10)
        #expect(try await sending.value.delivered == 1)

        let cancelled = Task { try await group.send(batch: batch("3")) }
        while group.snapshot().blockedWriters == 0 { await Task.yield() }
        cancelled.cancel()
        await #expect(throws: DeliveryError.cancelled) { try await cancelled.value }
        #expect(try drain(slow) == ["1"])
    }
}
