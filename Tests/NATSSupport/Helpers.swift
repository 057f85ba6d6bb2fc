public import Glibc
import Locking
public import NATSClient

// What the tests against real nats-servers share (NATSClientTests, ClusterTests).

/// Events a test waits for, filled from nats.c's threads.
public final class Recorder<Value: Sendable>: Sendable {
    private let values = AdaptiveMutex<[Value]>([])

    public init() {}

    public func append(_ v: Value) { values.withLock { $0.append(v) } }
    public var all: [Value] { values.withLock { $0 } }

    /// Waits until `predicate` holds for what was recorded, or `timeout`.
    @discardableResult
    public func wait(timeout: Duration = .seconds(10), until predicate: ([Value]) -> Bool) -> Bool {
        let deadline = ContinuousClock.now + timeout
        while ContinuousClock.now < deadline {
            if predicate(all) { return true }
            usleep(5_000)
        }
        return predicate(all)
    }
}

public func connect(_ servers: NATSServers, events: @escaping @Sendable (ConnectionEvent) -> Void = { _ in }) throws -> (NATSConnection, JetStream) {
    let connection = try NATSConnection(ConnectionOptions(servers: servers.urls, name: "NATSClientTests"), events: events)
    return (connection, try JetStream(connection))
}

public func bytes(_ s: String) -> [UInt8] { Array(s.utf8) }

/// A detached thread, for a loop nobody joins (a joinable thread that ends
/// unjoined is a leak to the thread sanitizer).
public func startDetachedThread(_ body: @escaping @Sendable () -> Void) {
    pthread_detach(startThread(body))
}

/// A plain thread for a call that blocks in nats.c; the caller joins it.
public func startThread(_ body: @escaping @Sendable () -> Void) -> pthread_t {
    final class Box: @unchecked Sendable { let body: @Sendable () -> Void; init(_ b: @escaping @Sendable () -> Void) { body = b } }
    var thread = pthread_t()
    let box = Unmanaged.passRetained(Box(body)).toOpaque()
    pthread_create(&thread, nil, { arg in
        let box = Unmanaged<Box>.fromOpaque(arg!).takeRetainedValue()
        box.body()
        return nil
    }, box)
    return thread
}
