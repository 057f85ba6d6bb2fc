import DeliveryCore
import FileSystemTypes
import Glibc
import SystemPackage
import Testing

@testable import MulticastFS

/// Line messages (docs/contract.md, "Line messages") through the in-memory
/// driver: cutting, the waiting tail, sizes, short counts, interrupts.
@Suite struct LineMessageTests {
    private func lineGroup(capacity: Int = 256) throws -> (KernelDriver, reader: UInt64, send: UInt64) {
        let kernel = try KernelDriver(defaults: GroupSettings(capacity: capacity))
        try kernel.mkdir("/g")
        let reader = try kernel.create("/g/r")
        #expect(kernel.write(try kernel.open("/g/ctl", O_WRONLY), "set message=line").outcome == .written(16))
        return (kernel, reader, try kernel.open("/g/send", O_WRONLY))
    }

    private func receive(_ kernel: KernelDriver, _ handle: UInt64) -> [String] {
        var got: [String] = []
        while case .data(let bytes) = kernel.read(handle, nonBlocking: true).outcome, !bytes.isEmpty {
            got.append(String(decoding: bytes, as: UTF8.self))
        }
        return got
    }

    @Test func everyLineIsAMessageAndTheTailWaits() throws {
        let (kernel, reader, send) = try lineGroup()
        #expect(kernel.write(send, "one\ntwo\nthr").outcome == .written(11))
        #expect(receive(kernel, reader) == ["one\n", "two\n"])
        #expect(kernel.write(send, "ee\n").outcome == .written(3))
        #expect(receive(kernel, reader) == ["three\n"])
        #expect(try kernel.readAll("/g/status").contains("message=line"))
    }

    @Test func closeAndFsyncSendTheWaitingTail() throws {
        let (kernel, reader, send) = try lineGroup()
        _ = kernel.write(send, "no newline")
        #expect(receive(kernel, reader).isEmpty)
        kernel.fs.flush(handle: send)
        #expect(receive(kernel, reader) == ["no newline"])
        kernel.fs.flush(handle: send)  // nothing waits now
        _ = kernel.write(send, "at release")
        kernel.fs.release(handle: send)
        #expect(receive(kernel, reader) == ["at release"])
    }

    @Test func aLineLongerThanMaxMessageFailsTheWholeWrite() throws {
        let (kernel, reader, send) = try lineGroup()
        _ = kernel.write(try kernel.open("/g/ctl", O_WRONLY), "set max_message=5")
        _ = kernel.write(send, "ab")
        #expect(kernel.write(send, "c\ntoolong\n").outcome == .error(EMSGSIZE))
        #expect(kernel.write(send, "cdef").outcome == .error(EMSGSIZE))  // the tail would pass 5
        #expect(kernel.write(send, "c\n").outcome == .written(2))  // what waited stayed
        #expect(receive(kernel, reader) == ["abc\n"])
    }

    @Test func aWriteWaitsForRoomLineByLine() throws {
        let (kernel, reader, send) = try lineGroup(capacity: 1)
        let write = kernel.write(send, "a\nb\nc\n")
        #expect(write.outcome == nil && write.waited)
        // Each read makes room for the next line, sent from the reader's thread.
        #expect(kernel.read(reader).text == "a\n")
        #expect(write.outcome == nil)
        #expect(receive(kernel, reader) == ["b\n", "c\n"])
        #expect(write.outcome == .written(6))
    }

    @Test func nonBlockingGivesTheLinesThatFitOrEAGAIN() throws {
        let (kernel, reader, send) = try lineGroup(capacity: 2)
        #expect(kernel.write(send, "a\nb\nc\nd", nonBlocking: true).outcome == .written(4))
        #expect(kernel.write(send, "e\n", nonBlocking: true).outcome == .error(EAGAIN))
        #expect(receive(kernel, reader) == ["a\n", "b\n"])
        // The rest of the short write was not kept: nothing of "c\nd" waits.
        #expect(kernel.write(send, "f\n", nonBlocking: true).outcome == .written(2))
        #expect(receive(kernel, reader) == ["f\n"])
    }

    @Test func anInterruptedWriteAnswersWhatItDelivered() throws {
        let (kernel, reader, send) = try lineGroup(capacity: 1)
        let first = kernel.write(send, "a\nb\n")
        first.interrupt()
        #expect(first.outcome == .written(2))
        #expect(receive(kernel, reader) == ["a\n"])
        // Full again, nothing of this write can go: EINTR, nothing sent.
        _ = kernel.write(send, "x\n")
        let second = kernel.write(send, "y\n")
        second.interrupt()
        #expect(second.outcome == .error(EINTR))
        #expect(receive(kernel, reader) == ["x\n"])
        #expect(try kernel.readAll("/g/status").contains("blocked_writers=0"))
    }

    @Test func theFramedViewIsNotCutIntoLines() throws {
        let (kernel, reader, _) = try lineGroup()
        let framed = try kernel.open("/g/frames/send", O_WRONLY)
        let record: [UInt8] = [4, 0, 0, 0] + Array("a\nb\n".utf8)
        #expect(kernel.write(framed, record).outcome == .written(8))
        #expect(receive(kernel, reader) == ["a\nb\n"])
    }

    @Test func cuttingIsByNewlineOnly() {
        let bytes = Array("x\n\ny".utf8)
        let cut = bytes.withUnsafeBytes { LineCut(carried: Array("w".utf8), $0) }
        #expect(cut.lines.map { String(decoding: cut.text[$0], as: UTF8.self) } == ["wx\n", "\n"])
        #expect(String(decoding: cut.text[cut.tail], as: UTF8.self) == "y")
        #expect(cut.written(byLines: 1) == 2 && cut.written(byLines: 2) == 3)
    }
}
