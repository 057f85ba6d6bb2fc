import Locking
import DeliveryCore

func message(_ text: String) -> Message { Message(Array(text.utf8)) }

extension Reader {
    /// The next whole message as text, or nil at end of stream; fails the test on would-block.
    func text(maxBytes: Int = 1 << 20) throws -> String? {
        try tryReceive(maxBytes: maxBytes).map { String(decoding: $0.bytes, as: UTF8.self) }
    }
}

/// Collects results from completions that may run on any thread.
final class Box<Value: Sendable>: Sendable {
    private let storage: AdaptiveMutex<[Value]> = AdaptiveMutex([])
    func append(_ value: Value) { storage.withLock { $0.append(value) } }
    var values: [Value] { storage.withLock { $0 } }
}

func expectError(_ expected: DeliveryError, _ body: () throws -> Void) -> Bool {
    do {
        try body()
        return false
    } catch {
        return (error as? DeliveryError) == expected
    }
}
