import Locking
import Synchronization

/// The session-wide claim table of interrupt-armed requests: id → state
/// machine and (weakly) the reply. No libfuse in here; Interrupts.swift wires
/// it to `fuse_req_interrupt_func`.
///
/// Why ids: libfuse may call the interrupt function after the request was
/// answered (libfuse 3.14 `find_interrupted` reads func/data under the
/// session lock, drops it, then calls func; a concurrent `fuse_free_req`
/// clears them too late). An object pointer as the callback's data could then
/// dangle; an id that is no longer in the table is simply ignored. Ids are
/// never reused.
///
/// Why weak: a reply dropped unanswered must still deinit (and answer EIO).
///
/// Lock discipline: every method decides under `slots`' lock and returns
/// what must happen; cancel closures are run, and user objects released,
/// only after the lock is dropped (releasing a cancel closure may deinit a
/// reply, whose deinit calls back into this table).
final class InterruptRegistry<Target: AnyObject & Sendable>: Sendable {
    typealias Cancel = @Sendable () -> Bool

    struct Slot: Sendable {
        var machine = InterruptStateMachine<Cancel>()
        weak var target: Target?
        /// Set while the owner's thread is inside `fuse_req_interrupt_func`:
        /// a call of the interrupt function on that thread in that window is
        /// libfuse's synchronous "already interrupted" call.
        var registrant: UInt?
    }

    private let slots = AdaptiveMutex<[UInt64: Slot]>([:])
    private let nextID = Atomic<UInt64>(1)

    init() {}

    /// Adds an armed slot. `registrant` identifies the calling thread.
    func arm(_ target: Target, registrant: UInt) -> UInt64 {
        let id = nextID.wrappingAdd(1, ordering: .relaxed).oldValue
        var slot = Slot()
        slot.target = target
        slot.registrant = registrant
        slots.withLock { $0[id] = slot }
        return id
    }

    /// The owner's thread returned from `fuse_req_interrupt_func`.
    func registrationFinished(_ id: UInt64) {
        slots.withLock { $0[id]?.registrant = nil }
    }

    enum InterruptOutcome {
        /// Unknown id (already answered), a repeated interrupt, or no cancel yet.
        case ignored
        /// libfuse's synchronous call from inside the registration: the caller
        /// must not reply here (libfuse 3.14 would unlock a freed mutex); the
        /// registering thread answers EINTR itself after checking
        /// `fuse_req_interrupted`.
        case reentrant
        /// Run the cancel, keeping `target` alive meanwhile: the cancel
        /// typically drops the owner's last reference to the reply, which
        /// must still be there to answer EINTR rather than EIO from deinit.
        case runCancel(Cancel, Target?)
    }

    /// libfuse reports an interrupt for `id` on `thread`.
    func interrupt(_ id: UInt64, on thread: UInt) -> InterruptOutcome {
        slots.withLock { slots -> InterruptOutcome in
            guard var slot = slots[id] else { return .ignored }
            if slot.registrant == thread { return .reentrant }
            let action = slot.machine.interruptArrived()
            slots[id] = slot
            switch action {
            case .none: return .ignored
            case .runCancel(let cancel): return .runCancel(cancel, slot.target)
            }
        }
    }

    enum ProvideOutcome {
        case stored
        case runCancel(Cancel)
        case discarded
    }

    /// The owner says how to cancel `id`'s work.
    func provideCancel(_ id: UInt64, _ cancel: @escaping Cancel) -> ProvideOutcome {
        // `leftover` carries closures out of the lock, to be released there.
        let (outcome, leftover) = slots.withLock { slots -> (ProvideOutcome, Cancel?) in
            guard var slot = slots[id] else { return (.discarded, cancel) }
            let action = slot.machine.cancelProvided(cancel)
            slots[id] = slot
            switch action {
            case .stored(let replaced): return (.stored, replaced)
            case .runCancel(let run): return (.runCancel(run), nil)
            case .discard(let dropped): return (.discarded, dropped)
            }
        }
        _ = leftover
        return outcome
    }

    /// A cancel handed out for `id` returned `cancelled`. Returns the reply
    /// the caller must answer EINTR, if any.
    func cancelFinished(_ id: UInt64, cancelled: Bool) -> Target? {
        slots.withLock { slots -> Target? in
            guard var slot = slots[id] else { return nil }
            let verdict = slot.machine.cancelFinished(cancelled: cancelled)
            slots[id] = slot
            return verdict == .answerInterrupted ? slot.target : nil
        }
    }

    /// `id` was answered: forget it. Safe to call for unknown ids.
    func answered(_ id: UInt64) {
        // The machine hands back a cancel that will now never run; it (and
        // the slot) are carried out of the lock and released here.
        let removed = slots.withLock { slots -> (Slot, Cancel?)? in
            guard var slot = slots.removeValue(forKey: id) else { return nil }
            let dropped = slot.machine.answered()
            return (slot, dropped)
        }
        _ = removed
    }

    /// Every reply still pending (for answering at shutdown). Slots whose
    /// reply is gone are removed.
    func pendingTargets() -> [Target] {
        let (targets, dead) = slots.withLock { slots -> ([Target], [Slot]) in
            var targets: [Target] = []
            var dead: [Slot] = []
            for (id, slot) in slots {
                if let target = slot.target {
                    targets.append(target)
                } else if let removed = slots.removeValue(forKey: id) {
                    dead.append(removed)
                }
            }
            return (targets, dead)
        }
        _ = dead
        return targets
    }

    /// The state of `id`'s machine, or nil if unknown (for tests).
    func state(of id: UInt64) -> InterruptStateMachine<Cancel>.State? {
        slots.withLock { $0[id]?.machine.state }
    }

    var count: Int { slots.withLock { $0.count } }
}
