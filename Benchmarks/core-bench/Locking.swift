// Locking, measured again (issue 11, docs/locking.md): independent filtered
// streams in one group — writer k's topic matched only by member k — and the
// unfiltered case, each run through the real core (`Group`, one lock per
// group), through the core with a group per stream (nothing shared: the
// ceiling of any design for one group), and through a prototype of the same
// delivery under four lock designs, in the same run, on the same threads:
//
//   - one lock: the prototype under a single group lock, as the core is; it
//     separates what the lock structure changes from what the prototype's
//     own code changes;
//   - one lock, recipients found outside it: the lookup in the index (74% of
//     a filtered send's instructions in the core, callgrind) done under the
//     sender's slot, everything else under the group lock;
//   - 8 striped locks: the seed's Solution 3, member id % 8;
//   - per recipient: one lock per member, only those of the message's
//     recipients taken, in member id order, the group sequence (and the
//     time stamped with it) taken while they are all held, so that members
//     that share messages see them in one order.
//
// The prototype does what a send needs in those designs: the recipients
// looked up through the same SubscriptionIndex (one copy per slot, each
// slot a lock of the membership's read side, as a big-reader lock: a join or
// a leave would take them all, and the group lock), each recipient's room
// checked, the parked sends checked on the fast path (striped and per
// recipient: an atomic count read under the recipients' locks) and joined
// on the slow path (the group lock, after the slot and before any member),
// the sequence and time taken together (striped and per recipient: one
// 16-byte compare-and-swap), the message stamped, handed to a parked receive
// or queued, counters and read watches. A receive takes its one member's
// lock (striped: its stripe; one lock: the group's), batches whole
// messages, and, when it makes room in a queue that held senders back while
// sends are parked, completes them after releasing its lock, taking the
// group lock and the head's recipients in order (the head's recipients
// found in a copy of the index kept under the group lock). What it leaves
// out is what none of the rows reach: joins, leaves, settings, drop marks,
// batch sends, shutdown.
//
// Every writer allocates a new message per send (as the front end copies
// each write) and waits (parks) while a queue is full; every reader takes
// what is queued and waits (parks) while its queue is empty. With
// --locking-spin neither parks: it yields and tries again.

import DeliveryCore
import DequeModule
import Dispatch
import Synchronization
import Glibc
import class Foundation.Thread

/// A glibc adaptive mutex, as Locking's AdaptiveMutex makes it, with lock and
/// unlock apart so that a send can hold several; alone on its cache line.
final class RawLock: @unchecked Sendable {
    let mutex: UnsafeMutablePointer<pthread_mutex_t>

    init() {
        mutex = UnsafeMutableRawPointer.allocate(byteCount: 64, alignment: 64)
            .bindMemory(to: pthread_mutex_t.self, capacity: 1)
        var attributes = pthread_mutexattr_t()
        pthread_mutexattr_init(&attributes)
        pthread_mutexattr_settype(&attributes, Int32(PTHREAD_MUTEX_ADAPTIVE_NP))
        pthread_mutex_init(mutex, &attributes)
        pthread_mutexattr_destroy(&attributes)
    }

    deinit {
        pthread_mutex_destroy(mutex)
        UnsafeMutableRawPointer(mutex).deallocate()
    }

    @inline(__always) func lock() { pthread_mutex_lock(mutex) }
    @inline(__always) func unlock() { pthread_mutex_unlock(mutex) }
}

/// 64 bytes that keep the next object's hot fields off this one's cache line.
typealias CacheLinePad = (UInt64, UInt64, UInt64, UInt64, UInt64, UInt64, UInt64, UInt64)
let cacheLinePad: CacheLinePad = (0, 0, 0, 0, 0, 0, 0, 0)

enum LockDesign: CaseIterable {
    case oneLock, lookupOutside, striped, perRecipient

    var name: String {
        switch self {
        case .oneLock: "prototype, one group lock"
        case .lookupOutside: "prototype, one lock, recipients found outside it"
        case .striped: "prototype, 8 striped locks"
        case .perRecipient: "prototype, per-recipient locks"
        }
    }

    /// Everything but the recipients' lookup under the group lock.
    var deliversUnderGroupLock: Bool { self == .oneLock || self == .lookupOutside }
}

struct ProtoChunk {
    let message: Message
    let range: Range<Int>
    let droppedBefore: UInt32
}

struct ProtoParkedReceive {
    let id: UInt64
    let maxMessages: Int
    let completion: @Sendable ([ProtoChunk]) -> Void
}

struct ProtoParkedSend {
    let id: UInt64
    let message: Message
    let completion: @Sendable (UInt64) -> Void
}

enum ProtoAction {
    case completeReceive(ProtoParkedReceive, [ProtoChunk])
    case completeSend(ProtoParkedSend, UInt64)
    case notify([UInt64: @Sendable () -> Void])
}

extension [ProtoAction] {
    func run() {
        for action in self {
            switch action {
            case .completeReceive(let receive, let chunks): receive.completion(chunks)
            case .completeSend(let send, let sequence): send.completion(sequence)
            case .notify(let watches): for notify in watches.values { notify() }
            }
        }
    }
}

/// A member: its queue, counters and waiters, under its own lock (per
/// recipient), its stripe's, or the group's.
final class ProtoMember: @unchecked Sendable {
    let id: Int
    let lock = RawLock()
    let capacity: Int
    let queueBytes: Int
    let dropWhenFull = false
    @exclusivity(unchecked) var queue = Deque<Message>()
    @exclusivity(unchecked) var queuedBytes = 0
    @exclusivity(unchecked) var delivered: UInt64 = 0
    @exclusivity(unchecked) var dropped: UInt64 = 0
    @exclusivity(unchecked) var dropsPending: UInt32 = 0
    @exclusivity(unchecked) var parkedReceives = Deque<ProtoParkedReceive>()
    @exclusivity(unchecked) var readWatches: [UInt64: @Sendable () -> Void] = [:]
    private let pad = cacheLinePad

    init(id: Int, capacity: Int, queueBytes: Int) {
        self.id = id
        self.capacity = capacity
        self.queueBytes = queueBytes
    }

    var isFull: Bool { queue.count >= capacity || queuedBytes >= queueBytes }
    var isBlocking: Bool { !dropWhenFull && isFull }
}

/// The membership's read side for the senders that use it: a lock, a copy
/// of the index, and the recipients of the message being sent.
final class ProtoSlot: @unchecked Sendable {
    let lock = RawLock()
    @exclusivity(unchecked) var index = SubscriptionIndex()
    /// Member ids, ascending: the order their locks are taken in.
    @exclusivity(unchecked) var order: [Int] = []
    @exclusivity(unchecked) var stripeMask: UInt8 = 0
    private let pad = cacheLinePad
}

final class ProtoGroup: @unchecked Sendable {
    let design: LockDesign
    /// One lock: guards everything. One lock, lookup outside: everything but
    /// the senders' slots, taken after a slot. Otherwise: the parked sends
    /// and write watches, taken after a slot and before any member's lock.
    let groupLock = RawLock()
    let members: [ProtoMember]
    let stripes: [RawLock]
    /// The senders' slots (one lock: none, they use `lockedSlot`).
    let slots: [ProtoSlot]
    /// A copy of the index under the group lock, for lookups made while it
    /// is held: the senders' with one lock, every design's parked sends
    /// completed by a receive (a slot taken there would invert the order).
    let lockedSlot = ProtoSlot()
    /// Some member has a filter: recipients are looked up. Otherwise every
    /// member receives, in id order, and nothing is looked up (as the core's
    /// `everyMemberReceives`).
    let filtered: Bool
    /// Not one lock: the next sequence number and the last time stamped,
    /// taken together so that times never go back from one number to the next.
    let sequencer = Atomic<WordPair>(WordPair(first: 1, second: 0))
    /// One lock: the same, under it.
    @exclusivity(unchecked) var nextSequence: UInt64 = 1
    @exclusivity(unchecked) var lastTime: UInt64 = 0
    /// Not one lock: how many sends are parked, changed under the group lock
    /// and the recipients' locks, read by the fast path under the recipients'.
    let parkedCount = Atomic<Int>(0)
    let writeWatchCount = Atomic<Int>(0)
    @exclusivity(unchecked) var parkedSends = Deque<ProtoParkedSend>()
    @exclusivity(unchecked) var writeWatches: [UInt64: @Sendable () -> Void] = [:]
    @exclusivity(unchecked) var nextID: UInt64 = 1

    /// `subscriptions[k]`: member k's pattern, or nil for every message.
    init(design: LockDesign, subscriptions: [String?], capacity: Int, slots slotCount: Int) {
        self.design = design
        members = subscriptions.indices.map { ProtoMember(id: $0, capacity: capacity, queueBytes: 1 << 30) }
        stripes = (0..<8).map { _ in RawLock() }
        filtered = subscriptions.contains { $0 != nil }
        slots = (0..<(design == .oneLock ? 0 : slotCount)).map { _ in ProtoSlot() }
        for slot in slots + [lockedSlot] {
            // Each slot indexes its own member records, so that the index's
            // marks (which dedupe a member matched twice) are the slot's own.
            for (id, pattern) in subscriptions.enumerated() {
                let settings = MemberSettings(subscribe: pattern.map { try! Subscription(parsing: $0) } ?? Subscription())
                slot.index.add(MemberState(id: UInt64(id), name: "m\(id)", settings: settings))
            }
            slot.order = Array(subscriptions.indices)
        }
    }

    private func slot(_ index: Int) -> ProtoSlot { design == .oneLock ? lockedSlot : slots[index % slots.count] }

    // MARK: Recipients and their locks

    @inline(__always)
    private func lookUp(_ message: Message, in slot: ProtoSlot) {
        guard filtered else { return }
        slot.index.collect(recipientsOf: message, from: nil)
        slot.order.removeAll(keepingCapacity: true)
        for state in slot.index.recipients { slot.order.append(Int(state.id)) }
        if slot.order.count > 1 { slot.order.sort() }
    }

    @inline(__always)
    private func lockRecipients(_ slot: ProtoSlot) {
        switch design {
        case .oneLock, .lookupOutside: break
        case .perRecipient:
            for id in slot.order { members[id].lock.lock() }
        case .striped:
            var mask: UInt8 = 0
            for id in slot.order { mask |= 1 << UInt8(id & 7) }
            slot.stripeMask = mask
            var bits = mask
            while bits != 0 {
                stripes[bits.trailingZeroBitCount].lock()
                bits &= bits - 1
            }
        }
    }

    @inline(__always)
    private func unlockRecipients(_ slot: ProtoSlot) {
        switch design {
        case .oneLock, .lookupOutside: break
        case .perRecipient:
            for id in slot.order { members[id].lock.unlock() }
        case .striped:
            var bits = slot.stripeMask
            while bits != 0 {
                stripes[bits.trailingZeroBitCount].unlock()
                bits &= bits - 1
            }
        }
    }

    @inline(__always)
    private func haveRoom(_ slot: ProtoSlot) -> Bool {
        for id in slot.order where members[id].isBlocking { return false }
        return true
    }

    @inline(__always)
    private func takeSequence(_ now: UInt64) -> (UInt64, UInt64) {
        if design.deliversUnderGroupLock {
            let sequence = nextSequence
            nextSequence &+= 1
            if now > lastTime { lastTime = now }
            return (sequence, lastTime)
        }
        var old = sequencer.load(ordering: .relaxed)
        while true {
            let time = max(now, UInt64(old.second))
            let new = WordPair(first: old.first &+ 1, second: UInt(time))
            let (exchanged, original) = sequencer.compareExchange(expected: old, desired: new, ordering: .relaxed)
            if exchanged { return (UInt64(old.first), time) }
            old = original
        }
    }

    // MARK: Sending

    enum SendStep { case delivered(UInt64), wouldBlock, parked }

    /// A send from the writer using slot `slotIndex`: delivered, refused
    /// (`park` nil), or parked with `park` as its completion.
    func send(_ message: Message, slot slotIndex: Int, park completion: (@Sendable (UInt64) -> Void)?) -> SendStep {
        let now = realtime()
        var actions: [ProtoAction] = []
        let slot = self.slot(slotIndex)
        let step: SendStep
        if design.deliversUnderGroupLock {
            // Lookup outside: a slot is a read lock of the membership, which
            // a join or leave would take with every other slot.
            if design == .lookupOutside {
                slot.lock.lock()
                lookUp(message, in: slot)
            }
            groupLock.lock()
            if design == .oneLock { lookUp(message, in: slot) }
            if parkedSends.isEmpty && haveRoom(slot) {
                step = .delivered(deliver(message, in: slot, now: now, actions: &actions))
            } else if let completion {
                parkedSends.append(ProtoParkedSend(id: makeID(), message: message, completion: completion))
                step = .parked
            } else {
                step = .wouldBlock
            }
            groupLock.unlock()
            if design == .lookupOutside { slot.lock.unlock() }
        } else {
            slot.lock.lock()
            lookUp(message, in: slot)
            lockRecipients(slot)
            if parkedCount.load(ordering: .acquiring) == 0 && haveRoom(slot) {
                step = .delivered(deliver(message, in: slot, now: now, actions: &actions))
                unlockRecipients(slot)
            } else {
                unlockRecipients(slot)
                // In line with the parked sends: slot, group lock, members.
                groupLock.lock()
                lockRecipients(slot)
                if parkedSends.isEmpty && haveRoom(slot) {
                    step = .delivered(deliver(message, in: slot, now: now, actions: &actions))
                } else if let completion {
                    parkedSends.append(ProtoParkedSend(id: makeID(), message: message, completion: completion))
                    parkedCount.add(1, ordering: .releasing)
                    step = .parked
                } else {
                    step = .wouldBlock
                }
                unlockRecipients(slot)
                groupLock.unlock()
            }
            slot.lock.unlock()
        }
        if !actions.isEmpty { actions.run() }
        return step
    }

    private func makeID() -> UInt64 {
        defer { nextID &+= 1 }
        return nextID
    }

    /// Under every recipient's lock (or the group's).
    @inline(__always)
    private func deliver(_ message: Message, in slot: ProtoSlot, now: UInt64, actions: inout [ProtoAction]) -> UInt64 {
        let (sequence, time) = takeSequence(now)
        message.stamp(sequence: sequence, time: time, senderName: nil)
        for id in slot.order {
            let member = members[id]
            if member.isFull {
                member.dropped &+= 1
                if member.dropsPending < .max { member.dropsPending += 1 }
                continue
            }
            member.delivered &+= 1
            let dropsBefore = member.dropsPending
            if dropsBefore != 0 { member.dropsPending = 0 }
            if let receive = member.parkedReceives.popFirst() {
                let chunk = ProtoChunk(message: message, range: 0..<message.count, droppedBefore: dropsBefore)
                actions.append(.completeReceive(receive, [chunk]))
                continue
            }
            member.queue.append(message)
            member.queuedBytes += message.count
            if !member.readWatches.isEmpty {
                actions.append(.notify(member.readWatches))
                member.readWatches = [:]
            }
        }
        return sequence
    }

    /// While the oldest parked send's recipients have room: deliver it.
    /// Under the group lock (and, for a sender's slot, that slot's).
    private func completeParkedSends(in slot: ProtoSlot, actions: inout [ProtoAction]) {
        var completedAny = false
        var now: UInt64?
        while let head = parkedSends.first {
            lookUp(head.message, in: slot)
            lockRecipients(slot)
            guard haveRoom(slot) else {
                unlockRecipients(slot)
                break
            }
            parkedSends.removeFirst()
            if !design.deliversUnderGroupLock { parkedCount.subtract(1, ordering: .releasing) }
            if now == nil { now = realtime() }
            let sequence = deliver(head.message, in: slot, now: now!, actions: &actions)
            unlockRecipients(slot)
            actions.append(.completeSend(head, sequence))
            completedAny = true
        }
        if completedAny && !writeWatches.isEmpty {
            actions.append(.notify(writeWatches))
            writeWatches = [:]
        }
    }

    // MARK: Receiving

    /// Up to `maxMessages` whole messages from member `id`: nil when its
    /// queue is empty (refused, or parked with `park` as its completion).
    func receive(member id: Int, maxMessages: Int, park completion: (@Sendable ([ProtoChunk]) -> Void)?) -> [ProtoChunk]? {
        let member = members[id]
        let lock = switch design {
        case .oneLock, .lookupOutside: groupLock
        case .striped: stripes[id & 7]
        case .perRecipient: member.lock
        }
        lock.lock()
        guard !member.queue.isEmpty else {
            if let completion {
                member.parkedReceives.append(ProtoParkedReceive(id: 0, maxMessages: maxMessages, completion: completion))
            }
            lock.unlock()
            return nil
        }
        let wasBlocking = member.isBlocking
        var chunks: [ProtoChunk] = []
        chunks.reserveCapacity(min(maxMessages, member.queue.count))
        while chunks.count < maxMessages, let message = member.queue.popFirst() {
            member.queuedBytes -= message.count
            chunks.append(ProtoChunk(message: message, range: 0..<message.count, droppedBefore: 0))
        }
        var actions: [ProtoAction] = []
        var completeAfter = false
        if wasBlocking && !member.isBlocking {
            if design.deliversUnderGroupLock {
                completeParkedSends(in: lockedSlot, actions: &actions)
                if !writeWatches.isEmpty {
                    actions.append(.notify(writeWatches))
                    writeWatches = [:]
                }
            } else {
                // Read under this member's lock: a send parked on it counted
                // itself before releasing it.
                completeAfter = parkedCount.load(ordering: .acquiring) > 0 || writeWatchCount.load(ordering: .relaxed) > 0
            }
        }
        lock.unlock()
        if completeAfter {
            // Never under a member's lock: the head's recipients may come
            // before this member in the lock order.
            groupLock.lock()
            completeParkedSends(in: lockedSlot, actions: &actions)
            groupLock.unlock()
        }
        if !actions.isEmpty { actions.run() }
        return chunks
    }
}

@inline(__always) func realtime() -> UInt64 {
    var now = timespec()
    clock_gettime(CLOCK_REALTIME, &now)
    return UInt64(now.tv_sec) &* 1_000_000_000 &+ UInt64(now.tv_nsec)
}

// MARK: The streams, on the same threads for every design

final class Box<Value>: @unchecked Sendable {  // written before a signal, read after the wait
    var value: Value
    init(_ value: Value) { self.value = value }
}

/// `wait` nil: never park; try again after sched_yield() instead (the
/// "spinning" rows, where only the locks and the delivery are left to cost).
protocol StreamTarget: Sendable {
    /// Sends as writer `writer`, waiting while it must.
    func send(_ message: Message, writer: Int, wait: DispatchSemaphore?)
    /// Receives for member `member`, waiting while its queue is empty (with
    /// `wait`; without, 0 when it is): how many messages.
    func receive(member: Int, maxMessages: Int, wait: DispatchSemaphore?) -> Int
}

/// The core: one group, or (`groupPerStream`, filtered streams only) a
/// group for each stream, writer k and member k in group k — no lock
/// shared at all, the ceiling of any lock design for one group.
struct CoreStreams: StreamTarget {
    let groups: [Group]
    let readers: [Reader]

    init(subscriptions: [String?], capacity: Int, groupPerStream: Bool = false) {
        let settings = GroupSettings(capacity: capacity, queueBytes: 1 << 30)
        let groups = (0..<(groupPerStream ? subscriptions.count : 1)).map { try! Group(name: "streams\($0)", settings: settings) }
        self.groups = groups
        readers = subscriptions.enumerated().map { index, pattern in
            let settings = MemberSettings(
                capacity: capacity, queueBytes: 1 << 30,
                subscribe: pattern.map { try! Subscription(parsing: $0) } ?? Subscription())
            return try! groups[groupPerStream ? index : 0].join("m\(index)", settings: settings).makeReader()
        }
    }

    func send(_ message: Message, writer: Int, wait: DispatchSemaphore?) {
        let group = groups[groups.count == 1 ? 0 : writer]
        if (try? group.trySend(message)) != nil { return }
        guard let wait else {
            while (try? group.trySend(message)) == nil { sched_yield() }
            return
        }
        group.send(message, .blocking) { _ in wait.signal() }
        wait.wait()
    }

    func receive(member: Int, maxMessages: Int, wait: DispatchSemaphore?) -> Int {
        let reader = readers[member]
        if maxMessages == 1 {
            if (try? reader.tryReceive(maxBytes: 1 << 20)) != nil { return 1 }
        } else if let batch = try? reader.tryReceiveBatch(maxMessages: maxMessages, maxBytes: 1 << 20) {
            return batch.count
        }
        guard let wait else {
            sched_yield()
            return 0
        }
        let got = Box(0)
        reader.receiveBatch(maxMessages: maxMessages, maxBytes: 1 << 20, .blocking) { result in
            got.value = (try? result.get().count) ?? 0
            wait.signal()
        }
        wait.wait()
        return got.value
    }
}

struct ProtoStreams: StreamTarget {
    let group: ProtoGroup

    func send(_ message: Message, writer: Int, wait: DispatchSemaphore?) {
        if case .delivered = group.send(message, slot: writer, park: nil) { return }
        guard let wait else {
            while true {
                sched_yield()
                if case .delivered = group.send(message, slot: writer, park: nil) { return }
            }
        }
        if case .delivered = group.send(message, slot: writer, park: { _ in wait.signal() }) { return }
        wait.wait()
    }

    func receive(member: Int, maxMessages: Int, wait: DispatchSemaphore?) -> Int {
        if let chunks = group.receive(member: member, maxMessages: maxMessages, park: nil) { return chunks.count }
        guard let wait else {
            sched_yield()
            return 0
        }
        let got = Box(0)
        if let chunks = group.receive(member: member, maxMessages: maxMessages, park: { chunks in
            got.value = chunks.count
            wait.signal()
        }) {
            return chunks.count
        }
        wait.wait()
        return got.value
    }
}

/// `streams` writers, writer k on topic `stream.k`, and `streams` members
/// with a reader each; filtered: member k subscribes to `stream.k` alone,
/// otherwise every member receives every message. Deliveries per second
/// from the start signal until every reader has its share.
func runStreams(
    _ target: some StreamTarget, streams: Int, filtered: Bool, messagesPerWriter: Int, maxMessages: Int, parks: Bool
) -> Double {
    let payloads = (0..<streams).map { writer in
        Array("stream.\(writer) 21.5 C, and the rest of a sixty-four-byte reading......".utf8.prefix(64))
    }
    let perMember = filtered ? messagesPerWriter : messagesPerWriter * streams
    let ready = DispatchGroup(), done = DispatchGroup()
    let go = DispatchSemaphore(value: 0)
    func thread(_ body: @escaping @Sendable () -> Void) {
        ready.enter()
        done.enter()
        Thread.detachNewThread {
            ready.leave()
            go.wait()
            body()
            done.leave()
        }
    }
    let received = Atomic<Int>(0)
    for writer in 0..<streams {
        let bytes = payloads[writer]
        thread {
            let wait = parks ? DispatchSemaphore(value: 0) : nil
            bytes.withUnsafeBytes { bytes in
                for _ in 0..<messagesPerWriter { target.send(Message(copying: bytes), writer: writer, wait: wait) }
            }
        }
    }
    for member in 0..<streams {
        thread {
            let wait = parks ? DispatchSemaphore(value: 0) : nil
            var remaining = perMember
            while remaining > 0 { remaining -= target.receive(member: member, maxMessages: maxMessages, wait: wait) }
            received.add(perMember - remaining, ordering: .relaxed)
        }
    }
    ready.wait()
    let start = DispatchTime.now().uptimeNanoseconds
    for _ in 0..<(2 * streams) { go.signal() }
    done.wait()
    let elapsed = Double(DispatchTime.now().uptimeNanoseconds - start)
    precondition(received.load(ordering: .relaxed) == perMember * streams)
    return Double(perMember * streams) / (elapsed / 1e9)
}

// MARK: The section

struct LockingScenario {
    let streams: Int
    let filtered: Bool
    var name: String { "\(streams) \(filtered ? "filtered streams" : "writers, unfiltered")" }
}

enum LockingTarget: Hashable {
    case core
    case coreGroupPerStream
    case prototype(LockDesign)

    var name: String {
        switch self {
        case .core: "the core (Group), one group lock"
        case .coreGroupPerStream: "the core, a group per stream (no shared lock)"
        case .prototype(let design): design.name
        }
    }
}

/// Runs every scenario through every target, round after round (the order
/// of the targets rotating), and reports each target's best round and spread
/// beside the core's best: ratios > 1 deliver more than the core. Returns
/// the rows (main.swift's globals may not be initialized yet when it runs).
func lockingSection(
    quick: Bool, rounds: Int, maxMessages: Int, targets names: String = "core,groups,one,outside,striped,per",
    scenarios scenarioNames: String = "f2,f8,u2,u8", parks: Bool = true, raw: Bool = false
) -> [Row] {
    var rows: [Row] = []
    let capacity = 256
    let known: [String: LockingTarget] = [
        "core": .core, "groups": .coreGroupPerStream, "one": .prototype(.oneLock), "outside": .prototype(.lookupOutside),
        "striped": .prototype(.striped), "per": .prototype(.perRecipient),
    ]
    let targets = names.split(separator: ",").map { name in
        guard let target = known[String(name)] else { fatalError("core-bench: no locking target \(name)") }
        return target
    }
    let scenarios = scenarioNames.split(separator: ",").map { name in
        guard let streams = Int(name.dropFirst()), streams > 0, name.first == "f" || name.first == "u" else {
            fatalError("core-bench: no locking scenario \(name)")
        }
        return LockingScenario(streams: streams, filtered: name.first == "f")
    }
    print("== locking: N writers, N members with a reader each, one group; filtered: writer k's topic matched by member k alone")
    print("   (deliveries/s; receives of up to \(maxMessages) message\(maxMessages == 1 ? "" : "s"); queues of \(capacity); "
          + (parks ? "a full writer and an empty reader park" : "spinning: no parking, sched_yield() and try again")
          + "; \(rounds) rounds, best and spread)")
    for scenario in scenarios {
        // About the same number of deliveries in every scenario.
        let deliveries = (quick ? 60_000 : 600_000)
        let perWriter = scenario.filtered ? deliveries / scenario.streams : deliveries / (scenario.streams * scenario.streams)
        let subscriptions: [String?] = (0..<scenario.streams).map { scenario.filtered ? "stream.\($0)" : nil }
        var figures: [LockingTarget: [Double]] = [:]
        // A group per stream exists only when the streams are independent.
        let targets = scenario.filtered ? targets : targets.filter { $0 != .coreGroupPerStream }
        for round in 0..<rounds {
            for offset in targets.indices {
                let target = targets[(offset + round) % targets.count]
                let rate: Double
                switch target {
                case .core, .coreGroupPerStream:
                    let streams = CoreStreams(subscriptions: subscriptions, capacity: capacity, groupPerStream: target == .coreGroupPerStream)
                    rate = runStreams(streams, streams: scenario.streams,
                                      filtered: scenario.filtered, messagesPerWriter: perWriter, maxMessages: maxMessages, parks: parks)
                case .prototype(let design):
                    let group = ProtoGroup(design: design, subscriptions: subscriptions, capacity: capacity, slots: scenario.streams)
                    rate = runStreams(ProtoStreams(group: group), streams: scenario.streams,
                                      filtered: scenario.filtered, messagesPerWriter: perWriter, maxMessages: maxMessages, parks: parks)
                }
                figures[target, default: []].append(rate)
            }
        }
        guard let core = figures[.core] else {
            for target in targets {
                print("\(scenario.name): \(target.name): best \(format(figures[target]!.max()! / 1e6, 2)) M/s")
            }
            continue
        }
        for target in targets {
            let runs = figures[target]!
            // Per-round ratios compare runs seconds apart: less exposed to
            // the load changing between rounds than best against best.
            let perRound = zip(runs, core).map { $0 / $1 }.sorted()
            let median = perRound[perRound.count / 2]
            let spread = "\(format(runs.min()! / 1e6, 2))–\(format(runs.max()! / 1e6, 2))"
            let scenarioName = "\(scenario.name)\(parks ? "" : ", spinning"): \(target.name)"
            print("\(scenarioName.padding(toLength: max(76, scenarioName.count), withPad: " ", startingAt: 0)) best \(format(runs.max()! / 1e6, 2)) M/s"
                  + " (\(spread))  vs the core \(format(core.max()! / 1e6, 2))  ratio \(format(runs.max()! / core.max()!, 2))"
                  + " (per round, median \(format(median, 2)))")
            if raw { print("   rounds (M/s): " + runs.map { format($0 / 1e6, 3) }.joined(separator: " ")) }
            if target != .core {
                rows.append(Row(scenario: "locking: \(scenarioName)", unit: "M/s", value: runs.max()! / 1e6,
                                anchorName: "the core, one group lock", anchor: core.max()! / 1e6))
            }
        }
    }
    return rows
}
