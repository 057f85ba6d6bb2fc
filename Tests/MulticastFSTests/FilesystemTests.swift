import DeliveryCore
import FileSystemTypes
import Glibc
import Locking
import MulticastFS
import SystemPackage
import TestSupport
import Testing

@Suite struct NamespaceTests {
    @Test func mkdirMakesAGroupWithItsFiles() throws {
        let kernel = try KernelDriver()
        let dir = try kernel.mkdir("/chat", mode: 0o750)
        #expect(dir.mode.type == .directory && dir.permissions == 0o750 && dir.uid.rawValue == 1000)
        #expect(try kernel.stat("/chat/send").permissions == 0o200)
        #expect(try kernel.stat("/chat/status").permissions == 0o440)
        #expect(try kernel.stat("/chat/ctl").permissions == 0o200)
        #expect(try kernel.list("/") == [".", "..", ".metrics", "chat"])
        #expect(try kernel.list("/chat") == [".", "..", "send", "ctl", "status", "frames", "peers"])
        #expect(try kernel.stat("/").linkCount == 3)
        #expect(try kernel.stat("/chat").linkCount == 4)
        let frames = try kernel.stat("/chat/frames")
        #expect(frames.mode.type == .directory && frames.permissions == 0o750 && frames.uid.rawValue == 1000)
        #expect(try kernel.list("/chat/frames") == [".", "..", "send"])
        #expect(throws: Errno.fileExists) { try kernel.mkdir("/chat") }
    }

    @Test func namesFollowTheRules() throws {
        let kernel = try KernelDriver()
        for bad in [".hidden", "a b", "tab\there", "nl\n", "bell\u{07}", "nbsp\u{00A0}x"] {
            #expect(throws: Errno.invalidArgument, "\(bad)") { try kernel.mkdir("/" + bad) }
        }
        #expect(throws: Errno.fileNameTooLong) { try kernel.mkdir("/" + String(repeating: "x", count: 256)) }
        try kernel.mkdir("/" + String(repeating: "x", count: 255))
        try kernel.mkdir("/héllo-wörld_1")
        try kernel.mkdir("/g")
        #expect(throws: Errno.invalidArgument) { _ = try kernel.create("/g/bad name") }
        #expect(throws: Errno.fileExists) { _ = try kernel.fs.makeNode(parent: kernel.resolve("/g"), name: "ctl", mode: FileMode(rawValue: S_IFREG | 0o644), caller: kernel.caller) }
    }

    @Test func namesAreComparedByteForByte() throws {
        let kernel = try KernelDriver()
        try kernel.mkdir("/caf\u{E9}")       // é, one code point
        try kernel.mkdir("/cafe\u{301}")     // e and a combining accent: canonically equal, other bytes
        #expect(try kernel.list("/") == [".", "..", ".metrics", "caf\u{E9}", "cafe\u{301}"])
        _ = try kernel.create("/caf\u{E9}/\u{C5}")
        _ = try kernel.create("/caf\u{E9}/A\u{30A}")
        #expect(try kernel.list("/caf\u{E9}").suffix(2) == ["\u{C5}", "A\u{30A}"])
        for bad in [".\u{301}x", ".\u{308}hidden"] {
            #expect(throws: Errno.invalidArgument) { try kernel.mkdir("/" + bad) }
        }
    }

    @Test func onlyGroupsInTheRootAndOnlyMembersInGroups() throws {
        let kernel = try KernelDriver()
        try kernel.mkdir("/g")
        #expect(throws: Errno.notPermitted) { _ = try kernel.create("/file") }
        #expect(throws: Errno.notPermitted) { try kernel.mkdir("/g/sub") }
        #expect(throws: Errno.notPermitted) {
            _ = try kernel.fs.makeNode(parent: kernel.resolve("/g"), name: "fifo", mode: FileMode(rawValue: S_IFIFO | 0o644), caller: kernel.caller)
        }
        #expect(throws: Errno.notPermitted) { try kernel.unlink("/g/send") }
        #expect(try kernel.list("/g") == [".", "..", "send", "ctl", "status", "frames", "peers"])
    }

    /// `G/frames/NAME` is the member NAME itself in another encoding: the
    /// same entry (attributes, owner, mode), a new kernel node id per lookup,
    /// listed beside `send`; nothing can be made or removed there.
    @Test func framesHoldTwinsOfSendAndEveryMember() throws {
        var kernel = try KernelDriver()
        try kernel.mkdir("/g", mode: 0o755)
        kernel.caller = Caller(uid: UserID(rawValue: 42), gid: GroupID(rawValue: 43))
        kernel.fs.release(handle: try kernel.create("/g/alice", mode: 0o640))
        #expect(try kernel.list("/g/frames") == [".", "..", "send", "alice"])
        let member = try kernel.stat("/g/alice"), twin = try kernel.stat("/g/frames/alice")
        #expect(twin == member)
        let frames = try kernel.resolve("/g/frames")
        let first = try kernel.fs.lookup(parent: frames, name: "alice"), second = try kernel.fs.lookup(parent: frames, name: "alice")
        #expect(!first.cacheable && first.nodeID != second.nodeID)
        // chmod of either is the chmod of both.
        _ = try kernel.fs.setAttributes(of: first.nodeID, AttributeChanges(permissions: FilePermissions(rawValue: 0o600)))
        #expect(try kernel.stat("/g/alice").permissions == 0o600)
        #expect(try kernel.stat("/g/frames/send") == kernel.stat("/g/send"))
        for name in ["ctl", "status", "frames", "bob"] {
            #expect(throws: Errno.noSuchFileOrDirectory, "\(name)") { _ = try kernel.resolve("/g/frames/" + name) }
        }
        #expect(throws: Errno.notPermitted) { _ = try kernel.create("/g/frames/bob") }
        #expect(throws: Errno.notPermitted) { try kernel.unlink("/g/frames/alice") }
        #expect(throws: Errno.notPermitted) { try kernel.unlink("/g/frames") }
        #expect(throws: Errno.notPermitted) { try kernel.rmdir("/g/frames") }
        #expect(throws: Errno.notPermitted) { try kernel.mkdir("/g/frames/sub") }
        #expect(throws: Errno.fileExists) { _ = try kernel.fs.makeNode(parent: kernel.resolve("/g"), name: "frames", mode: FileMode(rawValue: S_IFREG | 0o644), caller: kernel.caller) }
        // rm G/NAME removes both; the group goes with its frames/.
        try kernel.unlink("/g/alice")
        #expect(try kernel.list("/g/frames") == [".", "..", "send"])
        try kernel.rmdir("/g")
        #expect(throws: Errno.noSuchFileOrDirectory) { _ = try kernel.fs.lookup(parent: frames, name: "send") }
        #expect(throws: Errno.noSuchFileOrDirectory) { _ = try kernel.fs.openDirectory(frames) }
    }

    @Test func membersJoinAndLeave() throws {
        var kernel = try KernelDriver()
        try kernel.mkdir("/g")
        kernel.caller = Caller(uid: UserID(rawValue: 42), gid: GroupID(rawValue: 43))
        let handle = try kernel.create("/g/alice", mode: 0o600)
        let alice = try kernel.stat("/g/alice")
        #expect(alice.mode.type == .regular && alice.permissions == 0o600 && alice.uid.rawValue == 42 && alice.gid.rawValue == 43 && alice.size == 0)
        #expect(throws: Errno.fileExists) { _ = try kernel.create("/g/alice", flags: O_RDWR | O_EXCL) }
        let again = try kernel.create("/g/alice")
        #expect(try kernel.list("/g").last == "alice")
        #expect(throws: Errno.directoryNotEmpty) { try kernel.rmdir("/g") }
        try kernel.unlink("/g/alice")
        #expect(throws: Errno.noSuchFileOrDirectory) { _ = try kernel.resolve("/g/alice") }
        #expect(throws: Errno.noSuchFileOrDirectory) { try kernel.unlink("/g/alice") }
        #expect(kernel.fs.openFileCount == 2)
        kernel.fs.release(handle: handle)
        kernel.fs.release(handle: again)
        #expect(kernel.fs.openFileCount == 0)
        try kernel.rmdir("/g")
        #expect(try kernel.list("/") == [".", "..", ".metrics"])
    }

    @Test func unlinkedNodesLiveUntilForgotten() throws {
        let kernel = try KernelDriver()
        try kernel.mkdir("/g")
        kernel.fs.release(handle: try kernel.create("/g/m"))
        let ino = try kernel.resolve("/g/m")
        try kernel.unlink("/g/m")
        #expect(try kernel.fs.attributes(of: ino).mode.type == .regular)
        #expect(throws: Errno.noSuchFileOrDirectory) { _ = try kernel.fs.open(ino, flags: OpenFlags(.readOnly)) }
        kernel.fs.forget(ino, count: 1)
        #expect(throws: Errno.noSuchFileOrDirectory) { _ = try kernel.fs.attributes(of: ino) }

        // Directories keep one node id and count references.
        let group = try kernel.resolve("/g")
        #expect(try kernel.resolve("/g") == group)
        try kernel.rmdir("/g")
        #expect(try kernel.fs.attributes(of: group).mode.type == .directory)
        // mkdir, and the five path walks through /g, each counted one.
        kernel.fs.forget(group, count: 5)
        #expect(try kernel.fs.attributes(of: group).mode.type == .directory)
        kernel.fs.forget(group, count: 1)
        #expect(throws: Errno.noSuchFileOrDirectory) { _ = try kernel.fs.attributes(of: group) }
    }

    /// Forgetting more than was looked up means the inode table is wrong: it
    /// stops the daemon instead of silently clamping the count.
    @Test func aLookupCountUnderflowIsCaught() async {
        await #expect(processExitsWith: .failure) {
            let kernel = try KernelDriver()
            let group = try kernel.mkdir("/g").ino
            kernel.fs.forget(group, count: 2)
        }
        await #expect(processExitsWith: .failure) {
            let kernel = try KernelDriver()
            try kernel.mkdir("/g")
            let member = try kernel.fs.createMember(
                parent: kernel.resolve("/g"), name: "m", permissions: .ownerReadWrite,
                flags: OpenFlags(.readWrite, .create), caller: kernel.caller).0.nodeID
            kernel.fs.forget(member, count: 2)
        }
    }

    @Test func everyLookupOfSendOrAMemberIsItsOwnKernelInode() throws {
        let kernel = try KernelDriver()
        try kernel.mkdir("/g")
        kernel.fs.release(handle: try kernel.create("/g/m"))
        for path in ["/g/send", "/g/m"] {
            let first = try kernel.fs.lookup(parent: kernel.resolve("/g"), name: String(path.split(separator: "/").last!))
            let second = try kernel.fs.lookup(parent: kernel.resolve("/g"), name: String(path.split(separator: "/").last!))
            #expect(first.nodeID != second.nodeID && !first.cacheable)
            #expect(first.attributes.ino == second.attributes.ino)
            _ = try kernel.fs.setAttributes(of: first.nodeID, AttributeChanges(permissions: FilePermissions(rawValue: 0o640)))
            #expect(try kernel.fs.attributes(of: second.nodeID).permissions == 0o640)
        }
        let status = try kernel.fs.lookup(parent: kernel.resolve("/g"), name: "status")
        #expect(status.cacheable && status.nodeID == status.attributes.ino)
    }

    @Test func setAttributes() throws {
        let kernel = try KernelDriver()
        try kernel.mkdir("/g")
        let send = try kernel.resolve("/g/send")
        #expect(try kernel.fs.setAttributes(of: send, AttributeChanges(size: 0)).size == 0)
        #expect(throws: Errno.invalidArgument) { _ = try kernel.fs.setAttributes(of: send, AttributeChanges(size: 5)) }
        let changed = try kernel.fs.setAttributes(of: send, AttributeChanges(permissions: FilePermissions(rawValue: 0o4222), uid: UserID(rawValue: 7), gid: GroupID(rawValue: 8), mtime: .at(Timestamp(seconds: 5, nanoseconds: 6))))
        #expect(changed.permissions == 0o4222 && changed.uid.rawValue == 7 && changed.gid.rawValue == 8 && changed.mtime.seconds == 5)
        #expect(changed.mode.rawValue == S_IFREG | 0o4222)
        #expect(try kernel.fs.setAttributes(of: MulticastFilesystem.rootInode, AttributeChanges(permissions: FilePermissions(rawValue: 0o1777))).permissions == 0o1777)
    }

    @Test func openModesOfFixedFiles() throws {
        let kernel = try KernelDriver()
        try kernel.mkdir("/g")
        #expect(throws: Errno.permissionDenied) { _ = try kernel.open("/g/send", O_RDONLY) }
        #expect(throws: Errno.permissionDenied) { _ = try kernel.open("/g/ctl", O_RDWR) }
        #expect(throws: Errno.permissionDenied) { _ = try kernel.open("/g/status", O_WRONLY) }
        #expect(try kernel.fs.open(kernel.resolve("/g/send"), flags: OpenFlags(.writeOnly)).isStream)
        #expect(try !kernel.fs.open(kernel.resolve("/g/status"), flags: OpenFlags(.readOnly)).isStream)
    }
}

@Suite struct MessagingTests {
    @Test func sendReachesEveryMemberWhole() throws {
        let kernel = try KernelDriver()
        try kernel.mkdir("/g")
        let alice = try kernel.create("/g/alice"), bob = try kernel.create("/g/bob")
        let send = try kernel.open("/g/send", O_WRONLY)
        #expect(kernel.write(send, "hello").outcome == .written(5))
        #expect(kernel.read(alice).text == "hello")
        #expect(kernel.read(bob).text == "hello")
        // A member sends as itself: not to itself.
        #expect(kernel.write(alice, "from alice").outcome == .written(10))
        #expect(kernel.read(bob).text == "from alice")
        #expect(kernel.read(alice, nonBlocking: true).outcome == .error(EAGAIN))
    }

    @Test func smallBuffersContinueAndSplitReadsEndAtTheMessage() throws {
        let kernel = try KernelDriver()
        try kernel.mkdir("/g")
        let member = try kernel.create("/g/m")
        let send = try kernel.open("/g/send", O_WRONLY)
        _ = kernel.write(send, "abcdefgh")
        _ = kernel.write(send, "next")
        #expect(kernel.read(member, size: 3).text == "abc")
        #expect(kernel.read(member, size: 3, offset: 3).text == "")  // same read(2), asking for more
        #expect(kernel.read(member, size: 100).text == "defgh")
        #expect(kernel.read(member, size: 100).text == "next")
    }

    @Test func blockedReadIsAnsweredLaterAndInterruptConsumesNothing() throws {
        let kernel = try KernelDriver()
        try kernel.mkdir("/g")
        let member = try kernel.create("/g/m")
        let send = try kernel.open("/g/send", O_WRONLY)
        let blocked = kernel.read(member)
        #expect(blocked.outcome == nil && blocked.waited)
        _ = kernel.write(send, "late")
        #expect(blocked.text == "late")

        let interrupted = kernel.read(member)
        interrupted.interrupt()
        #expect(interrupted.outcome == .error(EINTR))
        _ = kernel.write(send, "kept")
        #expect(interrupted.answers == 1)
        #expect(kernel.read(member).text == "kept")
    }

    @Test func aMessageHandedToADeadRequesterIsPutBack() throws {
        let kernel = try KernelDriver()
        try kernel.mkdir("/g")
        let member = try kernel.create("/g/m")
        let send = try kernel.open("/g/send", O_WRONLY)
        let dying = kernel.read(member)
        dying.requesterDies()
        _ = kernel.write(send, "precious")
        #expect(dying.outcome == nil)
        #expect(kernel.read(member).text == "precious")
    }

    @Test func fullQueueBlocksWritersAndInterruptDeliversNothing() throws {
        let kernel = try KernelDriver(defaults: GroupSettings(capacity: 1))
        try kernel.mkdir("/g")
        let slow = try kernel.create("/g/slow"), other = try kernel.create("/g/other")
        let send = try kernel.open("/g/send", O_WRONLY)
        #expect(kernel.write(send, "1").outcome == .written(1))
        #expect(kernel.write(send, "2", nonBlocking: true).outcome == .error(EAGAIN))
        let blocked = kernel.write(send, "2")
        #expect(blocked.outcome == nil)
        #expect(try kernel.readAll("/g/status").contains("blocked_writers=1"))
        blocked.interrupt()
        #expect(blocked.outcome == .error(EINTR))
        #expect(kernel.read(slow).text == "1")
        #expect(kernel.read(other).text == "1")
        #expect(kernel.read(other, nonBlocking: true).outcome == .error(EAGAIN))

        let later = kernel.write(send, "3")
        #expect(later.outcome == .written(1))
        let parked = kernel.write(send, "4")
        _ = kernel.read(slow)
        #expect(parked.outcome == nil)  // "other" is still full
        _ = kernel.read(other)
        #expect(parked.outcome == .written(1))
    }

    @Test func sizesAndPolicies() throws {
        let kernel = try KernelDriver()
        try kernel.mkdir("/g")
        let member = try kernel.create("/g/m")
        let send = try kernel.open("/g/send", O_WRONLY), ctl = try kernel.open("/g/ctl", O_WRONLY)
        let biggest = [UInt8](repeating: 7, count: 1_044_480)
        #expect(kernel.write(send, biggest).outcome == .written(1_044_480))
        guard case .data(let got) = kernel.read(member, size: 2 << 20).outcome else { Issue.record("no data"); return }
        #expect(got == biggest)
        #expect(kernel.write(send, biggest + [1]).outcome == .error(EMSGSIZE))
        #expect(kernel.write(send, "x", offset: 4096).outcome == .error(EMSGSIZE))  // a split write's rest
        #expect(kernel.write(member, "ab", offset: 4096, append: true).outcome == .written(2))  // O_APPEND
        #expect(kernel.write(ctl, "set send=members max_message=3\n").outcome == .written(31))
        #expect(kernel.fs.poll(handle: send, notify: nil).writable)  // a write fails at once: it would not wait
        #expect(kernel.write(send, "x").outcome == .error(EPERM))
        #expect(kernel.write(member, "toolong").outcome == .error(EMSGSIZE))
        #expect(kernel.write(member, "ok").outcome == .written(2))
    }

    @Test func removedMemberDrainsThenEndOfFile() throws {
        let kernel = try KernelDriver()
        try kernel.mkdir("/g")
        let member = try kernel.create("/g/m")
        let blockedElsewhere = try kernel.open("/g/m", O_RDONLY)
        let send = try kernel.open("/g/send", O_WRONLY)
        _ = kernel.write(send, "last")
        _ = kernel.read(blockedElsewhere)  // takes "last"
        let parked = kernel.read(blockedElsewhere)
        _ = kernel.write(send, "queued")
        let parkedAgain = kernel.read(blockedElsewhere)
        try kernel.unlink("/g/m")
        #expect(parked.text == "queued")
        #expect(parkedAgain.outcome == .data([]))
        #expect(kernel.read(member).outcome == .data([]))
        #expect(kernel.write(member, "x").outcome == .error(EPIPE))
    }

    @Test func shutDownReleasesEveryone() throws {
        let kernel = try KernelDriver(defaults: GroupSettings(capacity: 1))
        try kernel.mkdir("/g")
        // m, full and never read, holds the second write back.
        let full = try kernel.create("/g/m"), idle = try kernel.create("/g/idle")
        let send = try kernel.open("/g/send", O_WRONLY)
        _ = kernel.write(send, "1")
        _ = kernel.read(idle)
        let writer = kernel.write(send, "2"), reader = kernel.read(idle)
        kernel.fs.shutDown()
        #expect(writer.outcome == .error(ENOTCONN))
        #expect(reader.outcome == .error(ENOTCONN))
        // What was queued can still be read; a read that would wait cannot.
        #expect(kernel.read(full).text == "1")
        #expect(kernel.read(full).outcome == .error(ENOTCONN))
    }
}

@Suite struct ControlAndStatusTests {
    @Test func statusShowsTheContractFormat() throws {
        let kernel = try KernelDriver()
        try kernel.mkdir("/chat")
        _ = try kernel.create("/chat/alice")
        let bob = try kernel.create("/chat/bob")
        let send = try kernel.open("/chat/send", O_WRONLY)
        _ = kernel.write(send, "hi there")
        _ = kernel.read(bob)
        #expect(try kernel.readAll("/chat/status") == """
            group chat send=anyone capacity=256 queue_bytes=4194304 max_message=1044480 members=2 sent=1 blocked_writers=0 message=write send_to_peer=0
            member alice queued=1 queued_bytes=8 capacity=256 queue_bytes=4194304 loopback=0 drop_when_full=0 full=0 delivered=1 dropped=0 send_to_peer=0 peer_queued=0 peer_full=0 subscribe=
            member bob queued=0 queued_bytes=0 capacity=256 queue_bytes=4194304 loopback=0 drop_when_full=0 full=0 delivered=1 dropped=0 send_to_peer=0 peer_queued=0 peer_full=0 subscribe=
            user 1000 groups=1 members=2 queued_bytes=8 held_bytes=0

            """)
    }

    @Test func controlCommandsApplyAllOrNothing() throws {
        let kernel = try KernelDriver()
        try kernel.mkdir("/g")
        _ = try kernel.create("/g/m")
        let ctl = try kernel.open("/g/ctl", O_WRONLY)
        for bad in ["", "\n", "set", "set capacity", "set capacity=", "set capacity=0", "set capacity=1000001",
                    "set capacity=+5", "set capacity=0x10", "set capacity=5 capacity=6", "set bogus=1",
                    "set send=nobody", "member", "member m", "member zed loopback=1", "member m loopback=2",
                    "member m capacity=10 loopback=yes", "frobnicate", "set capacity=5\n\n", "set capacity=5\nset capacity=6",
                    "set queue_bytes=1073741825", "set max_message=1044481"] {
            #expect(kernel.write(ctl, bad).outcome == .error(EINVAL), "\(bad.debugDescription)")
        }
        #expect(try kernel.readAll("/g/status").hasPrefix("group g send=anyone capacity=256 "))
        // A command longer than one request would be parsed in parts: refused whole.
        #expect(kernel.write(ctl, "set capacity=7" + String(repeating: " ", count: 5000)).outcome == .error(EINVAL))
        #expect(kernel.write(ctl, "set capacity=7", offset: 4096).outcome == .error(EINVAL))
        #expect(kernel.write(ctl, "set capacity=7", offset: 4096, append: true).outcome == .written(14))
        #expect(kernel.write(ctl, "set capacity=256").outcome == .written(16))
        let memberCommand = "member m capacity=10 loopback=1 drop_when_full=1 queue_bytes=100\n"
        #expect(kernel.write(ctl, memberCommand).outcome == .written(memberCommand.utf8.count))
        #expect(try kernel.readAll("/g/status").contains("member m queued=0 queued_bytes=0 capacity=10 queue_bytes=100 loopback=1 drop_when_full=1"))
        let spaced = "set  capacity=7   queue_bytes=9 send=members"
        #expect(kernel.write(ctl, spaced).outcome == .written(spaced.utf8.count))
        _ = try kernel.create("/g/late")
        #expect(try kernel.readAll("/g/status").contains("member late queued=0 queued_bytes=0 capacity=7 queue_bytes=9 "))
    }

    @Test(arguments: 0..<200)
    func controlParserNeverCrashesOnNoise(seed: Int) {
        var generator = SeededGenerator(seed: UInt64(seed))
        let alphabet = Array("set member capacity queue_bytes max_message send loopback drop_when_full = 0123456789 \n\t-+xyz".utf8) + [0, 0xff, 0xc3]
        let noise = (0..<Int.random(in: 0...60, using: &generator)).map { _ in alphabet.randomElement(using: &generator)! }
        do {
            _ = try ControlCommand(parsing: noise)
        } catch {
            #expect(error == .invalidArgument)
        }
    }
}

@Suite struct PollTests {
    @Test func readinessAndNotification() throws {
        let kernel = try KernelDriver(defaults: GroupSettings(capacity: 1))
        try kernel.mkdir("/g")
        let member = try kernel.create("/g/m")
        let readOnly = try kernel.open("/g/m", O_RDONLY)
        let send = try kernel.open("/g/send", O_WRONLY)
        let notified = Counter()
        #expect(kernel.fs.poll(handle: readOnly, notify: { notified.bump() }) == Readiness(readable: false, writable: false))
        #expect(kernel.fs.poll(handle: member, notify: nil) == Readiness(readable: false, writable: true))
        _ = kernel.write(send, "x")
        #expect(notified.value == 1)
        #expect(kernel.fs.poll(handle: send, notify: { notified.bump() }) == Readiness(readable: false, writable: false))
        _ = kernel.read(readOnly)
        #expect(notified.value == 2)
        #expect(kernel.fs.poll(handle: send, notify: nil).writable)
        kernel.fs.release(handle: readOnly)
    }
}

final class Counter: Sendable {
    private let count = AdaptiveMutex(0)
    func bump() { count.withLock { $0 += 1 } }
    var value: Int { count.withLock { $0 } }
}

