import DeliveryCore
import Glibc
import Testing

// Every message carries, stored with its payload, the metadata of the framed
// view's frame header: sequence, acceptance time, the writer's credentials,
// the sending member's name; and each receive says how many messages this
// member dropped before it.

private func now() -> UInt64 {
    var time = timespec()
    clock_gettime(CLOCK_REALTIME, &time)
    return UInt64(time.tv_sec) * 1_000_000_000 + UInt64(time.tv_nsec)
}

private func text(_ chunk: MessageChunk) -> String { String(decoding: chunk.bytes, as: UTF8.self) }

@Suite struct MetadataTests {
    @Test func aMessageCarriesItsStampAndCredentials() throws {
        let group = try Group(name: "g")
        let alice = try group.join("alice-with-a-name-longer-than-fifteen-bytes")
        let reader = try group.join("r").makeReader()
        let written = Message(Array("hi".utf8), credentials: Credentials(pid: 4242, uid: 1000, gid: 100))
        #expect(written.sequence == 0 && written.time == 0 && written.senderName == nil)

        let before = now()
        let receipt = try group.trySend(written, as: alice)
        let after = now()
        let chunk = try #require(try reader.tryReceive(maxBytes: 10))
        let got = chunk.message
        #expect(got.sequence == receipt.sequence)
        #expect(got.time >= before && got.time <= after)
        #expect(got.credentials == Credentials(pid: 4242, uid: 1000, gid: 100))
        #expect(got.senderName == alice.name)
        #expect(!got.isPrivate)
        #expect(chunk.droppedBefore == 0)
    }

    @Test func anonymousAndInProcessSendsHaveNoNameAndZeroCredentials() throws {
        let group = try Group(name: "g")
        let reader = try group.join("r").makeReader()
        try group.trySend(message("x"))
        let bytes = [UInt8]("y".utf8)
        _ = try bytes.withUnsafeBytes { try group.trySend(Message(copying: $0)) }
        for _ in 0..<2 {
            let got = try #require(try reader.tryReceive(maxBytes: 10)).message
            #expect(got.senderName == nil && got.credentials == Credentials())
        }
    }

    @Test func timesNeverGoBackAlongTheSequence() throws {
        let group = try Group(name: "g", settings: GroupSettings(capacity: 1000))
        let reader = try group.join("r").makeReader()
        let sender = try group.join("s")
        for i in 0..<500 {
            if i % 2 == 0 { try group.trySend(message("\(i)")) } else { try sender.trySend(message("\(i)")) }
        }
        var last: (sequence: UInt64, time: UInt64) = (0, 0)
        for _ in 0..<500 {
            let got = try #require(try reader.tryReceive(maxBytes: 10)).message
            #expect(got.sequence == last.sequence + 1 || last.sequence == 0)
            #expect(got.time >= last.time)
            last = (got.sequence, got.time)
        }
    }

    @Test func aParkedSendIsStampedWhenAccepted() throws {
        let group = try Group(name: "g")
        let sender = try group.join("s")
        let reader = try group.join("r", settings: MemberSettings(capacity: 1)).makeReader()
        try sender.trySend(message("0"))
        let receipts = Box<SendReceipt>()
        group.send(message("1"), as: sender, .blocking) { receipts.append(try! $0.get()) }
        #expect(receipts.values.isEmpty)
        usleep(2000)
        let first = try #require(try reader.tryReceive(maxBytes: 10))
        let released = now()
        let second = try #require(try reader.tryReceive(maxBytes: 10))
        #expect(second.message.sequence == receipts.values.first?.sequence)
        #expect(second.message.time >= first.message.time)
        #expect(second.message.time <= released + 1_000_000)
        #expect(second.message.senderName == "s")
    }

    /// capacity 2, drop-when-full: "0" "1" queued, "2" "3" "4" dropped, one
    /// read frees room, "5" queued after 3 drops.
    private func lossyGroup() throws -> (Group, Member) {
        let group = try Group(name: "g")
        let lossy = try group.join("lossy", settings: MemberSettings(capacity: 2, dropWhenFull: true))
        return (group, lossy)
    }

    @Test func droppedCountsComeWithTheNextMessageReceived() throws {
        let (group, lossy) = try lossyGroup()
        let reader = lossy.makeReader()
        for i in 0..<5 { try group.trySend(message("\(i)")) }
        let zero = try #require(try reader.tryReceive(maxBytes: 10))
        try group.trySend(message("5"))
        var rest = try (0..<2).map { _ in try #require(try reader.tryReceive(maxBytes: 10)) }
        try group.trySend(message("6"))
        rest.append(try #require(try reader.tryReceive(maxBytes: 10)))
        #expect(([zero] + rest).map(text) == ["0", "1", "5", "6"])
        #expect(([zero] + rest).map(\.droppedBefore) == [0, 0, 3, 0])
        #expect(group.snapshot().members[0].dropped == 3)
    }

    @Test func droppedCountsInBatchesSplitsAndHandOvers() throws {
        let (group, lossy) = try lossyGroup()
        let reader = lossy.makeReader()
        for i in 0..<4 { try group.trySend(message("m\(i)")) }  // m2, m3 dropped
        _ = try reader.tryReceive(maxBytes: 10)
        try group.trySend(message("m4"))
        let batch = try reader.tryReceiveBatch(maxMessages: 8, maxBytes: 100)
        #expect(batch.map(text) == ["m1", "m4"] && batch.map(\.droppedBefore) == [0, 2])

        // The first part of a split message carries the count; the rest none.
        for i in 5..<8 { try group.trySend(message("m\(i)")) }  // m7 dropped
        _ = try reader.tryReceiveBatch(maxMessages: 8, maxBytes: 100)
        try group.trySend(message("long"))
        let head = try #require(try reader.tryReceive(maxBytes: 2))
        let tail = try #require(try reader.tryReceive(maxBytes: 10))
        #expect([text(head), text(tail)] == ["lo", "ng"] && [head.droppedBefore, tail.droppedBefore] == [1, 0])

        // Handed straight to a parked receive.
        for i in 8..<11 { try group.trySend(message("m\(i)")) }  // m10 dropped
        _ = try reader.tryReceiveBatch(maxMessages: 8, maxBytes: 100)
        let got = Box<UInt32>()
        reader.receive(maxBytes: 10, .blocking) { got.append(try! $0.get()!.droppedBefore) }
        try group.trySend(message("m11"))
        #expect(got.values == [1])
    }

    @Test func putBackKeepsTheDroppedCount() throws {
        let (group, lossy) = try lossyGroup()
        let reader = lossy.makeReader(), other = lossy.makeReader()
        for i in 0..<3 { try group.trySend(message("\(i)")) }  // "2" dropped
        _ = try reader.tryReceiveBatch(maxMessages: 2, maxBytes: 100)
        try group.trySend(message("3"))
        try group.trySend(message("4"))
        let batch = try reader.tryReceiveBatch(maxMessages: 2, maxBytes: 100)
        #expect(batch.map(\.droppedBefore) == [1, 0])
        reader.putBack(batch)
        let again = try other.tryReceiveBatch(maxMessages: 2, maxBytes: 100)
        #expect(again.map(text) == ["3", "4"] && again.map(\.droppedBefore) == [1, 0])

        // Put back to a parked reader, the count goes with it.
        let got = Box<UInt32>()
        other.receive(maxBytes: 10, .blocking) { got.append(try! $0.get()!.droppedBefore) }
        reader.putBack(again[0])
        #expect(got.values == [1])
    }

    @Test func aMemberThatNeverDroppedReportsNothing() throws {
        let (group, lossy) = try lossyGroup()
        let steady = try group.join("steady").makeReader()
        for i in 0..<4 { try group.trySend(message("\(i)")) }
        _ = lossy
        let all = try steady.tryReceiveBatch(maxMessages: 8, maxBytes: 100)
        #expect(all.count == 4 && all.allSatisfy { $0.droppedBefore == 0 })
    }
}
