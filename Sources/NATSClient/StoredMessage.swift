internal import CNATS
import Glibc

/// What a reader of a stream's message needs, however it came: from a
/// consumer (`JetStreamMessage`) or read from the stream by its sequence
/// (`StoredMessage`).
public protocol StreamMessage {
    /// The message's sequence in its stream.
    var streamSequence: UInt64 { get }
    /// When the stream stored it (ns since the epoch, the server's clock).
    var timestamp: Int64 { get }
    /// The payload, valid during `body` only.
    func withPayload<R>(_ body: (UnsafeRawBufferPointer) -> R) -> R
    /// The value of one header.
    func header(_ name: String) -> String?
    /// The value of one header in nats.c's buffer (nil: none), valid
    /// during `body` only: read in place, for what runs for every message.
    func withHeader<R>(_ name: String, _ body: (UnsafeRawBufferPointer?) -> R) -> R
}

/// A header's value in nats.c's message `m`, as `withHeader` gives it.
func withHeader<R>(of m: OpaquePointer, _ name: String, _ body: (UnsafeRawBufferPointer?) -> R) -> R {
    var value: UnsafePointer<CChar>?
    guard natsMsgHeader_Get(m, name, &value) == NATS_OK, let value else { return body(nil) }
    return body(UnsafeRawBufferPointer(start: value, count: strlen(value)))
}

extension JetStreamMessage: StreamMessage {}

/// A message read from a stream by its sequence (`JetStream.message`): no
/// consumer is involved, and nothing acks it.
public final class StoredMessage: StreamMessage, @unchecked Sendable {
    public let streamSequence: UInt64
    public let timestamp: Int64
    // Read-only after init, freed in deinit.
    private let msg: OpaquePointer

    init(taking m: OpaquePointer) {
        msg = m
        streamSequence = natsMsg_GetSequence(m)
        timestamp = natsMsg_GetTime(m)
    }

    deinit { natsMsg_Destroy(msg) }

    public func withPayload<R>(_ body: (UnsafeRawBufferPointer) -> R) -> R {
        body(UnsafeRawBufferPointer(start: natsMsg_GetData(msg), count: Int(natsMsg_GetDataLength(msg))))
    }

    public func header(_ name: String) -> String? {
        var value: UnsafePointer<CChar>?
        guard natsMsgHeader_Get(msg, name, &value) == NATS_OK, let value else { return nil }
        return String(cString: value)
    }

    public func withHeader<R>(_ name: String, _ body: (UnsafeRawBufferPointer?) -> R) -> R {
        NATSClient.withHeader(of: msg, name, body)
    }
}

extension JetStream {
    /// The message at `sequence` of `stream`, read from the stream itself
    /// (STREAM.MSG.GET, answered by the stream's leader); nil when the
    /// stream has none there (never stored, or removed).
    public func message(stream: String, sequence: UInt64) throws(NATSError) -> StoredMessage? {
        var m: OpaquePointer?
        var code = jsErrCode(rawValue: 0)
        let status = js_GetMsg(&m, js, stream, sequence, nil, &code)
        if status == NATS_OK, let m { return StoredMessage(taking: m) }
        let error = lastError(status, code: code)
        if error.code == .noMessageFound { return nil }
        throw error
    }
}
