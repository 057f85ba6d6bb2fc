import DeliveryCore
import FileSystemTypes
import Glibc
import Locking
import MulticastFS
import SystemPackage

/// Plays the kernel's part for MulticastFilesystem without a mount: walks
/// paths with lookups, keeps file handles, and records every reply, which
/// tests can interrupt as a signal would.
struct KernelDriver {
    let fs: MulticastFilesystem
    var caller = Caller(uid: UserID(rawValue: 1000), gid: GroupID(rawValue: 1000))
    /// Who writes: what the kernel would say of the writing thread.
    var writer = Credentials(pid: 4242, uid: 1000, gid: 1000)

    init(defaults: GroupSettings = GroupSettings(), limits: UserLimits = UserLimits()) throws {
        fs = try MulticastFilesystem(owner: Caller(uid: UserID(rawValue: 1000), gid: GroupID(rawValue: 1000)), defaults: defaults,
                                     limits: limits)
    }

    /// The inode of a path like "/g/alice".
    func resolve(_ path: String) throws(Errno) -> InodeNumber {
        var ino = MulticastFilesystem.rootInode
        for component in components(path) {
            ino = try fs.lookup(parent: ino, name: component).nodeID
        }
        return ino
    }

    private func split(_ path: String) throws(Errno) -> (InodeNumber, String) {
        var components = components(path)
        let name = components.removeLast()
        return (try resolve(components.joined(separator: "/")), name)
    }

    /// At the `/` bytes, as the kernel splits: by Character, "/" followed
    /// by a combining mark would be no separator.
    private func components(_ path: String) -> [String] {
        path.utf8.split(separator: UInt8(ascii: "/")).map { String(Substring($0)) }
    }

    @discardableResult
    func mkdir(_ path: String, mode: UInt32 = 0o755) throws(Errno) -> FileAttributes {
        let (parent, name) = try split(path)
        return try fs.makeGroup(parent: parent, name: name, permissions: FilePermissions(rawValue: mode), caller: caller).attributes
    }

    func rmdir(_ path: String) throws(Errno) {
        let (parent, name) = try split(path)
        try fs.removeGroup(parent: parent, name: name)
    }

    func create(_ path: String, mode: UInt32 = 0o644, flags: Int32 = O_RDWR) throws(Errno) -> UInt64 {
        let (parent, name) = try split(path)
        return try fs.createMember(parent: parent, name: name, permissions: FilePermissions(rawValue: mode), flags: OpenFlags(rawValue: O_CREAT | flags), caller: caller).1.handle
    }

    func unlink(_ path: String) throws(Errno) {
        let (parent, name) = try split(path)
        try fs.removeMember(parent: parent, name: name)
    }

    func open(_ path: String, _ flags: Int32) throws(Errno) -> UInt64 {
        try fs.open(try resolve(path), flags: OpenFlags(rawValue: flags)).handle
    }

    func stat(_ path: String) throws(Errno) -> FileAttributes {
        try fs.attributes(of: try resolve(path))
    }

    func list(_ path: String) throws(Errno) -> [String] {
        let handle = try fs.openDirectory(try resolve(path)).handle
        defer { fs.release(handle: handle) }
        return fs.readDirectory(handle: handle, from: 0).map(\.name)
    }

    func read(_ handle: UInt64, size: Int = 1 << 20, offset: Int64 = 0, nonBlocking: Bool = false) -> RecordedReply {
        let reply = RecordedReply()
        fs.read(handle: handle, size: size, offset: offset, flags: OpenFlags(.readOnly, nonBlocking ? .nonBlocking : []), reply: reply)
        return reply
    }

    func write(_ handle: UInt64, _ text: String, offset: Int64 = 0, nonBlocking: Bool = false, append: Bool = false) -> RecordedReply {
        write(handle, Array(text.utf8), offset: offset, nonBlocking: nonBlocking, append: append)
    }

    func write(_ handle: UInt64, _ bytes: [UInt8], offset: Int64 = 0, nonBlocking: Bool = false, append: Bool = false) -> RecordedReply {
        let reply = RecordedReply()
        let flags = O_WRONLY | (nonBlocking ? O_NONBLOCK : 0) | (append ? O_APPEND : 0)
        bytes.withUnsafeBytes {
            fs.write(handle: handle, bytes: $0, offset: offset, flags: OpenFlags(rawValue: flags), writer: writer, reply: reply)
        }
        return reply
    }

    func fsync(_ handle: UInt64) -> RecordedReply {
        let reply = RecordedReply()
        fs.sync(handle: handle, reply: reply)
        return reply
    }

    /// Reads a whole file that does not wait (status).
    func readAll(_ path: String) throws -> String {
        let handle = try open(path, O_RDONLY)
        defer { fs.release(handle: handle) }
        var text: [UInt8] = []
        while true {
            guard case .data(let bytes) = read(handle, size: 7, offset: Int64(text.count)).outcome else { throw Errno.ioError }
            if bytes.isEmpty { return String(decoding: text, as: UTF8.self) }
            text += bytes
        }
    }
}

extension FileAttributes {
    /// The permission bits, as tests write them (0o640).
    var permissions: UInt32 { mode.permissions.rawValue }
}

/// A reply as the kernel would see it: answered once, maybe later, and
/// interruptible like a signalled process.
final class RecordedReply: ReadReply, WriteReply, SyncReply {
    enum Outcome: Equatable {
        case data([UInt8])
        case written(Int)
        case synced
        case error(Int32)
    }

    private struct State {
        var outcome: Outcome?
        var waited = false
        var cancel: (@Sendable () -> Bool)?
        var requesterGone = false
        var answers = 0
    }

    private let state = AdaptiveMutex(State())

    var outcome: Outcome? { state.withLock { $0.outcome } }
    var text: String? {
        if case .data(let bytes) = outcome { return String(decoding: bytes, as: UTF8.self) }
        return nil
    }
    var waited: Bool { state.withLock { $0.waited } }
    var answers: Int { state.withLock { $0.answers } }

    /// Makes the next data reply fail, as when the requester died.
    func requesterDies() { state.withLock { $0.requesterGone = true } }

    func reply(_ bytes: UnsafeRawBufferPointer) -> Bool {
        state.withLock { state in
            state.answers += 1
            if state.requesterGone { return false }
            state.outcome = .data(Array(bytes))
            return true
        }
    }

    func reply(written: Int) { answer(.written(written)) }
    func synced() { answer(.synced) }
    func fail(_ error: Errno) { answer(.error(error.rawValue)) }

    func willWait() -> Bool {
        state.withLock { $0.waited = true }
        return true
    }

    func cancelOnInterrupt(_ cancel: @escaping @Sendable () -> Bool) {
        state.withLock { $0.cancel = cancel }
    }

    /// A signal: cancels the wait; if that removed the waiter, answers EINTR.
    func interrupt() {
        guard let cancel = state.withLock({ $0.cancel }) else { return }
        if cancel() { answer(.error(EINTR)) }
    }

    private func answer(_ outcome: Outcome) {
        state.withLock { state in
            state.answers += 1
            state.outcome = outcome
        }
    }
}
