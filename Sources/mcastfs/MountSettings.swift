import DaemonLog
import DeliveryCore
import Glibc
import Logging
import MulticastFS

/// The -o options, split into mcastfs's own (group defaults), FUSE's, and the
/// generic ones of mount(8), fstab and systemd (MountOption).
struct MountSettings {
    var groupDefaults = GroupSettings()
    /// `-o user_groups=,user_members=,user_bytes=` (docs/contract.md, "Limits per user").
    var userLimits = UserLimits()
    /// libfuse's worker threads at most (its own `-o max_threads`); -s is one.
    var maxThreads = MountSettings.defaultMaxThreads
    var fuseOptions: [String] = []
    var debug = false
    /// `-o log_level=`; nil: info, or debug with -d.
    var logLevel: Logger.Level?
    /// `remount` was given: change `mountFlags` on the live mount, start nothing.
    var remount = false
    /// The kernel flags the options name, in order (what a remount sets).
    var mountFlags: UInt = 0
    /// The mount's source in the mount table. mount(8) compares it with the
    /// fstab line's first field: `mount -a` with another name there would
    /// not see that line as mounted and mount it again.
    var source = "mcastfs"
    /// `-o cluster=URL[+URL...]` and its companions (docs/cluster.md); nil:
    /// one machine, no server.
    var cluster: ClusterOptions?
    private var clusterKeys = ClusterOptions()

    init(options: [String], debug: Bool) throws {
        self.debug = debug
        for option in options.flatMap({ $0.split(separator: ",", omittingEmptySubsequences: true) }) {
            let parts = option.split(separator: "=", maxSplits: 1)
            let key = String(parts[0]), value = parts.count > 1 ? String(parts[1]) : nil
            if let generic = MountOption(option) {
                take(generic, String(option))
                continue
            }
            switch key {
            case "capacity": groupDefaults.capacity = try number(key, value, Limits.capacity)
            case "queue_bytes": groupDefaults.queueBytes = try number(key, value, Limits.queueBytes)
            case "max_message": groupDefaults.maxMessage = try number(key, value, Limits.maxMessage)
            case "user_groups": userLimits.groups = try number(key, value, 1...(1 << 30))
            case "user_members": userLimits.members = try number(key, value, 1...(1 << 30))
            case "user_bytes": userLimits.bytes = try number(key, value, 1...(1 << 50))
            case "max_threads": maxThreads = try number(key, value, 1...256)
            case "log_level": logLevel = try level(value)
            case "default_permissions": break  // always on
            case "cluster": clusterKeys.servers = try servers(value)
            case "node": clusterKeys.node = try text(key, value)
            case "cluster_timeout": clusterKeys.timeoutSeconds = try number(key, value, 1...3600)
            case "cluster_space": clusterKeys.space = try text(key, value)
            case "cluster_backlog": clusterKeys.backlog = try number(key, value, 1...(1 << 30))
            case "replicas": clusterKeys.replicas = try number(key, value, 1...5)
            default: fuseOptions.append(String(option))
            }
        }
        if !clusterKeys.servers.isEmpty {
            cluster = clusterKeys
        } else if clusterKeys != ClusterOptions() {
            throw StartupFailure(message: "node=, cluster_timeout=, cluster_space=, cluster_backlog= and replicas= need cluster=nats://HOST:PORT")
        }
    }

    /// `+` joins the URLs of one cluster: `,` separates mount options.
    private func servers(_ value: String?) throws -> [String] {
        let urls = (value ?? "").split(separator: "+", omittingEmptySubsequences: false).map(String.init)
        for url in urls where !(url.hasPrefix("nats://") || url.hasPrefix("tls://")) || url.count <= "nats://".count {
            throw StartupFailure(message: "bad option cluster=\(value ?? ""): expected nats://HOST:PORT, several joined by '+'")
        }
        return urls
    }

    private func text(_ key: String, _ value: String?) throws -> String {
        guard let value, !value.isEmpty else { throw StartupFailure(message: "bad option \(key)=: expected a name") }
        return value
    }

    private mutating func take(_ option: MountOption, _ text: String) {
        switch option {
        case .userspace: break
        case .remount: remount = true
        case .flag(let flag, let set, let libfuseKnows):
            mountFlags = set ? mountFlags | flag : mountFlags & ~flag
            if libfuseKnows { fuseOptions.append(text) }
        }
    }

    /// As many workers as CPUs (at least 2, at most libfuse's default of 10).
    /// No request handler ever waits — a blocked read or write is a stored
    /// reply, not a parked thread — so a worker beyond the CPUs only adds a
    /// thread to wake: at 1→16 with one message in flight, 2 workers instead
    /// of 10 on 2 CPUs cut the daemon's CPU per message from 168 to 133 µs
    /// and p99 from 452 to 383 µs (docs/fuse-notes.md, "Worker threads").
    static let defaultMaxThreads = min(max(2, sysconf(Int32(_SC_NPROCESSORS_ONLN))), 10)

    /// Arguments for the FUSE session: permission checks by the kernel always.
    var fuseArguments: [String] {
        let all = ["default_permissions", "fsname=\(MountSettings.escaped(source))", "subtype=mcastfs"] + fuseOptions
        return ["-o", all.joined(separator: ",")] + (debug ? ["-d"] : [])
    }

    private func level(_ value: String?) throws -> Logger.Level {
        guard let value, let level = DaemonLog.level(named: value) else {
            throw StartupFailure(message: "bad option log_level=\(value ?? ""): expected one of \(DaemonLog.levelNames.joined(separator: ", "))")
        }
        return level
    }

    /// libfuse splits -o at commas and takes a backslash as an escape.
    private static func escaped(_ value: String) -> String {
        String(value.flatMap { $0 == "," || $0 == "\\" ? ["\\", $0] : [$0] })
    }

    private func number(_ key: String, _ value: String?, _ range: ClosedRange<Int>) throws -> Int {
        guard let value, value.allSatisfy(\.isASCII), value.allSatisfy(\.isNumber), let number = Int(value), range.contains(number) else {
            throw StartupFailure(message: "bad option \(key)=\(value ?? ""): expected a number from \(range.lowerBound) to \(range.upperBound)")
        }
        return number
    }
}

/// The cluster's mount options, as given (the Cluster module checks them).
struct ClusterOptions: Equatable {
    var servers: [String] = []
    /// Default: the host name.
    var node: String?
    var timeoutSeconds = 5
    var space = "mcastfs"
    /// New groups' `cluster_backlog` and `replicas` (docs/cluster.md).
    var backlog = 65_536
    var replicas = 1
}
