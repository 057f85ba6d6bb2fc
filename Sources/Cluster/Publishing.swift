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
        let writers = local.change { s -> Writers in
            if let w = s.writers[record.id] { return w }
            let w = Writers(node: self, id: record.id)
            s.writers[record.id] = w
            return w
        }
        let write = Write(node: self, writers: writers, messages: messages, blocking: blocking, completion: completion)
        write.attempt(retrying: false)
        return PublishWaiting(write)
    }

    /// Writes waiting for room fail with `.unreachable` (nothing of them
    /// stored); writes in flight are settled after the reconnect.
    func disconnected() {
        let all = local.read { Array($0.writers.values) }
        for writers in all { writers.failParked(.unreachable("disconnected from NATS")) }
    }

    func reconnected() {
        let all = local.read { Array($0.writers.values) }
        for writers in all { writers.reconnected() }
        heartbeat()
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

/// A group's writers on this node: the room notices they wait for.
final class Writers: Sendable {
    let id: String
    private let node: ClusterNode
    private struct State {
        /// Room notices heard: a parked write retries on one that came after
        /// its publish was sent.
        var notices: UInt64 = 0
        var parked: [Write] = []
        var subscription: NATSClient.Subscription?
        var advisories: NATSClient.Subscription?
        var stopped = false
    }
    private let state = AdaptiveMutex(State())

    init(node: ClusterNode, id: String) {
        self.node = node
        self.id = id
    }

    var notices: UInt64 { state.withLock { $0.notices } }

    /// Subscribes to the room notices and the consumer-deleted advisories
    /// of the group's stream (a deleted consumer makes room too), once.
    func subscribe() {
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

    func park(_ write: Write) {
        state.withLock { $0.parked.append(write) }
    }

    func unpark(_ write: Write) -> Bool {
        state.withLock { s in
            guard let i = s.parked.firstIndex(where: { $0 === write }) else { return false }
            s.parked.remove(at: i)
            return true
        }
    }

    /// A room notice: parked writes published before it retry, oldest first.
    private func room() {
        let ready = state.withLock { s -> [Write] in
            s.notices += 1
            let n = s.notices
            let ready = s.parked.filter { $0.noticesBefore < n }
            s.parked.removeAll { $0.noticesBefore < n }
            return ready
        }
        for write in ready { write.attempt(retrying: true) }
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

    func stop() {
        let (subs, parked) = state.withLock { s -> ([NATSClient.Subscription], [Write]) in
            s.stopped = true
            defer { s.subscription = nil; s.advisories = nil; s.parked.removeAll() }
            return ([s.subscription, s.advisories].compactMap { $0 }, s.parked)
        }
        for sub in subs { sub.unsubscribe() }
        for write in parked { write.fail(.cancelled) }
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
    private let started = monotonicNow()

    private enum Phase { case inFlight, parked, done }
    private struct State {
        var phase = Phase.inFlight
        /// The chain's message ids: kept across retries of an unsettled
        /// message (the duplicate window tells whether it was stored), new
        /// for a fresh attempt after a refusal.
        var ids: [String] = []
        /// Results of the current attempt, from `first` on.
        var results: [Result<PubAck, NATSError>?] = []
        var first = 0
        /// Messages stored for sure, from the start.
        var stored = 0
        var noticesBefore: UInt64 = 0
        /// Consecutive refusals after a room notice (the 1 to 64 ms backoff).
        var refusals = 0
        var backstop: UInt64?
        /// Parked with an unsettled message while disconnected.
        var unsettled = false
        /// This attempt probes (docs/cluster.md, "Reconnect"): the same ids
        /// with an impossible expected last sequence, so that a stored
        /// message answers "duplicate" and one never stored stays unstored.
        var probing = false
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
    }

    /// Publishes the chain from the first message not known stored: with new
    /// ids after a refusal, with the same ids when settling (`settle`).
    func attempt(retrying: Bool, settle: Bool = false, probe: Bool = false) {
        let notices = writers.notices
        let plan = state.withLock { s -> (Int, [String])? in
            guard s.phase != .done else { return nil }
            s.phase = .inFlight
            s.noticesBefore = notices
            s.unsettled = false
            s.probing = probe
            if !(settle || probe) || s.ids.isEmpty {
                s.ids = (0..<messages.count).map { _ in node.nextMessageId() }
            }
            s.first = s.stored
            s.results = Array(repeating: nil, count: messages.count - s.stored)
            return (s.stored, s.ids)
        }
        guard let (first, ids) = plan else { return }
        for i in first..<messages.count {
            var options = PublishOptions()
            if probe {
                options.expectLastSequence = .max
            } else if i > 0 {
                // The chain: stored back to back, or cut at the first refused.
                options.expectLastMessageId = ids[i - 1]
            }
            options.timeout = .milliseconds(500)
            let header = mcastfsHeader(node: node.configuration.node, messages[i])
            do {
                try messages[i].payload.withUnsafeBytes { (bytes) throws(NATSError) in
                    try node.js.publishAsync(subject: subject, payload: bytes, headers: [("Mcastfs", header)], msgId: ids[i], options: options) { [self] result in
                        settled(i, result)
                    }
                }
            } catch {
                // Not sent: this and the rest of the chain.
                for j in i..<messages.count { settled(j, .failure(error)) }
                return
            }
        }
    }

    private func settled(_ i: Int, _ result: Result<PubAck, NATSError>) {
        let all = state.withLock { s -> [Result<PubAck, NATSError>]? in
            let k = i - s.first
            guard s.phase == .inFlight, k >= 0, k < s.results.count, s.results[k] == nil else { return nil }
            s.results[k] = result
            return s.results.contains { $0 == nil } ? nil : s.results.map { $0! }
        }
        guard let all else { return }
        // Off nats.c's PubAck thread: parking subscribes and flushes.
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

    /// docs/cluster.md, "Waiting for room without polling": subscribe to the
    /// room notices, announce the full stream, retry on the next notice
    /// that came after this attempt's publish.
    private func waitForRoom() {
        writers.subscribe()
        let (refusals, before) = state.withLock { s -> (Int, UInt64) in
            s.refusals += 1
            return (s.refusals, s.noticesBefore)
        }
        // A retry right after a notice may still find the stream full (the
        // ack's effect can trail the notice): a few quick retries first.
        if refusals > 1 && refusals <= 8 {
            state.withLock { $0.phase = .parked }
            node.timers.after(.milliseconds(1 << (refusals - 2))) { [self] in
                if state.withLock({ $0.phase == .parked }) { attempt(retrying: true) }
            }
            return
        }
        state.withLock { s in
            s.phase = .parked
            s.refusals = 1
        }
        writers.park(self)
        try? node.connection.publish(subject: node.space.fullSubject(writers.id))
        if writers.notices > before, writers.unpark(self) {
            attempt(retrying: true)
            return
        }
        // Core NATS notices can be lost (a reconnect): a slow backstop.
        let id = node.timers.after(node.configuration.timeout) { [self] in
            if writers.unpark(self) { attempt(retrying: true) }
        }
        state.withLock { $0.backstop = id }
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

    func cancel() -> Bool {
        let cancelled = state.withLock { s -> Bool in
            guard s.phase == .parked, s.stored == 0, !s.unsettled else { return false }
            s.phase = .done
            return true
        }
        if cancelled { _ = writers.unpark(self) }
        return cancelled
    }

    func fail(_ error: ClusterError) {
        let stored = state.withLock { $0.stored }
        finish(stored > 0 ? .success(stored) : .failure(error))
    }

    private func finish(_ result: Result<Int, ClusterError>) {
        let backstop = state.withLock { s -> UInt64?? in
            guard s.phase != .done else { return nil }
            s.phase = .done
            return .some(s.backstop)
        }
        guard let backstop else { return }
        if let id = backstop { node.timers.cancel(id) }
        completion(result)
    }
}
