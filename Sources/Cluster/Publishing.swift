import DeliveryCore
import Locking
import NATSClient

// Writing into a group's stream (docs/cluster.md, "Writing", and "Waiting
// for room without polling").

extension ClusterNode {
    /// Publishes `messages` in order as one chain and completes with how
    /// many were stored from the start (a prefix: a short write when fewer
    /// than all), or an error when none was. A full stream: `blocking`
    /// waits for room (woken by room notices), else `.full`.
    ///
    /// Returns the waiting write, or nil when `completion` has already run.
    /// Its `cancel()` is true only while nothing of it is stored or in
    /// flight (it is waiting for room); `completion` is then never called.
    @discardableResult
    public func publish(_ group: String, _ messages: [OutgoingMessage], blocking: Bool,
                        completion: @escaping @Sendable (Result<Int, ClusterError>) -> Void) -> PublishWaiting? {
        if messages.isEmpty {
            completion(.success(0))
            return nil
        }
        do throws(ClusterError) {
            try checkUsable()
        } catch {
            completion(.failure(error))
            return nil
        }
        guard let record = view.withLock({ $0.groups[group]?.value }), record.state == .live else {
            completion(.failure(.notFound))
            return nil
        }
        if messages.contains(where: { $0.payload.count > record.settings.maxMessage }) {
            completion(.failure(.tooLarge))
            return nil
        }
        let writers = local.update { s -> Writers in
            if let w = s.writers[record.id] { return w }
            let w = Writers(node: self, id: record.id)
            s.writers[record.id] = w
            return w
        }
        let write = Write(node: self, writers: writers, messages: messages, blocking: blocking, completion: completion)
        // Behind writes already waiting for room, a blocking write waits its
        // turn (else it could overtake them); a non-blocking one tries, and
        // fails with `.full` if the stream is still full.
        if blocking && writers.congested {
            writers.enqueue(write)
        } else {
            write.attempt(retrying: false)
        }
        return PublishWaiting(write)
    }

    /// This node's writes of `group` waiting now for room in its stream
    /// (status: `blocked_writers`).
    public func waitingWrites(_ group: String) -> Int {
        guard let id = view.withLock({ $0.groups[group]?.value?.id }) else { return 0 }
        return local.read { $0.writers[id] }?.waiting ?? 0
    }

    /// Writes waiting for room fail with `.unreachable` (nothing of them
    /// stored); writes in flight are settled after the reconnect.
    func disconnected() {
        let all = local.read { Array($0.writers.values) }
        for writers in all { writers.failParked(.unreachable("disconnected from NATS")) }
    }

    /// docs/cluster.md, "Reconnect": settle and retry writes, beat, and
    /// re-read the buckets (delivery loops hand their consumers over by
    /// themselves). Off nats.c's callback thread: these are requests.
    func reconnected() {
        startThread("cluster-reconnect") { [self] in
            let all = local.read { Array($0.writers.values) }
            for writers in all { writers.reconnected() }
            heartbeat()
            try? startWatchers(reload: true)
        }
    }
}

/// A write that may still be waiting.
public final class PublishWaiting: Sendable {
    private let write: Write
    init(_ write: Write) { self.write = write }

    /// True when the write was waiting for room with nothing of it stored:
    /// it is withdrawn and its completion will not run (EINTR). False when
    /// it has completed or is in flight (its completion will tell).
    public func cancel() -> Bool { write.cancel() }
}

/// A group's writers on this node: the writes waiting for room, in the
/// order they began, and the notices that wake them.
final class Writers: Sendable {
    let id: String
    private let node: ClusterNode
    private struct State {
        /// Room notices heard: a parked write retries on one that came after
        /// its publish was sent.
        var notices: UInt64 = 0
        /// Oldest first (by ticket).
        var parked: [Write] = []
        var subscription: NATSClient.Subscription?
        var advisories: NATSClient.Subscription?
        var stopped = false
        var tickets: UInt64 = 0
        /// Quick retry rounds since the last notice (after 1, 2, 4 ... 64 ms).
        var backoff = 0
        var backoffPending = false
        var backstopPending = false
        /// The parked write now retrying: one at a time, oldest first, so
        /// that a node's blocked writes are stored in the order they began.
        var turn: Write?
    }
    private let state = AdaptiveMutex(State())

    init(node: ClusterNode, id: String) {
        self.node = node
        self.id = id
    }

    var notices: UInt64 { state.withLock { $0.notices } }

    func ticket() -> UInt64 {
        state.withLock { s in
            s.tickets += 1
            return s.tickets
        }
    }

    /// Subscribes to the room notices and the consumer-deleted advisories
    /// of the group's stream (a deleted consumer makes room too), once.
    private func subscribe() {
        let needed = state.withLock { $0.subscription == nil && !$0.stopped }
        guard needed else { return }
        let room = try? node.connection.subscribe(subject: node.space.roomSubject(id)) { [weak self] _ in self?.room() }
        let deleted = try? node.connection.subscribe(subject: "$JS.EVENT.ADVISORY.CONSUMER.DELETED.\(node.space.stream(id)).*") { [weak self] _ in self?.room() }
        try? node.connection.flush(timeout: .seconds(2))
        let extra = state.withLock { s -> [NATSClient.Subscription] in
            if s.subscription != nil || s.stopped { return [room, deleted].compactMap { $0 } }
            s.subscription = room
            s.advisories = deleted
            return []
        }
        for sub in extra { sub.unsubscribe() }
    }

    /// Parks in its place by age.
    func park(_ write: Write) {
        state.withLock { s in
            let i = s.parked.firstIndex { $0.ticket > write.ticket } ?? s.parked.count
            s.parked.insert(write, at: i)
        }
    }

    func unpark(_ write: Write) -> Bool {
        state.withLock { s in
            guard let i = s.parked.firstIndex(where: { $0 === write }) else { return false }
            s.parked.remove(at: i)
            return true
        }
    }

    /// Parked, and the one retrying with the turn.
    var waiting: Int { state.withLock { $0.parked.count + ($0.turn == nil ? 0 : 1) } }

    /// Whether a new write must queue behind parked ones.
    var congested: Bool { state.withLock { !$0.parked.isEmpty || $0.turn != nil } }

    /// A new write behind parked ones: it waits its turn, parked as they
    /// are (so that a signal can withdraw it, nothing of it stored).
    func enqueue(_ write: Write) {
        write.queued()
        park(write)
        let idle = state.withLock { $0.turn == nil }
        if idle { round { _ in true } }
    }

    /// A parked write that had its turn is done (stored, or failed): the
    /// next one goes.
    func done(_ write: Write) {
        let next = state.withLock { s -> Bool in
            guard s.turn === write else { return false }
            s.turn = nil
            return !s.parked.isEmpty
        }
        // On the timer thread: `done` may run on nats.c's PubAck thread,
        // and the next write publishes.
        if next { node.timers.after(.zero) { [self] in round { _ in true } } }
    }

    /// A write the full stream refused: parked, then the full notice (after
    /// subscribing, so that the answer is heard). A notice heard since its
    /// publish was sent retries it at once. A refused retry starts rounds of
    /// quick retries (the notice can outrun the ack's effect), then waits
    /// for the next notice; a slow backstop covers lost notices.
    func refused(_ write: Write, wasRetry: Bool) {
        subscribe()
        state.withLock { s in if s.turn === write { s.turn = nil } }
        park(write)
        try? node.connection.publish(subject: node.space.fullSubject(id))
        let (now, backoff, backstop) = state.withLock { s -> (Bool, Duration?, Bool) in
            var backoff: Duration?
            if wasRetry && s.backoff < 7 && !s.backoffPending {
                s.backoffPending = true
                backoff = .milliseconds(1 << s.backoff)
                s.backoff += 1
            }
            let backstop = !s.backstopPending
            s.backstopPending = true
            return (s.notices > write.noticesBefore, backoff, backstop)
        }
        if now { round { $0 === write } }
        if let backoff {
            node.timers.after(backoff) { [self] in
                state.withLock { $0.backoffPending = false }
                round { _ in true }
            }
        }
        if backstop { scheduleBackstop() }
    }

    private func scheduleBackstop() {
        node.timers.after(node.configuration.timeout) { [self] in
            let again = state.withLock { s -> Bool in
                s.backstopPending = !s.parked.isEmpty && !s.stopped
                return s.backstopPending
            }
            round { _ in true }
            if again { scheduleBackstop() }
        }
    }

    /// Retries the oldest parked write if `ready` picks it and no other is
    /// retrying.
    private func round(_ ready: (Write) -> Bool) {
        takeTurn(ready)?.attempt(retrying: true)
    }

    /// The first half of a round: the oldest parked write `ready` picks
    /// leaves the queue and has the turn. (Apart for the test of a write
    /// cancelled between the two halves.)
    func takeTurn(_ ready: (Write) -> Bool) -> Write? {
        state.withLock { s -> Write? in
            guard s.turn == nil, let i = s.parked.firstIndex(where: { !$0.isUnsettled }), ready(s.parked[i]) else { return nil }
            let write = s.parked.remove(at: i)
            s.turn = write
            return write
        }
    }

    /// A room notice: the writes published before it retry.
    private func room() {
        let n = state.withLock { s -> UInt64 in
            s.notices += 1
            s.backoff = 0
            return s.notices
        }
        round { $0.noticesBefore < n }
    }

    /// Fails the writes waiting for room; unsettled ones stay parked.
    func failParked(_ error: ClusterError) {
        let parked = state.withLock { s -> [Write] in
            let waiting = s.parked.filter { !$0.isUnsettled }
            s.parked.removeAll { !$0.isUnsettled }
            return waiting
        }
        for write in parked { write.fail(error) }
    }

    func reconnected() {
        // Core NATS notices sent during the outage are lost: a retry costs
        // one publish.
        let parked = state.withLock { s -> [Write] in
            defer { s.parked.removeAll() }
            return s.parked
        }
        for write in parked { write.resume() }
    }

    func stop(failing error: ClusterError) {
        let (subs, parked) = state.withLock { s -> ([NATSClient.Subscription], [Write]) in
            s.stopped = true
            defer { s.subscription = nil; s.advisories = nil; s.parked.removeAll() }
            return ([s.subscription, s.advisories].compactMap { $0 }, s.parked)
        }
        for sub in subs { sub.unsubscribe() }
        for write in parked { write.fail(error) }
    }
}

/// One `publish` call, from its first attempt to its completion.
final class Write: Sendable {
    private let node: ClusterNode
    private let writers: Writers
    private let messages: [OutgoingMessage]
    private let blocking: Bool
    private let completion: @Sendable (Result<Int, ClusterError>) -> Void
    private let subject: String
    /// Each message's `Mcastfs` header: the messages of one write share
    /// their writer, so it is made once per write, not per publish.
    private let headers: [String]
    private let started = monotonicNow()
    /// Its age among the group's writes on this node.
    let ticket: UInt64

    private enum Phase { case inFlight, parked, done }
    private struct State {
        var phase = Phase.inFlight
        /// The chain's message ids: kept across retries of an unsettled
        /// message (the duplicate window tells whether it was stored), new
        /// for a fresh attempt after a refusal.
        var ids: [String] = []
        /// Results of the current attempt, from `first` on.
        var results: [Result<PubAck, NATSError>?] = []
        var outstanding = 0
        var first = 0
        /// Messages stored for sure, from the start.
        var stored = 0
        var noticesBefore: UInt64 = 0
        var retry = false
        /// Parked with an unsettled message while disconnected.
        var unsettled = false
        /// This attempt probes (docs/cluster.md, "Reconnect"): the same ids
        /// with an impossible expected last sequence, so that a stored
        /// message answers "duplicate" and one never stored stays unstored.
        var probing = false
        /// Counts attempts: an answer or a timeout of an earlier one is
        /// not this one's.
        var attempt = 0
        /// The current attempt's answer timeout.
        var timer: UInt64?
    }
    private let state = AdaptiveMutex(State())

    var noticesBefore: UInt64 { state.withLock { $0.noticesBefore } }
    var isUnsettled: Bool { state.withLock { $0.unsettled } }

    init(node: ClusterNode, writers: Writers, messages: [OutgoingMessage], blocking: Bool,
         completion: @escaping @Sendable (Result<Int, ClusterError>) -> Void) {
        self.node = node
        self.writers = writers
        self.messages = messages
        self.blocking = blocking
        self.completion = completion
        subject = node.space.subject(writers.id)
        ticket = writers.ticket()
        var previous: (message: OutgoingMessage, header: String)?
        headers = messages.map { message in
            if let previous, previous.message.hasSameHeader(as: message) { return previous.header }
            let header = mcastfsHeader(encodedNode: node.encodedNode, message)
            previous = (message, header)
            return header
        }
    }

    /// Publishes the chain from the first message not known stored: with new
    /// ids after a refusal, with the same ids when settling (`settle`).
    func attempt(retrying: Bool, settle: Bool = false, probe: Bool = false) {
        let notices = writers.notices
        let plan = state.withLock { s -> (Int, [String], Int)? in
            guard s.phase != .done else { return nil }
            s.attempt += 1
            s.phase = .inFlight
            s.retry = retrying
            s.noticesBefore = notices
            s.unsettled = false
            s.probing = probe
            if !(settle || probe) || s.ids.isEmpty {
                s.ids = node.nextMessageIds(messages.count)
            }
            s.first = s.stored
            s.results = Array(repeating: nil, count: messages.count - s.stored)
            s.outstanding = s.results.count
            return (s.stored, s.ids, s.attempt)
        }
        // Cancelled (EINTR) after `Writers.round` gave it the turn and
        // before this: the turn goes on, or every later blocking write of
        // the group on this node would queue behind it for ever.
        guard let (first, ids, attempt) = plan else { return writers.done(self) }
        for i in first..<messages.count {
            var options = PublishOptions()
            if probe {
                options.expectLastSequence = .max
            } else if i > 0 {
                // The chain: stored back to back, or cut at the first refused.
                options.expectLastMessageId = ids[i - 1]
            }
            // Timed here, for the whole chain (`timedOut`), not by nats.c.
            options.timeout = .zero
            do {
                try messages[i].payload.withUnsafeBytes { (bytes) throws(NATSError) in
                    try node.js.publishAsync(subject: subject, payload: bytes, headers: [("Mcastfs", headers[i])], msgId: ids[i], options: options) { [self] result in
                        settled(i, result, attempt: attempt)
                    }
                }
            } catch {
                // Not sent: this and the rest of the chain.
                for j in i..<messages.count { settled(j, .failure(error), attempt: attempt) }
                return
            }
        }
        let timer = node.timers.after(Write.answerTimeout, slack: .milliseconds(100)) { [self] in timedOut(attempt, ids: ids) }
        // The previous attempt's, or this one's if it is done already (its
        // answers can all come before the last publish returns).
        let needless = state.withLock { s -> UInt64? in
            if s.phase == .done || s.attempt != attempt { return timer }
            defer { s.timer = timer }
            return s.timer
        }
        if let needless { node.timers.cancel(needless) }
    }

    /// How long after the last publish of an attempt its PubAcks may come
    /// (they take well under a millisecond on a quiet loopback; a stream
    /// whose leader is being elected does not answer at all).
    static let answerTimeout: Duration = .milliseconds(500)

    /// The attempt's messages still unanswered are given up, outcome
    /// unknown: `decide` publishes them again with the same ids.
    private func timedOut(_ attempt: Int, ids: [String]) {
        let (all, unanswered) = state.withLock { s -> ([Result<PubAck, NATSError>]?, [String]) in
            guard s.attempt == attempt, s.phase == .inFlight, s.outstanding > 0 else { return (nil, []) }
            var unanswered: [String] = []
            for k in s.results.indices where s.results[k] == nil {
                s.results[k] = .failure(NATSError(status: .timeout, text: "no PubAck within \(Write.answerTimeout)"))
                unanswered.append(ids[s.first + k])
            }
            s.outstanding = 0
            return (s.results.map { $0! }, unanswered)
        }
        guard let all else { return }
        node.js.abandon(unanswered)
        decide(all)
    }

    private func settled(_ i: Int, _ result: Result<PubAck, NATSError>, attempt: Int) {
        let all = state.withLock { s -> [Result<PubAck, NATSError>]? in
            let k = i - s.first
            guard s.attempt == attempt, s.phase == .inFlight, k >= 0, k < s.results.count, s.results[k] == nil else { return nil }
            s.results[k] = result
            s.outstanding -= 1
            return s.outstanding > 0 ? nil : s.results.map { $0! }
        }
        guard let all else { return }
        // All stored, the common case, completes here: a hop to the timer
        // thread was one more thread hand-off per write. Anything else is
        // decided off nats.c's PubAck thread: parking subscribes and
        // flushes, and a retry publishes (which could wait for PubAcks this
        // thread delivers).
        if all.allSatisfy({ if case .success = $0 { true } else { false } }) { return decide(all) }
        node.timers.after(.zero) { [self] in decide(all) }
    }

    private func decide(_ results: [Result<PubAck, NATSError>]) {
        var failure: NATSError?
        let (stored, probing) = state.withLock { s -> (Int, Bool) in
            for r in results {
                guard case .success = r else {
                    if case .failure(let e) = r { failure = e }
                    break
                }
                s.stored += 1
            }
            return (s.stored, s.probing)
        }
        guard let failure else { return finish(.success(stored)) }
        if probing && failure.code == .streamWrongLastSequence {
            return finish(stored > 0 ? .success(stored) : .failure(.unreachable("the connection was lost before the write was stored")))
        }
        if failure.isOutcomeUnknown || failure.status == .noResponders {
            // Not known whether it was stored: publish it again with the
            // same id (a duplicate answer means it was), for up to 30 s.
            if monotonicNow() - started > .seconds(30) {
                return finish(stored > 0 ? .success(stored) : .failure(ClusterError(failure)))
            }
            let connected = node.local.read { $0.connected }
            if !connected {
                // Settled when the connection is back (`Writers.reconnected`),
                // or failed, outcome unknown, if it is not back in time.
                state.withLock { s in
                    s.phase = .parked
                    s.unsettled = true
                }
                writers.park(self)
                node.timers.after(node.configuration.timeout) { [self] in
                    if writers.unpark(self) { fail(.unreachable("disconnected from NATS; the write may or may not have been stored")) }
                }
                return
            }
            let delay: Duration = failure.status == .noResponders ? .milliseconds(20) : .zero
            node.timers.after(delay) { [self] in attempt(retrying: true, settle: true) }
            return
        }
        if stored > 0 { return finish(.success(stored)) }
        guard failure.isMaximumMessagesExceeded else { return finish(.failure(ClusterError(failure))) }
        guard blocking else { return finish(.failure(.full)) }
        waitForRoom()
    }

    /// docs/cluster.md, "Waiting for room without polling".
    private func waitForRoom() {
        let retry = state.withLock { s -> Bool in
            s.phase = .parked
            return s.retry
        }
        writers.refused(self, wasRetry: retry)
    }

    /// After a reconnect: settle an unsettled write by probing, retry one
    /// that waited for room.
    func resume() {
        let unsettled = state.withLock { $0.unsettled }
        if unsettled && monotonicNow() - started > .seconds(30) {
            // Past what the duplicate window is trusted for here.
            return fail(.unreachable("disconnected from NATS; the write may or may not have been stored"))
        }
        attempt(retrying: true, probe: unsettled)
    }

    /// Queued behind parked writes before its first attempt.
    func queued() {
        state.withLock { s in if s.phase == .inFlight && s.attempt == 0 { s.phase = .parked } }
    }

    func cancel() -> Bool {
        let cancelled = state.withLock { s -> Bool in
            guard s.phase == .parked, s.stored == 0, !s.unsettled else { return false }
            s.phase = .done
            return true
        }
        if cancelled {
            // Parked, or just given the turn by a round (it is no longer
            // parked then, and `attempt` has not yet run): either way its
            // place is given up.
            _ = writers.unpark(self)
            writers.done(self)
        }
        return cancelled
    }

    func fail(_ error: ClusterError) {
        let stored = state.withLock { $0.stored }
        finish(stored > 0 ? .success(stored) : .failure(error))
    }

    private func finish(_ result: Result<Int, ClusterError>) {
        let (first, timer) = state.withLock { s -> (Bool, UInt64?) in
            defer { s.phase = .done; s.timer = nil }
            return (s.phase != .done, s.timer)
        }
        if let timer { node.timers.cancel(timer) }
        guard first else { return }
        writers.done(self)
        completion(result)
    }
}
