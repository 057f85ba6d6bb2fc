import CFuse
import FileSystemTypes
import Glibc
import SystemPackage

extension Timestamp {
    init(_ ts: timespec) {
        self.init(seconds: Int64(ts.tv_sec), nanoseconds: Int64(ts.tv_nsec))
    }

    var timespec: Glibc.timespec {
        Glibc.timespec(tv_sec: numericCast(seconds), tv_nsec: numericCast(nanoseconds))
    }
}

extension FileAttributes {
    /// As `struct stat`, the form libfuse's attribute and entry replies take.
    var stat: Glibc.stat {
        var st = Glibc.stat()
        st.st_ino = numericCast(ino)
        st.st_mode = mode.rawValue
        st.st_nlink = numericCast(linkCount)
        st.st_uid = uid.rawValue
        st.st_gid = gid.rawValue
        st.st_size = numericCast(Int64(clamping: size))
        st.st_blocks = numericCast(Int64(clamping: (size &+ 511) / 512))
        st.st_blksize = numericCast(blockSize)
        st.st_rdev = numericCast(rdev)
        st.st_atim = atime.timespec
        st.st_mtim = mtime.timespec
        st.st_ctim = ctime.timespec
        return st
    }
}

extension EntryParameters {
    var entryParam: fuse_entry_param {
        var param = fuse_entry_param()
        param.ino = ino
        param.generation = generation
        param.attr = attributes.stat
        param.attr_timeout = attributeTimeout.kernelTimeout
        param.entry_timeout = entryTimeout.kernelTimeout
        return param
    }
}

extension Double {
    /// A timeout libfuse can convert: its calc_timeout_sec (3.14) clamps
    /// negatives to 0 but casts NaN to an integer, which is undefined and
    /// on x86-64 sends 2^63 seconds ("cache for ever"). NaN means 0 here,
    /// as it does in the shim's own split (cfuse_timeout_seconds).
    var kernelTimeout: Double { isNaN ? 0 : self }
}

extension OpenParameters {
    /// FOPEN_* bits for `struct fuse_open_out`.
    var openFlags: UInt32 {
        var flags: UInt32 = 0
        if directIO { flags |= CFUSE_FOPEN_DIRECT_IO }
        if keepCache { flags |= CFUSE_FOPEN_KEEP_CACHE }
        if nonseekable { flags |= CFUSE_FOPEN_NONSEEKABLE }
        if cacheDirectory { flags |= CFUSE_FOPEN_CACHE_DIR }
        if stream { flags |= CFUSE_FOPEN_STREAM }
        if noFlush { flags |= CFUSE_FOPEN_NOFLUSH }
        return flags
    }
}

extension AttributeChanges {
    /// Decodes libfuse's setattr arguments: the values in `attr`, and which
    /// of them to apply in `toSet` (FUSE_SET_ATTR_*).
    init(attr: Glibc.stat, toSet: Int32) {
        func has(_ bit: Int32) -> Bool { toSet & bit != 0 }
        self.init()
        if has(CFUSE_SET_ATTR_MODE) { permissions = FileMode(rawValue: attr.st_mode).permissions }
        if has(CFUSE_SET_ATTR_UID) { uid = UserID(rawValue: attr.st_uid) }
        if has(CFUSE_SET_ATTR_GID) { gid = GroupID(rawValue: attr.st_gid) }
        if has(CFUSE_SET_ATTR_SIZE) { size = UInt64(clamping: Int64(attr.st_size)) }
        if has(CFUSE_SET_ATTR_ATIME_NOW) {
            atime = .now
        } else if has(CFUSE_SET_ATTR_ATIME) {
            atime = .at(Timestamp(attr.st_atim))
        }
        if has(CFUSE_SET_ATTR_MTIME_NOW) {
            mtime = .now
        } else if has(CFUSE_SET_ATTR_MTIME) {
            mtime = .at(Timestamp(attr.st_mtim))
        }
        if has(CFUSE_SET_ATTR_CTIME) { ctime = Timestamp(attr.st_ctim) }
        killSetUID = has(CFUSE_SET_ATTR_KILL_SUID)
        killSetGID = has(CFUSE_SET_ATTR_KILL_SGID)
    }
}

extension FilesystemStatistics {
    var statvfs: Glibc.statvfs {
        var sv = Glibc.statvfs()
        sv.f_bsize = numericCast(blockSize)
        sv.f_frsize = numericCast(fragmentSize)
        sv.f_blocks = numericCast(blocks)
        sv.f_bfree = numericCast(blocksFree)
        sv.f_bavail = numericCast(blocksAvailable)
        sv.f_files = numericCast(files)
        sv.f_ffree = numericCast(filesFree)
        sv.f_favail = numericCast(filesFree)
        sv.f_namemax = numericCast(nameMax)
        return sv
    }
}

extension RequestContext {
    init(_ req: fuse_req_t) {
        let ctx = fuse_req_ctx(req)!.pointee
        self.init(uid: ctx.uid, gid: ctx.gid, pid: ctx.pid, umask: ctx.umask)
    }
}
