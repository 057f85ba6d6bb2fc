import ArgumentParser
import Cluster
import ClusterFS
import DaemonLog
import DeliveryCore
import FUSELowLevel
import FileSystemTypes
import Glibc
import Logging
import MulticastFS
import MulticastFUSE
import SystemPackage

/// `mcastfs [SOURCE] MOUNTPOINT [-f] [-d] [-s] [-o OPTION[,OPTION...]]`, as
/// libfuse filesystems are run: it returns once the mount is live and serves
/// in the background, unless -f. The SOURCE is there because mount(8) and
/// mount.fuse3 put one first (`mount -t fuse.mcastfs mcastfs ROOT` runs
/// `mcastfs mcastfs ROOT -o rw,dev,suid`).
@main
struct MountCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "mcastfs",
        abstract: "Mount a multicast message bus: groups are directories, members are files.",
        usage: "mcastfs [SOURCE] MOUNTPOINT [-f] [-d] [-s] [-o OPTION[,OPTION...]]",
        discussion: """
            Each directory is a group (mkdir makes one); each file in it is a member
            whose reads receive every message written to the group's `send` file or by
            another member. man 5 mcastfs is the filesystem, man 8 mcastfs this command.

            SOURCE, when given, only names the mount in the mount table: mount(8) passes
            the first field of an fstab line (`mcastfs /mnt/bus fuse.mcastfs defaults 0 0`,
            or `mount -t fuse.mcastfs mcastfs /mnt/bus`).

            mcastfs options (-o): capacity=N, queue_bytes=N, max_message=N (defaults for
            new groups); max_threads=N (worker threads at most; default: one per CPU,
            at least 2, at most 10); log_level=trace|debug|info|notice|warning|error|
            critical (what goes to stderr, or the journal; default info, debug with -d).
            user_groups=N, user_members=N, user_bytes=N (limits per uid, root too:
            groups and members owned, bytes queued in them; defaults 1024, 16384, 1 GiB;
            past them mkdir and member creation fail with EDQUOT).
            ro mounts read-only. The options of mount(8), fstab and systemd (defaults,
            auto, noauto, user, users, nouser, _netdev, nofail, x-*, comment=) are
            accepted and ignored; remount changes a live mount's flags (mount -o
            remount,ro MOUNTPOINT). Other -o options go to FUSE (e.g. allow_other).
            default_permissions is always on. SIGINT or SIGTERM unmounts and exits 0.
            """,
        version: "1.0.0"
    )

    @Argument(help: ArgumentHelp(
        "An optional source (the name in the mount table), then an existing, empty directory to mount on.",
        valueName: "[SOURCE] MOUNTPOINT"))
    var operands: [String] = []

    /// The last operand (validate() makes sure there is one or two).
    var mountPoint: String { operands.last ?? "" }

    @Flag(name: .customShort("f"), help: "Stay in the foreground.")
    var foreground = false

    @Flag(name: .customShort("d"), help: "Print every request (implies -f).")
    var debug = false

    @Flag(name: .customShort("s"), help: "Serve with one thread.")
    var singleThreaded = false

    @Option(name: .customShort("o"), help: ArgumentHelp("Mount options, comma-separated.", valueName: "OPTION[,OPTION...]"))
    var options: [String] = []

    /// libfuse accepts `-oallow_other`; ArgumentParser wants `-o allow_other`.
    static func normalize(_ arguments: [String]) -> [String] {
        arguments.flatMap { argument -> [String] in
            if argument.hasPrefix("-o"), argument.count > 2, !argument.hasPrefix("-o=") {
                return ["-o", String(argument.dropFirst(2))]
            }
            return [argument]
        }
    }

    static func main() {
        do {
            var command = try parseAsRoot(normalize(Array(CommandLine.arguments.dropFirst())))
            try command.run()
        } catch let failure as StartupFailure {
            fail(failure.message)
        } catch {
            exit(withError: error)
        }
    }

    func validate() throws {
        guard (1...2).contains(operands.count) else {
            throw ValidationError(operands.isEmpty ? "Missing expected argument 'MOUNTPOINT'" : "Unexpected argument '\(operands[2])'")
        }
    }

    func run() throws {
        var settings = try MountSettings(options: options, debug: debug)
        if operands.count == 2, !operands[0].isEmpty { settings.source = operands[0] }
        if settings.remount {
            try Remount.apply(flags: settings.mountFlags, at: mountPoint)
            return
        }
        try checkMountPoint()
        // Absolute from here on: fuse_daemonize changes directory to / (even
        // in the foreground), and the unmount at exit must still find it.
        let mountPoint = MountTable.absolute(self.mountPoint)
        let logger = makeLogger(level: settings.logLevel ?? (debug ? .debug : .info))
        // Start-up errors stay one line of their own (StartupFailure), so
        // the steps before the mount log below info.
        logger.debug("starting", metadata: [
            "capacity": "\(settings.groupDefaults.capacity)", "queue_bytes": "\(settings.groupDefaults.queueBytes)",
            "max_message": "\(settings.groupDefaults.maxMessage)", "fuse": "\(settings.fuseArguments.joined(separator: " "))",
        ])
        // A clustered daemon forks before the NATS client starts its threads
        // (Background.swift), and joins the cluster before it mounts.
        let background = settings.cluster != nil && !(foreground || debug) ? Background.fork() : nil
        let catalog = try settings.cluster.map { try joinCluster($0, logger: logger) }
        let fs: MulticastFilesystem
        do {
            fs = try MulticastFilesystem(owner: Caller(uid: UserID(rawValue: getuid()), gid: GroupID(rawValue: getgid())),
                                         defaults: settings.groupDefaults, catalog: catalog, limits: settings.userLimits)
        } catch {
            catalog?.shutDown()
            throw StartupFailure(message: "invalid group defaults: \(error)")
        }
        catalog?.attach(fs)

        let session: FUSESession
        do {
            session = try FUSESession(operations: Bridge(fs: fs), options: settings.fuseArguments)
            try session.mount(at: mountPoint)
        } catch where error.kind == .options {
            catalog?.shutDown()
            throw StartupFailure(message: error.message)
        } catch {
            catalog?.shutDown()
            throw StartupFailure(message: "cannot mount on \(mountPoint): \(error.message)")
        }
        do {
            // After the mount, so that the command returns once it is live.
            try session.daemonize(foreground: foreground || debug || background != nil)
            try session.installSignalHandlers()
        } catch {
            session.destroy()
            catalog?.shutDown()
            throw StartupFailure(message: error.message)
        }
        background?.detach()
        // After daemonizing: the line names the process that serves.
        logger.info("mounted", metadata: [
            "mountpoint": "\(mountPoint)", "max_threads": "\(singleThreaded ? 1 : settings.maxThreads)",
            "version": "\(Self.configuration.version)",
        ])

        // Idle workers are all kept (libfuse's default): one write hands 16
        // replies out, and with at most 4 idle the 16 next reads found no
        // idle worker, so libfuse kept starting and ending threads (179 per
        // 1,000 messages at 1→16, and a p99 2.5× the bare filesystem's).
        let status = session.run(singleThreaded: singleThreaded, maxIdleThreads: -1, maxThreads: settings.maxThreads)

        // Stop producing, answer everyone, then unmount: a client blocked at
        // this moment gets ENOTCONN at once rather than a hang.
        fs.shutDown()
        session.failPending(with: .socketNotConnected)
        session.unmount()
        session.destroy()
        // This node's members, consumers and name leave the cluster.
        if let catalog, !catalog.shutDown() {
            logger.notice("not connected to NATS: this node's members are left to the other nodes, which remove them after cluster_timeout",
                          metadata: ["node": "\(catalog.node)"])
        }
        if let signal = session.receivedSignal {
            logger.info("unmounted", metadata: ["mountpoint": "\(mountPoint)", "signal": "\(signalName(signal))"])
        } else if status < 0 {
            logger.error("the FUSE loop ended with an error", metadata: ["errno": "\(Errno(rawValue: -status))"])
            throw ExitCode(1)
        } else {
            logger.info("unmounted from outside (umount or fusermount3 -u)", metadata: ["mountpoint": "\(mountPoint)"])
        }
    }

    /// The mount point must be an existing directory, not already a mount
    /// point, and /dev/fuse must exist: say so in one line.
    private func checkMountPoint() throws {
        // mount.fuse3's drop_privileges mounts itself and hands over the FUSE
        // descriptor as /dev/fd/N, which FUSESession.mount does not take.
        if mountPoint.hasPrefix("/dev/fd/") {
            throw StartupFailure(message: "mount point \(mountPoint): a FUSE descriptor from drop_privileges, which mcastfs does not support (mount without it)")
        }
        var info = stat()
        guard stat(mountPoint, &info) == 0 else {
            throw StartupFailure(message: "mount point \(mountPoint): \(String(cString: strerror(Glibc.errno)))")
        }
        guard info.st_mode & S_IFMT == S_IFDIR else {
            throw StartupFailure(message: "mount point \(mountPoint) is not a directory")
        }
        if let resolved = realpath(mountPoint, nil) {
            defer { free(resolved) }
            if MountTable.isMountPoint(String(cString: resolved)) {
                throw StartupFailure(message: "\(mountPoint) is already a mount point (unmount it first: fusermount3 -u \(mountPoint))")
            }
        }
        guard access("/dev/fuse", R_OK | W_OK) == 0 else {
            throw StartupFailure(message: "/dev/fuse: \(String(cString: strerror(Glibc.errno))) (is the fuse module loaded, and is /dev/fuse in this container?)")
        }
    }

    /// Connects to the NATS cluster and claims the node name: one line and
    /// exit 1 if either fails.
    private func joinCluster(_ options: ClusterOptions, logger: Logger) throws -> ClusterCatalog {
        let configuration = ClusterConfiguration(servers: options.servers, node: options.node ?? Self.hostName(),
                                                 timeout: .seconds(options.timeoutSeconds), space: options.space)
        do {
            let catalog = try ClusterCatalog(configuration, backlog: options.backlog, replicas: options.replicas)
            logger.info("joined the cluster", metadata: [
                "node": "\(configuration.node)", "servers": "\(configuration.servers.joined(separator: "+"))",
                "space": "\(configuration.space)",
            ])
            return catalog
        } catch {
            throw StartupFailure(message: "cluster: \(error)")
        }
    }

    private static func hostName() -> String {
        var name = [UInt8](repeating: 0, count: 256)
        guard gethostname(&name, name.count - 1) == 0 else { return "localhost" }
        return String(decoding: name.prefix { $0 != 0 }, as: UTF8.self)
    }

    private func makeLogger(level: Logger.Level) -> Logger {
        DaemonLog.bootstrap(level: level)
        return Logger(label: "mcastfs")
    }
}

/// A start-up error: one line on stderr, exit 1.
struct StartupFailure: Error {
    let message: String
}

func fail(_ message: String) -> Never {
    let line = Array("mcastfs: \(message)\n".utf8)
    _ = line.withUnsafeBytes { Glibc.write(STDERR_FILENO, $0.baseAddress, $0.count) }
    exit(1)
}

extension Error {
    var message: String { (self as? FUSESessionError)?.message ?? "\(self)" }
}
