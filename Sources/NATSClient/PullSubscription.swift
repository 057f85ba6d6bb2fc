internal import CNATS
import Glibc
import Synchronization

/// A subscription bound to a durable pull consumer: messages come only when
/// asked for, at most `maxAckPending` unacked at a time.
public final class PullSubscription: @unchecked Sendable {
    private let sub: OpaquePointer
    private let jetStream: JetStream
    public let stream: String
    public let consumer: String

    init(jetStream: JetStream, stream: String, consumer: String) throws(NATSError) {
        self.jetStream = jetStream
        self.stream = stream
        self.consumer = consumer
        var so = jsSubOptions()
        try check(jsSubOptions_Init(&so))
        let strings = CStrings()
        so.Stream = strings.copy(stream)
        so.Consumer = strings.copy(consumer)
        var s: OpaquePointer?
        var code = jsErrCode(rawValue: 0)
        try withExtendedLifetime(strings) { () throws(NATSError) in
            try check(js_PullSubscribe(&s, jetStream.js, nil, nil, nil, &so, &code), code: code)
        }
        sub = s!
    }

    deinit {
        // Since nats.c 3.4.0 this leaves a consumer it did not make alone.
        natsSubscription_Destroy(sub)
    }

    /// Up to `batch` messages, in stream order; waits up to `timeout` for
    /// the first, and returns early with fewer when the server says no
    /// more are pending. An empty array: nothing came in time. The pull
    /// request waiting at the server meanwhile keeps the consumer active
    /// (`inactiveThreshold`).
    public func fetch(batch: Int, timeout: Duration) throws(NATSError) -> [JetStreamMessage] {
        var list = natsMsgList()
        var code = jsErrCode(rawValue: 0)
        let status = natsSubscription_Fetch(&list, sub, Int32(batch), max(timeout.inMilliseconds, 1), &code)
        if status == NATS_TIMEOUT { return [] }
        try check(status, code: code)
        var messages: [JetStreamMessage] = []
        messages.reserveCapacity(Int(list.Count))
        for i in 0..<Int(list.Count) {
            // Each message moves out of the list, which then frees only itself.
            messages.append(JetStreamMessage(taking: list.Msgs[i]!, from: self))
            list.Msgs[i] = nil
        }
        natsMsgList_Destroy(&list)
        return messages
    }

    /// The consumer's state, as the server has it now. (Asked by name:
    /// nats.c 3.4's natsSubscription_GetConsumerInfo answers "Invalid
    /// Subscription" for a subscription bound to a consumer it did not make.)
    public func consumerInfo() throws(NATSError) -> ConsumerInfo {
        try jetStream.consumerInfo(stream: stream, consumer: consumer)
    }
}

/// A message from a JetStream consumer: its metadata read out, its data and
/// headers read from nats.c's message when asked (a node's delivery loop
/// copies the payload once, straight into its own message, and reads one
/// header), and the handle that acks it. May be acked from any thread, once.
public final class JetStreamMessage: @unchecked Sendable {
    public var subject: String { String(cString: natsMsg_GetSubject(msg)) }
    public var payload: [UInt8] { withPayload { Array($0) } }
    public var headers: [String: String] { Self.headers(of: msg) }
    /// The message's sequence in its stream: the same on every consumer.
    public let streamSequence: UInt64
    public let consumerSequence: UInt64
    /// 1 the first time; more when redelivered (not acked within ack wait).
    public let deliveries: UInt64
    /// Messages still pending for this consumer after this one.
    public let pending: UInt64
    /// When the stream stored it (ns since the epoch, the server's clock).
    public let timestamp: Int64

    // nats.c's message, for the ack calls, only touched under `lock`:
    // natsMsg_Ack marks the message without a lock of its own. A Mutex,
    // stored in the object: an AdaptiveMutex is two more allocations, and a
    // pthread mutex made and destroyed, for every message a node fetches.
    private let msg: OpaquePointer
    private let lock = Mutex(())
    // An ack goes out through the subscription the message came from.
    private let subscription: PullSubscription

    init(taking m: OpaquePointer, from subscription: PullSubscription) {
        self.subscription = subscription
        var meta: UnsafeMutablePointer<jsMsgMetaData>?
        if natsMsg_GetMetaData(&meta, m) == NATS_OK, let md = meta?.pointee {
            streamSequence = md.Sequence.Stream
            consumerSequence = md.Sequence.Consumer
            deliveries = md.NumDelivered
            pending = md.NumPending
            timestamp = md.Timestamp
            jsMsgMetaData_Destroy(meta)
        } else {
            streamSequence = 0
            consumerSequence = 0
            deliveries = 0
            pending = 0
            timestamp = 0
        }
        msg = m
    }

    deinit {
        natsMsg_Destroy(msg)
    }

    /// The payload, in nats.c's buffer: valid during `body` only. (Read-only
    /// and never freed before deinit, so no lock is needed.)
    public func withPayload<R>(_ body: (UnsafeRawBufferPointer) -> R) -> R {
        body(UnsafeRawBufferPointer(start: natsMsg_GetData(msg), count: Int(natsMsg_GetDataLength(msg))))
    }

    /// The value of one header in nats.c's buffer, read in place (no lock:
    /// as `withPayload`).
    public func withHeader<R>(_ name: String, _ body: (UnsafeRawBufferPointer?) -> R) -> R {
        NATSClient.withHeader(of: msg, name, body)
    }

    /// The value of one header, without building the dictionary of all.
    public func header(_ name: String) -> String? {
        var value: UnsafePointer<CChar>?
        guard natsMsgHeader_Get(msg, name, &value) == NATS_OK, let value else { return nil }
        return String(cString: value)
    }

    private static func headers(of m: OpaquePointer) -> [String: String] {
        var keys: UnsafeMutablePointer<UnsafePointer<CChar>?>?
        var count: Int32 = 0
        guard natsMsgHeader_Keys(m, &keys, &count) == NATS_OK, let keys else { return [:] }
        defer { free(keys) }
        var result: [String: String] = [:]
        for i in 0..<Int(count) {
            guard let k = keys[i] else { continue }
            var value: UnsafePointer<CChar>?
            if natsMsgHeader_Get(m, k, &value) == NATS_OK, let value {
                result[String(cString: k)] = String(cString: value)
            }
        }
        return result
    }

    /// Done with it: the consumer moves on (for an interest stream, the
    /// message goes once every consumer has acked it). Sent without waiting.
    public func ack() throws(NATSError) {
        try lock.withLock { (_: inout ()) throws(NATSError) in try check(natsMsg_Ack(msg, nil)) }
    }

    /// `ack`, and waits until the server has processed it.
    public func ackSync() throws(NATSError) {
        try lock.withLock { (_: inout ()) throws(NATSError) in
            var code = jsErrCode(rawValue: 0)
            try check(natsMsg_AckSync(msg, nil, &code), code: code)
        }
    }

    /// Still working on it: restarts its ack wait, and counts as activity
    /// for the consumer's inactive threshold.
    public func inProgress() throws(NATSError) {
        try lock.withLock { (_: inout ()) throws(NATSError) in try check(natsMsg_InProgress(msg, nil)) }
    }

    /// Deliver it again (now).
    public func nak() throws(NATSError) {
        try lock.withLock { (_: inout ()) throws(NATSError) in try check(natsMsg_Nak(msg, nil)) }
    }

    /// Never deliver it again.
    public func term() throws(NATSError) {
        try lock.withLock { (_: inout ()) throws(NATSError) in try check(natsMsg_Term(msg, nil)) }
    }
}
