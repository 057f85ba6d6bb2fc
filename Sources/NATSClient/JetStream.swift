internal import CNATS
import Locking

public struct JetStreamOptions: Sendable {
    /// How long an API request (stream, consumer, KV call) and a synchronous
    /// publish wait for the server's answer.
    public var timeout: Duration = .seconds(5)
    /// Asynchronous publishes awaiting their PubAck at most; one more waits
    /// in `publishAsync` up to `stallWait`, then fails.
    public var maxPendingAsync: Int = 65_536
    public var stallWait: Duration = .milliseconds(200)

    public init() {}
}

/// A JetStream context on a connection: streams, consumers, publishing and
/// KV buckets. Shared by any number of threads.
public final class JetStream: @unchecked Sendable {
    let js: OpaquePointer
    let connection: NATSConnection
    let timeout: Duration
    private let pending: PendingPublishes
    private let pendingClosure: UnsafeMutableRawPointer

    public init(_ connection: NATSConnection, options: JetStreamOptions = JetStreamOptions()) throws(NATSError) {
        self.connection = connection
        timeout = options.timeout
        pending = PendingPublishes()
        pendingClosure = pendingPublishes.register(pending)
        var o = jsOptions()
        try check(jsOptions_Init(&o))
        o.Wait = options.timeout.inMilliseconds
        o.PublishAsync.MaxPending = Int64(options.maxPendingAsync)
        o.PublishAsync.StallWait = options.stallWait.inMilliseconds
        o.PublishAsync.AckHandler = onPubAck
        o.PublishAsync.AckHandlerClosure = pendingClosure
        var ctx: OpaquePointer?
        let status = natsConnection_JetStream(&ctx, connection.nc, &o)
        guard status == NATS_OK, let ctx else {
            let error = lastError(status)
            pendingPublishes.unregister(pendingClosure)
            throw error
        }
        js = ctx
        nonisolated(unsafe) let context = ctx
        pending.clear = {
            var list = natsMsgList()
            if js_PublishAsyncGetPendingList(&list, context) == NATS_OK { natsMsgList_Destroy(&list) }
        }
    }

    deinit {
        // jsCtx_Destroy drops unacknowledged async publishes without calling
        // back; their completions hear it from us instead.
        pendingPublishes.unregister(pendingClosure)
        jsCtx_Destroy(js)
        pending.failAll(NATSError(status: .connectionClosed, text: "JetStream context closed before the PubAck"))
    }

    // MARK: Streams

    public func addStream(_ config: StreamConfig) throws(NATSError) -> StreamInfo {
        try config.withC { (c) throws(NATSError) in
            var si: UnsafeMutablePointer<jsStreamInfo>?
            var code = jsErrCode(rawValue: 0)
            try check(js_AddStream(&si, js, c, nil, &code), code: code)
            return StreamInfo(consuming: si!)
        }
    }

    public func updateStream(_ config: StreamConfig) throws(NATSError) -> StreamInfo {
        try config.withC { (c) throws(NATSError) in
            var si: UnsafeMutablePointer<jsStreamInfo>?
            var code = jsErrCode(rawValue: 0)
            try check(js_UpdateStream(&si, js, c, nil, &code), code: code)
            return StreamInfo(consuming: si!)
        }
    }

    /// Throws with code `.streamNotFound` when there is no such stream.
    public func streamInfo(_ name: String) throws(NATSError) -> StreamInfo {
        var si: UnsafeMutablePointer<jsStreamInfo>?
        var code = jsErrCode(rawValue: 0)
        try check(js_GetStreamInfo(&si, js, name, nil, &code), code: code)
        return StreamInfo(consuming: si!)
    }

    public func deleteStream(_ name: String) throws(NATSError) {
        var code = jsErrCode(rawValue: 0)
        try check(js_DeleteStream(js, name, nil, &code), code: code)
    }

    // MARK: Consumers

    public func addConsumer(stream: String, _ config: ConsumerConfig) throws(NATSError) -> ConsumerInfo {
        try config.withC { (c) throws(NATSError) in
            var ci: UnsafeMutablePointer<jsConsumerInfo>?
            var code = jsErrCode(rawValue: 0)
            try check(js_AddConsumer(&ci, js, stream, c, nil, &code), code: code)
            return ConsumerInfo(consuming: ci!)
        }
    }

    /// Throws with code `.consumerNotFound` when there is no such consumer.
    public func consumerInfo(stream: String, consumer: String) throws(NATSError) -> ConsumerInfo {
        var ci: UnsafeMutablePointer<jsConsumerInfo>?
        var code = jsErrCode(rawValue: 0)
        try check(js_GetConsumerInfo(&ci, js, stream, consumer, nil, &code), code: code)
        return ConsumerInfo(consuming: ci!)
    }

    public func deleteConsumer(stream: String, consumer: String) throws(NATSError) {
        var code = jsErrCode(rawValue: 0)
        try check(js_DeleteConsumer(js, stream, consumer, nil, &code), code: code)
    }

    /// Binds to an existing pull consumer (made with `addConsumer`); the
    /// subscription never deletes it.
    public func pullSubscription(stream: String, consumer: String) throws(NATSError) -> PullSubscription {
        try PullSubscription(jetStream: self, stream: stream, consumer: consumer)
    }

    // MARK: Publishing

    /// Publishes and waits for the stream's PubAck (stored on as many servers
    /// as the stream's replicas). A refusal throws with the server's code,
    /// such as `.streamStoreFailed` ("maximum messages exceeded"); an error
    /// with `isOutcomeUnknown` leaves open whether it was stored: publishing
    /// again with the same `msgId` within the duplicate window tells.
    public func publish(subject: String, payload: UnsafeRawBufferPointer, headers: [(String, String)] = [], options: PublishOptions = PublishOptions()) throws(NATSError) -> PubAck {
        let msg = try makeMessage(subject: subject, payload: payload, headers: headers)
        defer { natsMsg_Destroy(msg) }
        return try options.withC(defaultTimeout: timeout) { (po) throws(NATSError) in
            var pa: UnsafeMutablePointer<jsPubAck>?
            var code = jsErrCode(rawValue: 0)
            try check(js_PublishMsg(&pa, js, msg, po, &code), code: code)
            return PubAck(consuming: pa!)
        }
    }

    public func publish(subject: String, payload: [UInt8], headers: [(String, String)] = [], options: PublishOptions = PublishOptions()) throws(NATSError) -> PubAck {
        // withUnsafeBytes only rethrows untyped; carry the typed error out.
        try payload.withUnsafeBytes { b in
            Result { () throws(NATSError) in try publish(subject: subject, payload: b, headers: headers, options: options) }
        }.get()
    }

    /// Publishes without waiting: `completion` runs once, on nats.c's PubAck
    /// thread, with the PubAck or the error (a refusal, or a timeout after
    /// `options.timeout`: outcome unknown). The `msgId` is required: it
    /// matches the PubAck to its completion, and makes a retry safe.
    ///
    /// `options.timeout` `.zero`: no timeout here; the caller times the
    /// answer itself and gives up on it with `abandon`. nats.c 3.4.1 keeps
    /// every publish with a timeout in a deadline list until the deadline
    /// passes, answered or not, and then hands its PubAck thread a timeout
    /// message for it: per message an allocation, a timer wake-up and a
    /// lookup, which a caller timing a whole batch with one timer avoids.
    public func publishAsync(
        subject: String, payload: UnsafeRawBufferPointer, headers: [(String, String)] = [],
        msgId: String, options: PublishOptions = PublishOptions(),
        completion: @escaping @Sendable (Result<PubAck, NATSError>) -> Void
    ) throws(NATSError) {
        var options = options
        options.msgId = msgId
        var msg: OpaquePointer? = try makeMessage(subject: subject, payload: payload, headers: headers)
        defer { natsMsg_Destroy(msg) }
        try pending.add(msgId, completion)
        do throws(NATSError) {
            try options.withC(defaultTimeout: timeout) { (po) throws(NATSError) in
                // On success nats.c owns the message and clears `msg`.
                try check(js_PublishMsgAsync(js, &msg, po))
            }
        } catch {
            pending.remove(msgId)
            throw error
        }
    }

    /// Gives up on publishes (of `publishAsync` with a `.zero` timeout)
    /// whose answer did not come: their completions will not run, and a late
    /// PubAck is dropped. nats.c still counts them against its pending
    /// bound; they are cleared from it as soon as nothing else is pending.
    public func abandon(_ msgIds: some Sequence<String>) {
        pending.abandon(msgIds)
    }

    private func makeMessage(subject: String, payload: UnsafeRawBufferPointer, headers: [(String, String)]) throws(NATSError) -> OpaquePointer {
        var msg: OpaquePointer?
        try check(natsMsg_Create(&msg, subject, nil, payload.baseAddress?.assumingMemoryBound(to: CChar.self), Int32(payload.count)))
        for (key, value) in headers {
            let status = natsMsgHeader_Set(msg, key, value)
            if status != NATS_OK {
                let error = lastError(status)
                natsMsg_Destroy(msg)
                throw error
            }
        }
        return msg!
    }

    // MARK: Key/value buckets

    public func createKeyValue(_ config: KeyValueConfig) throws(NATSError) -> KeyValueBucket {
        try config.withC { (c) throws(NATSError) in
            var kv: OpaquePointer?
            try check(js_CreateKeyValue(&kv, js, c))
            return KeyValueBucket(kv: kv!, jetStream: self)
        }
    }

    /// Binds to an existing bucket; throws (`notFound`) when there is none.
    public func keyValue(bucket: String) throws(NATSError) -> KeyValueBucket {
        var kv: OpaquePointer?
        try check(js_KeyValue(&kv, js, bucket))
        return KeyValueBucket(kv: kv!, jetStream: self)
    }

    public func deleteKeyValue(bucket: String) throws(NATSError) {
        try check(js_DeleteKeyValue(js, bucket))
    }
}

public struct PublishOptions: Sendable {
    /// `Nats-Msg-Id`: a second publish with the same id within the stream's
    /// duplicate window is not stored again; its PubAck says `duplicate`,
    /// with the first one's sequence.
    public var msgId: String?
    /// Refused unless the stream's last sequence is this (the server checks
    /// it after the duplicate check).
    public var expectLastSequence: UInt64?
    /// Refused unless the stream's last stored message has this id: chains
    /// pipelined publishes so that they are stored back to back or cut at
    /// the first one refused.
    public var expectLastMessageId: String?
    public var expectStream: String?
    /// `nil`: the context's timeout.
    public var timeout: Duration?

    public init(msgId: String? = nil, expectLastSequence: UInt64? = nil, expectLastMessageId: String? = nil) {
        self.msgId = msgId
        self.expectLastSequence = expectLastSequence
        self.expectLastMessageId = expectLastMessageId
    }

    func withC<R>(defaultTimeout: Duration, _ body: (UnsafeMutablePointer<jsPubOptions>) throws(NATSError) -> R) throws(NATSError) -> R {
        var po = jsPubOptions()
        try check(jsPubOptions_Init(&po))
        if let expectLastSequence { po.ExpectLastSeq = expectLastSequence }
        po.MaxWait = (timeout ?? defaultTimeout).inMilliseconds
        // Borrowed, not copied: this runs for every message published, and
        // nats.c reads the strings only during the call.
        return try Self.withOptionalCString(msgId) { (id) throws(NATSError) in
            try Self.withOptionalCString(expectStream) { (stream) throws(NATSError) in
                try Self.withOptionalCString(expectLastMessageId) { (last) throws(NATSError) in
                    po.MsgId = id
                    po.ExpectStream = stream
                    po.ExpectLastMsgId = last
                    return try body(&po)
                }
            }
        }
    }

    private static func withOptionalCString<T>(_ string: String?, _ body: (UnsafePointer<CChar>?) throws(NATSError) -> T) throws(NATSError) -> T {
        guard let string else { return try body(nil) }
        let result = string.withCString { p in Result { () throws(NATSError) in try body(p) } }
        return try result.get()
    }
}

public struct PubAck: Sendable, Equatable {
    public var stream: String
    /// The stream sequence of the message (of the first one, for a duplicate).
    public var sequence: UInt64
    /// The message id was seen within the duplicate window: nothing new stored.
    public var duplicate: Bool

    public init(stream: String, sequence: UInt64, duplicate: Bool) {
        self.stream = stream
        self.sequence = sequence
        self.duplicate = duplicate
    }

    init(consuming pa: UnsafeMutablePointer<jsPubAck>) {
        defer { jsPubAck_Destroy(pa) }
        self.init(pa.pointee)
    }

    init(_ pa: jsPubAck) {
        stream = string(pa.Stream) ?? ""
        sequence = pa.Sequence
        duplicate = pa.Duplicate
    }
}

typealias PubAckCompletion = @Sendable (Result<PubAck, NATSError>) -> Void

/// Completions of asynchronous publishes, by message id.
final class PendingPublishes: @unchecked Sendable {
    private struct State {
        var completions: [String: PubAckCompletion] = [:]
        /// Abandoned publishes nats.c may still hold as pending.
        var abandoned = 0
    }
    private let state = AdaptiveMutex(State())
    /// Empties nats.c's list of pending publishes; set once, right after
    /// the context is made, before any publish.
    nonisolated(unsafe) var clear: () -> Void = {}

    func add(_ id: String, _ completion: @escaping PubAckCompletion) throws(NATSError) {
        let added = state.withLock { s -> Bool in
            if s.completions[id] != nil { return false }
            s.completions[id] = completion
            return true
        }
        if !added { throw NATSError(status: .invalidArgument, text: "message id \(id) is already being published") }
    }

    @discardableResult
    func remove(_ id: String) -> PubAckCompletion? {
        state.withLock { s in
            defer { clearIfIdle(&s) }
            return s.completions.removeValue(forKey: id)
        }
    }

    /// Drops the completions of `ids`: they will not run.
    func abandon(_ ids: some Sequence<String>) {
        state.withLock { s in
            for id in ids where s.completions.removeValue(forKey: id) != nil { s.abandoned += 1 }
            clearIfIdle(&s)
        }
    }

    /// Once no completion is left, nats.c's pending entries are all
    /// abandoned ones: cleared, under this lock, so that no new publish
    /// (which adds its completion here before nats.c sees it) can be
    /// among them.
    private func clearIfIdle(_ s: inout State) {
        if s.abandoned > 0 && s.completions.isEmpty {
            clear()
            s.abandoned = 0
        }
    }

    func failAll(_ error: NATSError) {
        let all = state.withLock { s -> [PubAckCompletion] in
            defer { s.completions.removeAll(); s.abandoned = 0 }
            return Array(s.completions.values)
        }
        for completion in all { completion(.failure(error)) }
    }
}

let pendingPublishes = CallbackRegistry<PendingPublishes>()

// Runs on the context's PubAck subscription thread. The message is ours to
// destroy (nats.c hands it over when an ack handler is set).
private let onPubAck: jsPubAckHandler = { _, msg, pa, pae, closure in
    defer { natsMsg_Destroy(msg) }
    var value: UnsafePointer<CChar>?
    guard let pending = pendingPublishes.target(closure),
          natsMsgHeader_Get(msg, "Nats-Msg-Id", &value) == NATS_OK, let value,
          let completion = pending.remove(String(cString: value))
    else { return }
    if let pa {
        completion(.success(PubAck(pa.pointee)))
    } else if let pae {
        let e = pae.pointee
        completion(.failure(NATSError(
            status: NATSStatus(e.Err), code: e.ErrCode.rawValue == 0 ? nil : JetStreamErrorCode(rawValue: Int(e.ErrCode.rawValue)),
            text: string(e.ErrText) ?? "")))
    }
}
