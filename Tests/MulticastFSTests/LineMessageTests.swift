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
        #expect(kernel.fsync(send).outcome == .synced)
        #expect(receive(kernel, reader) == ["no newline"])
        #expect(kernel.fsync(send).outcome == .synced)  // nothing waits now
        _ = kernel.write(send, "at release")
        kernel.fs.release(handle: send)
        #expect(receive(kernel, reader) == ["at release"])
    }

    /// fsync answers once the tail is in: behind a full member it waits, as
    /// a blocking write does, and counts as a blocked writer meanwhile.
    @Test func fsyncWaitsUntilTheTailIsSent() throws {
        let (kernel, reader, send) = try lineGroup(capacity: 1)
        #expect(kernel.write(send, "a\ntail").outcome == .written(6))
        let sync = kernel.fsync(send)
        #expect(sync.outcome == nil && sync.waited)
        #expect(try kernel.readAll("/g/status").contains("blocked_writers=1"))
        #expect(kernel.read(reader).text == "a\n")
        #expect(sync.outcome == .synced)
        #expect(receive(kernel, reader) == ["tail"])
        #expect(try kernel.readAll("/g/status").contains("blocked_writers=0"))
    }

    /// Interrupted, fsync fails with EINTR and sends nothing; the tail still
    /// waits, for the next fsync, write or close.
    @Test func anInterruptedFsyncSendsNothingAndTheTailWaits() throws {
        let (kernel, reader, send) = try lineGroup(capacity: 1)
        _ = kernel.write(send, "a\ntail")
        let sync = kernel.fsync(send)
        sync.interrupt()
        #expect(sync.outcome == .error(EINTR))
        #expect(try kernel.readAll("/g/status").contains("blocked_writers=0"))
        #expect(receive(kernel, reader) == ["a\n"])
        #expect(receive(kernel, reader).isEmpty)
        #expect(kernel.write(send, "s\n").outcome == .written(2))
        #expect(receive(kernel, reader) == ["tails\n"])
    }

    /// fsync fails as a write of the tail would: here EMSGSIZE, once
    /// max_message fell below it; the tail still waits.
    @Test func fsyncFailsAsAWriteOfTheTailWould() throws {
        let (kernel, reader, send) = try lineGroup()
        let ctl = try kernel.open("/g/ctl", O_WRONLY)
        _ = kernel.write(send, "abcdef")
        _ = kernel.write(ctl, "set max_message=5")
        #expect(kernel.fsync(send).outcome == .error(EMSGSIZE))
        #expect(receive(kernel, reader).isEmpty)
        _ = kernel.write(ctl, "set max_message=6")
        #expect(kernel.fsync(send).outcome == .synced)
        #expect(receive(kernel, reader) == ["abcdef"])
    }

    /// The last close never waits: its tail goes out once there is room.
    @Test func releaseDoesNotWaitForTheTail() throws {
        let (kernel, reader, send) = try lineGroup(capacity: 1)
        _ = kernel.write(send, "a\ntail")
        kernel.fs.release(handle: send)
        #expect(try kernel.readAll("/g/status").contains("blocked_writers=1"))
        #expect(receive(kernel, reader) == ["a\n", "tail"])
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

    private struct Written: Equatable {
        var payload: String
        var pid: Int
        var uid: Int
        var gid: Int
    }

    /// Every frame of one framed read, with its writer.
    private func frames(_ kernel: KernelDriver, _ framed: UInt64) -> [Written] {
        guard case .data(let bytes) = kernel.read(framed, nonBlocking: true).outcome else { return [] }
        func u32(_ at: Int) -> Int { bytes[at..<at + 4].reversed().reduce(0) { $0 << 8 | Int($1) } }
        var got: [Written] = [], offset = 0
        while offset < bytes.count {
            let size = u32(offset), header = u32(offset + 4) & 0xffff
            let payload = String(decoding: bytes[(offset + header)..<(offset + header + size)], as: UTF8.self)
            got.append(Written(payload: payload, pid: u32(offset + 24), uid: u32(offset + 28), gid: u32(offset + 32)))
            offset += (header + size + 7) & ~7
        }
        return got
    }

    /// docs/contract.md, "Line messages": a message carries the credentials
    /// of the write that gave its last bytes; fsync and the last close send
    /// a tail as its writer's, not the caller's (RELEASE has none).
    @Test func aLineIsTheWriteOfItsLastBytes() throws {
        var (kernel, _, send) = try lineGroup()
        let framed = try kernel.open("/g/frames/r", O_RDONLY)
        let alice = Credentials(pid: 11, uid: 1001, gid: 2001), bob = Credentials(pid: 22, uid: 1002, gid: 2002)
        func write(_ text: String, as writer: Credentials) {
            kernel.writer = writer
            #expect(kernel.write(send, text).outcome == .written(text.utf8.count))
        }
        write("x", as: alice)
        write("y\n", as: bob)
        write("tail", as: alice)
        write("", as: bob)  // adds nothing, so is not its writer either
        #expect(kernel.fsync(send).outcome == .synced)
        write("p", as: alice)
        write("q", as: bob)
        kernel.fs.release(handle: send)
        #expect(frames(kernel, framed) == [
            Written(payload: "xy\n", pid: 22, uid: 1002, gid: 2002),
            Written(payload: "tail", pid: 11, uid: 1001, gid: 2001),
            Written(payload: "pq", pid: 22, uid: 1002, gid: 2002),
        ])
    }

    @Test func cuttingIsByNewlineOnly() {
        let bytes = Array("x\n\ny".utf8)
        let cut = bytes.withUnsafeBytes { LineCut(carried: Array("w".utf8), $0) }
        #expect(cut.lines.map { String(decoding: cut.text[$0], as: UTF8.self) } == ["wx\n", "\n"])
        #expect(String(decoding: cut.text[cut.tail], as: UTF8.self) == "y")
        #expect(cut.written(byLines: 1) == 2 && cut.written(byLines: 2) == 3)
    }
}
