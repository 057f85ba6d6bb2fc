import Locking
// async/await faces over the completion-based operations: the same parked
// waiter, resumed by a continuation; task cancellation cancels the waiter.

extension Group {
    /// Sends, suspending while a recipient is full. Throws `.cancelled` if the
    /// task is cancelled while parked; nobody received the message then.
    public func send(_ message: Message, as sender: Member? = nil) async throws(DeliveryError) -> SendReceipt {
        try await awaitCompletion { completion in
            self.send(message, as: sender, .blocking, completion: completion)
        }
    }

    /// Sends a batch, suspending until its first message fits; see
    /// `send(batch:as:_:completion:)`. Throws `.cancelled` if the task is
    /// cancelled while parked; nothing of the batch was delivered then.
    public func send(batch messages: [Message], as sender: Member? = nil) async throws(DeliveryError) -> BatchReceipt {
        try await awaitCompletion { completion in
            self.send(batch: messages, as: sender, .blocking, completion: completion)
        }
    }
}

extension Reader {
    /// Receives, suspending on an empty queue. Nil: end of the stream. Throws
    /// `.cancelled` if the task is cancelled while parked; nothing was consumed.
    public func receive(maxBytes: Int) async throws(DeliveryError) -> MessageChunk? {
        try await awaitCompletion { completion in
            self.receive(maxBytes: maxBytes, .blocking, completion: completion)
        }
    }
}

/// Joins a parked waiter with the task's cancellation, whichever comes first.
private final class CancellationBox<T: Sendable>: Sendable {
    typealias Resume = @Sendable (Result<T, DeliveryError>) -> Void
    private enum State { case running, parked(Waiting, Resume), cancelled }
    private let state = AdaptiveMutex(State.running)

    /// Records the waiter; false if the task was cancelled first.
    func park(_ waiting: Waiting, resume: @escaping Resume) -> Bool {
        state.withLock { state in
            if case .cancelled = state { return false }
            state = .parked(waiting, resume)
            return true
        }
    }

    /// Marks cancelled, and cancels the waiter if one is parked.
    func cancel() {
        let parked: (Waiting, Resume)? = state.withLock { state in
            defer { state = .cancelled }
            if case .parked(let waiting, let resume) = state { return (waiting, resume) }
            return nil
        }
        // Cancelled while parked: the completion will never run, so resume here.
        if let (waiting, resume) = parked, waiting.cancel() {
            resume(.failure(.cancelled))
        }
    }
}

func awaitCompletion<T: Sendable>(
    _ start: (@escaping @Sendable (Result<T, DeliveryError>) -> Void) -> Waiting?
) async throws(DeliveryError) -> T {
    let box = CancellationBox<T>()
    let result: Result<T, DeliveryError> = await withTaskCancellationHandler {
        await withCheckedContinuation { (continuation: CheckedContinuation<Result<T, DeliveryError>, Never>) in
            let resume: @Sendable (Result<T, DeliveryError>) -> Void = { continuation.resume(returning: $0) }
            guard let waiting = start(resume) else { return }
            if !box.park(waiting, resume: resume), waiting.cancel() {
                resume(.failure(.cancelled))
            }
        }
    } onCancel: {
        box.cancel()
    }
    return try result.get()
}
