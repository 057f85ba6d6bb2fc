import DeliveryCore
import FileSystemTypes
import Glibc
@testable import MulticastFS
import SystemPackage
import Testing

// What the filesystem holds for a user's requests outside every queue
// (docs/contract.md, "Limits per user"): blocked writes, line tails and open
// snapshots, charged to the caller against user_bytes; and what a snapshot
// shows its opener ("Metrics").

@Suite struct HeldBytesTests {
    /// uid 1000 makes /g with member r (capacity 1, full after one message);
    /// uid 2000 writes.
    private func fullGroup(bytes limit: Int) throws -> (KernelDriver, send: UInt64) {
        var kernel = try KernelDriver(defaults: GroupSettings(capacity: 1), limits: UserLimits(bytes: limit))
        try kernel.mkdir("/g", mode: 0o777)
        _ = try kernel.create("/g/r")
        let send = try kernel.open("/g/send", O_WRONLY)
        #expect(kernel.write(send, "x").outcome == .written(1))
        kernel.writer = Credentials(pid: 7, uid: 2000, gid: 2000)
        return (kernel, send)
    }

    private func held(_ kernel: KernelDriver, _ uid: UInt32) -> Int { kernel.fs.users.account(for: uid).heldBytes }

    @Test func aBlockedWriteIsChargedToItsWriterUntilItEnds() throws {
        let (kernel, send) = try fullGroup(bytes: 10)
        let first = kernel.write(send, "12345678")
        #expect(first.outcome == nil && first.waited)
        #expect(held(kernel, 2000) == 8)
        #expect(held(kernel, 1000) == 0)
        // Shown: a writer refused with EDQUOT can see why.
        let users = try kernel.readAll("/g/status").split(separator: "\n").filter { $0.hasPrefix("user ") }
        #expect(users == ["user 1000 groups=1 members=1 queued_bytes=1 held_bytes=0",
                          "user 2000 groups=0 members=0 queued_bytes=0 held_bytes=8"])
        // 8 is below 10: one more is held whole, then the writer is refused.
        let second = kernel.write(send, "abcdef")
        #expect(second.outcome == nil)
        #expect(held(kernel, 2000) == 14)
        #expect(kernel.write(send, "z").outcome == .error(EDQUOT))
        // Interrupted: given back. Sent: given back.
        second.interrupt()
        #expect(second.outcome == .error(EINTR))
        #expect(held(kernel, 2000) == 8)
        _ = kernel.read(try kernel.open("/g/r", O_RDONLY))
        #expect(first.outcome == .written(8))
        #expect(held(kernel, 2000) == 0)
    }

    @Test func aWriteDeliveredAtOnceIsNotRefusedAtTheLimit() throws {
        var kernel = try KernelDriver(limits: UserLimits(bytes: 4))
        try kernel.mkdir("/g")
        let reader = try kernel.create("/g/r")
        let send = try kernel.open("/g/send", O_WRONLY)
        kernel.writer = Credentials(pid: 7, uid: 1000, gid: 1000)
        #expect(kernel.write(send, "1234").outcome == .written(4))
        // uid 1000 is at its limit (its member holds 4): r is full, and a
        // blocking write that would wait for it is refused, not held.
        #expect(kernel.write(send, "5").outcome == .error(EDQUOT))
        _ = kernel.read(reader)
        #expect(kernel.write(send, "5").outcome == .written(1))
    }

    @Test func aLineTailIsChargedToItsWriterUntilItIsSent() throws {
        var kernel = try KernelDriver(limits: UserLimits(bytes: 10))
        try kernel.mkdir("/g", mode: 0o777)
        let reader = try kernel.create("/g/r")
        #expect(kernel.write(try kernel.open("/g/ctl", O_WRONLY), "set message=line").outcome == .written(16))
        kernel.writer = Credentials(pid: 7, uid: 2000, gid: 2000)
        let a = try kernel.open("/g/send", O_WRONLY), b = try kernel.open("/g/send", O_WRONLY)
        #expect(kernel.write(a, "12345678").outcome == .written(8))
        #expect(held(kernel, 2000) == 8)
        #expect(kernel.write(b, "abcdefgh").outcome == .written(8))
        #expect(held(kernel, 2000) == 16)
        // At the limit: a longer tail is refused, and what waited stays;
        // lines that leave no longer tail go.
        #expect(kernel.write(a, "9").outcome == .error(EDQUOT))
        #expect(kernel.write(a, "\nxy").outcome == .written(3))
        #expect(held(kernel, 2000) == 10)
        func lines() -> [String] {
            var lines: [String] = []
            while case .data(let bytes) = kernel.read(reader, nonBlocking: true).outcome { lines.append(String(decoding: bytes, as: UTF8.self)) }
            return lines
        }
        // Closing sends a tail (r's owner has room: read in between).
        kernel.fs.release(handle: a)
        #expect(held(kernel, 2000) == 8)
        #expect(lines() == ["12345678\n", "xy"])
        kernel.fs.release(handle: b)
        #expect(held(kernel, 2000) == 0)
        #expect(lines() == ["abcdefgh"])
    }

    @Test func aSnapshotIsChargedToItsOpenerWhileOpen() throws {
        let kernel = try KernelDriver(limits: UserLimits(bytes: 100))
        try kernel.mkdir("/g")
        let status = try kernel.resolve("/g/status")
        let opener = Opener(uid: 2000, gid: 2000, pid: 0)
        let first = try kernel.fs.open(status, flags: OpenFlags(.readOnly), opener: opener)
        let size = held(kernel, 2000)
        #expect(size > 0)
        var open = [first.handle]
        while held(kernel, 2000) < 100 { open.append(try kernel.fs.open(status, flags: OpenFlags(.readOnly), opener: opener).handle) }
        #expect(open.count == (100 + size - 1) / size)
        #expect(throws: Errno.diskQuotaExceeded) { _ = try kernel.fs.open(status, flags: OpenFlags(.readOnly), opener: opener) }
        // Someone else's own account is untouched.
        _ = try kernel.fs.open(status, flags: OpenFlags(.readOnly), opener: Opener(uid: 3000, gid: 3000, pid: 0))
        for handle in open { kernel.fs.release(handle: handle) }
        #expect(held(kernel, 2000) == 0)
    }

    private func text(_ kernel: KernelDriver, _ path: String, as opener: Opener) throws -> String {
        let handle = try kernel.fs.open(try kernel.resolve(path), flags: OpenFlags(.readOnly), opener: opener).handle
        defer { kernel.fs.release(handle: handle) }
        guard case .data(let bytes) = kernel.read(handle).outcome else { throw Errno.ioError }
        return String(decoding: bytes, as: UTF8.self)
    }

    @Test func metricsShowsTheGroupsTheOpenerMaySearch() throws {
        var kernel = try KernelDriver()
        try kernel.mkdir("/owners", mode: 0o700)
        try kernel.mkdir("/grouped", mode: 0o710)
        try kernel.mkdir("/everyone", mode: 0o701)
        try kernel.mkdir("/nobody", mode: 0o077)
        kernel.caller = Caller(uid: UserID(rawValue: 2000), gid: GroupID(rawValue: 2000))
        _ = try kernel.create("/everyone/m")
        func groups(_ opener: Opener) throws -> [String] {
            try text(kernel, "/.metrics", as: opener).split(separator: "\n")
                .filter { $0.hasPrefix("mcastfs_group_members{") }
                .map { String($0.split(separator: "\"")[1]) }
        }
        #expect(try groups(Opener(uid: 1000, gid: 5, pid: 0)) == ["owners", "grouped", "everyone"])
        // The owner's bits for the owner, whatever the others' say.
        #expect(try groups(Opener(uid: 1000, gid: 1000, pid: 0)) == ["owners", "grouped", "everyone"])
        #expect(try groups(Opener(uid: 3000, gid: 1000, pid: 0)) == ["grouped", "nobody"])
        #expect(try groups(Opener(uid: 3000, gid: 3000, pid: 0)) == ["everyone", "nobody"])
        #expect(try groups(Opener(uid: 0, gid: 0, pid: 0)) == ["owners", "grouped", "everyone", "nobody"])
    }

    @Test func userLinesAreTheOpenersOwnUnlessRootOrTheMounter() throws {
        var kernel = try KernelDriver()
        try kernel.mkdir("/g", mode: 0o777)
        kernel.caller = Caller(uid: UserID(rawValue: 2000), gid: GroupID(rawValue: 2000))
        _ = try kernel.create("/g/m")
        func users(_ path: String, _ uid: UInt32) throws -> [String] {
            try text(kernel, path, as: Opener(uid: uid, gid: uid, pid: 0)).split(separator: "\n")
                .filter { $0.hasPrefix("user ") || $0.hasPrefix("mcastfs_user_groups{") }
                .map { $0.hasPrefix("user ") ? String($0.split(separator: " ")[1]) : String($0.split(separator: "\"")[1]) }
        }
        for path in ["/g/status", "/.metrics"] {
            #expect(try users(path, 2000) == ["2000"])
            #expect(try users(path, 3000) == [])
            #expect(try users(path, 1000) == ["1000", "2000"])  // the mounting user
            #expect(try users(path, 0) == ["1000", "2000"])
        }
    }
}
