import DeliveryCore
import FileSystemTypes
import Glibc
import MulticastFS
import SystemPackage
import Testing

// `G/peers/` and `G/peers/NAME` (docs/contract.md, "Connected groups:
// peers"), driven as the kernel would, without a mount.

private func control(_ kernel: KernelDriver, _ group: String, _ command: String) throws {
    let ctl = try kernel.open("/\(group)/ctl", O_WRONLY)
    defer { kernel.fs.release(handle: ctl) }
    #expect(kernel.write(ctl, command).outcome == .written(command.utf8.count), "\(command)")
}

@Suite struct PeerFileTests {
    @Test func peersIsMadeWithTheGroupAndHoldsAFilePerMember() throws {
        var kernel = try KernelDriver()
        try kernel.mkdir("/g", mode: 0o750)
        let peers = try kernel.stat("/g/peers")
        #expect(peers.mode.type == .directory && peers.permissions == 0o700 && peers.uid.rawValue == 1000)
        #expect(try kernel.list("/g/peers") == [".", ".."])
        // A member made by someone else: its peer file is the group owner's.
        kernel.caller = Caller(uid: UserID(rawValue: 42), gid: GroupID(rawValue: 43))
        kernel.fs.release(handle: try kernel.create("/g/alice", mode: 0o666))
        let peer = try kernel.stat("/g/peers/alice")
        #expect(peer.mode.type == .regular && peer.permissions == 0o600 && peer.uid.rawValue == 1000 && peer.gid.rawValue == 1000)
        let member = try kernel.stat("/g/alice")
        #expect(peer.ino != member.ino)
        #expect(try kernel.list("/g/peers") == [".", "..", "alice"])
        // Its own attributes: a chmod of one is not a chmod of the other.
        let lookedUp = try kernel.fs.lookup(parent: kernel.resolve("/g/peers"), name: "alice")
        let again = try kernel.resolve("/g/peers/alice")
        #expect(!lookedUp.cacheable && lookedUp.nodeID != again)
        _ = try kernel.fs.setAttributes(of: lookedUp.nodeID, AttributeChanges(permissions: FilePermissions(rawValue: 0o640)))
        #expect(try kernel.stat("/g/peers/alice").permissions == 0o640 && kernel.stat("/g/alice").permissions == 0o666)
        // The mode of peers/ when a member joins: & 0600.
        _ = try kernel.fs.setAttributes(of: kernel.resolve("/g/peers"), AttributeChanges(permissions: FilePermissions(rawValue: 0o500)))
        kernel.fs.release(handle: try kernel.create("/g/bob"))
        #expect(try kernel.stat("/g/peers/bob").permissions == 0o400)
        #expect(try kernel.list("/g/peers") == [".", "..", "alice", "bob"])
        // rm G/NAME takes its peer file with it; the group goes with peers/.
        try kernel.unlink("/g/alice")
        try kernel.unlink("/g/bob")
        #expect(throws: Errno.noSuchFileOrDirectory) { _ = try kernel.resolve("/g/peers/alice") }
        #expect(try kernel.list("/g/peers") == [".", ".."])
        let peersIno = try kernel.resolve("/g/peers")
        try kernel.rmdir("/g")
        #expect(throws: Errno.noSuchFileOrDirectory) { _ = try kernel.fs.openDirectory(peersIno) }
    }

    @Test func nothingIsMadeOrRemovedInPeersAndPeersIsTaken() throws {
        let kernel = try KernelDriver()
        try kernel.mkdir("/g")
        kernel.fs.release(handle: try kernel.create("/g/alice"))
        #expect(throws: Errno.notPermitted) { _ = try kernel.create("/g/peers/bob") }
        #expect(throws: Errno.notPermitted) { _ = try kernel.create("/g/peers/alice") }
        #expect(throws: Errno.notPermitted) {
            _ = try kernel.fs.makeNode(parent: kernel.resolve("/g/peers"), name: "bob", mode: FileMode(rawValue: S_IFREG | 0o644), caller: kernel.caller)
        }
        #expect(throws: Errno.notPermitted) { try kernel.unlink("/g/peers/alice") }
        #expect(throws: Errno.notPermitted) { try kernel.unlink("/g/peers") }
        #expect(throws: Errno.notPermitted) { try kernel.rmdir("/g/peers") }
        #expect(throws: Errno.notPermitted) { try kernel.mkdir("/g/peers/sub") }
        #expect(throws: Errno.fileExists) { _ = try kernel.create("/g/peers", flags: O_RDWR | O_EXCL) }
        #expect(throws: Errno.isDirectory) { _ = try kernel.open("/g/peers", O_RDONLY) }
        // The framed view has no twin of peers/ or of a peer file.
        #expect(throws: Errno.noSuchFileOrDirectory) { _ = try kernel.resolve("/g/frames/peers") }
        #expect(try kernel.list("/g/frames") == [".", "..", "send", "alice"])
        // A group may still be called peers.
        try kernel.mkdir("/peers")
    }

    @Test func aPeerFileReadsWhatItsMemberSendsAndWritesToItAlone() throws {
        let kernel = try KernelDriver()
        try kernel.mkdir("/g")
        let alice = try kernel.create("/g/alice"), bob = try kernel.create("/g/bob")
        let peer = try kernel.open("/g/peers/alice", O_RDWR)
        // Before send_to_peer: nothing reaches the peer.
        _ = kernel.write(alice, "unheard")
        #expect(kernel.read(peer, nonBlocking: true).outcome == .error(EAGAIN))
        try control(kernel, "g", "member alice send_to_peer=1")
        _ = kernel.write(alice, "request")
        // Split reads, as on member files.
        #expect(kernel.read(peer, size: 3).text == "req" && kernel.read(peer).text == "uest")
        let waiting = kernel.read(peer)
        #expect(waiting.outcome == nil && waiting.waited)
        _ = kernel.write(alice, "again")
        #expect(waiting.text == "again")

        #expect(kernel.write(peer, "answer").outcome == .written(6))
        #expect(kernel.read(bob).text == "unheard" && kernel.read(bob).text == "request" && kernel.read(bob).text == "again")
        #expect(kernel.read(bob, nonBlocking: true).outcome == .error(EAGAIN))
        #expect(kernel.read(alice).text == "answer")
        // Through the framed view it is marked private, with no sender.
        _ = kernel.write(peer, "marked")
        let framed = try kernel.open("/g/frames/alice", O_RDONLY)
        guard case .data(let frame)? = kernel.read(framed).outcome else { Issue.record("no frame"); return }
        #expect(frame[6] == 0 && frame[7] == 1 && frame[4] == 40)
        #expect(Array(frame[40..<46]) == Array("marked".utf8))
        // Private messages have group sequence numbers like the rest.
        let status = try kernel.readAll("/g/status")
        #expect(status.contains(" sent=5 "))
        #expect(status.contains("member alice queued=0 queued_bytes=0 capacity=256 queue_bytes=4194304 loopback=0 drop_when_full=0 full=0 delivered=2 dropped=0 send_to_peer=1 peer_queued=0 peer_full=0"))
    }

    @Test func privateWritesWaitForTheirMemberAndFailOnceItLeft() throws {
        let kernel = try KernelDriver()
        try kernel.mkdir("/g")
        let alice = try kernel.create("/g/alice")
        try control(kernel, "g", "member alice capacity=1 send_to_peer=1")
        let peer = try kernel.open("/g/peers/alice", O_RDWR)
        _ = kernel.write(peer, "1")
        #expect(kernel.write(peer, "2", nonBlocking: true).outcome == .error(EAGAIN))
        #expect(kernel.fs.poll(handle: peer, notify: nil) == Readiness(readable: false, writable: false))
        let waiting = kernel.write(peer, "2")
        #expect(waiting.outcome == nil && waiting.waited)
        #expect(kernel.read(alice).text == "1")
        #expect(waiting.outcome == .written(1))
        // An interrupted private write delivered nothing.
        let interrupted = kernel.write(peer, "3")
        interrupted.interrupt()
        #expect(interrupted.outcome == .error(EINTR))
        #expect(kernel.read(alice).text == "2")
        // A full peer queue holds the member's writes back.
        _ = kernel.write(alice, "to the peer")
        #expect(kernel.write(alice, "more", nonBlocking: true).outcome == .error(EAGAIN))
        #expect(kernel.fs.poll(handle: peer, notify: nil) == Readiness(readable: true, writable: true))
        // rm: what is queued is read, then end of file; writes fail with EPIPE.
        #expect(kernel.write(peer, "x").outcome == .written(1))
        _ = kernel.write(peer, "y")
        let stuck = kernel.write(peer, "z")
        #expect(stuck.outcome == nil)
        try kernel.unlink("/g/alice")
        #expect(stuck.outcome == .error(EPIPE))
        #expect(kernel.write(peer, "late").outcome == .error(EPIPE))
        #expect(kernel.read(peer).text == "to the peer")
        #expect(kernel.read(peer).outcome == .data([]))
        #expect(throws: Errno.noSuchFileOrDirectory) { _ = try kernel.open("/g/peers/alice", O_RDONLY) }
        #expect(kernel.fs.poll(handle: peer, notify: nil) == Readiness(readable: true, writable: true))
    }

    @Test func inLineModeEachLineIsAPrivateMessage() throws {
        let kernel = try KernelDriver()
        try kernel.mkdir("/g")
        let alice = try kernel.create("/g/alice")
        try control(kernel, "g", "set message=line")
        let peer = try kernel.open("/g/peers/alice", O_WRONLY)
        #expect(kernel.write(peer, "one\ntwo\nhalf").outcome == .written(12))
        #expect(kernel.read(alice).text == "one\n" && kernel.read(alice).text == "two\n")
        #expect(kernel.read(alice, nonBlocking: true).outcome == .error(EAGAIN))
        kernel.fs.release(handle: peer)
        #expect(kernel.read(alice).text == "half")
    }

    @Test func sendToPeerIsAGroupDefaultAndAMemberKey() throws {
        let kernel = try KernelDriver()
        try kernel.mkdir("/g")
        kernel.fs.release(handle: try kernel.create("/g/before"))
        try control(kernel, "g", "set send_to_peer=1")
        kernel.fs.release(handle: try kernel.create("/g/after"))
        let status = try kernel.readAll("/g/status")
        #expect(status.hasPrefix("group g ") && status.split(separator: "\n")[0].hasSuffix(" message=write send_to_peer=1"))
        #expect(status.contains("member before ") && status.contains("dropped=0 send_to_peer=0 peer_queued=0 peer_full=0 subscribe=\nmember after "))
        // The last member line, before the user lines (limits per user).
        #expect(status.hasSuffix("dropped=0 send_to_peer=1 peer_queued=0 peer_full=0 subscribe=\nuser 1000 groups=1 members=2 queued_bytes=0 held_bytes=0\n"))
        let ctl = try kernel.open("/g/ctl", O_WRONLY)
        for bad in ["member before send_to_peer=2", "set send_to_peer=yes", "member nobody send_to_peer=1"] {
            #expect(kernel.write(ctl, bad).outcome == .error(EINVAL), "\(bad)")
        }
    }
}
