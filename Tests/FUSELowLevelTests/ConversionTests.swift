import CFuse
import FileSystemTypes
import Glibc
import SystemPackage
import Testing

@testable import FUSELowLevel

@Suite struct ConversionTests {
    @Test func fileAttributesBecomeStat() {
        let a = FileAttributes(
            ino: 7, mode: FileMode(rawValue: Glibc.S_IFDIR | 0o755), linkCount: 2, uid: UserID(rawValue: 5), gid: GroupID(rawValue: 6), size: 1000,
            atime: Timestamp(seconds: 10, nanoseconds: 11), mtime: Timestamp(seconds: 12, nanoseconds: 13),
            ctime: Timestamp(seconds: 14, nanoseconds: 15), rdev: 3, blockSize: 512)
        let st = a.stat
        #expect(st.st_ino == 7)
        #expect(st.st_mode == UInt32(Glibc.S_IFDIR) | 0o755)
        #expect(st.st_nlink == 2)
        #expect(st.st_uid == 5 && st.st_gid == 6)
        #expect(st.st_size == 1000 && st.st_blocks == 2 && st.st_blksize == 512)
        #expect(st.st_rdev == 3)
        #expect(st.st_atim.tv_sec == 10 && st.st_atim.tv_nsec == 11)
        #expect(st.st_mtim.tv_sec == 12 && st.st_mtim.tv_nsec == 13)
        #expect(st.st_ctim.tv_sec == 14 && st.st_ctim.tv_nsec == 15)
    }

    @Test func setattrBitsDecode() {
        var st = Glibc.stat()
        st.st_mode = 0o600
        st.st_uid = 1
        st.st_gid = 2
        st.st_size = 77
        st.st_atim = timespec(tv_sec: 5, tv_nsec: 6)
        st.st_mtim = timespec(tv_sec: 7, tv_nsec: 8)
        st.st_ctim = timespec(tv_sec: 9, tv_nsec: 10)

        #expect(AttributeChanges(attr: st, toSet: 0).isEmpty)

        let all = AttributeChanges(
            attr: st,
            toSet: CFUSE_SET_ATTR_MODE | CFUSE_SET_ATTR_UID | CFUSE_SET_ATTR_GID | CFUSE_SET_ATTR_SIZE
                | CFUSE_SET_ATTR_ATIME | CFUSE_SET_ATTR_MTIME | CFUSE_SET_ATTR_CTIME)
        #expect(all == AttributeChanges(
            permissions: FilePermissions(rawValue: 0o600), uid: UserID(rawValue: 1), gid: GroupID(rawValue: 2), size: 77,
            atime: .at(Timestamp(seconds: 5, nanoseconds: 6)), mtime: .at(Timestamp(seconds: 7, nanoseconds: 8)),
            ctime: Timestamp(seconds: 9, nanoseconds: 10)))

        let now = AttributeChanges(
            attr: st,
            toSet: CFUSE_SET_ATTR_ATIME | CFUSE_SET_ATTR_ATIME_NOW | CFUSE_SET_ATTR_MTIME_NOW
                | CFUSE_SET_ATTR_KILL_SUID)
        #expect(now == AttributeChanges(atime: .now, mtime: .now, killSetUID: true))
    }

    /// The C split the create reply uses (fuse_reply_entry has its own,
    /// which ReplyTests checks on the wire): inputs no reply test sends.
    @Test func timeoutSplitsIntoSecondsAndNanoseconds() {
        #expect(cfuse_timeout_seconds(1.5) == 1)
        #expect(cfuse_timeout_nanoseconds(1.5) == 500_000_000)
        #expect(cfuse_timeout_seconds(-1) == 0 && cfuse_timeout_nanoseconds(-1) == 0)
        #expect(cfuse_timeout_seconds(.nan) == 0)
        #expect(cfuse_timeout_seconds(.infinity) == UInt64.max)
    }
}
