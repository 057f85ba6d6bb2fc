import FileSystemTypes
import Glibc
import SystemPackage
import Locking
import Synchronization
import Testing

@testable import FUSELowLevel

/// Mounts a tiny stream filesystem in this process and drives it with
/// blocking system calls from other threads: a stored read answered by a
/// write on the same fd (FOPEN_STREAM), a read ended by a signal (EINTR via
/// the interrupt path), a poll woken by a notification, and `requestExit`
/// ending `run` without any signal handler installed. Skipped where
/// /dev/fuse cannot be opened. Every blocking call runs on its own thread
/// with a deadline, so a regression fails the test instead of hanging it
/// (the deferred destroy aborts the connection and frees blocked threads).
private func fuseAvailable() -> Bool {
    let fd = open("/dev/fuse", O_RDWR)
    guard fd >= 0 else { return false }
    close(fd)
    return true
}

@Suite(.enabled(if: fuseAvailable(), "needs /dev/fuse"))
struct MountTests {

    /// One file, ino 2: reads wait for the next write.
    final class StreamFile: FilesystemOperations {
        private struct State {
            var waiters: [Int: ReplyData] = [:]
            var queue: [[UInt8]] = []
            var nextID = 0
            var poll: PollHandle?
        }
        private let state = AdaptiveMutex(State())
        let destroyed = Atomic<Bool>(false)

        let now = Timestamp(seconds: 1_700_000_000)
        func attributes(_ ino: UInt64) -> FileAttributes {
            FileAttributes(
                ino: ino, mode: FileMode(rawValue: ino == 1 ? Glibc.S_IFDIR | 0o755 : Glibc.S_IFREG | 0o666),
                linkCount: ino == 1 ? 2 : 1, uid: UserID(rawValue: getuid()), gid: GroupID(rawValue: getgid()),
                atime: now, mtime: now, ctime: now)
        }

        var waiterCount: Int { state.withLock { $0.waiters.count } }

        func destroy() { destroyed.store(true, ordering: .releasing) }

        func lookup(_ context: RequestContext, parent: UInt64, name: String, reply: ReplyEntry) {
            guard parent == 1, name == "stream" else { reply.error(.noSuchFileOrDirectory); return }
            reply.entry(EntryParameters(ino: 2, attributes: attributes(2), attributeTimeout: 1, entryTimeout: 1))
        }

        func getattr(_ context: RequestContext, ino: UInt64, reply: ReplyAttributes) {
            reply.attributes(attributes(ino), timeout: 1)
        }

        func open(_ context: RequestContext, ino: UInt64, flags: OpenFlags, reply: ReplyOpen) {
            reply.opened(.stream(fh: 7))
        }

        func read(_ context: RequestContext, ino: UInt64, fh: UInt64, size: Int, offset: Int64, flags: OpenFlags, reply: ReplyData) {
            guard reply.armInterrupt() else { return }
            let parked = state.withLock { s -> Int? in
                if !s.queue.isEmpty {
                    let message = s.queue.removeFirst()
                    reply.data(message)
                    return nil
                }
                if flags.isNonBlocking {
                    reply.error(.wouldBlock)
                    return nil
                }
                s.nextID += 1
                s.waiters[s.nextID] = reply
                return s.nextID
            }
            guard let id = parked else { return }
            reply.onInterrupt { [self] in state.withLock { $0.waiters.removeValue(forKey: id) } != nil }
        }

        func write(_ context: RequestContext, ino: UInt64, fh: UInt64, data: UnsafeRawBufferPointer, offset: Int64, flags: OpenFlags, reply: ReplyWrite) {
            let message = [UInt8](data)
            let (waiter, poll) = state.withLock { s -> (ReplyData?, PollHandle?) in
                if let id = s.waiters.keys.min() { return (s.waiters.removeValue(forKey: id), nil) }
                s.queue.append(message)
                defer { s.poll = nil }
                return (nil, s.poll)
            }
            if let waiter, !waiter.data(message).delivered {
                state.withLock { $0.queue.append(message) }
            }
            poll?.notify()
            reply.written(data.count)
        }

        func poll(_ context: RequestContext, ino: UInt64, fh: UInt64, handle: PollHandle?, reply: ReplyPoll) {
            let ready = state.withLock { s -> Bool in
                if let handle { s.poll = handle }
                return !s.queue.isEmpty
            }
            reply.events(ready ? [.readable, .writable] : [.writable])
        }

        func flush(_ context: RequestContext, ino: UInt64, fh: UInt64, reply: ReplyEmpty) { reply.ok() }
        func release(_ context: RequestContext, ino: UInt64, fh: UInt64, flags: OpenFlags, reply: ReplyEmpty) { reply.ok() }
    }

    /// Runs `body` on a new thread; the result appears in the box.
    final class Background<T: Sendable>: Sendable {
        let result = AdaptiveMutex<T?>(nil)
        let thread = AdaptiveMutex<pthread_t?>(nil)
        init(_ body: @escaping @Sendable () -> T) {
            spawnDetachedThread { [self] in
                thread.withLock { $0 = pthread_self() }
                let value = body()
                result.withLock { $0 = value }
            }
        }
        func wait(seconds: Double) -> T? {
            let deadline = monotonicSeconds() + seconds
            while monotonicSeconds() < deadline {
                if let value = result.withLock({ $0 }) { return value }
                usleep(2_000)
            }
            return result.withLock { $0 }
        }
    }

    static func monotonicSeconds() -> Double {
        var ts = timespec()
        clock_gettime(CLOCK_MONOTONIC, &ts)
        return Double(ts.tv_sec) + Double(ts.tv_nsec) / 1e9
    }

    struct IOResult: Sendable, Equatable {
        var count: Int
        var errno: Int32
        var bytes: [UInt8]
    }

    static func readOnce(_ fd: Int32) -> IOResult {
        var buffer = [UInt8](repeating: 0, count: 64)
        let n = buffer.withUnsafeMutableBytes { Glibc.read(fd, $0.baseAddress, $0.count) }
        let error = n < 0 ? Glibc.errno : 0
        return IOResult(count: n, errno: error, bytes: n > 0 ? Array(buffer[..<n]) : [])
    }

    static func waitUntil(seconds: Double, _ condition: () -> Bool) -> Bool {
        let deadline = monotonicSeconds() + seconds
        while monotonicSeconds() < deadline {
            if condition() { return true }
            usleep(2_000)
        }
        return condition()
    }

    @Test func mountedStreamFile() throws {
        var template = Array("/tmp/fusell-test-XXXXXX".utf8CString)
        guard let dir = mkdtemp(&template) else {
            Issue.record("mkdtemp failed")
            return
        }
        let mountpoint = String(cString: dir)
        defer { rmdir(mountpoint) }

        let fs = StreamFile()
        let session = try FUSESession(operations: fs, options: ["-o", "fsname=fusell-test"])
        try session.mount(at: mountpoint)
        let loop = Background<Int32> { session.run(singleThreaded: false) }
        defer {
            session.requestExit()
            _ = loop.wait(seconds: 5)
            session.failPending(with: .ioError)
            session.destroy()
        }

        let path = mountpoint + "/stream"
        let fd = Glibc.open(path, O_RDWR)
        #expect(fd >= 0, "open: \(Errno(rawValue: Glibc.errno))")
        guard fd >= 0 else { return }
        defer { close(fd) }

        // A read waits as a stored reply; a write on the same fd reaches us
        // meanwhile (FOPEN_STREAM) and answers it from the writer's thread.
        let reader = Background { MountTests.readOnce(fd) }
        #expect(MountTests.waitUntil(seconds: 2) { fs.waiterCount == 1 })
        #expect(reader.result.withLock { $0 } == nil)
        let written = Array("hello".utf8).withUnsafeBytes { Glibc.write(fd, $0.baseAddress, $0.count) }
        #expect(written == 5)
        #expect(reader.wait(seconds: 2) == IOResult(count: 5, errno: 0, bytes: Array("hello".utf8)))

        // A signal to a blocked reader ends its read with EINTR, even though
        // signal(2) installs the handler with SA_RESTART. (Threads spawned
        // from Swift concurrency's pool inherit its mask, which blocks most
        // signals: unblock SIGUSR1 in the reader.)
        _ = signal(SIGUSR1, { _ in })
        let interrupted = Background { () -> IOResult in
            var set = sigset_t()
            sigemptyset(&set)
            sigaddset(&set, SIGUSR1)
            pthread_sigmask(SIG_UNBLOCK, &set, nil)
            return MountTests.readOnce(fd)
        }
        #expect(MountTests.waitUntil(seconds: 2) { fs.waiterCount == 1 })
        if let thread = interrupted.thread.withLock({ $0 }) { pthread_kill(thread, SIGUSR1) }
        #expect(interrupted.wait(seconds: 2) == IOResult(count: -1, errno: EINTR, bytes: []))
        #expect(fs.waiterCount == 0)
        #expect(session.pendingInterruptibleCount == 0)

        // poll(2) sleeps until the write's notification.
        let poller = Background { () -> Int16 in
            var pfd = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
            return Glibc.poll(&pfd, 1, 3_000) == 1 ? pfd.revents : -1
        }
        usleep(100_000)
        #expect(poller.result.withLock { $0 } == nil)
        _ = Array("ping".utf8).withUnsafeBytes { Glibc.write(fd, $0.baseAddress, $0.count) }
        let revents = poller.wait(seconds: 3)
        #expect(revents.map { $0 & Int16(POLLIN) != 0 } == true)
        #expect(Background { MountTests.readOnce(fd) }.wait(seconds: 2)?.bytes == Array("ping".utf8))

        // A reader still blocked at shutdown gets failPending's answer.
        let late = Background { MountTests.readOnce(fd) }
        #expect(MountTests.waitUntil(seconds: 2) { fs.waiterCount == 1 })

        // requestExit ends run() with no signal handler installed: it must
        // wake the loop thread itself.
        let start = MountTests.monotonicSeconds()
        session.requestExit()
        #expect(loop.wait(seconds: 3) == 0)
        #expect(MountTests.monotonicSeconds() - start < 1)
        #expect(session.pendingInterruptibleCount == 1)
        session.failPending(with: .ioError)
        #expect(late.wait(seconds: 2)?.errno == EIO)
        session.unmount()
        session.destroy()
        let destroyed = fs.destroyed.load(ordering: .acquiring)
        #expect(destroyed)
    }
}
