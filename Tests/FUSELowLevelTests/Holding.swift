import FileSystemTypes
import FUSELowLevel
import FUSETesting
import Locking
import SystemPackage

/// A filesystem that answers nothing by itself: it keeps every reply and
/// poll handle libfuse's dispatch hands it, for the test to answer, so that
/// each test drives one real reply, made by the real operation table for a
/// real request, and reads what it put on the wire.
final class Holding: FilesystemOperations {
    private let replies = AdaptiveMutex<[Reply]>([])
    private let handles = AdaptiveMutex<[PollHandle]>([])

    private func hold(_ reply: Reply) { replies.withLock { $0.append(reply) } }

    /// The reply held most recently, as a `R`; removed from the hold.
    func take<R: Reply>(_ type: R.Type) -> R {
        let reply = replies.withLock { $0.popLast() }
        guard let typed = reply as? R else { fatalError("Holding: no \(R.self) held (found \(String(describing: reply)))") }
        return typed
    }

    func takeHandle() -> PollHandle? { handles.withLock { $0.popLast() } }

    func lookup(_ context: RequestContext, parent: UInt64, name: String, reply: ReplyEntry) { hold(reply) }
    func getattr(_ context: RequestContext, ino: UInt64, reply: ReplyAttributes) { hold(reply) }
    func readlink(_ context: RequestContext, ino: UInt64, reply: ReplyReadlink) { hold(reply) }
    func mkdir(_ context: RequestContext, parent: UInt64, name: String, mode: FileMode, reply: ReplyEntry) { hold(reply) }
    func unlink(_ context: RequestContext, parent: UInt64, name: String, reply: ReplyEmpty) { hold(reply) }
    func rmdir(_ context: RequestContext, parent: UInt64, name: String, reply: ReplyEmpty) { hold(reply) }
    func open(_ context: RequestContext, ino: UInt64, flags: OpenFlags, reply: ReplyOpen) { hold(reply) }
    func create(_ context: RequestContext, parent: UInt64, name: String, mode: FileMode, flags: OpenFlags, reply: ReplyCreate) { hold(reply) }
    func read(_ context: RequestContext, ino: UInt64, fh: UInt64, size: Int, offset: Int64, flags: OpenFlags, reply: ReplyData) { hold(reply) }
    func write(_ context: RequestContext, ino: UInt64, fh: UInt64, data: UnsafeRawBufferPointer, offset: Int64, flags: OpenFlags, reply: ReplyWrite) { hold(reply) }
    func readdir(_ context: RequestContext, ino: UInt64, fh: UInt64, size: Int, offset: Int64, reply: ReplyDirectory) { hold(reply) }
    func statfs(_ context: RequestContext, ino: UInt64, reply: ReplyStatfs) { hold(reply) }
    func getxattr(_ context: RequestContext, ino: UInt64, name: String, size: Int, reply: ReplyXattr) { hold(reply) }
    func lseek(_ context: RequestContext, ino: UInt64, fh: UInt64, offset: Int64, whence: Int32, reply: ReplyLseek) { hold(reply) }
    func poll(_ context: RequestContext, ino: UInt64, fh: UInt64, handle: PollHandle?, reply: ReplyPoll) {
        if let handle { handles.withLock { $0.append(handle) } }
        hold(reply)
    }
}

extension FakeKernel {
    /// Sends `request` to a `Holding` filesystem and returns its unique id
    /// with the reply the filesystem was handed.
    func hand<R: Reply>(_ request: Request, to fs: Holding, _ type: R.Type) -> (UInt64, R) {
        let unique = send(request)
        return (unique, fs.take(type))
    }
}
