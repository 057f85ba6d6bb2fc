internal import CNATS

/// How to reach a NATS cluster and how hard to hold on to it.
public struct ConnectionOptions: Sendable {
    /// `nats://host:port` URLs of one cluster's servers; nats.c tries them
    /// in order (no shuffling) and learns the rest from the servers' gossip.
    public var servers: [String]
    /// Shown by the server (`/connz`): which daemon this is.
    public var name: String?
    /// One attempt to open a TCP connection and complete the handshake.
    public var connectTimeout: Duration = .seconds(2)
    /// Pause before trying the same server again after losing it.
    public var reconnectWait: Duration = .milliseconds(250)
    /// `nil`: keep trying for ever.
    public var maxReconnects: Int? = nil
    /// A dead server is noticed after `pingInterval * maxPingsOut` at worst
    /// (a closed socket at once).
    public var pingInterval: Duration = .seconds(2)
    public var maxPingsOut: Int = 2
    /// Requests (JetStream API calls, synchronous publishes) waiting when
    /// the connection drops fail at once with `connectionDisconnected`
    /// rather than sitting out their timeout.
    public var failRequestsOnDisconnect: Bool = true
    /// Send every protocol line at once instead of letting nats.c's flusher
    /// thread batch them for up to 1 ms (`natsOptions_SetSendAsap`): a pull
    /// request or an ack then waits for nothing. Measured with
    /// Benchmarks/suite/natsbare.c, one message at a time: publish-to-consume
    /// p50 192 µs against 954 µs with the flusher; throughput the same.
    public var sendAsap: Bool = true

    public init(servers: [String], name: String? = nil) {
        self.servers = servers
        self.name = name
    }
}

/// What happens to a connection, reported from a nats.c thread.
public enum ConnectionEvent: Sendable, Equatable {
    /// The socket to the server is gone; nats.c is reconnecting (publishes
    /// meanwhile go to its reconnect buffer, requests fail).
    case disconnected
    /// Connected again, to this server. Subscriptions were restored;
    /// core NATS messages sent meanwhile were lost.
    case reconnected(url: String?)
    /// For good: closed by `close()`, or out of reconnect attempts. The
    /// last event of a connection; a close while connected is preceded by
    /// `.disconnected`.
    case closed
    /// An asynchronous error, such as a slow consumer dropping messages.
    case error(NATSStatus)
}

public enum ConnectionStatus: Sendable, Equatable {
    case connecting, connected, reconnecting, disconnected, closed, draining
}

typealias EventHandler = @Sendable (ConnectionEvent) -> Void
let connectionHandlers = CallbackRegistry<EventHandler>()

// Each runs on nats.c's single async-callback thread, in event order.
private let onDisconnected: natsConnectionHandler = { _, closure in
    connectionHandlers.target(closure)?(.disconnected)
}
private let onReconnected: natsConnectionHandler = { nc, closure in
    var buffer = [CChar](repeating: 0, count: 256)
    let url = natsConnection_GetConnectedUrl(nc, &buffer, buffer.count) == NATS_OK
        ? string(buffer) : nil
    connectionHandlers.target(closure)?(.reconnected(url: url))
}
private let onClosed: natsConnectionHandler = { _, closure in
    // Nothing follows a close: this is where the handler is let go.
    connectionHandlers.unregister(closure)?(.closed)
}
private let onError: natsErrHandler = { _, _, status, closure in
    connectionHandlers.target(closure)?(.error(NATSStatus(status)))
}

/// A connection to a NATS cluster, shared by any number of threads (nats.c
/// locks inside every call).
public final class NATSConnection: @unchecked Sendable {
    let nc: OpaquePointer
    private let handler: UnsafeMutableRawPointer

    /// Connects to the first server that answers. Fails (`noServer`) when
    /// none does; afterwards a lost connection is re-established by nats.c,
    /// and `events` hears of it.
    public init(_ options: ConnectionOptions, events: @escaping @Sendable (ConnectionEvent) -> Void = { _ in }) throws(NATSError) {
        var opts: OpaquePointer?
        try check(natsOptions_Create(&opts))
        defer { natsOptions_Destroy(opts) }

        let strings = CStrings()
        var servers = options.servers.map { Optional(strings.copy($0)) }
        try servers.withUnsafeMutableBufferPointer { (b) throws(NATSError) in
            try check(natsOptions_SetServers(opts, b.baseAddress, Int32(b.count)))
        }
        if let name = options.name { try check(natsOptions_SetName(opts, name)) }
        try check(natsOptions_SetNoRandomize(opts, true))
        try check(natsOptions_SetTimeout(opts, options.connectTimeout.inMilliseconds))
        try check(natsOptions_SetReconnectWait(opts, options.reconnectWait.inMilliseconds))
        try check(natsOptions_SetMaxReconnect(opts, Int32(options.maxReconnects ?? -1)))
        try check(natsOptions_SetPingInterval(opts, options.pingInterval.inMilliseconds))
        try check(natsOptions_SetMaxPingsOut(opts, Int32(options.maxPingsOut)))
        try check(natsOptions_SetFailRequestsOnDisconnect(opts, options.failRequestsOnDisconnect))
        try check(natsOptions_SetSendAsap(opts, options.sendAsap))

        handler = connectionHandlers.register(events)
        do {
            try check(natsOptions_SetDisconnectedCB(opts, onDisconnected, handler))
            try check(natsOptions_SetReconnectedCB(opts, onReconnected, handler))
            try check(natsOptions_SetClosedCB(opts, onClosed, handler))
            try check(natsOptions_SetErrorHandler(opts, onError, handler))
            var conn: OpaquePointer?
            // A failed first connect makes no callbacks (conn.c closes
            // without them), so the handler is ours to drop.
            try check(natsConnection_Connect(&conn, opts))
            nc = conn!
        } catch {
            connectionHandlers.unregister(handler)
            throw error
        }
    }

    deinit {
        // Close posts `.closed` (which drops the handler); Destroy frees.
        natsConnection_Destroy(nc)
    }

    public var status: ConnectionStatus {
        switch natsConnection_Status(nc) {
        case NATS_CONN_STATUS_CONNECTED: .connected
        case NATS_CONN_STATUS_CONNECTING: .connecting
        case NATS_CONN_STATUS_RECONNECTING: .reconnecting
        case NATS_CONN_STATUS_CLOSED: .closed
        case NATS_CONN_STATUS_DRAINING_SUBS, NATS_CONN_STATUS_DRAINING_PUBS: .draining
        default: .disconnected
        }
    }

    /// The server this connection is on now, if connected.
    public var connectedURL: String? {
        var buffer = [CChar](repeating: 0, count: 256)
        guard natsConnection_GetConnectedUrl(nc, &buffer, buffer.count) == NATS_OK, buffer[0] != 0 else { return nil }
        return string(buffer)
    }

    /// Round trip to the server: everything published before has reached it.
    public func flush(timeout: Duration = .seconds(5)) throws(NATSError) {
        try check(natsConnection_FlushTimeout(nc, timeout.inMilliseconds))
    }

    /// A core NATS message: at most once, to whoever subscribes now.
    public func publish(subject: String, payload: [UInt8] = []) throws(NATSError) {
        let status = payload.withUnsafeBytes { b in
            natsConnection_Publish(nc, subject, b.baseAddress, Int32(b.count))
        }
        try check(status)
    }

    /// Calls `handler` for each message on `subject` (wildcards allowed),
    /// one at a time, on this subscription's own nats.c thread. The server
    /// has the interest once a `flush()` after this returns: what is
    /// published after that reaches the handler.
    public func subscribe(subject: String, handler: @escaping @Sendable (CoreMessage) -> Void) throws(NATSError) -> Subscription {
        try Subscription(connection: self, subject: subject, handler: handler)
    }

    /// Closes for good (`.closed` follows); idempotent.
    public func close() {
        natsConnection_Close(nc)
    }
}
