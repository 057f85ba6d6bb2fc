internal import CNATS

/// A `natsStatus` of nats.c, by name.
public struct NATSStatus: RawRepresentable, Hashable, Sendable, CustomStringConvertible {
    public let rawValue: UInt32
    public init(rawValue: UInt32) { self.rawValue = rawValue }
    init(_ status: natsStatus) { rawValue = status.rawValue }

    public static let ok = NATSStatus(NATS_OK)
    /// A generic error; for JetStream calls, the server answered with an
    /// API error and `NATSError.code` says which.
    public static let error = NATSStatus(NATS_ERR)
    public static let ioError = NATSStatus(NATS_IO_ERROR)
    public static let connectionClosed = NATSStatus(NATS_CONNECTION_CLOSED)
    public static let connectionDisconnected = NATSStatus(NATS_CONNECTION_DISCONNECTED)
    public static let noServer = NATSStatus(NATS_NO_SERVER)
    public static let staleConnection = NATSStatus(NATS_STALE_CONNECTION)
    public static let notFound = NATSStatus(NATS_NOT_FOUND)
    public static let invalidArgument = NATSStatus(NATS_INVALID_ARG)
    public static let invalidSubject = NATSStatus(NATS_INVALID_SUBJECT)
    public static let illegalState = NATSStatus(NATS_ILLEGAL_STATE)
    public static let timeout = NATSStatus(NATS_TIMEOUT)
    public static let noResponders = NATSStatus(NATS_NO_RESPONDERS)
    public static let insufficientBuffer = NATSStatus(NATS_INSUFFICIENT_BUFFER)
    public static let maxPayload = NATSStatus(NATS_MAX_PAYLOAD)
    public static let notPermitted = NATSStatus(NATS_NOT_PERMITTED)
    public static let draining = NATSStatus(NATS_DRAINING)

    /// nats.c's own name for it ("Timeout", "Connection Closed", ...).
    public var description: String {
        String(cString: natsStatus_GetText(natsStatus(rawValue: rawValue)))
    }
}

/// A JetStream API error code (`jsErrCode`, the server's `err_code`).
/// Only the codes mcastfs acts on have names; any other code is kept as is.
public struct JetStreamErrorCode: RawRepresentable, Hashable, Sendable {
    public let rawValue: Int
    public init(rawValue: Int) { self.rawValue = rawValue }

    public static let consumerNameExists = JetStreamErrorCode(rawValue: Int(JSConsumerNameExistErr.rawValue))
    public static let consumerNotFound = JetStreamErrorCode(rawValue: Int(JSConsumerNotFoundErr.rawValue))
    public static let noMessageFound = JetStreamErrorCode(rawValue: Int(JSNoMessageFoundErr.rawValue))
    public static let streamNameExists = JetStreamErrorCode(rawValue: Int(JSStreamNameExistErr.rawValue))
    public static let streamNotFound = JetStreamErrorCode(rawValue: Int(JSStreamNotFoundErr.rawValue))
    public static let streamInvalidConfig = JetStreamErrorCode(rawValue: Int(JSStreamInvalidConfig.rawValue))
    /// A publish the stream could not store; the text says why:
    /// "maximum messages exceeded" is a full `discard: new` stream.
    public static let streamStoreFailed = JetStreamErrorCode(rawValue: Int(JSStreamStoreFailedErr.rawValue))
    /// A publish whose expected last (subject) sequence did not match; also
    /// a KV create of a key that exists, or an update at a stale revision.
    public static let streamWrongLastSequence = JetStreamErrorCode(rawValue: Int(JSStreamWrongLastSequenceErr.rawValue))
    /// A publish whose expected last message id was not the stream's last.
    public static let streamWrongLastMessageId = JetStreamErrorCode(rawValue: Int(JSStreamWrongLastMsgIDErr.rawValue))
    public static let streamReplicasNotSupported = JetStreamErrorCode(rawValue: Int(JSStreamReplicasNotSupportedErr.rawValue))
    public static let clusterNoPeers = JetStreamErrorCode(rawValue: Int(JSClusterNoPeersErr.rawValue))
    public static let insufficientResources = JetStreamErrorCode(rawValue: Int(JSInsufficientResourcesErr.rawValue))
}

/// A failed nats.c call: its status, the JetStream error code when the
/// server refused a JetStream request, and nats.c's text for it.
public struct NATSError: Error, Sendable, Equatable, CustomStringConvertible {
    public let status: NATSStatus
    public let code: JetStreamErrorCode?
    public let text: String

    public init(status: NATSStatus, code: JetStreamErrorCode? = nil, text: String) {
        self.status = status
        self.code = code
        self.text = text
    }

    /// A `discard: new` stream at its `max_msgs` refused the message: nothing
    /// was stored, and a retry once consumers have acked may succeed.
    public var isMaximumMessagesExceeded: Bool {
        code == .streamStoreFailed && text.contains("maximum messages exceeded")
    }

    /// nats.c could not learn the outcome (no answer in time, or the
    /// connection went away with the request outstanding): the server may
    /// or may not have acted on it.
    public var isOutcomeUnknown: Bool {
        status == .timeout || status == .connectionDisconnected || status == .connectionClosed
            || status == .ioError || status == .staleConnection
    }

    public var description: String {
        var s = "\(status)"
        if let code { s += " (JetStream error \(code.rawValue))" }
        if !text.isEmpty && text != status.description { s += ": \(text)" }
        return s
    }
}

/// The one place nats.c statuses become Swift errors. nats.c keeps the text
/// of the last error per thread, so it must be read on the calling thread
/// right after the failing call, which is what this does.
@inline(__always)
func check(_ status: natsStatus, code: jsErrCode = jsErrCode(rawValue: 0)) throws(NATSError) {
    if status == NATS_OK { return }
    throw lastError(status, code: code)
}

func lastError(_ status: natsStatus, code: jsErrCode = jsErrCode(rawValue: 0)) -> NATSError {
    var ignored = NATS_OK
    let text = withoutLocation(nats_GetLastError(&ignored).map { String(cString: $0) } ?? "")
    return NATSError(status: NATSStatus(status), code: classify(code: code, text: text), text: text)
}

/// nats.c prefixes its error texts with where it set them, "(js.c:535): ";
/// the server's words follow.
private func withoutLocation(_ text: String) -> String {
    guard text.hasPrefix("("), let close = text.firstIndex(of: ")"),
          text[text.index(after: close)...].hasPrefix(": ")
    else { return text }
    return String(text[text.index(close, offsetBy: 3)...])
}

/// nats.c's key/value calls publish without asking for the JetStream error
/// code (kv.c passes NULL), so a create of an existing key or an update at a
/// stale revision comes back as NATS_ERR with the server's text only; its
/// prefix is the server's fixed message for that code.
private func classify(code: jsErrCode, text: String) -> JetStreamErrorCode? {
    if code.rawValue != 0 { return JetStreamErrorCode(rawValue: Int(code.rawValue)) }
    if text.hasPrefix("wrong last sequence") { return .streamWrongLastSequence }
    return nil
}
