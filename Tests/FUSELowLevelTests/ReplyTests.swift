import FileSystemTypes
import FUSETesting
import Glibc
import SystemPackage
import Testing

@testable import FUSELowLevel

/// Each typed reply, answered through libfuse's real reply functions, read
/// back from the wire by the fake kernel with <linux/fuse.h>'s structs.
@Suite struct ReplyTests {
    let attributes = FileAttributes(
        ino: 2, mode: FileMode(rawValue: S_IFREG | 0o644), linkCount: 1, uid: UserID(rawValue: 1000), gid: GroupID(rawValue: 1000), size: 5,
        atime: Timestamp(seconds: 1, nanoseconds: 2), mtime: Timestamp(seconds: 3), ctime: Timestamp(seconds: 4))

    @Test func eachTypedReplyPutsItsStructOnTheWire() throws {
        let fs = Holding()
        let kernel = try FakeKernel(serving: fs)
        let entry = EntryParameters(ino: 2, attributes: attributes, attributeTimeout: 1, entryTimeout: 2.25)
        let wireAttributes = WireAttributes(attributes: attributes, blocks: 1)
        let wireEntry = WireEntry(nodeID: 2, generation: 0, entryTimeout: 2.25, attributeTimeout: 1, attributes: wireAttributes)

        var (u, reply) = kernel.hand(.lookup(parent: 1, name: "a"), to: fs, ReplyEntry.self)
        #expect(reply.entry(entry) == .sent)
        #expect(kernel.reply(to: u) == .entry(wireEntry))

        let (ua, attr) = kernel.hand(.getattr(ino: 2), to: fs, ReplyAttributes.self)
        #expect(attr.attributes(attributes, timeout: 1.5) == .sent)
        #expect(kernel.reply(to: ua) == .attributes(wireAttributes, timeout: 1.5))

        let (uo, open) = kernel.hand(.open(ino: 2, flags: O_RDWR), to: fs, ReplyOpen.self)
        #expect(open.opened(.stream(fh: 9)) == .sent)
        #expect(kernel.reply(to: uo) == .opened(WireOpen(fh: 9, flags: WireOpen.directIO | WireOpen.nonseekable | WireOpen.stream)))

        let (uc, create) = kernel.hand(.create(parent: 1, name: "b", mode: FileMode(rawValue: S_IFREG | 0o600), flags: O_WRONLY), to: fs, ReplyCreate.self)
        #expect(create.created(entry: entry, open: OpenParameters(fh: 3, keepCache: true, noFlush: true)) == .sent)
        #expect(kernel.reply(to: uc) == .created(wireEntry, WireOpen(fh: 3, flags: WireOpen.keepCache | WireOpen.noFlush)))

        let (ur, read) = kernel.hand(.read(ino: 2, fh: 9, size: 10), to: fs, ReplyData.self)
        #expect(read.data([1, 2, 3][1...]) == .sent)
        #expect(kernel.reply(to: ur) == .data([2, 3]))

        let (ug, gathered) = kernel.hand(.read(ino: 2, fh: 9, size: 10), to: fs, ReplyData.self)
        [UInt8]([4, 5]).withUnsafeBytes { a in
            [UInt8]([6]).withUnsafeBytes { b in
                #expect(gathered.data(gathering: [a, b]) == .sent)
            }
        }
        #expect(kernel.reply(to: ug) == .data([4, 5, 6]))

        let (uw, write) = kernel.hand(.write(ino: 2, fh: 9, data: Array("0123456789".utf8)), to: fs, ReplyWrite.self)
        #expect(write.written(10) == .sent)
        #expect(kernel.reply(to: uw) == .written(10))

        let (uu, unlink) = kernel.hand(.unlink(parent: 1, name: "b"), to: fs, ReplyEmpty.self)
        #expect(unlink.ok() == .sent)
        #expect(kernel.reply(to: uu) == .ok)

        let (us, statfs) = kernel.hand(.statfs, to: fs, ReplyStatfs.self)
        #expect(statfs.statfs(FilesystemStatistics(blocks: 7, files: 3, filesFree: 4)) == .sent)
        #expect(kernel.reply(to: us) == .statfs(FilesystemStatistics(blocks: 7, files: 3, filesFree: 4)))

        let (up, poll) = kernel.hand(.poll(ino: 2, fh: 9, kh: 1, scheduleNotify: false), to: fs, ReplyPoll.self)
        #expect(poll.events([.readable, .writable]) == .sent)
        #expect(kernel.reply(to: up) == .poll([.readable, .writable]))

        let (ux, xattr) = kernel.hand(.getxattr(ino: 2, name: "user.x", size: 0), to: fs, ReplyXattr.self)
        #expect(xattr.size(12) == .sent)
        #expect(kernel.reply(to: ux) == .xattrSize(12))

        let (ul, lseek) = kernel.hand(.lseek(ino: 2, fh: 9, offset: 0, whence: 3 /* SEEK_DATA */), to: fs, ReplyLseek.self)
        #expect(lseek.offset(42) == .sent)
        #expect(kernel.reply(to: ul) == .offset(42))

        let (uk, link) = kernel.hand(.readlink(ino: 2), to: fs, ReplyReadlink.self)
        #expect(link.target("/x") == .sent)
        #expect(kernel.reply(to: uk) == .data(Array("/x".utf8)))

        let (ue, rmdir) = kernel.hand(.rmdir(parent: 1, name: "g"), to: fs, ReplyEmpty.self)
        #expect(rmdir.error(.directoryNotEmpty) == .sent)
        #expect(kernel.reply(to: ue) == .error(.directoryNotEmpty))

        (u, reply) = kernel.hand(.lookup(parent: 1, name: "gone"), to: fs, ReplyEntry.self)
        #expect(reply.negative(timeout: 0.5) == .sent)
        guard case .entry(let negative)? = kernel.reply(to: u) else {
            Issue.record("a negative entry is an entry")
            return
        }
        #expect(negative.nodeID == 0 && negative.entryTimeout == 0.5)
        #expect(kernel.violations.isEmpty)
    }

    @Test func timeoutsSplitIntoSecondsAndNanoseconds() throws {
        let fs = Holding()
        let kernel = try FakeKernel(serving: fs)
        for (timeout, expected) in [(0.0, 0.0), (-1, 0), (.nan, 0), (1.000_000_001, 1.000_000_001), (3, 3)] as [(Double, Double)] {
            let (u, reply) = kernel.hand(.getattr(ino: 2), to: fs, ReplyAttributes.self)
            reply.attributes(attributes, timeout: timeout)
            guard case .attributes(_, let sent)? = kernel.reply(to: u) else {
                Issue.record("no attributes for \(timeout)")
                continue
            }
            #expect(sent == expected, "timeout \(timeout)")
        }
    }

    @Test func droppedReplyAnswersEIO() throws {
        let fs = Holding()
        let kernel = try FakeKernel(serving: fs)
        let u = kernel.send(.lookup(parent: 1, name: "a"))
        do { _ = fs.take(ReplyEntry.self) }
        #expect(kernel.reply(to: u) == .error(.ioError))
    }

    @Test func answeredReplyDroppedSendsNothingMore() throws {
        let fs = Holding()
        let kernel = try FakeKernel(serving: fs)
        let u = kernel.send(.unlink(parent: 1, name: "a"))
        do { fs.take(ReplyEmpty.self).ok() }
        #expect(kernel.reply(to: u) == .ok)
        #expect(kernel.replies.count == 2)  // INIT's, and this one
        #expect(kernel.violations.isEmpty)
    }

    @Test func replyAnsweredLaterFromAnotherThread() async throws {
        let fs = Holding()
        let kernel = try FakeKernel(serving: fs)
        let (u, reply) = kernel.hand(.read(ino: 2, fh: 1, size: 4096), to: fs, ReplyData.self)
        #expect(kernel.reply(to: u) == nil)
        let result = await Task.detached { reply.data([42]) }.value
        #expect(result == .sent)
        #expect(kernel.reply(to: u) == .data([42]))
    }

    @Test func directoryFillsUntilTheKernelsBufferIsFull() throws {
        let fs = Holding()
        let kernel = try FakeKernel(serving: fs)
        // A fuse_dirent is 24 bytes + name, padded to 8: "." → 32 bytes.
        let (u, reply) = kernel.hand(.readdir(ino: 1, fh: 1, size: 80), to: fs, ReplyDirectory.self)
        #expect(reply.capacity == 80)
        #expect(reply.add(DirectoryEntry(name: ".", ino: 1, type: .directory), nextOffset: 1))
        #expect(reply.add(DirectoryEntry(name: "..", ino: 1, type: .directory), nextOffset: 2))
        #expect(!reply.add(DirectoryEntry(name: "a", ino: 2, type: .regular), nextOffset: 3))
        #expect(reply.send() == .sent)
        #expect(kernel.reply(to: u) == .directory([
            WireDirent(ino: 1, nextOffset: 1, type: UInt32(DT_DIR), name: "."),
            WireDirent(ino: 1, nextOffset: 2, type: UInt32(DT_DIR), name: ".."),
        ]))
    }

    @Test func emptyDirectoryReplyEndsTheListing() throws {
        let fs = Holding()
        let kernel = try FakeKernel(serving: fs)
        let (u, reply) = kernel.hand(.readdir(ino: 1, fh: 1, offset: 2), to: fs, ReplyDirectory.self)
        reply.send()
        #expect(kernel.reply(to: u) == .directory([]))
    }

    @Test func pollHandleNotifiesOnceWithTheKernelsHandle() throws {
        let fs = Holding()
        let kernel = try FakeKernel(serving: fs)
        let (u, reply) = kernel.hand(.poll(ino: 2, fh: 1, kh: 77, scheduleNotify: true), to: fs, ReplyPoll.self)
        reply.events([])
        #expect(kernel.reply(to: u) == .poll([]))
        guard let handle = fs.takeHandle() else {
            Issue.record("FUSE_POLL_SCHEDULE_NOTIFY should give a handle")
            return
        }
        #expect(!handle.isNotified)
        #expect(handle.notify())
        #expect(!handle.notify())
        #expect(handle.isNotified)
        #expect(kernel.notifications == [.poll(kh: 77)])
    }

    @Test func noHandleUnlessTheKernelAsks() throws {
        let fs = Holding()
        let kernel = try FakeKernel(serving: fs)
        _ = kernel.hand(.poll(ino: 2, fh: 1, kh: 77, scheduleNotify: false), to: fs, ReplyPoll.self).1.events(.readable)
        #expect(fs.takeHandle() == nil)
    }

    @Test func noReplyAfterTheSessionIsDestroyed() throws {
        let fs = Holding()
        let kernel = try FakeKernel(serving: fs)
        let (u, reply) = kernel.hand(.read(ino: 2, fh: 1, size: 1), to: fs, ReplyData.self)
        kernel.close()
        #expect(reply.data([1]) == .sessionClosed)
        #expect(kernel.reply(to: u) == nil)
    }

    @Test func replyResultFromReturnCodes() {
        #expect(ReplyResult(returnCode: 0) == .sent)
        #expect(ReplyResult(returnCode: -ENOENT) == .requestGone)
        #expect(ReplyResult(returnCode: -EINVAL) == .failed(.invalidArgument))
        #expect(ReplyResult.sent.delivered)
        #expect(!ReplyResult.requestGone.delivered)
    }
}
