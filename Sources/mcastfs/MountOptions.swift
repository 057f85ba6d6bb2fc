import Glibc

/// The options that mount(8), fstab, systemd and mount.fuse3 put on the
/// command line of every FUSE filesystem, apart from the filesystem's own.
///
/// What reaches mcastfs depends on who started it (measured with util-linux
/// 2.38 and fuse3 3.14, `mount -t fuse.mcastfs mcastfs ROOT -o ...`):
/// mount(8) keeps `defaults`, `auto`, `noauto`, `user`, `users`, `nouser`,
/// `_netdev`, `nofail`, `comment=` and `x-*` to itself and turns the kernel
/// flags into a canonical list starting with `rw` or `ro`; mount.fuse3 drops
/// `user`, `users`, `nouser`, `auto`, `noauto`, `_netdev` and `nofail`, and
/// appends `dev` and `suid` unless `nodev` or `nosuid` was given. Typed by
/// hand, or given to mount.fuse3 directly, the whole fstab field arrives.
enum MountOption: Equatable {
    /// For mount(8), fstab or systemd, not the filesystem: accepted and dropped.
    case userspace
    /// A kernel mount flag (MS_*): set, or cleared.
    case flag(UInt, set: Bool, libfuseKnows: Bool)
    /// `mount -o remount,...`: change the live mount's flags.
    case remount

    init?(_ option: Substring) {
        if option.hasPrefix("x-") || option.hasPrefix("comment=") {
            self = .userspace
            return
        }
        switch option {
        case "defaults", "auto", "noauto", "user", "users", "nouser", "_netdev", "nofail": self = .userspace
        case "remount": self = .remount
        default:
            guard let flag = MountOption.flags[String(option)] else { return nil }
            self = flag
        }
    }

    /// The kernel flags by name. libfuse 3.14 (lib/mount.c, `mount_flags`)
    /// knows the first thirteen and refuses the rest as unknown; those mean
    /// nothing for mcastfs (its files' times are its own, it has no symlinks,
    /// no inode versions, no mandatory locks) but fstab lines carry them out
    /// of habit and mount(8) copies `relatime` from the mount table into a
    /// remount, so they are accepted: dropped at mount, applied at remount.
    static let flags: [String: MountOption] = [
        "ro": .flag(UInt(MS_RDONLY), set: true, libfuseKnows: true),
        "rw": .flag(UInt(MS_RDONLY), set: false, libfuseKnows: true),
        "nosuid": .flag(UInt(MS_NOSUID), set: true, libfuseKnows: true),
        "suid": .flag(UInt(MS_NOSUID), set: false, libfuseKnows: true),
        "nodev": .flag(UInt(MS_NODEV), set: true, libfuseKnows: true),
        "dev": .flag(UInt(MS_NODEV), set: false, libfuseKnows: true),
        "noexec": .flag(UInt(MS_NOEXEC), set: true, libfuseKnows: true),
        "exec": .flag(UInt(MS_NOEXEC), set: false, libfuseKnows: true),
        "sync": .flag(UInt(MS_SYNCHRONOUS), set: true, libfuseKnows: true),
        "async": .flag(UInt(MS_SYNCHRONOUS), set: false, libfuseKnows: true),
        "dirsync": .flag(UInt(MS_DIRSYNC), set: true, libfuseKnows: true),
        "noatime": .flag(UInt(MS_NOATIME), set: true, libfuseKnows: true),
        "atime": .flag(UInt(MS_NOATIME), set: false, libfuseKnows: true),
        "nodiratime": .flag(UInt(MS_NODIRATIME), set: true, libfuseKnows: false),
        "diratime": .flag(UInt(MS_NODIRATIME), set: false, libfuseKnows: false),
        "relatime": .flag(UInt(MS_RELATIME), set: true, libfuseKnows: false),
        "norelatime": .flag(UInt(MS_RELATIME), set: false, libfuseKnows: false),
        "strictatime": .flag(UInt(MS_STRICTATIME), set: true, libfuseKnows: false),
        "nostrictatime": .flag(UInt(MS_STRICTATIME), set: false, libfuseKnows: false),
        "lazytime": .flag(UInt(MS_LAZYTIME), set: true, libfuseKnows: false),
        "nolazytime": .flag(UInt(MS_LAZYTIME), set: false, libfuseKnows: false),
        "nosymfollow": .flag(UInt(MS_NOSYMFOLLOW), set: true, libfuseKnows: false),
        "symfollow": .flag(UInt(MS_NOSYMFOLLOW), set: false, libfuseKnows: false),
        "silent": .flag(UInt(MS_SILENT), set: true, libfuseKnows: false),
        "loud": .flag(UInt(MS_SILENT), set: false, libfuseKnows: false),
        "iversion": .flag(UInt(MS_I_VERSION), set: true, libfuseKnows: false),
        "noiversion": .flag(UInt(MS_I_VERSION), set: false, libfuseKnows: false),
        "mand": .flag(UInt(MS_MANDLOCK), set: true, libfuseKnows: false),
        "nomand": .flag(UInt(MS_MANDLOCK), set: false, libfuseKnows: false),
    ]
}
