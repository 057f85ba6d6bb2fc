import DeliveryCore
import FUSELowLevel
import FUSETesting
import FileSystemTypes
import Glibc
import MulticastFS
import MulticastFUSE
import SystemPackage
import Testing

/// The bridge and the real MulticastFilesystem, driven through the fake
/// kernel: raw FUSE requests in, what libfuse's replies put on the wire out.
@Suite struct BridgeTests {
    static let alice = Caller(uid: UserID(rawValue: 1000), gid: GroupID(rawValue: 1000))
    static let open = WireOpen.directIO | WireOpen.nonseekable | WireOpen.stream

    /// A fresh filesystem behind a fake kernel, with path helpers that
    /// return what the wire said.
    struct Daemon {
        let fs: MulticastFilesystem
        let kernel: FakeKernel

        init(defaults: GroupSettings = GroupSettings()) throws {
            fs = try MulticastFilesystem(owner: BridgeTests.alice, defaults: defaults)
            kernel = try FakeKernel(serving: Bridge(fs: fs))
        }

        func entry(_ parent: UInt64, _ name: Name) -> WireEntry? {
            guard case .entry(let entry)? = kernel.call(.lookup(parent: parent, name: name), as: BridgeTests.alice)
            else { return nil }
            return entry
        }

        func mkdir(_ name: String, mode: UInt32 = 0o755) -> WireEntry? {
            guard case .entry(let entry)? = kernel.call(
                .mkdir(parent: 1, name: Name(name), mode: FileMode(rawValue: S_IFDIR | mode)), as: BridgeTests.alice)
            else { return nil }
            return entry
        }

        func create(_ group: UInt64, _ name: String, flags: Int32 = O_RDWR) -> (WireEntry, WireOpen)? {
            guard case .created(let entry, let open)? = kernel.call(
                .create(parent: group, name: Name(name), mode: FileMode(rawValue: S_IFREG | 0o644), flags: O_CREAT | flags),
                as: BridgeTests.alice)
            else { return nil }
            return (entry, open)
        }

        func open(_ ino: UInt64, _ flags: Int32) -> WireOpen? {
            guard case .opened(let open)? = kernel.call(.open(ino: ino, flags: flags), as: BridgeTests.alice) else { return nil }
            return open
        }

        /// A group "g" with member "m" (read-write) and `send` open for writing.
        func group() throws -> (group: UInt64, member: (ino: UInt64, fh: UInt64), send: (ino: UInt64, fh: UInt64)) {
            let group = try #require(mkdir("g"))
            let (member, memberOpen) = try #require(create(group.nodeID, "m"))
            let send = try #require(entry(group.nodeID, "send"))
            let sendOpen = try #require(open(send.nodeID, O_WRONLY))
            return (group.nodeID, (member.nodeID, memberOpen.fh), (send.nodeID, sendOpen.fh))
        }

        func write(_ file: (ino: UInt64, fh: UInt64), _ text: String, flags: Int32 = O_WRONLY) -> UInt64 {
            kernel.send(.write(ino: file.ino, fh: file.fh, data: Array(text.utf8), flags: flags))
        }

        func read(_ file: (ino: UInt64, fh: UInt64), size: UInt32 = 4096, flags: Int32 = O_RDWR) -> UInt64 {
            kernel.send(.read(ino: file.ino, fh: file.fh, size: size, flags: flags))
        }
    }

    @Test func namespaceOnTheWire() throws {
        let d = try Daemon()
        let group = try #require(d.mkdir("g", mode: 0o750))
        #expect(group.attributes.attributes.mode == FileMode(rawValue: S_IFDIR | 0o750))
        #expect(group.attributes.attributes.uid == Self.alice.uid)
        // Groups and their fixed files may be cached; send and members not:
        // each lookup is an inode of its own.
        #expect(group.entryTimeout == 1 && group.attributeTimeout == 1)
        let ctl = try #require(d.entry(group.nodeID, "ctl"))
        #expect(ctl.entryTimeout == 1)
        #expect(ctl.attributes.attributes.mode == FileMode(rawValue: S_IFREG | 0o200))
        let send1 = try #require(d.entry(group.nodeID, "send")), send2 = try #require(d.entry(group.nodeID, "send"))
        #expect(send1.entryTimeout == 0 && send2.entryTimeout == 0)
        #expect(send1.nodeID != send2.nodeID)
        #expect(send1.attributes.attributes.mode == FileMode(rawValue: S_IFREG | 0o200))

        let (member, memberOpen) = try #require(d.create(group.nodeID, "m"))
        #expect(member.entryTimeout == 0)
        #expect(memberOpen.flags == Self.open)
        #expect(try #require(d.entry(group.nodeID, "m")).entryTimeout == 0)

        // status is a file with a size, not a stream.
        let status = try #require(d.entry(group.nodeID, "status"))
        #expect(try #require(d.open(status.nodeID, O_RDONLY)).flags == WireOpen.directIO)
        #expect(try #require(d.open(send1.nodeID, O_WRONLY)).flags == Self.open)

        guard case .attributes(let now, timeout: 1)? = d.kernel.call(.getattr(ino: group.nodeID)) else {
            Issue.record("getattr")
            return
        }
        #expect(now.attributes.ino == group.attributes.attributes.ino && now.attributes.mode == group.attributes.attributes.mode)
        #expect(d.kernel.call(.lookup(parent: group.nodeID, name: "nobody")) == .error(.noSuchFileOrDirectory))
        #expect(d.kernel.call(.mkdir(parent: 1, name: "g", mode: FileMode(rawValue: S_IFDIR | 0o755))) == .error(.fileExists))
        #expect(d.kernel.call(.symlink(parent: 1, name: "l", target: "g")) == .error(.notPermitted))
        #expect(d.kernel.call(.rename(parent: 1, name: "g", newParent: 1, newName: "h")) == .error(.notPermitted))
        #expect(d.kernel.call(.link(ino: member.nodeID, newParent: group.nodeID, newName: "n")) == .error(.notPermitted))

        #expect(d.kernel.call(.rmdir(parent: 1, name: "g")) == .error(.directoryNotEmpty))
        #expect(d.kernel.call(.unlink(parent: group.nodeID, name: "send")) == .error(.notPermitted))
        #expect(d.kernel.call(.unlink(parent: group.nodeID, name: "m")) == .ok)
        #expect(d.kernel.call(.release(ino: member.nodeID, fh: memberOpen.fh)) == .ok)
        #expect(d.kernel.call(.rmdir(parent: 1, name: "g")) == .ok)
        #expect(d.kernel.call(.lookup(parent: 1, name: "g")) == .error(.noSuchFileOrDirectory))
        #expect(d.kernel.violations.isEmpty)
    }

    @Test func readdirListsWithOffsetsTheKernelResumesFrom() throws {
        let d = try Daemon()
        let group = try #require(d.mkdir("g"))
        _ = try #require(d.create(group.nodeID, "m"))
        guard case .opened(let dir)? = d.kernel.call(.opendir(ino: group.nodeID)) else {
            Issue.record("opendir")
            return
        }
        #expect(dir.flags == 0)
        guard case .directory(let all)? = d.kernel.call(.readdir(ino: group.nodeID, fh: dir.fh)) else {
            Issue.record("readdir")
            return
        }
        #expect(all.map(\.name) == [".", "..", "send", "ctl", "status", "frames", "peers", "m"])
        #expect(all.map(\.nextOffset) == [1, 2, 3, 4, 5, 6, 7, 8])
        #expect(all[0].type == UInt32(DT_DIR) && all[2].type == UInt32(DT_REG) && all[5].type == UInt32(DT_DIR))
        // The kernel asks again from the last offset it got, with a small buffer.
        guard case .directory(let rest)? = d.kernel.call(.readdir(ino: group.nodeID, fh: dir.fh, offset: 3, size: 64)) else {
            Issue.record("readdir from 3")
            return
        }
        #expect(rest.map(\.name) == ["ctl", "status"])
        #expect(d.kernel.call(.readdir(ino: group.nodeID, fh: dir.fh, offset: 8)) == .directory([]))
        #expect(d.kernel.call(.releasedir(ino: group.nodeID, fh: dir.fh)) == .ok)
    }

    @Test func setattrAnswersTheNewAttributes() throws {
        let d = try Daemon()
        let group = try #require(d.mkdir("g"))
        let when = Timestamp(seconds: 1_600_000_000, nanoseconds: 5)
        guard case .attributes(let changed, let timeout)? = d.kernel.call(
            .setattr(ino: group.nodeID, .init(mode: FileMode(rawValue: 0o700), mtime: when)))
        else {
            Issue.record("setattr")
            return
        }
        #expect(timeout == 1)
        #expect(changed.attributes.mode == FileMode(rawValue: S_IFDIR | 0o700))
        #expect(changed.attributes.mtime == when)
        #expect(d.kernel.call(.setattr(ino: group.nodeID, .init(size: 0))) == .error(.isDirectory))
    }

    @Test func writeThenReadPutsTheMessageBytesOnTheWire() throws {
        let d = try Daemon()
        let g = try d.group()
        #expect(d.kernel.reply(to: d.write(g.send, "hello")) == .written(5))
        #expect(d.kernel.reply(to: d.read(g.member)) == .data(Array("hello".utf8)))
        // A short buffer gets the start; the rest of the message is the next read's.
        #expect(d.kernel.reply(to: d.write(g.send, "abcdef")) == .written(6))
        #expect(d.kernel.reply(to: d.read(g.member, size: 4)) == .data(Array("abcd".utf8)))
        #expect(d.kernel.reply(to: d.read(g.member, size: 4)) == .data(Array("ef".utf8)))
        #expect(d.kernel.reply(to: d.read(g.member, flags: O_RDWR | O_NONBLOCK)) == .error(.wouldBlock))
        #expect(d.kernel.call(.flush(ino: g.member.ino, fh: g.member.fh)) == .ok)
        #expect(d.kernel.call(.fsync(ino: g.member.ino, fh: g.member.fh)) == .ok)
    }

    @Test func blockedReadIsAnsweredByALaterWrite() throws {
        let d = try Daemon()
        let g = try d.group()
        let read = d.read(g.member)
        #expect(d.kernel.reply(to: read) == nil)
        #expect(d.kernel.session.pendingInterruptibleCount == 1)
        #expect(d.kernel.reply(to: d.write(g.send, "late")) == .written(4))
        #expect(d.kernel.reply(to: read) == .data(Array("late".utf8)))
        #expect(d.kernel.session.pendingInterruptibleCount == 0)
    }

    @Test func blockedReadAnsweredFromAnotherThread() async throws {
        let d = try Daemon()
        let g = try d.group()
        let read = d.read(g.member)
        let write = await Task.detached { d.write(g.send, "over there") }.value
        #expect(d.kernel.waitForReply(to: read) == .data(Array("over there".utf8)))
        #expect(d.kernel.reply(to: write) == .written(10))
    }

    @Test func interruptedBlockedReadIsEINTRAndConsumesNothing() throws {
        let d = try Daemon()
        let g = try d.group()
        let read = d.read(g.member)
        d.kernel.send(.interrupt(unique: read))
        #expect(d.kernel.reply(to: read) == .error(.interrupted))
        #expect(d.kernel.reply(to: d.write(g.send, "kept")) == .written(4))
        #expect(d.kernel.reply(to: d.read(g.member)) == .data(Array("kept".utf8)))
        #expect(d.kernel.violations.isEmpty)  // the interrupted read got one answer only
    }

    @Test func readInterruptedBeforeItArrivesIsEINTR() throws {
        let d = try Daemon()
        let g = try d.group()
        let read = d.kernel.sendInterrupted(.read(ino: g.member.ino, fh: g.member.fh, size: 4096, flags: O_RDWR))
        #expect(d.kernel.reply(to: read) == .error(.interrupted))
        #expect(d.kernel.reply(to: d.write(g.send, "kept")) == .written(4))
        #expect(d.kernel.reply(to: d.read(g.member)) == .data(Array("kept".utf8)))
    }

    @Test func messageForAReaderThatWentAwayIsKept() throws {
        let d = try Daemon()
        let g = try d.group()
        let read = d.read(g.member)
        d.kernel.abandon(read)  // the kernel refuses the reply with ENOENT
        #expect(d.kernel.reply(to: d.write(g.send, "precious")) == .written(8))
        #expect(d.kernel.reply(to: read) == nil)
        #expect(d.kernel.reply(to: d.read(g.member)) == .data(Array("precious".utf8)))
    }

    @Test func interruptedBlockedWriteDeliversNothing() throws {
        let d = try Daemon(defaults: GroupSettings(capacity: 1))
        let g = try d.group()
        #expect(d.kernel.reply(to: d.write(g.send, "1")) == .written(1))
        #expect(d.kernel.reply(to: d.write(g.send, "2", flags: O_WRONLY | O_NONBLOCK)) == .error(.wouldBlock))
        let blocked = d.write(g.send, "2")
        #expect(d.kernel.reply(to: blocked) == nil)
        d.kernel.send(.interrupt(unique: blocked))
        #expect(d.kernel.reply(to: blocked) == .error(.interrupted))
        #expect(d.kernel.reply(to: d.read(g.member)) == .data(Array("1".utf8)))
        #expect(d.kernel.reply(to: d.read(g.member, flags: O_RDWR | O_NONBLOCK)) == .error(.wouldBlock))
    }

    @Test func blockedWriteIsAnsweredWhenTheReaderDrains() throws {
        let d = try Daemon(defaults: GroupSettings(capacity: 1))
        let g = try d.group()
        _ = d.write(g.send, "1")
        let blocked = d.write(g.send, "2")
        #expect(d.kernel.reply(to: blocked) == nil)
        #expect(d.kernel.reply(to: d.read(g.member)) == .data(Array("1".utf8)))
        #expect(d.kernel.reply(to: blocked) == .written(1))
        #expect(d.kernel.reply(to: d.read(g.member)) == .data(Array("2".utf8)))
    }

    @Test func pollAnswersReadinessAndNotifiesAfterAWrite() throws {
        let d = try Daemon()
        let g = try d.group()
        let asked = d.kernel.call(.poll(ino: g.member.ino, fh: g.member.fh, kh: 31, scheduleNotify: true))
        #expect(asked == .poll(.writable))
        #expect(d.kernel.notifications.isEmpty)
        _ = d.write(g.send, "x")
        #expect(d.kernel.notifications == [.poll(kh: 31)])
        #expect(d.kernel.call(.poll(ino: g.member.ino, fh: g.member.fh, kh: 32, scheduleNotify: false)) == .poll([.readable, .writable]))
    }

    @Test func undecodableNamesAreRefusedBeforeTheFilesystem() throws {
        let d = try Daemon()
        let group = try #require(d.mkdir("g"))
        // Not UTF-8: EINVAL; and longer than NAME_MAX as well: ENAMETOOLONG,
        // as Linux checks the length first.
        let invalid = Name(bytes: [0x66, 0xFF, 0x66])
        let longInvalid = Name(bytes: [UInt8](repeating: 0xFF, count: 256))
        let dir = FileMode(rawValue: S_IFDIR | 0o755), file = FileMode(rawValue: S_IFREG | 0o644)
        #expect(d.kernel.call(.mkdir(parent: 1, name: longInvalid, mode: dir)) == .error(.fileNameTooLong))
        #expect(d.kernel.call(.mkdir(parent: 1, name: invalid, mode: dir)) == .error(.invalidArgument))
        #expect(d.kernel.call(.create(parent: group.nodeID, name: longInvalid, mode: file, flags: O_CREAT | O_RDWR)) == .error(.fileNameTooLong))
        #expect(d.kernel.call(.create(parent: group.nodeID, name: invalid, mode: file, flags: O_CREAT | O_RDWR)) == .error(.invalidArgument))
        #expect(d.kernel.call(.unlink(parent: group.nodeID, name: invalid)) == .error(.invalidArgument))
        #expect(d.kernel.call(.rmdir(parent: 1, name: longInvalid)) == .error(.fileNameTooLong))
        // A long UTF-8 name reaches the filesystem, which refuses it too.
        #expect(d.kernel.call(.mkdir(parent: 1, name: Name(String(repeating: "x", count: 256)), mode: dir)) == .error(.fileNameTooLong))
        // A lookup of a name that cannot exist is simply "no such name".
        #expect(d.kernel.call(.lookup(parent: 1, name: invalid)) == .error(.noSuchFileOrDirectory))
        // 255 bytes is a name like any other.
        #expect(d.mkdir(String(repeating: "y", count: 255)) != nil)
    }

    @Test func statfsCountsInodes() throws {
        let d = try Daemon()
        _ = try #require(d.mkdir("g"))
        guard case .statfs(let stats)? = d.kernel.call(.statfs) else {
            Issue.record("statfs")
            return
        }
        #expect(stats.nameMax == 255 && stats.blockSize == 4096)
        #expect(stats.files == UInt64(d.fs.counts.inodes))
    }

    @Test func forgetAndReleaseFreeWhatTheKernelHeld() throws {
        let d = try Daemon()
        let g = try d.group()
        let before = d.fs.openFileCount
        #expect(d.kernel.call(.release(ino: g.send.ino, fh: g.send.fh)) == .ok)
        #expect(d.fs.openFileCount == before - 1)
        // Forget has no reply at all.
        let forget = d.kernel.send(.forget(ino: g.send.ino, lookups: 1))
        #expect(d.kernel.reply(to: forget) == nil)
        #expect(d.kernel.violations.isEmpty)
    }
}
