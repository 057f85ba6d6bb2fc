import DeliveryCore
import FileSystemTypes
import Glibc
import MulticastFS
import SystemPackage
import Testing

/// `ROOT/.metrics` (docs/contract.md, "Metrics"), without a mount.
@Suite struct MetricsFileTests {
    @Test func aReadOnlyFileOfTheMountingUserInTheRoot() throws {
        let kernel = try KernelDriver()
        let attributes = try kernel.stat("/.metrics")
        #expect(attributes.mode.type == .regular)
        #expect(attributes.permissions == 0o444)
        #expect(attributes.uid.rawValue == 1000 && attributes.gid.rawValue == 1000)
        #expect(attributes.size == 0)
        #expect(try kernel.list("/").prefix(3) == [".", "..", ".metrics"])
    }

    @Test func noGroupTakesItsNameAndItCannotBeRemoved() throws {
        let kernel = try KernelDriver()
        #expect(throws: Errno.fileExists) { try kernel.mkdir("/.metrics") }
        #expect(throws: Errno.notDirectory) { try kernel.rmdir("/.metrics") }
        #expect(throws: Errno.notPermitted) { try kernel.unlink("/.metrics") }
        #expect(throws: Errno.notDirectory) { _ = try kernel.resolve("/.metrics/x") }
        #expect(throws: Errno.notPermitted) { _ = try kernel.create("/.metrics") }
        // Only in the root: in a group it is an invalid member name.
        try kernel.mkdir("/g")
        #expect(throws: Errno.noSuchFileOrDirectory) { _ = try kernel.resolve("/g/.metrics") }
        #expect(throws: Errno.invalidArgument) { _ = try kernel.create("/g/.metrics") }
        #expect(try kernel.stat("/.metrics").mode.type == .regular)
    }

    @Test func openingForWritingTruncatingAndChmodAreRefused() throws {
        let kernel = try KernelDriver()
        for flags in [O_WRONLY, O_RDWR, O_WRONLY | O_TRUNC] {
            #expect(throws: Errno.permissionDenied) { _ = try kernel.open("/.metrics", flags) }
        }
        let ino = try kernel.resolve("/.metrics")
        #expect(throws: Errno.permissionDenied) { _ = try kernel.fs.setAttributes(of: ino, AttributeChanges(size: 0)) }
        #expect(throws: Errno.notPermitted) {
            _ = try kernel.fs.setAttributes(of: ino, AttributeChanges(permissions: FilePermissions(rawValue: 0o644)))
        }
        #expect(throws: Errno.notPermitted) { _ = try kernel.fs.setAttributes(of: ino, AttributeChanges(uid: UserID(rawValue: 0))) }
        #expect(throws: Errno.notPermitted) { _ = try kernel.fs.setAttributes(of: ino, AttributeChanges(mtime: .now)) }
        #expect(try kernel.stat("/.metrics").permissions == 0o444)
        let handle = try kernel.open("/.metrics", O_RDONLY)
        defer { kernel.fs.release(handle: handle) }
        #expect(kernel.write(handle, "x").outcome == .error(EBADF))
    }

    @Test func theSnapshotIsTakenAtOpenAndReadAtAnyOffset() throws {
        let kernel = try KernelDriver()
        try kernel.mkdir("/g")
        let alice = try kernel.create("/g/alice")
        defer { kernel.fs.release(handle: alice) }
        let send = try kernel.open("/g/send", O_WRONLY)
        defer { kernel.fs.release(handle: send) }
        _ = kernel.write(send, "one")

        let handle = try kernel.open("/.metrics", O_RDONLY)
        defer { kernel.fs.release(handle: handle) }
        _ = kernel.write(send, "two")
        guard case .data(let whole) = kernel.read(handle, size: 1 << 20).outcome else { Issue.record("read"); return }
        let text = String(decoding: whole, as: UTF8.self)
        #expect(text.contains("mcastfs_group_sent_messages_total{group=\"g\"} 1\n"))
        #expect(text.contains("mcastfs_member_queued_messages{group=\"g\",member=\"alice\"} 1\n"))
        // Piecewise, at offsets, and again from the start: the same bytes.
        var pieces: [UInt8] = []
        while case .data(let piece) = kernel.read(handle, size: 5, offset: Int64(pieces.count)).outcome, !piece.isEmpty {
            pieces += piece
        }
        #expect(pieces == whole)
        #expect(kernel.read(handle, size: 10, offset: Int64(whole.count + 100)).outcome == .data([]))
        // A new open sees the second message.
        #expect(try kernel.readAll("/.metrics").contains("mcastfs_group_sent_messages_total{group=\"g\"} 2\n"))
    }
}

@Suite struct MetricsFormatTests {
    private func snapshot(of groups: [(String, [String])]) throws -> [GroupSnapshot] {
        try groups.map { name, members in
            let group = try Group(name: name, settings: GroupSettings())
            for member in members { _ = try group.join(member) }
            return group.snapshot()
        }
    }

    @Test func everyFamilyHasHelpAndTypeEvenWithoutGroups() throws {
        let text = MetricsFormat.render([])
        let lines = text.split(separator: "\n", omittingEmptySubsequences: false)
        #expect(lines.last == "", "ends with a line feed")
        for name in MetricsFormat.familyNames {
            #expect(name.hasPrefix("mcastfs_"))
            #expect(lines.contains { $0.hasPrefix("# HELP \(name) ") }, "\(name)")
            let type = lines.first { $0.hasPrefix("# TYPE \(name) ") }
            #expect(type == "# TYPE \(name) counter" || type == "# TYPE \(name) gauge", "\(name)")
            #expect(name.hasSuffix("_total") == (type == "# TYPE \(name) counter"), "\(name): counters and only counters end in _total")
        }
        #expect(text.contains("\nmcastfs_groups 0\n"))
        #expect(lines.filter { !$0.isEmpty && !$0.hasPrefix("#") } == ["mcastfs_groups 0"])
    }

    @Test func samplesFollowGroupsAndMembersInOrder() throws {
        let groups = try snapshot(of: [("b", ["x", "y"]), ("a", [])])
        let text = MetricsFormat.render(groups)
        let queued = text.split(separator: "\n").filter { $0.hasPrefix("mcastfs_member_queued_messages{") }
        #expect(queued == [#"mcastfs_member_queued_messages{group="b",member="x"} 0"#,
                           #"mcastfs_member_queued_messages{group="b",member="y"} 0"#])
        let members = text.split(separator: "\n").filter { $0.hasPrefix("mcastfs_group_members{") }
        #expect(members == [#"mcastfs_group_members{group="b"} 2"#, #"mcastfs_group_members{group="a"} 0"#])
        #expect(text.contains(#"mcastfs_member_capacity_messages{group="b",member="x"} 256"#))
        #expect(text.contains(#"mcastfs_member_capacity_bytes{group="b",member="x"} 4194304"#))
        #expect(text.contains("mcastfs_groups 2\n"))
    }

    @Test func labelValuesAreEscapedAsTheFormatSays() throws {
        // Quote and backslash are valid in names; a line feed is not (no
        // control characters), but the encoder must not rely on that.
        let groups = try snapshot(of: [(#"q"uo\te"#, ["é🙂{},="]), ("line\nfeed", [])])
        let text = MetricsFormat.render(groups)
        #expect(text.contains(#"mcastfs_group_members{group="q\"uo\\te"} 1"#))
        #expect(text.contains(#"mcastfs_member_full{group="q\"uo\\te",member="é🙂{},="} 0"#))
        #expect(text.contains(#"mcastfs_group_members{group="line\nfeed"} 0"#))
        #expect(!text.contains("line\nfeed"))
    }
}
