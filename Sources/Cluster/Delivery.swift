import DeliveryCore
import Glibc
import Locking
import NATSClient

// A node's consumer of a group and the loop that hands its messages to the
// node's sink (docs/cluster.md, "A node's consumer, and local delivery
// behind it"), and the joins and leaves that make and delete it.

extension ClusterNode {
    /// Makes this node's consumer of the group if it has none, KV-creates
    /// the member (`.exists` if the name is taken on any node), and returns
    /// S_join: the member receives the messages with a sequence above it.
    /// `sink` receives the group's messages for this node; it is the first
    /// join's, later joins' sinks are not used.
    public func join(_ group: String, _ member: MemberRecord, sink: any DeliverySink) throws(ClusterError) -> UInt64 {
        try checkUsable()
        try checkName(member.name)
        return try membership.withLock { (_) throws(ClusterError) -> UInt64 in
            guard let (_, record) = try readGroup(space.groupKey(group)), record.state == .live else { throw .notFound }
            let id = record.id
            var made: Delivery?
            if local.read({ $0.parts[id] }) == nil {
                let delivery = try Delivery.start(self, record, sink)
                local.change { $0.parts[id] = LocalPart(delivery: delivery) }
                made = delivery
                // At once, not at the next beat: the record lists the
                // consumers another node deletes should this one die.
                heartbeat()
            }
            do throws(ClusterError) {
                // After the consumer exists: everything stored after S_join
                // is held for this node.
                let sJoin: UInt64
                do throws(NATSError) { sJoin = try js.streamInfo(space.stream(id)).state.lastSequence } catch { throw ClusterError(error) }
                var m = member
                m.node = configuration.node
                m.from = sJoin
                let key = space.memberKey(group: id, member: m.name)
                let revision: UInt64
                do throws(NATSError) {
                    revision = try membersBucket.create(key, encodeRecord(m))
                } catch {
                    throw error.code == .streamWrongLastSequence ? .exists : ClusterError(error)
                }
                // An rmdir that began meanwhile: it may have missed this
                // member, so the join undoes itself.
                guard let (_, again) = try readGroup(space.groupKey(group)), again.state == .live, again.id == id else {
                    try? membersBucket.delete(key)
                    throw .notFound
                }
                local.change { _ = $0.parts[id]?.members.insert(m.name) }
                view.withLock { $0.applyLocalMember(group: id, member: m.name, revision: revision, m) }
                return sJoin
            } catch {
                if let made { removeConsumer(id, made) }
                throw error
            }
        }
    }

    /// The member leaves (its entry is deleted); if it was this node's last
    /// member of the group, the node's consumer is deleted, releasing what
    /// only it held, and a room notice tells the writers.
    public func leave(_ group: String, _ member: String) throws(ClusterError) {
        try checkUsable()
        try membership.withLock { (_) throws(ClusterError) in
            guard let id = view.withLock({ $0.groups[group]?.value?.id }),
                  local.read({ $0.parts[id]?.members.contains(member) }) == true
            else { throw .notFound }
            do throws(NATSError) {
                try membersBucket.delete(space.memberKey(group: id, member: member))
            } catch {
                throw ClusterError(error)
            }
            dropLocalMember(id, member)
        }
    }

    /// With `membership` held.
    private func dropLocalMember(_ id: String, _ member: String) {
        view.withLock { v in
            let revision = v.members[id]?[member]?.revision ?? 0
            v.applyLocalMember(group: id, member: member, revision: revision, nil)
        }
        let last = local.change { s -> Delivery? in
            s.parts[id]?.members.remove(member)
            return s.parts[id]?.members.isEmpty == true ? s.parts[id]?.delivery : nil
        }
        if let last { removeConsumer(id, last) }
    }

    /// A member entry deleted by someone: if it is still one of this node's
    /// (another node took this one for dead), it is gone here too; the
    /// `memberRemoved` event tells the filesystem to evict it.
    func memberGone(groupId id: String, _ member: String) {
        membership.withLock { _ in
            guard local.read({ $0.parts[id]?.members.contains(member) }) == true else { return }
            dropLocalMember(id, member)
        }
    }

    /// With `membership` held: the consumer goes, and the writers hear of
    /// the room its deletion made.
    func removeConsumer(_ id: String, _ delivery: Delivery) {
        local.change { s in
            if s.parts[id]?.delivery === delivery { s.parts[id] = nil }
        }
        delivery.stop()
        try? js.deleteConsumer(stream: space.stream(id), consumer: delivery.consumerName)
        try? connection.publish(subject: space.roomSubject(id))
    }
}

/// A node's consumer of one group and its delivery thread.
final class Delivery: Sendable {
    let id: String
    let stream: String
    private let node: ClusterNode
    private let sink: any DeliverySink
    /// Messages asked for per fetch: never more than the consumer's
    /// max_ack_pending. nats-server 2.9.10 does not end a pull early while
    /// the consumer is at max_ack_pending, so a larger one holds what it got
    /// unacked until its expiry (1 s), and every writer with it: at a
    /// backlog of 10, 12-16 msgs/s against 3,700-6,200 (natsbare).
    private let fetchBatch: Int

    private struct State {
        var consumer: String
        var subscription: PullSubscription
        /// The stream sequence delivered last; a message at or below it is
        /// a redelivery, dropped.
        var lastDelivered: UInt64
        var connectionGeneration: Int
        var stopped = false
        /// docs/cluster.md, "Waiting for room without polling": acked
        /// something since the last room notice; a full notice unanswered.
        var acked = false
        var asked = false
        var redeliveries = 0
    }
    private let state: AdaptiveMutex<State>
    private let fullNotices: AdaptiveMutex<NATSClient.Subscription?>

    var consumerName: String { state.withLock { $0.consumer } }
    var lastDelivered: UInt64 { state.withLock { $0.lastDelivered } }
    var redeliveries: Int { state.withLock { $0.redeliveries } }
    var counters: [MemberCounters] { sink.counters() }

    private init(node: ClusterNode, id: String, sink: any DeliverySink, consumer: String, subscription: PullSubscription,
                 lastDelivered: UInt64, generation: Int, backlog: Int) {
        fetchBatch = min(256, maxAckPending(backlog: backlog))
        self.node = node
        self.id = id
        stream = node.space.stream(id)
        self.sink = sink
        state = AdaptiveMutex(State(consumer: consumer, subscription: subscription, lastDelivered: lastDelivered, connectionGeneration: generation))
        fullNotices = AdaptiveMutex<NATSClient.Subscription?>(nil)
    }

    /// Makes the consumer at the stream's last sequence + 1 (read just
    /// before: a hand-over needs to know where it starts), subscribes to the
    /// group's full notices, and starts the delivery thread.
    static func start(_ node: ClusterNode, _ record: GroupRecord, _ sink: any DeliverySink) throws(ClusterError) -> Delivery {
        let stream = node.space.stream(record.id)
        let generation = node.local.read { $0.connectionGeneration }
        let last: UInt64
        do { last = try node.js.streamInfo(stream).state.lastSequence } catch { throw ClusterError(error) }
        let (name, subscription) = try makeConsumer(node, record.id, startingAt: last + 1, backlog: record.settings.clusterBacklog)
        let delivery = Delivery(node: node, id: record.id, sink: sink, consumer: name, subscription: subscription, lastDelivered: last,
                                generation: generation, backlog: record.settings.clusterBacklog)
        do {
            let notices = try node.connection.subscribe(subject: node.space.fullSubject(record.id)) { [weak delivery] _ in
                delivery?.fullNotice()
            }
            delivery.fullNotices.withLock { $0 = notices }
        } catch {
            try? node.js.deleteConsumer(stream: stream, consumer: name)
            throw ClusterError(error)
        }
        startThread("cluster-deliver") { delivery.run() }
        return delivery
    }

    private static func makeConsumer(_ node: ClusterNode, _ id: String, startingAt start: UInt64, backlog: Int) throws(ClusterError) -> (String, PullSubscription) {
        let n = node.local.update { s -> UInt64 in
            s.counter += 1
            return s.counter
        }
        let name = node.space.consumer(node: node.configuration.node, boot: node.boot, generation: Int(n))
        var config = ConsumerConfig(name: name)
        config.description = "mcastfs node \(node.configuration.node)"
        config.deliverPolicy = .startSequence(start)
        // Acking a message acks every one before it: one ack per fetched run
        // of delivered messages instead of one per message (a send(2) each,
        // 14 % of a reading node's CPU at 1->1, perf).
        config.ackPolicy = .all
        // Never used for redelivery: in-progress acks keep a held message's
        // wait from running out, and a reconnect hands the consumer over.
        config.ackWait = .seconds(3600)
        config.maxAckPending = Int64(maxAckPending(backlog: backlog))
        // Longer than a stream's leader election (4 to 9 s a round, 15 s
        // seen) and a hand-over after it: at cluster_timeout (3 s in the
        // test) a consumer whose leader was being elected expired and took
        // the 100 messages only it held (`aServerOfThreeDiesMidStream...`).
        // Other nodes delete a dead node's consumers after cluster_timeout
        // anyway; this is the backstop when none is left to.
        config.inactiveThreshold = max(node.configuration.timeout, .seconds(30))
        let stream = node.space.stream(id)
        do {
            _ = try node.js.addConsumer(stream: stream, config)
            return (name, try node.js.pullSubscription(stream: stream, consumer: name))
        } catch {
            try? node.js.deleteConsumer(stream: stream, consumer: name)
            throw ClusterError(error)
        }
    }

    func stop() {
        state.withLock { $0.stopped = true }
        fullNotices.withLock { s in
            s?.unsubscribe()
            s = nil
        }
    }

    private var stopped: Bool { state.withLock { $0.stopped } }

    private func run() {
        var failures = 0
        // Whether the last message fetched said more were pending. When none
        // were, the next fetch asks for one: nats.c then sends a plain pull
        // for one, which the server ends with the message itself. A pull for
        // more ends with a status message after what it got (408 at the end
        // of the stream), which the fetch waits for, reads, lifts the headers
        // of and frees before it returns, and it callocs room for the whole
        // batch: 20,000 of a paced message's 55,000 instructions (callgrind).
        // Once messages queue up, their `pending` says so, and the next fetch
        // asks for a batch again.
        var more = false
        while !stopped {
            let (connected, generation) = node.local.read { ($0.connected && !$0.shutDown, $0.connectionGeneration) }
            if !connected {
                _ = node.local.wait(timeout: .seconds(1)) { s in s.connected || s.shutDown ? true : nil }
                continue
            }
            if generation != state.withLock({ $0.connectionGeneration }) {
                handOver(generation)
                continue
            }
            let subscription = state.withLock { $0.subscription }
            let messages: [JetStreamMessage]
            do {
                messages = try subscription.fetch(batch: more ? fetchBatch : 1, timeout: .seconds(1))
                more = (messages.last?.pending ?? 0) > 0
                failures = 0
            } catch {
                if stopped { return }
                failures += 1
                // The consumer gone while connected (the server's inactive
                // threshold after a stall, or another node that took this
                // one for dead): a new one at last delivered + 1 gets what
                // is still held, in order, none twice.
                if failures >= 3, case .failure(let e) = Result(catching: { () throws(NATSError) in try node.js.consumerInfo(stream: stream, consumer: consumerName) }),
                   e.code == .consumerNotFound {
                    handOver(generation)
                    failures = 0
                } else {
                    usleep(100_000)
                }
                continue
            }
            // The last message delivered and not yet acked (AckAll): acked at
            // the end of the run, or before waiting on a full member.
            var unacked: JetStreamMessage?
            if stopped { return }
            let handled = deliverAtOnce(messages, unacked: &unacked)
            run: for message in messages[handled...] {
                if stopped { return }
                switch deliver(message, generation: generation, unacked: &unacked) {
                case .delivered: unacked = message
                case .redelivery: continue
                case .abandoned: break run
                }
            }
            if let unacked { ack(unacked) }
        }
    }

    private enum Outcome {
        case delivered
        /// At or below the last delivered: dropped.
        case redelivery
        /// Stopped, or a gap could not be read before the connection
        /// changed (the hand-over then starts again after the last
        /// delivered): the rest of the fetched run is left.
        case abandoned
    }

    /// The common case of a fetched run, in one go: the redeliveries at its
    /// start dropped, then the messages that follow the last delivered
    /// without a gap, as many as the sink takes at once (all, unless a full
    /// member holds the group). Returns how many of `messages` it handled;
    /// the rest go one at a time.
    private func deliverAtOnce(_ messages: [JetStreamMessage], unacked: inout JetStreamMessage?) -> Int {
        let last = lastDelivered
        let redelivered = messages.prefix { $0.streamSequence <= last }.count
        if redelivered > 0 { state.withLock { $0.redeliveries += redelivered } }
        let fresh = messages[redelivered...]
        var contiguous = 0
        for message in fresh {
            guard message.streamSequence == last + 1 + UInt64(contiguous) else { break }
            contiguous += 1
        }
        guard contiguous > 0 else { return redelivered }
        let run = fresh.prefix(contiguous)
        let delivered = sink.deliverNow(run.map { IncomingMessage($0) })
        guard delivered > 0 else { return redelivered }
        let newest = run[run.startIndex + delivered - 1]
        state.withLock { $0.lastDelivered = newest.streamSequence }
        unacked = newest
        return redelivered + delivered
    }

    /// Delivers one message locally, and first any the consumer skipped.
    private func deliver(_ message: JetStreamMessage, generation: Int, unacked: inout JetStreamMessage?) -> Outcome {
        let sequence = message.streamSequence
        let last = lastDelivered
        if sequence <= last {
            state.withLock { $0.redeliveries += 1 }
            return .redelivery
        }
        // A gap: on three servers, a fetch's message lost on its way while
        // the consumer's leader died stays pending on the consumer (sent
        // again only after the ack wait, 1 h), and the next fetch brings
        // the ones after it (FactsTests, `aServerOfThreeDiesAndNothing...`:
        // 101 after 99). This node has not acked it, so an interest stream
        // still holds it: read it from the stream, in order, before this one
        // (whose ack, AckAll, covers it). Absent: never stored for this
        // consumer, or removed before a hand-over's new consumer was made.
        for skipped in last + 1 ..< sequence {
            switch readSkipped(skipped, generation: generation) {
            case .stored(let stored):
                guard deliverLocally(IncomingMessage(stored), keepingAlive: message, unacked: &unacked) else { return .abandoned }
                state.withLock { $0.lastDelivered = skipped }
            case .absent:
                continue
            case .abandoned:
                return .abandoned
            }
        }
        guard deliverLocally(IncomingMessage(message), keepingAlive: message, unacked: &unacked) else { return .abandoned }
        state.withLock { $0.lastDelivered = sequence }
        return .delivered
    }

    /// Into the sink, waiting while a full local member holds it; false:
    /// stopped meanwhile. `message` is the consumer's, whose ack wait the
    /// wait keeps from running out.
    private func deliverLocally(_ incoming: IncomingMessage, keepingAlive message: JetStreamMessage, unacked: inout JetStreamMessage?) -> Bool {
        let done = Monitor(false)
        sink.deliver(incoming) { done.change { $0 = true } }
        if done.read({ $0 }) { return true }
        // A full local member holds the delivery: what came before it is
        // delivered (the stream may drop it now), and in-progress acks keep
        // the consumer and its held messages alive meanwhile.
        if let earlier = unacked {
            ack(earlier)
            unacked = nil
        }
        let beat = node.configuration.timeout / 3
        while done.wait(timeout: beat, until: { $0 ? true : nil }) == nil {
            if stopped { return false }
            try? message.inProgress()
        }
        return true
    }

    private enum Skipped {
        case stored(StoredMessage)
        case absent
        case abandoned
    }

    /// The stream's message at a sequence the consumer skipped. A failed
    /// read (a stream leader being elected) is tried again until the
    /// connection changes; the hand-over after it starts from the last
    /// delivered + 1 anyway.
    private func readSkipped(_ sequence: UInt64, generation: Int) -> Skipped {
        while !stopped {
            do {
                if let stored = try node.js.message(stream: stream, sequence: sequence) { return .stored(stored) }
                return .absent
            } catch {
                if error.code == .streamNotFound { return .absent }
                if node.local.read({ $0.connectionGeneration }) != generation { return .abandoned }
                usleep(100_000)
            }
        }
        return .abandoned
    }

    /// Acks `message` and, the consumer acking all, every one before it.
    private func ack(_ message: JetStreamMessage) {
        let notice = state.withLock { s -> Bool in
            if s.asked {
                s.asked = false
                return true
            }
            s.acked = true
            return false
        }
        try? message.ack()
        // After the ack, on the same connection: the server has the ack
        // before any writer hears of the room.
        if notice { try? node.connection.publish(subject: node.space.roomSubject(id)) }
    }

    /// A writer somewhere found the stream full.
    private func fullNotice() {
        let notice = state.withLock { s -> Bool in
            if s.acked {
                s.acked = false
                return true
            }
            s.asked = true
            return false
        }
        if notice { try? node.connection.publish(subject: node.space.roomSubject(id)) }
    }

    /// After a reconnect: a new consumer at `last delivered + 1`, then the
    /// old one deleted, so that what was not yet delivered stays held and
    /// what was fetched and lost in flight comes again, none twice.
    private func handOver(_ generation: Int) {
        let (old, last) = state.withLock { ($0.consumer, $0.lastDelivered) }
        guard let record = node.view.withLock({ $0.group(id: id) }) else {
            state.withLock { $0.connectionGeneration = generation }
            return
        }
        do {
            let (name, subscription) = try Delivery.makeConsumer(node, id, startingAt: last + 1, backlog: record.settings.clusterBacklog)
            let stopped = state.withLock { s -> Bool in
                s.consumer = name
                s.subscription = subscription
                s.connectionGeneration = generation
                return s.stopped
            }
            // The old consumer goes only after a cluster_timeout (its
            // inactive threshold would remove it by then anyway): deleted
            // at once, on three servers, it once took the messages it held
            // with it though the new one had been made to hold them too
            // (`aServerOfThreeDiesMidStream...`: 200 messages gone, the new
            // consumer "delivered" past them); a server that has not yet
            // learnt of the new consumer sees no other interest.
            node.timers.after(node.configuration.timeout) { [node, stream] in
                try? node.js.deleteConsumer(stream: stream, consumer: old)
            }
            // Stopped meanwhile (its last member gone): whoever stopped it
            // deleted the consumer it knew, which was the old one.
            if stopped { try? node.js.deleteConsumer(stream: stream, consumer: name) }
        } catch {
            usleep(100_000)
        }
    }
}

/// At most this many messages unacked per node's consumer.
func maxAckPending(backlog: Int) -> Int { min(backlog, 1024) }
