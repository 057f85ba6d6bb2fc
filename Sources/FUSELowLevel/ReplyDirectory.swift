import CFuse
public import FileSystemTypes
import Glibc
import Locking

/// Answers readdir: add entries until `add` returns false (the kernel's
/// buffer is full), then `send()`. The kernel asks again from the
/// `nextOffset` of the last entry it received; an empty reply ends the
/// listing.
///
///     for (index, entry) in entries.enumerated().dropFirst(Int(offset)) {
///         if !reply.add(entry, nextOffset: Int64(index + 1)) { break }
///     }
///     reply.send()
public final class ReplyDirectory: Reply, @unchecked Sendable {
    private struct Builder {
        var buffer: [UInt8]
        var used = 0
    }

    /// The size the kernel asked for: the most the reply may hold.
    public let capacity: Int
    private let builder: AdaptiveMutex<Builder>

    init(request: RequestHandle, session: SessionCore, capacity: Int) {
        self.capacity = max(0, capacity)
        self.builder = AdaptiveMutex(Builder(buffer: []))
        super.init(request: request, session: session)
    }

    required convenience init(request: RequestHandle, session: SessionCore) {
        self.init(request: request, session: session, capacity: 4096)
    }

    /// Appends one entry (`fuse_add_direntry`). Returns false, adding
    /// nothing, if it does not fit.
    public func add(_ entry: DirectoryEntry, nextOffset: Int64) -> Bool {
        guard !isAnswered else {
            assertionFailure("FUSELowLevel: ReplyDirectory.add after the reply was sent")
            return false
        }
        var st = Glibc.stat()
        st.st_ino = numericCast(entry.ino)
        st.st_mode = entry.type.rawValue
        return builder.withLock { b -> Bool in
            if b.buffer.isEmpty { b.buffer = [UInt8](repeating: 0, count: capacity) }
            let remaining = capacity - b.used
            let size = entry.name.withCString { cName in
                b.buffer.withUnsafeMutableBytes { raw -> Int in
                    // fuse_add_direntry ignores its request argument (3.14:
                    // `(void)req`) and writes nothing if the entry is larger
                    // than the space left; it returns the entry's size.
                    let start = raw.baseAddress!.advanced(by: b.used).assumingMemoryBound(to: CChar.self)
                    return fuse_add_direntry(nil, start, remaining, cName, &st, numericCast(nextOffset))
                }
            }
            guard size <= remaining else { return false }
            b.used += size
            return true
        }
    }

    /// Sends the entries added so far (none: end of directory).
    @discardableResult
    public func send() -> ReplyResult {
        let built = builder.withLock { b -> Builder in
            let taken = b
            b = Builder(buffer: [])
            return taken
        }
        return answer(by: .caller) { req in
            built.buffer.withUnsafeBytes {
                fuse_reply_buf(req, $0.baseAddress?.assumingMemoryBound(to: CChar.self), built.used)
            }
        }
    }
}
