import DeliveryCore
import FileSystemTypes
import Locking

/// One open file (a kernel file handle). The filesystem owns it, in its table
/// of open files, from open to release; the handle number given to the
/// kernel is its address, so a read or write finds it without a lookup or a
/// lock.
final class OpenFile: Sendable {
    enum Content: Sendable {
        /// A member file: reads receive (if opened for reading), writes send
        /// as the member (if opened for writing).
        case member(Member, reader: Reader?, writable: Bool)
        /// A member's peer file: reads receive from its peer queue, writes
        /// send private messages to the member.
        case peer(Member, reader: Reader?, writable: Bool)
        case send(Group)
        case control(Group)
        /// The snapshot made at open: of a group (`status`) or of every
        /// group (`.metrics`). Read at any offset, as a regular file.
        case status([UInt8])
        /// The entries listed at opendir, so offsets stay stable.
        case directory([DirectoryEntry])
    }

    let content: Content
    /// How `send` and member files encode messages: one per read and write,
    /// or framed batches (opened in `G/frames/`).
    let view: View
    /// Identifies this file's poll watch in the core.
    let watchID: UInt64
    /// What waits for this file's next line message, for a file that sends
    /// in the record view (used when its group has `message=line`).
    let pendingLine: PendingLine?
    /// A snapshot's bytes, charged to its opener until release.
    let held: HeldBytes?

    init(content: Content, view: View, watchID: UInt64, held: HeldBytes? = nil) {
        self.content = content
        self.view = view
        self.watchID = watchID
        self.held = held
        pendingLine = switch (content, view) {
        case (.send, .record), (.member(_, _, writable: true), .record), (.peer(_, _, writable: true), .record): PendingLine()
        default: nil
        }
    }

    var handle: UInt64 { UInt64(UInt(bitPattern: Unmanaged.passUnretained(self).toOpaque())) }

    /// Where the waiting line of a file that sends goes (fsync, release).
    var lineDestination: Destination? {
        switch content {
        case .send(let group): .group(group, as: nil)
        case .member(let member, _, _): .group(member.group, as: member)
        case .peer(let member, _, _): .privately(member)
        case .control, .status, .directory: nil
        }
    }

    /// The open file behind a handle, which must be live (between open and
    /// release, while the table of open files holds it).
    static func of(_ handle: UInt64) -> OpenFile {
        Unmanaged<OpenFile>.fromOpaque(UnsafeRawPointer(bitPattern: UInt(handle))!).takeUnretainedValue()
    }
}

/// What `open` gives back to the kernel.
public struct OpenedFile: Sendable, Equatable {
    public let handle: UInt64
    /// A stream (member, `send`, `ctl`): no file position, direct I/O, so that
    /// one open file can have a blocked read and a write, or several blocked
    /// reads, at once. `status` and directories are not streams.
    public let isStream: Bool
}

/// Every open file, from open to release. The files are owned here (the
/// handles given to the kernel are unretained pointers to them), so a file
/// the kernel never released, because it went away, is still freed with the
/// filesystem.
final class OpenFileTable: Sendable {
    private let files = AdaptiveMutex<[UInt64: OpenFile]>([:])

    /// Keeps `file` until `remove`; its handle.
    func keep(_ file: OpenFile) -> UInt64 {
        let handle = file.handle
        files.withLock { $0[handle] = file }
        return handle
    }

    func remove(_ file: OpenFile) {
        _ = files.withLock { $0.removeValue(forKey: file.handle) }
    }

    var count: Int { files.withLock { $0.count } }
}
