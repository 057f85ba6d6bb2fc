import DeliveryCore
import Testing

/// A batch receive with framing counts each message as its frame: payload,
/// header and sender name, aligned.
@Suite struct ReceiveFramingTests {
    let framing = ReceiveFraming(headerBytes: 40, carriesSenderName: true, alignment: 8)

    @Test func framedSizesRoundUpAndCountTheSendersName() throws {
        let group = try Group(name: "g")
        let sender = try group.join("abc"), reader = try group.join("r").makeReader()
        try group.trySend(message("12345678"))          // anonymous: 40 + 8 = 48
        try sender.trySend(message("x"))                // 40 + 3 + 1 = 44 -> 48
        let received = try reader.tryReceiveBatch(maxMessages: 10, maxBytes: 1000)
        #expect(received.map { framing.size(of: $0.message) } == [48, 48])
        #expect(ReceiveFraming.none.size(of: received[0].message) == 8)
    }

    @Test func aFramedBatchStopsWhereTheBufferIsFull() throws {
        let group = try Group(name: "g")
        let reader = try group.join("r").makeReader()
        for index in 0..<10 { try group.trySend(message("m\(index)")) }  // 48 bytes each, framed
        let first = try reader.tryReceiveBatch(maxMessages: 100, maxBytes: 3 * 48 + 47, framing: framing)
        #expect(first.map { String(decoding: $0.bytes, as: UTF8.self) } == ["m0", "m1", "m2"])
        // Unframed, the same budget takes every message.
        #expect(try reader.tryReceiveBatch(maxMessages: 100, maxBytes: 3 * 48 + 47).count == 7)
    }

    /// A frame is never split: one larger than the buffer is refused, and
    /// stays first in the queue for the next receive.
    @Test func aFrameLargerThanTheBufferIsRefusedAndStays() throws {
        let group = try Group(name: "g")
        let reader = try group.join("r").makeReader()
        try group.trySend(message(String(repeating: "x", count: 100)))   // frame: 144 bytes
        try group.trySend(message("small"))
        #expect(throws: DeliveryError.doesNotFit(size: 144, limit: 64)) {
            _ = try reader.tryReceiveBatch(maxMessages: 10, maxBytes: 64, framing: framing)
        }
        #expect(try reader.tryReceiveBatch(maxMessages: 10, maxBytes: 200, framing: framing).map(\.count) == [100, 5])
    }

    /// A parked framed receive too small for the message that arrives fails,
    /// and the message goes to the next receive that can take it, in order.
    @Test func aParkedFramedReceiveTooSmallFailsAndTheMessageGoesOn() throws {
        let group = try Group(name: "g")
        let member = try group.join("r")
        let small = member.makeReader(), record = member.makeReader()
        let smallResult = Box<Result<Received, DeliveryError>>(), recordResult = Box<String>()
        small.receiveBatch(maxMessages: 10, maxBytes: 64, framing: framing, .blocking) { smallResult.append($0) }
        record.receive(maxBytes: 1000, .blocking) { recordResult.append(String(decoding: try! $0.get()!.bytes, as: UTF8.self)) }
        try group.trySend(batch: [message(String(repeating: "A", count: 100)), message("B")])
        guard case .failure(.doesNotFit(144, 64))? = smallResult.values.first else {
            Issue.record("the small framed receive got \(smallResult.values)")
            return
        }
        #expect(recordResult.values == [String(repeating: "A", count: 100)])
        #expect(try record.tryReceive(maxBytes: 10).map { String(decoding: $0.bytes, as: UTF8.self) } == "B")
    }

    /// Only a first frame is refused: one that does not fit after others
    /// just stays, and is refused when it comes first.
    @Test func aFrameThatDoesNotFitAfterOthersStaysWithoutARefusal() throws {
        let group = try Group(name: "g")
        let reader = try group.join("r").makeReader()
        try group.trySend(batch: [message("s1"), message(String(repeating: "x", count: 200)), message("s2")])  // 48, 240, 48
        #expect(try reader.tryReceiveBatch(maxMessages: 10, maxBytes: 128, framing: framing).map(\.count) == [2])
        #expect(throws: DeliveryError.doesNotFit(size: 240, limit: 128)) {
            _ = try reader.tryReceiveBatch(maxMessages: 10, maxBytes: 128, framing: framing)
        }
        #expect(try reader.tryReceiveBatch(maxMessages: 10, maxBytes: 240 + 48, framing: framing).map(\.count) == [200, 2])
    }

    /// Two framed receives parked on one member, the smaller first: it fails,
    /// the larger gets the message, and the next follows it.
    @Test func aSmallParkedFramedReceiveLeavesTheMessageToALargerOne() throws {
        let group = try Group(name: "g")
        let member = try group.join("r")
        let small = member.makeReader(), big = member.makeReader()
        let smallResult = Box<Result<Received, DeliveryError>>(), bigResult = Box<[Int]>()
        small.receiveBatch(maxMessages: 10, maxBytes: 64, framing: framing, .blocking) { smallResult.append($0) }
        big.receiveBatch(maxMessages: 10, maxBytes: 1 << 20, framing: framing, .blocking) {
            bigResult.append(try! $0.get().map(\.count))
        }
        try group.trySend(batch: [message(String(repeating: "A", count: 100)), message("B")])
        guard case .failure(.doesNotFit(144, 64))? = smallResult.values.first else {
            Issue.record("the small framed receive got \(smallResult.values)")
            return
        }
        #expect(bigResult.values == [[100]])
        #expect(try small.tryReceiveBatch(maxMessages: 10, maxBytes: 64, framing: framing).map(\.count) == [1])
    }
}
