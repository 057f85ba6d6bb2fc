import CFuse
import Glibc
import Logging
import Synchronization
public import SystemPackage

/// One FUSE request awaiting its single answer; the shared base of the typed
/// replies (`ReplyEntry`, `ReplyData`, ...).
///
/// - Answer at most once, from any thread, at any time (inside the callback
///   or long after it returned). Every answering method returns a
///   `ReplyResult`; anything but `.sent` means the data did not arrive.
/// - A second answer is a programming error: it traps in debug builds and is
///   ignored in release builds — except after this layer answered on its own
///   (EINTR on interrupt, `failPending`), when a late answer just returns
///   `.alreadyAnswered`.
/// - A reply dropped unanswered answers EIO from its deinit (as the Rust
///   `fuser` crate does), unless the session is already unmounting or
///   destroyed, when nothing can be sent.
/// - Interrupts: `armInterrupt()` and `onInterrupt(_:)` (Interrupts.swift).
///
/// Not subclassable outside this module; @unchecked only because the class is
/// not final: its stored state is `let`s of Sendable types and atomics.
public class Reply: @unchecked Sendable {
    let request: RequestHandle
    let session: SessionCore
    /// 0: unanswered; otherwise who answered (`Answerer`).
    private let claim = Atomic<UInt8>(0)
    /// 0 until `armInterrupt`; then this request's id in the claim table.
    let interruptID = Atomic<UInt64>(0)

    enum Answerer: UInt8 {
        /// The code the reply was handed to.
        case caller = 1
        /// This layer: EINTR after an interrupt, failPending, EIO on deinit.
        case layer = 2
    }

    required init(request: RequestHandle, session: SessionCore) {
        self.request = request
        self.session = session
    }

    deinit {
        guard claim.load(ordering: .acquiring) == 0 else { return }
        answer(by: .layer) { fuse_reply_err($0, EIO) }
    }

    /// Whether someone (the caller or this layer) has answered.
    public var isAnswered: Bool { claim.load(ordering: .acquiring) != 0 }

    /// Answers with an error (`fuse_reply_err`).
    @discardableResult
    public func error(_ errno: Errno) -> ReplyResult {
        answer(by: .caller, errno: errno)
    }

    @discardableResult
    func answer(by who: Answerer, errno: Errno) -> ReplyResult {
        answer(by: who) { fuse_reply_err($0, errno.rawValue) }
    }

    /// The one path every answer takes: claim, leave the claim table, send.
    @discardableResult
    func answer(by who: Answerer, _ send: (fuse_req_t) -> Int32) -> ReplyResult {
        let (won, previous) = claim.compareExchange(
            expected: 0, desired: who.rawValue, ordering: .acquiringAndReleasing)
        guard won else {
            if who == .caller && previous == Answerer.caller.rawValue {
                assertionFailure("FUSELowLevel: a FUSE request was answered twice")
            }
            return .alreadyAnswered
        }
        // From here on an interrupt for this request finds no slot and does
        // nothing; libfuse itself forgets the interrupt function in
        // fuse_free_req, inside the reply call below.
        let id = interruptID.load(ordering: .acquiring)
        if id != 0 { session.interrupts.answered(id) }
        let result = session.gate.ifOpen { ReplyResult(returnCode: send(request.raw)) } ?? .sessionClosed
        if case .failed(let errno) = result { session.logger.error("the kernel refused a reply", metadata: ["errno": "\(errno)"]) }
        return result
    }
}
