import Glibc

/// `mount -o remount,ro ROOT` (and `remount,rw`): mount(8) runs the helper
/// again, so mount.fuse3 runs `mcastfs SOURCE ROOT -o ...,remount,...` with
/// every flag of the mount table. There is no second daemon to start: the
/// flags belong to the kernel, which changes them alone and enforces them
/// (a read-only mount refuses every open for writing, mkdir, create, unlink
/// and chmod with EROFS before the daemon sees it; the daemon never hears
/// of the remount). The kernel ignores FUSE's own options on a remount, and
/// so does this: group defaults are set when mounting.
enum Remount {
    static func apply(flags: UInt, at path: String) throws {
        let target = MountTable.absolute(path)
        guard let type = MountTable.fileSystemType(at: target) else {
            throw StartupFailure(message: "cannot remount \(path): nothing is mounted there")
        }
        guard type == "fuse.mcastfs" else {
            throw StartupFailure(message: "cannot remount \(path): it is \(type), not fuse.mcastfs")
        }
        guard mount("mcastfs", target, "fuse.mcastfs", UInt(MS_REMOUNT) | flags, nil) == 0 else {
            let reason = String(cString: strerror(errno))
            throw StartupFailure(message: "cannot remount \(path): \(reason)\(errno == EPERM ? " (only root can remount)" : "")")
        }
    }
}
