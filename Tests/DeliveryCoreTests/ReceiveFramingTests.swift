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

    @Test func aFramedBatchTakesOneMessageEvenIfItsFrameIsLarger() throws {
        let group = try Group(name: "g")
        let reader = try group.join("r").makeReader()
        try group.trySend(message(String(repeating: "x", count: 100)))
        #expect(try reader.tryReceiveBatch(maxMessages: 10, maxBytes: 64, framing: framing).count == 1)
    }
}
