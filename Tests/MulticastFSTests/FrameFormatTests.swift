import DeliveryCore
import SystemPackage
import Testing

@testable import MulticastFS

@Suite struct FrameFormatTests {
    private func batch(_ records: [[UInt8]]) -> [UInt8] {
        records.flatMap { record in
            withUnsafeBytes(of: UInt32(record.count).littleEndian, Array.init) + record
        }
    }

    private func parse(_ bytes: [UInt8], maxMessage: Int = 1_044_480) throws -> [[UInt8]] {
        let ranges = try bytes.withUnsafeBytes { raw in try FrameFormat.records(in: raw, maxMessage: maxMessage) }
        return ranges.map { Array(bytes[$0]) }
    }

    @Test func aBatchIsRecordsBackToBack() throws {
        let records: [[UInt8]] = [[1], Array("hello".utf8), [UInt8](repeating: 7, count: 300)]
        #expect(try parse(batch(records)) == records)
    }

    @Test func aBatchThatDoesNotParseIsEINVAL() {
        let good = batch([[1, 2, 3]])
        for bad in [
            [],                                  // nothing
            [3, 0, 0],                           // a length cut short
            [4, 0, 0, 0, 1, 2, 3],               // runs past the end
            [0, 0, 0, 0],                        // zero length
            good + [9],                          // bytes left over
            good + [0, 0, 0, 0],                 // a zero-length record after a good one
        ] as [[UInt8]] {
            #expect(throws: Errno.invalidArgument, "\(bad)") { _ = try parse(bad) }
        }
    }

    @Test func aRecordAboveMaxMessageIsEMSGSIZEOnceTheBatchParses() throws {
        #expect(throws: Errno.messageTooLong) { _ = try parse(batch([[1], [1, 2, 3, 4, 5]]), maxMessage: 4) }
        // Not a batch at all: EINVAL, even though its first "length" is huge.
        #expect(throws: Errno.invalidArgument) { _ = try parse([0xff, 0xff, 0xff, 0x7f, 1]) }
        #expect(try parse(batch([[1, 2, 3, 4]]), maxMessage: 4) == [[1, 2, 3, 4]])
    }

    @Test func framesAre8AlignedWithTheirPadding() {
        #expect(FrameFormat.frameSize(payload: 1, nameSize: 0) == 48)
        #expect(FrameFormat.frameSize(payload: 8, nameSize: 0) == 48)
        #expect(FrameFormat.frameSize(payload: 9, nameSize: 0) == 56)
        #expect(FrameFormat.frameSize(payload: 2, nameSize: 2) == 48)
        #expect(FrameFormat.frameSize(payload: 4, nameSize: 5) == 56)
    }

    /// The exact bytes of one frame, field by field, as the contract lays them out.
    @Test func aFrameHasTheContractsLayout() throws {
        let group = try Group(name: "g")
        let sender = try group.join("ab"), receiver = try group.join("r")
        let reader = receiver.makeReader()
        try sender.trySend(Message(Array("hi!".utf8), credentials: Credentials(pid: 7, uid: 1000, gid: 1001)))
        let chunk = try #require(try reader.tryReceive(maxBytes: 100))
        var buffer = [UInt8](repeating: 0xAA, count: 64)
        let end = buffer.withUnsafeMutableBytes { FrameFormat.encode(chunk, into: $0, at: 8) }
        #expect(end == 8 + 48)
        let frame = Array(buffer[8..<end])
        func le<T: FixedWidthInteger>(_ value: T) -> [UInt8] { withUnsafeBytes(of: value.littleEndian, Array.init) }
        let expected: [UInt8] = le(UInt32(3)) + le(UInt16(42)) + [2, 0] + le(chunk.message.sequence)
            + le(chunk.message.time) + le(UInt32(7)) + le(UInt32(1000)) + le(UInt32(1001)) + le(UInt32(0))
            + Array("ab".utf8) + Array("hi!".utf8) + [0, 0, 0]
        #expect(frame == expected)
        #expect(chunk.message.sequence == 1 && chunk.message.time > 0)
        #expect(buffer[0..<8].allSatisfy { $0 == 0xAA } && buffer[end...].allSatisfy { $0 == 0xAA })
    }
}
