import Cluster
import DeliveryCore
import Glibc
import Locking
import NATSClient
import NATSTestSupport

/// A node of a test cluster with its events recorded; shut down when the
/// test drops it (`defer`) so that its threads end.
final class TestNode: @unchecked Sendable {
    let node: ClusterNode
    let events = Recorder<ClusterEvent>()

    convenience init(_ servers: NATSServers, _ name: String, timeout: Duration = .seconds(1), space: String = "mcastfs") throws(ClusterError) {
        try self.init(urls: servers.urls, name, timeout: timeout, space: space)
    }

    init(urls: [String], _ name: String, timeout: Duration = .seconds(1), space: String = "mcastfs") throws(ClusterError) {
        let events = self.events
        node = try ClusterNode(ClusterConfiguration(servers: urls, node: name, timeout: timeout, space: space)) { events.append($0) }
    }

    deinit { node.shutDown() }
}

func groupRecord(_ name: String, backlog: Int = 1000, uid: UInt32 = 1000, mode: UInt32 = 0o755) -> GroupRecord {
    GroupRecord(name: name, uid: uid, gid: uid, mode: mode, settings: GroupRecord.Settings(clusterBacklog: backlog))
}

func memberRecord(_ name: String, uid: UInt32 = 1000) -> MemberRecord {
    MemberRecord(name: name, uid: uid, gid: uid, mode: 0o600)
}

/// Records what a node's consumer hands over; `hold` keeps each message's
/// `done` until released, as a full local member would.
final class Collector: DeliverySink, @unchecked Sendable {
    private let state = AdaptiveMutex<(messages: [IncomingMessage], held: [@Sendable () -> Void], holding: Bool)>(([], [], false))

    init(holding: Bool = false) {
        state.withLock { $0.holding = holding }
    }

    func deliver(_ message: IncomingMessage, done: @escaping @Sendable () -> Void) {
        let hold = state.withLock { s -> Bool in
            s.messages.append(message)
            if s.holding { s.held.append(done) }
            return s.holding
        }
        if !hold { done() }
    }

    var messages: [IncomingMessage] { state.withLock { $0.messages } }
    var sequences: [UInt64] { messages.map(\.sequence) }
    var payloads: [String] { messages.map { String(decoding: $0.payload.bytes, as: UTF8.self) } }

    /// Stops holding and lets every held message go.
    func release() {
        let held = state.withLock { s -> [@Sendable () -> Void] in
            s.holding = false
            defer { s.held.removeAll() }
            return s.held
        }
        for done in held { done() }
    }

    @discardableResult
    func wait(count: Int, timeout: Duration = .seconds(10)) -> Bool {
        let deadline = ContinuousClock.now + timeout
        while ContinuousClock.now < deadline {
            if messages.count >= count { return true }
            usleep(2_000)
        }
        return messages.count >= count
    }
}

func outgoing(_ text: String, sender: String? = nil, to: String? = nil, uid: UInt32 = 1000) -> OutgoingMessage {
    OutgoingMessage(payload: Message(Array(text.utf8), credentials: Credentials(pid: UInt32(getpid()), uid: uid, gid: uid)), sender: sender, privateTo: to)
}

/// Publishes and waits for the completion.
func publish(_ node: ClusterNode, _ group: String, _ texts: [String], blocking: Bool = true, sender: String? = nil, timeout: Duration = .seconds(20)) -> Result<Int, ClusterError>? {
    let result = Recorder<Result<Int, ClusterError>>()
    node.publish(group, texts.map { outgoing($0, sender: sender) }, blocking: blocking) { result.append($0) }
    result.wait(timeout: timeout) { !$0.isEmpty }
    return result.all.first
}

func elapsed(_ body: () throws -> Void) rethrows -> Duration {
    let start = ContinuousClock.now
    try body()
    return ContinuousClock.now - start
}
