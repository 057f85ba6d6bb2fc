import FileSystemTypes
import Glibc
import SystemPackage
import Testing

@testable import FUSELowLevel

@Suite struct ReplyTests {
    let attributes = FileAttributes(
        ino: 2, mode: FileMode(rawValue: S_IFREG | 0o644), linkCount: 1, uid: UserID(rawValue: 1000), gid: GroupID(rawValue: 1000), size: 5,
        atime: Timestamp(seconds: 1, nanoseconds: 2), mtime: Timestamp(seconds: 3), ctime: Timestamp(seconds: 4))

    @Test func eachTypedReplyRecordsWhatItSends() {
        let kernel = ReplyRecorder()
        let entry = EntryParameters(ino: 2, attributes: attributes, attributeTimeout: 1, entryTimeout: 2)
        #expect(kernel.make(ReplyEntry.self).entry(entry) == .sent)
        #expect(kernel.make(ReplyAttributes.self).attributes(attributes, timeout: 1.5) == .sent)
        #expect(kernel.make(ReplyOpen.self).opened(.stream(fh: 9)) == .sent)
        #expect(kernel.make(ReplyCreate.self).created(entry: entry, open: OpenParameters(fh: 3)) == .sent)
        #expect(kernel.make(ReplyData.self).data([1, 2, 3][1...]) == .sent)
        [UInt8]([4, 5]).withUnsafeBytes { a in
            [UInt8]([6]).withUnsafeBytes { b in
                #expect(kernel.make(ReplyData.self).data(gathering: [a, b]) == .sent)
            }
        }
        #expect(kernel.make(ReplyWrite.self).written(10) == .sent)
        #expect(kernel.make(ReplyEmpty.self).ok() == .sent)
        #expect(kernel.make(ReplyStatfs.self).statfs(FilesystemStatistics(files: 3)) == .sent)
        #expect(kernel.make(ReplyPoll.self).events([.readable, .writable]) == .sent)
        #expect(kernel.make(ReplyXattr.self).size(12) == .sent)
        #expect(kernel.make(ReplyLseek.self).offset(42) == .sent)
        #expect(kernel.make(ReplyReadlink.self).target("/x") == .sent)
        #expect(kernel.make(ReplyEmpty.self).error(.directoryNotEmpty) == .sent)
        #expect(kernel.answers == [
            .entry(entry),
            .attributes(attributes, timeout: 1.5),
            .opened(OpenParameters(fh: 9, directIO: true, nonseekable: true, stream: true)),
            .created(entry: entry, open: OpenParameters(fh: 3)),
            .data([2, 3]),
            .data([4, 5, 6]),
            .written(10),
            .ok,
            .statfs(FilesystemStatistics(files: 3)),
            .poll([.readable, .writable]),
            .xattrSize(12),
            .offset(42),
            .readlink("/x"),
            .error(.directoryNotEmpty),
        ])
    }

    @Test func droppedReplyAnswersEIO() {
        let kernel = ReplyRecorder()
        do { _ = kernel.make(ReplyEntry.self) }
        #expect(kernel.answers == [.error(.ioError)])
    }

    @Test func answeredReplyDroppedSendsNothingMore() {
        let kernel = ReplyRecorder()
        do { kernel.make(ReplyEmpty.self).ok() }
        #expect(kernel.answers == [.ok])
    }

    @Test func replyAnsweredLaterFromAnotherThread() async {
        let kernel = ReplyRecorder()
        let reply = kernel.make(ReplyData.self)
        let result = await Task.detached { reply.data([42]) }.value
        #expect(result == .sent)
        #expect(kernel.answer(of: reply) == .data([42]))
    }

    @Test func directoryFillsUntilFull() {
        let kernel = ReplyRecorder()
        // A fuse_dirent is 24 bytes + name, padded to 8: "a" → 32 bytes.
        let reply = kernel.makeDirectory(capacity: 80)
        #expect(reply.add(DirectoryEntry(name: ".", ino: 1, type: .directory), nextOffset: 1))
        #expect(reply.add(DirectoryEntry(name: "..", ino: 1, type: .directory), nextOffset: 2))
        #expect(!reply.add(DirectoryEntry(name: "a", ino: 2, type: .regular), nextOffset: 3))
        #expect(reply.send() == .sent)
        #expect(kernel.answers == [.directory([
            ListedEntry(DirectoryEntry(name: ".", ino: 1, type: .directory), nextOffset: 1),
            ListedEntry(DirectoryEntry(name: "..", ino: 1, type: .directory), nextOffset: 2),
        ])])
    }

    @Test func emptyDirectoryReplyEndsTheListing() {
        let kernel = ReplyRecorder()
        let reply = kernel.makeDirectory(capacity: 4096)
        reply.send()
        #expect(kernel.answers == [.directory([])])
    }

    @Test func pollHandleNotifiesOnce() {
        let kernel = ReplyRecorder()
        let handle = kernel.makePollHandle()
        #expect(!handle.isNotified)
        #expect(handle.notify())
        #expect(!handle.notify())
        #expect(handle.isNotified)
        #expect(kernel.notificationCount == 1)
    }

    @Test func replyResultFromReturnCodes() {
        #expect(ReplyResult(returnCode: 0) == .sent)
        #expect(ReplyResult(returnCode: -ENOENT) == .requestGone)
        #expect(ReplyResult(returnCode: -EINVAL) == .failed(.invalidArgument))
        #expect(ReplyResult.sent.delivered)
        #expect(!ReplyResult.requestGone.delivered)
    }
}
