import CFuse
public import FileSystemTypes
import SystemPackage
import Glibc

// The typed replies. Each answers one kind of request; all share `Reply`'s
// rules (single answer from any thread, `error(_:)`, interrupts, EIO when
// dropped). Every answering method returns whether the kernel took it.

/// Answers lookup, mknod, mkdir, symlink, link.
public final class ReplyEntry: Reply, @unchecked Sendable {
    @discardableResult
    public func entry(_ entry: EntryParameters) -> ReplyResult {
        answer(by: .caller) { req in
            var param = entry.entryParam
            return fuse_reply_entry(req, &param)
        }
    }

    /// "No such name", cached by the kernel for `timeout` seconds (an entry
    /// with inode 0). With timeout 0 this is the same as `error(.noSuchFileOrDirectory)`.
    @discardableResult
    public func negative(timeout: Double) -> ReplyResult {
        let attributes = FileAttributes(
            ino: 0, mode: FileMode(rawValue: 0), linkCount: 0, uid: UserID(rawValue: 0), gid: GroupID(rawValue: 0),
            atime: .epoch, mtime: .epoch, ctime: .epoch)
        return entry(EntryParameters(
            ino: 0, attributes: attributes, attributeTimeout: 0, entryTimeout: timeout))
    }
}

/// Answers getattr and setattr.
public final class ReplyAttributes: Reply, @unchecked Sendable {
    @discardableResult
    public func attributes(_ attributes: FileAttributes, timeout: Double) -> ReplyResult {
        answer(by: .caller) { req in
            var st = attributes.stat
            return fuse_reply_attr(req, &st, timeout.kernelTimeout)
        }
    }
}

/// Answers open and opendir. Sends `struct fuse_open_out` by hand so that
/// FOPEN_STREAM reaches the kernel (libfuse 3.14's fuse_reply_open cannot).
public final class ReplyOpen: Reply, @unchecked Sendable {
    @discardableResult
    public func opened(_ open: OpenParameters) -> ReplyResult {
        answer(by: .caller) { cfuse_reply_open($0, open.fh, open.openFlags) }
    }
}

/// Answers create: the new entry and the open file in one reply.
public final class ReplyCreate: Reply, @unchecked Sendable {
    @discardableResult
    public func created(entry: EntryParameters, open: OpenParameters) -> ReplyResult {
        answer(by: .caller) { req in
            var param = entry.entryParam
            return cfuse_reply_create(req, &param, open.fh, open.openFlags)
        }
    }
}

/// Answers read. A reply shorter than the size asked ends that read(2); an
/// empty one is end of file. Never send more than the size asked (the kernel
/// refuses it: `.failed(.invalidArgument)`, and the reader gets EIO).
public final class ReplyData: Reply, @unchecked Sendable {
    /// The bytes are copied to the kernel before this returns.
    @discardableResult
    public func data(_ bytes: UnsafeRawBufferPointer) -> ReplyResult {
        answer(by: .caller) { fuse_reply_buf($0, bytes.baseAddress?.assumingMemoryBound(to: CChar.self), bytes.count) }
    }

    @discardableResult
    public func data(_ bytes: [UInt8]) -> ReplyResult {
        bytes.withUnsafeBytes { data($0) }
    }

    @discardableResult
    public func data(_ bytes: ArraySlice<UInt8>) -> ReplyResult {
        bytes.withUnsafeBytes { data($0) }
    }

    /// One reply gathered from several buffers (`fuse_reply_iov`), without
    /// first copying them into one.
    @discardableResult
    public func data(gathering parts: [UnsafeRawBufferPointer]) -> ReplyResult {
        answer(by: .caller) { req in
            let iov = parts.map { iovec(iov_base: UnsafeMutableRawPointer(mutating: $0.baseAddress), iov_len: $0.count) }
            return iov.withUnsafeBufferPointer { fuse_reply_iov(req, $0.baseAddress, Int32($0.count)) }
        }
    }
}

/// Answers write with the number of bytes taken.
public final class ReplyWrite: Reply, @unchecked Sendable {
    @discardableResult
    public func written(_ count: Int) -> ReplyResult {
        answer(by: .caller) { fuse_reply_write($0, count) }
    }
}

/// Answers requests whose success carries nothing: unlink, rmdir, rename,
/// flush, release, fsync, releasedir, fsyncdir, setxattr, removexattr,
/// access, fallocate.
public final class ReplyEmpty: Reply, @unchecked Sendable {
    @discardableResult
    public func ok() -> ReplyResult {
        answer(by: .caller) { fuse_reply_err($0, 0) }
    }
}

/// Answers statfs.
public final class ReplyStatfs: Reply, @unchecked Sendable {
    @discardableResult
    public func statfs(_ stats: FilesystemStatistics) -> ReplyResult {
        answer(by: .caller) { req in
            var sv = stats.statvfs
            return fuse_reply_statfs(req, &sv)
        }
    }
}

/// Answers poll with the events ready now. Answer at once; to report
/// readiness later, keep the request's `PollHandle` and notify it.
public final class ReplyPoll: Reply, @unchecked Sendable {
    @discardableResult
    public func events(_ events: PollEvents) -> ReplyResult {
        answer(by: .caller) { fuse_reply_poll($0, events.rawValue) }
    }
}

/// Answers getxattr and listxattr: with the size needed when the request's
/// size is 0, else with the data (ERANGE if it does not fit).
public final class ReplyXattr: Reply, @unchecked Sendable {
    @discardableResult
    public func size(_ count: Int) -> ReplyResult {
        answer(by: .caller) { fuse_reply_xattr($0, count) }
    }

    @discardableResult
    public func data(_ bytes: [UInt8]) -> ReplyResult {
        answer(by: .caller) { req in bytes.withUnsafeBytes { fuse_reply_buf(req, $0.baseAddress?.assumingMemoryBound(to: CChar.self), $0.count) } }
    }
}

/// Answers lseek with the resulting offset.
public final class ReplyLseek: Reply, @unchecked Sendable {
    @discardableResult
    public func offset(_ offset: Int64) -> ReplyResult {
        answer(by: .caller) { fuse_reply_lseek($0, numericCast(offset)) }
    }
}

/// Answers readlink with the link's target.
public final class ReplyReadlink: Reply, @unchecked Sendable {
    @discardableResult
    public func target(_ target: String) -> ReplyResult {
        answer(by: .caller) { req in target.withCString { fuse_reply_readlink(req, $0) } }
    }
}
