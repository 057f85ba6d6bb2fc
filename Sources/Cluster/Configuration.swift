import NATSClient

/// How a daemon joins a cluster: the mount options of docs/cluster.md.
public struct ClusterConfiguration: Sendable, Equatable {
    /// `cluster=`: the `nats://` URLs of one NATS cluster's servers.
    public var servers: [String]
    /// `node=`: this daemon's name in the cluster, 1 to 64 bytes.
    public var node: String
    /// `cluster_timeout=`: a node silent this long is taken for dead; also
    /// the inactive threshold of its consumers. 1 s to 1 h.
    public var timeout: Duration
    /// `cluster_space=`: the prefix of every NATS name.
    public var space: String

    public init(servers: [String], node: String, timeout: Duration = .seconds(5), space: String = "mcastfs") {
        self.servers = servers
        self.node = node
        self.timeout = timeout
        self.space = space
    }

    /// `.invalid` with the reason, or the space's names.
    func validated() throws(ClusterError) -> ClusterSpace {
        if servers.isEmpty { throw .invalid("no NATS server given") }
        let nodeBytes = node.utf8.count
        if nodeBytes < 1 || nodeBytes > 64 || node.utf8.contains(0) || node.contains("/") {
            throw .invalid("node name must be 1 to 64 bytes with no '/' or NUL")
        }
        if timeout < .seconds(1) || timeout > .seconds(3600) {
            throw .invalid("cluster_timeout must be 1 to 3600 seconds")
        }
        guard let space = ClusterSpace(space) else {
            throw .invalid("cluster_space must be 1 to 32 letters, digits, '_' or '-'")
        }
        return space
    }

    /// Every node beats this often; five beats make a timeout.
    var heartbeatInterval: Duration { timeout / 5 }
}

/// What a cluster operation can fail with; the filesystem maps each to one
/// errno (in parentheses).
public enum ClusterError: Error, Sendable, Equatable, CustomStringConvertible {
    /// A group or member of that name exists on some node (EEXIST).
    case exists
    /// No such group or member, or the group is being removed (ENOENT).
    case notFound
    /// rmdir of a group with members on some node (ENOTEMPTY).
    case notEmpty
    /// The group's stream is full and the write does not wait (EAGAIN).
    case full
    /// The cluster cannot be reached, or did not answer (EIO).
    case unreachable(String)
    /// The server refused a request (EIO), with its words.
    case refused(String)
    /// A change that is not possible now, such as lowering cluster_backlog
    /// while members exist (EBUSY).
    case busy
    /// Another running daemon has this node name.
    case nodeNameInUse(node: String, host: String, pid: Int32)
    /// A setting or name out of its bounds (EINVAL).
    case invalid(String)
    /// A message larger than the group's max_message (EMSGSIZE).
    case tooLarge
    /// The node was shut down (EIO), or a wait was cancelled (EINTR).
    case cancelled

    public var description: String {
        switch self {
        case .exists: "exists"
        case .notFound: "no such group or member"
        case .notEmpty: "the group has members"
        case .full: "the group's stream is full"
        case .unreachable(let why): "NATS cluster unreachable: \(why)"
        case .refused(let why): "refused by the NATS server: \(why)"
        case .busy: "not possible while the group has members"
        case .nodeNameInUse(let node, let host, let pid):
            "node name \(node) is in use by a running mcastfs (host \(host), pid \(pid)); choose another with -o node="
        case .invalid(let why): why
        case .tooLarge: "message larger than the group's max_message"
        case .cancelled: "cancelled"
        }
    }

    /// A failed NATS call as the cluster's callers see it.
    init(_ error: NATSError) {
        if error.isOutcomeUnknown || error.status == .noServer || error.status == .noResponders {
            self = .unreachable(error.description)
        } else {
            self = .refused(error.description)
        }
    }
}
