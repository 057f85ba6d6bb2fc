/// The life of one interruptible request, with no libfuse in it.
///
/// Three parties race: the *interrupt* (libfuse's interrupt function, on
/// whichever thread read the kernel's FUSE_INTERRUPT), the *owner* of the
/// pending work (who says how to cancel it, `cancelProvided`), and the
/// *answer* (whoever replies first). The machine decides under its owner's
/// lock what must happen; the caller carries the action out after releasing
/// that lock (a cancel closure is user code and may take other locks).
///
///     armed ──interrupt──▶ interrupted ──cancelProvided──▶ cancelling
///       │                                                   ▲     │
///       └──cancelProvided──▶ cancelRegistered ──interrupt───┘     │
///                                                                 ▼
///                 cancelFinished(true) ⇒ answer EINTR    cancelFinished(false)
///                                                                 │
///                                                                 ▼
///                                                              declined
///     any state ──answered──▶ answered (terminal)
///
/// Guarantees: `cancel` runs at most once, only after an interrupt, and never
/// after the request was answered *as far as the machine knows* (an answer
/// racing a running cancel is resolved by the reply's own single-answer flag).
struct InterruptStateMachine<Cancel> {
    enum State {
        /// Registered with libfuse; no interrupt and no cancel yet.
        case armed
        /// An interrupt arrived before the owner said how to cancel.
        case interrupted
        /// The owner said how to cancel; no interrupt yet.
        case cancelRegistered(Cancel)
        /// An interrupt met a cancel; the cancel was handed out to run.
        case cancelling
        /// The cancel ran and said the work answers by itself.
        case declined
        /// The request was answered; nothing more happens.
        case answered
    }

    private(set) var state: State = .armed

    enum InterruptAction {
        case none
        case runCancel(Cancel)
    }

    /// libfuse reports an interrupt (possibly twice; later ones are ignored).
    mutating func interruptArrived() -> InterruptAction {
        switch state {
        case .armed:
            state = .interrupted
            return .none
        case .cancelRegistered(let cancel):
            state = .cancelling
            return .runCancel(cancel)
        case .interrupted, .cancelling, .declined, .answered:
            return .none
        }
    }

    enum ProvideAction {
        /// Kept until an interrupt; `replaced` is an earlier cancel to drop.
        case stored(replaced: Cancel?)
        /// An interrupt already arrived: run it now.
        case runCancel(Cancel)
        /// Too late (interrupt already handled, or answered): drop it.
        case discard(Cancel)
    }

    /// The owner says how to cancel the pending work.
    mutating func cancelProvided(_ cancel: Cancel) -> ProvideAction {
        switch state {
        case .armed:
            state = .cancelRegistered(cancel)
            return .stored(replaced: nil)
        case .cancelRegistered(let earlier):
            state = .cancelRegistered(cancel)
            return .stored(replaced: earlier)
        case .interrupted:
            state = .cancelling
            return .runCancel(cancel)
        case .cancelling, .declined, .answered:
            return .discard(cancel)
        }
    }

    enum VerdictAction: Equatable {
        /// The work will never answer: the layer answers EINTR.
        case answerInterrupted
        case none
    }

    /// The cancel handed out by `.runCancel` returned `cancelled`.
    mutating func cancelFinished(cancelled: Bool) -> VerdictAction {
        guard case .cancelling = state else { return .none }
        if cancelled {
            // Stay in `cancelling` until the EINTR answer lands (`answered`).
            return .answerInterrupted
        }
        state = .declined
        return .none
    }

    /// The request was answered. Returns a cancel that will now never run,
    /// for the caller to drop outside its lock.
    mutating func answered() -> Cancel? {
        let dropped: Cancel?
        if case .cancelRegistered(let cancel) = state { dropped = cancel } else { dropped = nil }
        state = .answered
        return dropped
    }
}

extension InterruptStateMachine: Sendable where Cancel: Sendable {}
extension InterruptStateMachine.State: Sendable where Cancel: Sendable {}
extension InterruptStateMachine.InterruptAction: Sendable where Cancel: Sendable {}
extension InterruptStateMachine.ProvideAction: Sendable where Cancel: Sendable {}

extension InterruptStateMachine.State: CustomStringConvertible {
    var description: String {
        switch self {
        case .armed: "armed"
        case .interrupted: "interrupted"
        case .cancelRegistered: "cancelRegistered"
        case .cancelling: "cancelling"
        case .declined: "declined"
        case .answered: "answered"
        }
    }
}
