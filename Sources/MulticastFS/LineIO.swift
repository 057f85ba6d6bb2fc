import DeliveryCore
import Locking
import SystemPackage

// Line messages (docs/contract.md, "Line messages"): with `message=line`, a
// record-view write is cut after every newline, each line one message; the
// bytes after the last newline wait in the open file for its next write, or
// for fsync (which waits until they are sent) or the last close (which
// does not).

/// The bytes after the last newline an open file wrote: the start of its
/// next line message, and who wrote them.
final class PendingLine: Sendable {
    /// `writer` is the write(2) that gave the latest bytes, as for a line a
    /// write completes: an open file can be shared (fork, SCM_RIGHTS), and
    /// so nobody's bytes go out under another user's credentials (what one
    /// appends to another's waiting line is the appender's). It is kept here
    /// because fsync or the last close sends the tail from requests that do
    /// not say who wrote it: RELEASE carries no credentials at all
    /// (docs/fuse-notes.md), and fsync's are the syncing process's, who may
    /// have written nothing.
    struct Tail: Sendable {
        var bytes: [UInt8] = []
        var writer = Credentials()
        /// The writer's account, charged `bytes.count` while they wait here
        /// or on their way out (docs/contract.md, "Limits per user"); nil
        /// while nothing is charged.
        var account: Account? = nil

        func release() { account?.unhold(bytes.count) }
    }

    private let tail = AdaptiveMutex(Tail())

    /// Takes what waits, leaving nothing.
    func take() -> Tail { tail.withLock { pending in defer { pending = Tail() }; return pending } }

    func keep(_ kept: Tail) { tail.withLock { $0 = kept } }
}

/// One write's lines, cut: the messages, and what waits for the next write.
/// (`package`: the line fuzzer drives it, fuzz/harness.)
package struct LineCut {
    /// The complete lines, each up to and including its newline.
    package var lines: [Range<Int>]
    /// The bytes after the last newline.
    package var tail: Range<Int>
    /// The waiting bytes of earlier writes, then this write's.
    package var text: [UInt8]
    /// How many bytes of `text` came from earlier writes.
    package var carried: Int

    package init(carried pending: [UInt8], _ bytes: UnsafeRawBufferPointer) {
        text = pending
        text.append(contentsOf: bytes)
        carried = pending.count
        lines = []
        var start = 0
        // Only this write's bytes can hold a newline: what waited had none.
        for index in carried..<text.count where text[index] == UInt8(ascii: "\n") {
            lines.append(start..<index + 1)
            start = index + 1
        }
        tail = start..<text.count
    }

    /// The longest line, or the tail that would begin the next one.
    package var longest: Int { max(lines.map(\.count).max() ?? 0, tail.count) }

    /// This write's bytes covered by its first `count` lines.
    package func written(byLines count: Int) -> Int {
        count == 0 ? 0 : max(0, lines[count - 1].upperBound - carried)
    }
}

extension MulticastFilesystem {
    /// write(2) in line mode on `send`, a member file or a peer file.
    func writeLines(_ bytes: UnsafeRawBufferPointer, pending: PendingLine, to destination: Destination,
                    writer: Credentials, nonBlocking: Bool, reply: some WriteReply) {
        let carried = pending.take()
        let cut = LineCut(carried: carried.bytes, bytes)
        // A write of no bytes adds nothing to the tail, nor its writer.
        var tail = bytes.isEmpty ? carried : PendingLine.Tail(bytes: Array(cut.text[cut.tail]), writer: writer)
        // A line (or the tail it begins) longer than max_message: the write
        // that makes it so delivers nothing; what waited stays.
        guard cut.longest <= destination.group.settings.maxMessage else {
            pending.keep(carried)
            return reply.fail(.messageTooLong)
        }
        // The tail left is the writer's to pay for: a write that would hold
        // more of it while its writer is at or over user_bytes delivers
        // nothing (EDQUOT). The same writer's account, where it paid already.
        if !bytes.isEmpty, !tail.bytes.isEmpty {
            let account = (carried.writer.uid == writer.uid ? carried.account : nil) ?? users.account(for: writer.uid)
            let paid = account === carried.account ? carried.bytes.count : 0
            if tail.bytes.count > paid, !account.mayHold {
                pending.keep(carried)
                return reply.fail(.diskQuotaExceeded)
            }
            tail.account = account
        }
        let waiting = tail
        // What waited is now a line, or part of the new tail: its charge
        // passes to the new tail (charged before it is released, so that the
        // account never looks emptier than it is).
        let replace = { @Sendable in
            waiting.account?.hold(waiting.bytes.count)
            carried.release()
        }
        guard !cut.lines.isEmpty else {
            replace()
            pending.keep(waiting)
            return reply.reply(written: bytes.count)
        }
        let messages = cut.text.withUnsafeBytes { text in
            cut.lines.map { Message(copying: UnsafeRawBufferPointer(rebasing: text[$0]), credentials: writer) }
        }
        // Arm for interrupts before any line is sent: once one is, the write
        // can only end with a count, never EINTR.
        if !nonBlocking {
            guard reply.willWait() else { return pending.keep(carried) }
        }
        let total = bytes.count
        let users = users, uid = writer.uid
        let account: (@Sendable () -> Account)? = destination.group.isRelayed ? nil : { @Sendable in users.account(for: uid) }
        let send = LineSend(destination: destination, messages: messages, nonBlocking: nonBlocking, account: account) { delivered in
            // All delivered: the tail waits. None: as if never written, what
            // waited stays. Some: a short count; the caller sends the rest
            // again, so nothing of it is kept.
            if delivered == messages.count {
                replace()
                pending.keep(waiting)
                reply.reply(written: total)
            } else if delivered > 0 {
                carried.release()
                reply.reply(written: cut.written(byLines: delivered))
            } else {
                pending.keep(carried)
                return false
            }
            return true
        } failed: { error in
            pending.keep(carried)
            reply.fail(error)
        }
        if !nonBlocking { reply.cancelOnInterrupt { send.interrupt() } }
        send.advance()
    }

    /// fsync(2): sends what waits in `pending` as a message of its own, and
    /// answers once it is in, for fsync means what was written is out. It
    /// waits as a blocking write of the tail would (O_NONBLOCK or not: fsync
    /// has no EAGAIN), fails as that write would (EINTR on a signal,
    /// EMSGSIZE if max_message fell below it, EPIPE, ENOTCONN), and then, as
    /// after a write that delivered nothing, the tail still waits. Nothing
    /// else of the file's can change the tail meanwhile: the kernel holds
    /// the inode's lock over fsync, as over a write (docs/fuse-notes.md §1).
    func syncLine(_ pending: PendingLine, to destination: Destination, reply: some SyncReply) {
        let tail = pending.take()
        guard !tail.bytes.isEmpty else { return reply.synced() }
        guard reply.willWait() else { return pending.keep(tail) }
        let line = Message(tail.bytes, credentials: tail.writer)
        // The tail stays charged to its writer while it waits (as a tail),
        // so the send charges nothing more; sent, the charge goes.
        let send = LineSend(destination: destination, messages: [line], nonBlocking: false, account: nil) { delivered in
            guard delivered == 1 else {
                pending.keep(tail)
                return false
            }
            tail.release()
            reply.synced()
            return true
        } failed: { error in
            pending.keep(tail)
            reply.fail(error)
        }
        reply.cancelOnInterrupt { send.interrupt() }
        send.advance()
    }

    /// The last close (release): sends what waits in `pending` as a message
    /// of its own. It holds nobody, for RELEASE is answered at once (the
    /// closer may be gone, and close(2) must not block): if a recipient is
    /// full, it waits in line like any blocked write (the group's, or a
    /// private message's member's), answering nobody.
    func flushLine(_ pending: PendingLine, to destination: Destination) {
        let tail = pending.take()
        guard !tail.bytes.isEmpty else { return }
        // Still held, now as a blocked write: charged until it is sent or fails.
        destination.send(Message(tail.bytes, credentials: tail.writer), .blocking) { _ in tail.release() }
    }
}

/// The lines of one write on their way: as many per step as every blocking
/// recipient can take, in order, until all are in, the write is
/// interrupted, or (non-blocking) a line does not fit.
final class LineSend: @unchecked Sendable {  // state behind its lock
    private struct State {
        var delivered = 0
        var waiting: Waiting?
        var interrupted = false
        var finished = false
        /// Bytes of the parked lines charged to `account` while they wait.
        var held = 0
        /// Counts the batches parked: `waiting` is the last one's.
        var parks = 0
    }

    private let destination: Destination
    private let messages: [Message]
    private let nonBlocking: Bool
    /// The writer's account, charged the lines that wait for room (looked
    /// up only then); nil for a relayed group (its sends wait for the
    /// stream, not for room).
    private let account: (@Sendable () -> Account)?
    private let charged = AdaptiveMutex<Account?>(nil)
    /// Answers with `delivered` lines sent; false: it sent none, and the
    /// write ends as interrupted or would-block (answered by the caller).
    private let done: @Sendable (_ delivered: Int) -> Bool
    private let failed: @Sendable (Errno) -> Void
    private let state = AdaptiveMutex(State())

    init(destination: Destination, messages: [Message], nonBlocking: Bool, account: (@Sendable () -> Account)?,
         done: @escaping @Sendable (Int) -> Bool, failed: @escaping @Sendable (Errno) -> Void) {
        self.destination = destination
        self.messages = messages
        self.nonBlocking = nonBlocking
        self.account = account
        self.done = done
        self.failed = failed
    }

    /// Sends what it can now, and parks for the rest. Never under a group's
    /// lock: from the writer's thread, or from a completion.
    func advance() {
        while true {
            let (delivered, interrupted) = state.withLock { ($0.delivered, $0.interrupted) }
            if interrupted { return finish(interrupted: true) }
            if delivered == messages.count { return finish(interrupted: false) }
            let rest = Array(messages[delivered...])
            do throws(DeliveryError) {
                let receipt = try destination.trySend(batch: rest)
                state.withLock { $0.delivered += receipt.delivered }
            } catch .wouldBlock where !nonBlocking || destination.group.isRelayed {
                // A relayed group answers later, O_NONBLOCK or not. Lines
                // that wait are the writer's to pay for (EDQUOT at its limit).
                if let lookUp = account {
                    let account = lookUp()
                    guard account.mayHold else { return fail(.diskQuotaExceeded) }
                    let bytes = rest.reduce(0) { $0 + $1.count }
                    account.hold(bytes)
                    charged.withLock { $0 = account }
                    state.withLock { $0.held = bytes }
                }
                let park = state.withLock { state in
                    state.parks += 1
                    return state.parks
                }
                let waiting = destination.send(batch: rest, nonBlocking ? .nonBlocking : .blocking) { [self] result in
                    parkedSendEnded(result)
                }
                guard let waiting else { return }  // it completed already, and advanced from there
                // It may have completed meanwhile on another thread, which
                // parked the next lines and stored their Waiting: this one's
                // must not take its place, or a signal would cancel the old
                // batch and the write would go on (test_fault_defects.py).
                let cancelNow = state.withLock { state -> Bool in
                    guard state.parks == park else { return false }
                    state.waiting = waiting
                    return state.interrupted
                }
                if cancelNow && waiting.cancel() {
                    releaseHeld()
                    finish(interrupted: true)
                }
                return
            } catch .wouldBlock {
                return finish(interrupted: false)
            } catch {
                return fail(Errno(error))
            }
        }
    }

    private func parkedSendEnded(_ result: Result<BatchReceipt, DeliveryError>) {
        releaseHeld()
        switch result {
        case .success(let receipt):
            state.withLock { state in
                state.delivered += receipt.delivered
                state.waiting = nil
            }
            advance()
        case .failure(let error):
            fail(Errno(error))
        }
    }

    /// A signal: stop. A parked batch that is still parked delivered nothing
    /// and ends here; one that is completing ends the write from there.
    func interrupt() -> Bool {
        let waiting = state.withLock { state -> Waiting? in
            state.interrupted = true
            return state.waiting
        }
        if let waiting, waiting.cancel() {
            releaseHeld()
            finish(interrupted: true)
        }
        // The write always answers itself: with a count, or EINTR below.
        return false
    }

    /// The parked lines are sent, failed or cancelled: no longer held.
    private func releaseHeld() {
        let bytes = state.withLock { state in defer { state.held = 0 }; return state.held }
        if bytes != 0 { charged.withLock { $0 }?.unhold(bytes) }
    }

    private func finish(interrupted: Bool) {
        let delivered: Int? = state.withLock { state in
            guard !state.finished else { return nil }
            state.finished = true
            return state.delivered
        }
        guard let delivered else { return }
        if !done(delivered) { failed(interrupted ? .interrupted : .resourceTemporarilyUnavailable) }
    }

    private func fail(_ error: Errno) {
        let first = state.withLock { state -> Bool in
            defer { state.finished = true }
            return !state.finished
        }
        guard first else { return }
        let delivered = state.withLock { $0.delivered }
        // Lines already in stay in: the write ends with their count.
        if delivered == 0 || !done(delivered) { failed(error) }
    }
}
