// The delivery core's benchmark, in process. Each figure is printed beside an
// anchor measured in the same run, on the same machine, and the ratio between
// them: the machines are shared and noisy, so ratios are what compare.
//
//   swift run -c release core-bench            # full run
//   swift run -c release core-bench --quick    # a few seconds, for CI smoke runs
//   ... --json FILE                            # also write the figures as JSON
//
// Anchors:
//   - "locked deque": one Mutex<Deque> append and removeFirst per recipient,
//     the floor of any locked queue that hands a pointer from one side to the
//     other ("locked deque, batch": the batch appended in one lock hold and
//     removed in another, per recipient). The core does that plus flow control, counters and waiters.
//     It uses Synchronization.Mutex, what one would reach for first; the core
//     uses Locking's AdaptiveMutex, whose lock and unlock are calls into
//     glibc rather than inlined atomics, and that cost shows in the ratio.
//   - "striped locks": the seed's Solution 3 (recipients hashed to 8 locks, a
//     sender takes the locks it needs in order), beside the core's one lock
//     per group, for the locking decision (docs/locking.md). Both sides use
//     AdaptiveMutex, so only the structure differs.

import ArgumentParser
import DeliveryCore
import DequeModule
import Dispatch
import Locking
import Synchronization
import Glibc
import class Foundation.Thread
import class Foundation.JSONSerialization
import struct Foundation.URL

struct Options: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "core-bench",
        abstract: "The delivery core's benchmark, each figure beside an anchor from the same run.")

    @Flag(help: "A tenth of the work: a few seconds, for CI smoke runs.")
    var quick = false

    @Option(name: .customLong("json"), help: ArgumentHelp("Also write the figures as JSON to this file.", valueName: "file"))
    var jsonPath: String?

    @Flag(help: "Run only the single-thread fan-out section (for profilers).")
    var fanOutOnly = false

    @Flag(help: "The fan-out rows' members charge one account with a limit never reached (limits per user: what a mount's members pay).")
    var accounts = false

    @Flag(help: "Run only the topic filters section (for profilers).")
    var filtersOnly = false

    @Flag(help: "Run only the locking section: filtered streams and the unfiltered case (Locking.swift).")
    var lockingOnly = false

    @Option(help: "The locking section's receives: up to this many messages each (1: as a read(2) of the record view).")
    var lockingReceive = 64

    @Option(help: "The locking section's targets, of core,groups,one,outside,striped,per (for profilers).")
    var lockingTargets = "core,groups,one,outside,striped,per"

    @Option(help: "The locking section's scenarios, of f2,f8,u2,u8 (filtered or unfiltered, 2 or 8 streams).")
    var lockingScenarios = "f2,f8,u2,u8"

    @Flag(help: "The locking section without parking: a writer or reader that would wait yields and tries again.")
    var lockingSpin = false
}

let options = Options.parseOrExit()
/// What the fan-out rows' members charge with `--accounts`: one owner's
/// account, far below its limit, as on a mount with user_bytes.
let benchAccount: Account? = options.accounts ? Account(limit: 1 << 62) : nil
let scale = options.quick ? 1 : 10
if options.lockingOnly {
    _ = lockingSection(quick: options.quick, rounds: options.quick ? 3 : 7, maxMessages: options.lockingReceive,
                       targets: options.lockingTargets, scenarios: options.lockingScenarios, parks: !options.lockingSpin,
                       raw: true)
    exit(0)
}

/// A lock-guarded value that can live in an array (Mutex itself cannot be copied).
final class Locked<Value: Sendable>: Sendable {
    let mutex: Mutex<Value>
    init(_ value: Value) { mutex = Mutex(value) }
    func withLock<R>(_ body: (inout Value) -> R) -> R { mutex.withLock { body(&$0) } }
}

@inline(never) func blackHole<T>(_ value: T) { withExtendedLifetime(value) {} }

func nanoseconds(_ body: () -> Void) -> Double {
    let start = DispatchTime.now().uptimeNanoseconds
    body()
    return Double(DispatchTime.now().uptimeNanoseconds - start)
}

/// Best of several rounds: the least disturbed by other work on the machine.
func best(rounds: Int = 5, _ body: () -> Double) -> Double {
    (0..<rounds).map { _ in body() }.min()!
}

struct Row {
    let scenario: String
    let unit: String
    let value: Double
    let anchorName: String
    let anchor: Double
    var ratio: Double { value / anchor }
}
nonisolated(unsafe) var rows: [Row] = []  // touched by the main thread only

func report(_ row: Row) {
    rows.append(row)
    let line = "\(row.scenario.padding(toLength: 44, withPad: " ", startingAt: 0)) "
        + "\(format(row.value)) \(row.unit)  vs \(row.anchorName) \(format(row.anchor))  ratio \(format(row.ratio, 2))"
    print(line)
}

func format(_ value: Double, _ decimals: Int = 1) -> String {
    var scaled = (value * pow(10, Double(decimals))).rounded() / pow(10, Double(decimals))
    if scaled == -0 { scaled = 0 }
    return "\(scaled)"
}

// MARK: Fan-out, one thread

let payload = Message([UInt8](repeating: 0x61, count: 64))

func coreSendReceive(fanOut: Int, messages: Int) -> Double {
    let group = try! Group(name: "bench", settings: GroupSettings(capacity: 1024))
    let readers = (0..<fanOut).map { try! group.join("m\($0)", account: benchAccount).makeReader() }
    return best {
        nanoseconds {
            for _ in 0..<messages {
                try! group.trySend(payload)
                for reader in readers { blackHole(try! reader.tryReceive(maxBytes: 4096)) }
            }
        } / Double(messages * fanOut)
    }
}

func coreSendBatchReceive(fanOut: Int, messages: Int) -> Double {
    let group = try! Group(name: "bench", settings: GroupSettings(capacity: 1024))
    let readers = (0..<fanOut).map { try! group.join("m\($0)", account: benchAccount).makeReader() }
    let burst = 64
    return best {
        nanoseconds {
            for _ in 0..<(messages / burst) {
                for _ in 0..<burst { try! group.trySend(payload) }
                for reader in readers { blackHole(try! reader.tryReceiveBatch(maxMessages: burst, maxBytes: 1 << 20)) }
            }
        } / Double((messages / burst) * burst * fanOut)
    }
}

func lockedDequeAnchor(fanOut: Int, messages: Int) -> Double {
    let queues = (0..<fanOut).map { _ in Locked(Deque<Message>()) }
    return best {
        nanoseconds {
            for _ in 0..<messages {
                for queue in queues { queue.withLock { $0.append(payload) } }
                for queue in queues { blackHole(queue.withLock { $0.removeFirst() }) }
            }
        } / Double(messages * fanOut)
    }
}

print("== the core, one thread: send to N members, then each receives (ns per recipient)")
for fanOut in options.filtersOnly ? [] : [1, 16, 64] {
    let messages = 20_000 * scale / fanOut + 1000
    let anchor = lockedDequeAnchor(fanOut: fanOut, messages: messages)
    report(Row(scenario: "send+receive, fan-out \(fanOut)", unit: "ns/recipient",
               value: coreSendReceive(fanOut: fanOut, messages: messages), anchorName: "locked deque", anchor: anchor))
    report(Row(scenario: "send+batch receive, fan-out \(fanOut)", unit: "ns/recipient",
               value: coreSendBatchReceive(fanOut: fanOut, messages: messages), anchorName: "locked deque", anchor: anchor))
}

/// One batch send of `batch` messages, then each member takes them in one
/// batch receive: ns per delivery (per message per recipient).
func coreBatchSendReceive(fanOut: Int, batch: Int, messages: Int) -> Double {
    let group = try! Group(name: "bench", settings: GroupSettings(capacity: 1024))
    let readers = (0..<fanOut).map { try! group.join("m\($0)", account: benchAccount).makeReader() }
    let messages = (messages / batch) * batch
    // Distinct messages, as a front end makes them from one write.
    let batchOfMessages = (0..<batch).map { _ in Message([UInt8](repeating: 0x61, count: 64)) }
    return best {
        nanoseconds {
            for _ in 0..<(messages / batch) {
                let receipt = try! group.trySend(batch: batchOfMessages)
                precondition(receipt.delivered == batch)
                for reader in readers { blackHole(try! reader.tryReceiveBatch(maxMessages: batch, maxBytes: 1 << 20)) }
            }
        } / Double(messages * fanOut)
    }
}

/// The anchor taking the same batch: per recipient, one lock hold appends
/// the batch, one lock hold removes it.
func lockedDequeBatchAnchor(fanOut: Int, batch: Int, messages: Int) -> Double {
    let queues = (0..<fanOut).map { _ in Locked(Deque<Message>()) }
    let messages = (messages / batch) * batch
    let batchOfMessages = (0..<batch).map { _ in Message([UInt8](repeating: 0x61, count: 64)) }
    return best {
        nanoseconds {
            for _ in 0..<(messages / batch) {
                for queue in queues { queue.withLock { $0.append(contentsOf: batchOfMessages) } }
                for queue in queues {
                    queue.withLock { queue in
                        for _ in 0..<batch { blackHole(queue.removeFirst()) }
                    }
                }
            }
        } / Double(messages * fanOut)
    }
}

print("== the core, one thread: batch sends to N members, then each takes the batch (ns per delivery)")
for batch in options.filtersOnly ? [] : [16, 64] {
    for fanOut in [1, 16, 64] {
        let messages = 40_000 * scale / fanOut + 4096
        let anchor = lockedDequeBatchAnchor(fanOut: fanOut, batch: batch, messages: messages)
        report(Row(scenario: "batch send \(batch)+batch receive, fan-out \(fanOut)", unit: "ns/recipient",
                   value: coreBatchSendReceive(fanOut: fanOut, batch: batch, messages: messages),
                   anchorName: "locked deque, batch", anchor: anchor))
    }
}

peerRows(scale: scale)

if options.fanOutOnly { exit(0) }

// MARK: Topic filters

/// A group of `members` with filters, of which only m0 matches the messages
/// sent: the others subscribe to topics that share the first token with it,
/// by literal patterns (half of them) or a `*` first (the other half), so
/// that the index's walk meets them and must not pay for them. ns per
/// message sent and received by the one matching member.
func filteredGroup(members: Int) -> (Group, Reader) {
    let group = try! Group(name: "bench", settings: GroupSettings(capacity: 1024))
    let subscribe = { (pattern: String) in MemberSettings(subscribe: try! Subscription(parsing: pattern)) }
    let matching = try! group.join("m0", settings: subscribe("sensor.m0.temp")).makeReader()
    for index in 1..<members {
        _ = try! group.join("m\(index)", settings: subscribe(index % 2 == 0 ? "sensor.m\(index).temp" : "*.m\(index).>"))
    }
    return (group, matching)
}

/// 64 bytes, its topic first, as a publisher would write it.
let topicPayload = Message(Array("sensor.m0.temp 21.5 C, and the rest of a sixty-four-byte reading".utf8.prefix(64)))

func filteredSendReceive(members: Int, messages: Int) -> Double {
    let (group, matching) = filteredGroup(members: members)
    return best {
        nanoseconds {
            for _ in 0..<messages {
                try! group.trySend(topicPayload)
                blackHole(try! matching.tryReceive(maxBytes: 4096))
            }
        } / Double(messages)
    }
}

/// Batches of 64 in which every other message is on a topic nobody
/// matches; ns per message sent (half of them received).
func filteredBatchSendReceive(members: Int, messages: Int) -> Double {
    let (group, matching) = filteredGroup(members: members)
    let batch = 64
    let messages = (messages / batch) * batch
    let unmatched = Array("sensor.nobody.temp 21.5 C".utf8)
    let batchOfMessages = (0..<batch).map { index in
        index % 2 == 0 ? Message(topicPayload.bytes) : Message(unmatched)
    }
    return best {
        nanoseconds {
            for _ in 0..<(messages / batch) {
                let receipt = try! group.trySend(batch: batchOfMessages)
                precondition(receipt.delivered == batch && receipt.recipients == batch / 2)
                blackHole(try! matching.tryReceiveBatch(maxMessages: batch, maxBytes: 1 << 20))
            }
        } / Double(messages)
    }
}

print("== topic filters, one thread: one member of N matches (ns per message)")
do {
    let messages = 20_000 * scale + 1000
    let unfiltered = coreSendReceive(fanOut: 1, messages: messages)
    let ofTen = filteredSendReceive(members: 10, messages: messages)
    let ofThousand = filteredSendReceive(members: 1000, messages: messages)
    report(Row(scenario: "filtered send+receive, 1 of 10 match", unit: "ns/message",
               value: ofTen, anchorName: "unfiltered, 1 member", anchor: unfiltered))
    report(Row(scenario: "filtered send+receive, 1 of 1000 match", unit: "ns/message",
               value: ofThousand, anchorName: "1 of 10 match", anchor: ofTen))
    let batchOfTen = filteredBatchSendReceive(members: 10, messages: messages * 4)
    let batchOfThousand = filteredBatchSendReceive(members: 1000, messages: messages * 4)
    report(Row(scenario: "filtered batch 64, 1 of 1000 match", unit: "ns/message",
               value: batchOfThousand, anchorName: "1 of 10 match", anchor: batchOfTen))
}
if options.filtersOnly { exit(0) }

// MARK: Two threads

/// One thread sends (blocking when queues are full), one drains every member
/// with batch receives. Returns deliveries per second.
func coreTwoThreads(fanOut: Int, messages: Int) -> Double {
    let group = try! Group(name: "bench", settings: GroupSettings(capacity: 256))
    let readers = (0..<fanOut).map { try! group.join("m\($0)").makeReader() }
    let done = DispatchSemaphore(value: 0)
    let elapsed = nanoseconds {
        Thread.detachNewThread {
            var remaining = messages * fanOut
            while remaining > 0 {
                for reader in readers {
                    if let batch = try? reader.tryReceiveBatch(maxMessages: 256, maxBytes: 1 << 20) {
                        remaining -= batch.count
                    }
                }
            }
            done.signal()
        }
        let sent = DispatchSemaphore(value: 0)
        for _ in 0..<messages {
            if (try? group.trySend(payload)) == nil {
                group.send(payload, .blocking) { _ in sent.signal() }
                sent.wait()
            }
        }
        done.wait()
    }
    return Double(messages * fanOut) / (elapsed / 1e9)
}

/// The same with the anchor's queues: a spin on empty, a spin on full.
func dequeTwoThreads(fanOut: Int, messages: Int) -> Double {
    let queues = (0..<fanOut).map { _ in Locked(Deque<Message>()) }
    let done = DispatchSemaphore(value: 0)
    let elapsed = nanoseconds {
        Thread.detachNewThread {
            var remaining = messages * fanOut
            while remaining > 0 {
                for queue in queues {
                    let batch = queue.withLock { queue in
                        defer { queue.removeAll(keepingCapacity: true) }
                        return queue.count
                    }
                    remaining -= batch
                }
            }
            done.signal()
        }
        for _ in 0..<messages {
            while queues.contains(where: { $0.withLock { $0.count } >= 256 }) {}
            for queue in queues { queue.withLock { $0.append(payload) } }
        }
        done.wait()
    }
    return Double(messages * fanOut) / (elapsed / 1e9)
}

print("== two threads: one sender, one receiver draining all members (deliveries/s)")
for fanOut in [1, 16] {
    let messages = 100_000 * scale / fanOut
    let core = best(rounds: 3) { coreTwoThreads(fanOut: fanOut, messages: messages) }
    let anchor = best(rounds: 3) { dequeTwoThreads(fanOut: fanOut, messages: messages) }
    // Higher is better here, so the ratio is anchor time over core time.
    report(Row(scenario: "deliveries/s, 2 threads, fan-out \(fanOut)", unit: "M/s",
               value: core / 1e6, anchorName: "locked deques", anchor: anchor / 1e6))
}

// MARK: Locking: one group lock vs striped locks (the seed's Solution 3)

/// Solution 3 reduced to its hot path: recipients hashed onto 8 locks; a send
/// takes every lock its recipients need, in index order, then appends; a
/// receive takes only its recipient's lock.
final class StripedGroup: @unchecked Sendable {
    let stripes = (0..<8).map { _ in AdaptiveMutex(()) }
    var queues: [Deque<Message>]
    let stripeOf: [Int]
    init(members: Int) {
        queues = Array(repeating: Deque(), count: members)
        stripeOf = (0..<members).map { $0 % 8 }
    }
    func send(_ message: Message, to recipients: [Int], stripes needed: [Int]) {
        lockAll(needed[...]) { for index in recipients { queues[index].append(message) } }
    }
    private func lockAll(_ needed: ArraySlice<Int>, _ body: () -> Void) {
        guard let first = needed.first else { return body() }
        stripes[first].withLock { _ in lockAll(needed.dropFirst(), body) }
    }
    func receive(_ index: Int) -> Message? {
        stripes[stripeOf[index]].withLock { _ in queues[index].popFirst() }
    }
}

/// Two sender threads and two receiver threads on one group of 16 members;
/// every message goes to all 16 (mcastfs has no per-message filter), each
/// receiver drains 8 members. With the group lock a send takes one lock; with
/// striped locks it takes all 8 (its recipients cover every stripe), and a
/// receive takes only its member's stripe. Returns deliveries per second.
func contendedGroup(striped: Bool, messages: Int) -> Double {
    let members = 16
    let group = try! Group(name: "bench", settings: GroupSettings(capacity: 1_000_000, queueBytes: 1 << 30))
    let readers = (0..<members).map { try! group.join("m\($0)").makeReader() }
    let stripedGroup = StripedGroup(members: members)
    let everyone = Array(0..<members)
    let allStripes = Array(0..<8)
    let work = DispatchGroup()
    let elapsed = nanoseconds {
        for side in 0..<2 {
            work.enter()
            Thread.detachNewThread {
                for _ in 0..<messages {
                    if striped {
                        stripedGroup.send(payload, to: everyone, stripes: allStripes)
                    } else {
                        try! group.trySend(payload)
                    }
                }
                work.leave()
            }
            work.enter()
            Thread.detachNewThread {
                let mine = (side * 8)..<(side * 8 + 8)
                var remaining = 2 * messages * 8
                while remaining > 0 {
                    for index in mine {
                        if striped {
                            if stripedGroup.receive(index) != nil { remaining -= 1 }
                        } else if (try? readers[index].tryReceive(maxBytes: 4096)) != nil {
                            remaining -= 1
                        }
                    }
                }
                work.leave()
            }
        }
        work.wait()
    }
    return Double(2 * messages * members) / (elapsed / 1e9)
}

print("== locking: 2 senders and 2 receivers on one group of 16 members (deliveries/s)")
do {
    let messages = 10_000 * scale
    let striped = best(rounds: 3) { contendedGroup(striped: true, messages: messages) }
    let groupLock = best(rounds: 3) { contendedGroup(striped: false, messages: messages) }
    report(Row(scenario: "one group lock, 2+2 threads, fan-out 16", unit: "M/s",
               value: groupLock / 1e6, anchorName: "8 striped locks", anchor: striped / 1e6))
}
rows += lockingSection(quick: options.quick, rounds: options.quick ? 3 : 5, maxMessages: options.lockingReceive)

// MARK: Memory

/// Resident bytes of this process: the second field of /proc/self/statm, in pages.
func residentBytes() -> Int {
    guard let file = fopen("/proc/self/statm", "r") else { return 0 }
    defer { fclose(file) }
    var line = [CChar](repeating: 0, count: 256)
    guard fgets(&line, Int32(line.count), file) != nil else { return 0 }
    let text = String(decoding: line.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    let fields = text.split(separator: " ")
    guard fields.count > 1, let pages = Int(fields[1]) else { return 0 }
    return pages * Int(sysconf(Int32(_SC_PAGESIZE)))
}

/// Resident bytes added per queued message per recipient at fan-out 64:
/// queue `count` messages of `size` bytes, subtract the messages themselves
/// (measured alone), divide by count × fan-out.
func memoryPerQueuedMessage(fanOut: Int, count: Int, size: Int) -> (perRecipient: Double, perMessage: Double, shared: Bool) {
    let bytes = [UInt8](repeating: 1, count: size)
    var base = residentBytes()
    var alone: [Message] = []
    alone.reserveCapacity(count)
    for _ in 0..<count { alone.append(Message(bytes)) }
    let perMessage = Double(residentBytes() - base) / Double(count)
    blackHole(alone)
    alone = []

    let group = try! Group(name: "mem", settings: GroupSettings(capacity: count + 1, queueBytes: 1 << 30))
    let readers = (0..<fanOut).map { try! group.join("m\($0)").makeReader() }
    base = residentBytes()
    for _ in 0..<count { try! group.trySend(Message(bytes)) }
    let total = Double(residentBytes() - base)
    let first = try! readers[0].tryReceive(maxBytes: size)!, last = try! readers[fanOut - 1].tryReceive(maxBytes: size)!
    let perRecipient = (total - perMessage * Double(count)) / Double(count * fanOut)
    return (perRecipient, perMessage, first.message.isSame(as: last.message))
}

print("== memory: messages of 64 bytes queued for 64 members (resident bytes)")
do {
    let count = options.quick ? 20_000 : 100_000
    let (perRecipient, perMessage, shared) = memoryPerQueuedMessage(fanOut: 64, count: count, size: 64)
    print("bytes per queued message per recipient: \(format(perRecipient)) (payload stored once: \(shared))")
    print("bytes per message object (64-byte payload, header, malloc): \(format(perMessage))")
    rows.append(Row(scenario: "memory per queued message per recipient", unit: "bytes", value: perRecipient,
                    anchorName: "one pointer", anchor: 8))
}

if let jsonPath = options.jsonPath {
    let objects = rows.map { row -> [String: Any] in
        ["scenario": row.scenario, "unit": row.unit, "value": row.value, "anchor": row.anchorName,
         "anchor_value": row.anchor, "ratio": row.ratio]
    }
    do {
        let data = try JSONSerialization.data(withJSONObject: ["core": objects], options: [.prettyPrinted, .sortedKeys])
        try data.write(to: URL(fileURLWithPath: jsonPath))
    } catch {
        Options.exit(withError: error)
    }
}
