import FileSystemTypes
import SystemPackage

/// Who opens a file, as the kernel says (docs/contract.md, "Metrics"): what
/// a `status` or `.metrics` snapshot shows them, and whose user_bytes it is
/// charged to.
public struct Opener: Sendable {
    public let uid: UInt32
    public let gid: UInt32
    /// The opening thread (0 when outside the daemon's pid namespace): where
    /// its supplementary groups are read, which the kernel does not send.
    public let pid: UInt32

    public init(uid: UInt32, gid: UInt32, pid: UInt32) {
        self.uid = uid
        self.gid = gid
        self.pid = pid
    }

    /// Root searches every directory (CAP_DAC_READ_SEARCH).
    var isRoot: Bool { uid == 0 }

    /// The opener's groups: its fsgid, and the supplementary groups of
    /// /proc/PID/status, as libfuse's fuse_req_getgroups reads them. A
    /// thread the daemon cannot see (pid 0, or gone) counts its fsgid only,
    /// which can only show it less.
    func groups() -> Set<UInt32> {
        var groups: Set<UInt32> = [gid]
        guard pid != 0, let status = Self.read("/proc/\(pid)/status") else { return groups }
        for line in status.split(separator: "\n") where line.hasPrefix("Groups:") {
            for field in line.dropFirst("Groups:".count).split(whereSeparator: { $0 == " " || $0 == "\t" }) {
                if let gid = UInt32(field) { groups.insert(gid) }
            }
        }
        return groups
    }

    private static func read(_ path: String) -> String? {
        guard let fd = try? FileDescriptor.open(FilePath(path), .readOnly) else { return nil }
        defer { try? fd.close() }
        var bytes: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 4096)
        while true {
            let count = (try? buffer.withUnsafeMutableBytes { try fd.read(into: $0) }) ?? 0
            if count <= 0 { break }
            bytes.append(contentsOf: buffer[..<count])
        }
        return String(decoding: bytes, as: UTF8.self)
    }
}

/// What a snapshot shows an opener.
struct Visibility {
    let opener: Opener
    private let groups: Set<UInt32>
    /// Root, or the mounting user (who owns `.metrics`): every user's lines.
    private let seesEveryUser: Bool

    /// `groups`: read the opener's groups, for `maySearch`.
    init(_ opener: Opener, mountedBy mounter: UInt32, groups: Bool) {
        self.opener = opener
        seesEveryUser = opener.isRoot || opener.uid == mounter
        self.groups = opener.isRoot || !groups ? [] : opener.groups()
    }

    /// May the opener search a directory of these attributes: the rule the
    /// kernel applies with default_permissions (the owner's bits for its
    /// owner, else the group's for a member of its group, else the others').
    /// (Made with `groups: true`.)
    func maySearch(_ directory: FileAttributes) -> Bool {
        if opener.isRoot { return true }
        let mode = directory.mode.permissions.rawValue
        if directory.uid.rawValue == opener.uid { return mode & 0o100 != 0 }
        if groups.contains(directory.gid.rawValue) { return mode & 0o010 != 0 }
        return mode & 0o001 != 0
    }

    /// The `user` lines the opener may see: its own, or everyone's.
    func users(_ usage: [UserUsage]) -> [UserUsage] {
        seesEveryUser ? usage : usage.filter { $0.uid == opener.uid }
    }
}
