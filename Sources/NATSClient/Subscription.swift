internal import CNATS

/// A core NATS message, copied out of nats.c's.
public struct CoreMessage: Sendable, Equatable {
    public let subject: String
    public let reply: String?
    public let payload: [UInt8]
}

typealias MessageHandler = @Sendable (CoreMessage) -> Void
let messageHandlers = CallbackRegistry<MessageHandler>()

// Runs on the subscription's delivery thread, one message at a time.
private let onMessage: natsMsgHandler = { _, _, msg, closure in
    defer { natsMsg_Destroy(msg) }
    guard let handler = messageHandlers.target(closure) else { return }
    handler(CoreMessage(msg!))
}

extension CoreMessage {
    init(_ msg: OpaquePointer) {
        subject = String(cString: natsMsg_GetSubject(msg))
        reply = string(natsMsg_GetReply(msg))
        let length = Int(natsMsg_GetDataLength(msg))
        payload = length == 0 ? [] : Array(UnsafeRawBufferPointer(start: natsMsg_GetData(msg), count: length))
    }
}

/// A core NATS subscription with a callback. Ends at `unsubscribe()` or
/// when dropped; a message being handled then still finishes.
public final class Subscription: @unchecked Sendable {
    private let sub: OpaquePointer
    private let handler: UnsafeMutableRawPointer
    // Keeps nats.c's connection alive as long as the subscription.
    private let connection: NATSConnection

    init(connection: NATSConnection, subject: String, handler body: @escaping MessageHandler) throws(NATSError) {
        self.connection = connection
        handler = messageHandlers.register(body)
        var s: OpaquePointer?
        let status = natsConnection_Subscribe(&s, connection.nc, subject, onMessage, handler)
        guard status == NATS_OK, let s else {
            let error = lastError(status)
            messageHandlers.unregister(handler)
            throw error
        }
        sub = s
    }

    /// No callback starts after this returns (one running may finish).
    public func unsubscribe() {
        messageHandlers.unregister(handler)
        natsSubscription_Unsubscribe(sub)
    }

    deinit {
        messageHandlers.unregister(handler)
        natsSubscription_Destroy(sub)
    }
}
